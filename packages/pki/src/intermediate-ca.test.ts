import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { children, content } from './der.js';
import {
  CertificateAuthority,
  createCsr,
  createIntermediateCa,
  createIntermediateCsr,
  createRootCa,
  generateKeyPair,
  isPkiError,
  parseCsr,
  signIntermediate,
  writePluggedCa,
  type PkiReason,
  type RootCa,
} from './index.js';
import { keyIdentifier } from './keys.js';
import { decodePemBlocks, derToPem } from './pem.js';
import { parseCertificateParts } from './x509.js';

const DAY_MS = 24 * 3600_000;

function rejectsWith(reason: PkiReason): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isPkiError(err), `expected PkiError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    return true;
  };
}

function extensionsOf(pem: string) {
  const parts = parseCertificateParts(new X509Certificate(pem).raw);
  const get = (oid: string) => parts.extensions.get(oid) ?? assert.fail(`missing extension ${oid}`);
  return { parts, get };
}

/** tamper flips one bit near the end of a PEM's DER (inside the signature). */
function tamper(pem: string): string {
  const [block] = decodePemBlocks(pem);
  assert.ok(block);
  const der = Buffer.from(block.der);
  der[der.length - 3] = (der[der.length - 3] ?? 0) ^ 0x01;
  return derToPem(der, block.label);
}

let tmp = '';
let root: RootCa;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedmesh-pki-intermediate-'));
  root = await createRootCa({ trustDomain: 'cluster.local' });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('createRootCa', () => {
  it("makes a P-256 root shaped like Istio's root-ca.conf: CA critical, keyCertSign+cRLSign critical, SKI", () => {
    const cert = new X509Certificate(root.rootCertPem);
    assert.equal(cert.subject, 'O=fedmesh\nCN=Root CA');
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey), 'self-signed');
    assert.equal(cert.ca, true);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(cert.subjectAltName, 'URI:spiffe://cluster.local');
    const lifetime = new Date(cert.validTo).getTime() - Date.now();
    assert.ok(Math.abs(lifetime - 3650 * DAY_MS) < 5_000, '10 years');

    const { parts, get } = extensionsOf(root.rootCertPem);
    assert.equal(get('2.5.29.19').critical, true);
    assert.deepEqual([...content(get('2.5.29.19').value)], [0x01, 0x01, 0xff], 'cA TRUE, no pathLenConstraint');
    assert.equal(get('2.5.29.15').critical, true);
    assert.deepEqual([...content(get('2.5.29.15').value)], [1, 0x06], 'keyCertSign + cRLSign');
    assert.deepEqual(content(get('2.5.29.14').value), keyIdentifier(parts.spki));
    assert.match(root.rootKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  });

  it('takes org, lifetime and RSA keys, omits the SAN without a trust domain, and refuses bad input', async () => {
    const rsa = await createRootCa({ org: 'Istio', ttlMs: 10 * DAY_MS, keyType: 'rsa-2048' });
    const cert = new X509Certificate(rsa.rootCertPem);
    assert.equal(cert.subject, 'O=Istio\nCN=Root CA');
    assert.equal(cert.subjectAltName, undefined);
    assert.equal(cert.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(cert.verify(cert.publicKey));
    assert.equal(rsa.notAfter.getTime(), new Date(cert.validTo).getTime());
    await assert.rejects(createRootCa({ trustDomain: 'Bad Domain' }), rejectsWith('IDENTITY_INVALID'));
    await assert.rejects(createRootCa({ ttlMs: 0 }), rejectsWith('TTL_INVALID'));
    await assert.rejects(createRootCa({ ttlMs: 9000 * 365 * DAY_MS }), rejectsWith('TTL_INVALID'));
    await assert.rejects(createRootCa({ org: '' }), TypeError);
  });
});

describe('createIntermediateCsr and signIntermediate', () => {
  it('makes a CSR with O, CN=Intermediate CA, L=<cluster> asking for CA powers, signed with its own key', async () => {
    const { csrPem, keyPem } = await createIntermediateCsr({ cluster: 'east', org: 'Acme' });
    const csr = parseCsr(csrPem);
    assert.equal(csr.keyType, 'ec');
    assert.deepEqual(csr.extensionsRequested, ['2.5.29.19', '2.5.29.15']);
    const out = execFileSync('openssl', ['req', '-noout', '-subject', '-verify'], { input: csrPem, encoding: 'utf8' });
    assert.match(out, /subject=O = Acme, CN = Intermediate CA, L = east/);
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    await assert.rejects(createIntermediateCsr({ cluster: 'bad name' }), TypeError);
    await assert.rejects(createIntermediateCsr({ cluster: '-x' }), TypeError);
  });

  it('signs an intermediate: cA pathlen 0, keyCertSign, AKI = root SKI, SPIFFE SAN, 730 days; openssl agrees', async () => {
    const { csrPem, keyPem } = await createIntermediateCsr({ cluster: 'east' });
    const signed = await signIntermediate({ rootCertPem: root.rootCertPem, rootKeyPem: root.rootKeyPem, csrPem });
    const cert = new X509Certificate(signed.caCertPem);
    const rootCert = new X509Certificate(root.rootCertPem);
    assert.equal(cert.subject, 'O=fedmesh\nCN=Intermediate CA\nL=east');
    assert.ok(cert.checkIssued(rootCert) && cert.verify(rootCert.publicKey));
    assert.equal(cert.subjectAltName, 'URI:spiffe://cluster.local', "the root's trust domain by default");
    assert.equal(signed.trustDomain, 'cluster.local');
    assert.ok(Math.abs(new Date(cert.validTo).getTime() - Date.now() - 730 * DAY_MS) < 5_000);
    assert.equal(signed.certChainPem, signed.caCertPem + root.rootCertPem, 'intermediate, then root');
    assert.equal(signed.rootCertPem, root.rootCertPem);

    const { parts, get } = extensionsOf(signed.caCertPem);
    assert.equal(get('2.5.29.19').critical, true);
    assert.deepEqual([...content(get('2.5.29.19').value)], [0x01, 0x01, 0xff, 0x02, 0x01, 0x00], 'cA, pathlen 0');
    assert.equal(get('2.5.29.15').critical, true);
    assert.deepEqual([...content(get('2.5.29.15').value)], [1, 0x06]);
    assert.deepEqual(content(get('2.5.29.14').value), keyIdentifier(parts.spki));
    const rootSki = content(extensionsOf(root.rootCertPem).get('2.5.29.14').value);
    const [akiKeyId, ...rest] = children(get('2.5.29.35').value);
    assert.equal(akiKeyId?.tag, 0x80, 'keyIdentifier [0]');
    assert.deepEqual(akiKeyId === undefined ? undefined : content(akiKeyId), rootSki);
    assert.equal(rest.length, 0);

    // A leaf under it verifies with openssl, which enforces pathlen and keyUsage; a CA under it does not.
    const ca = CertificateAuthority.fromPem({ ...signed, caKeyPem: keyPem });
    const leafKey = await generateKeyPair('ec-p256');
    const leaf = await ca.signWorkload({
      publicKey: leafKey.publicKey,
      identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' },
    });
    const files = { root: join(tmp, 'v-root.pem'), chain: join(tmp, 'v-chain.pem'), leaf: join(tmp, 'v-leaf.pem') };
    await writeFile(files.root, root.rootCertPem);
    await writeFile(files.chain, signed.caCertPem);
    await writeFile(files.leaf, leaf.certPem);
    const verify = (leafFile: string) =>
      execFileSync('openssl', ['verify', '-CAfile', files.root, '-untrusted', files.chain, leafFile], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    assert.match(verify(files.leaf), /OK/);
    const sub = await signIntermediate({
      rootCertPem: signed.caCertPem,
      rootKeyPem: keyPem,
      csrPem: (await createIntermediateCsr({ cluster: 'sub' })).csrPem,
    }).catch((err: unknown) => err);
    assert.ok(isPkiError(sub, 'CA_CHAIN_INVALID'), 'an intermediate is not accepted as the root');
  });

  it('caps the lifetime at the root, copies the CSR subject and ignores requested SANs', async () => {
    const shortRoot = await createRootCa({ ttlMs: 3 * DAY_MS });
    const key = await generateKeyPair('ec-p256');
    const csrPem = createCsr({
      privateKey: key.privateKey,
      subject: { organization: 'X', commonName: 'Intermediate CA', locality: 'west' },
      subjectAltNames: { uris: ['spiffe://evil.example'], dns: ['evil.example'] },
    });
    const signed = await signIntermediate({ ...rootOf(shortRoot), csrPem });
    const cert = new X509Certificate(signed.caCertPem);
    assert.equal(cert.validTo, new X509Certificate(shortRoot.rootCertPem).validTo);
    assert.equal(cert.subject, 'O=X\nCN=Intermediate CA\nL=west');
    assert.equal(cert.subjectAltName, undefined, 'no SAN: the root names no trust domain and none was asked');
    const named = await signIntermediate({ ...rootOf(shortRoot), csrPem, trustDomain: 'mesh.example' });
    assert.equal(new X509Certificate(named.caCertPem).subjectAltName, 'URI:spiffe://mesh.example');
  });

  it('refuses weak keys, bad self-signatures, empty subjects, the wrong root key and another trust domain', async () => {
    const rootPem = rootOf(root);
    const weak = execFileSync(
      'openssl',
      ['req', '-new', '-nodes', '-newkey', 'rsa:1024', '-keyout', '/dev/null', '-subj', '/O=x/CN=Intermediate CA'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await assert.rejects(signIntermediate({ ...rootPem, csrPem: weak }), rejectsWith('CSR_WEAK_KEY'));
    const { csrPem } = await createIntermediateCsr({ cluster: 'east' });
    await assert.rejects(signIntermediate({ ...rootPem, csrPem: tamper(csrPem) }), rejectsWith('CSR_BAD_SIGNATURE'));
    const key = await generateKeyPair('ec-p256');
    await assert.rejects(
      signIntermediate({ ...rootPem, csrPem: createCsr({ privateKey: key.privateKey }) }),
      rejectsWith('CSR_MALFORMED'),
    );
    const sameSubject = createCsr({
      privateKey: key.privateKey,
      subject: { organization: 'fedmesh', commonName: 'Root CA' },
    });
    await assert.rejects(signIntermediate({ ...rootPem, csrPem: sameSubject }), rejectsWith('CSR_MALFORMED'));
    const other = await createRootCa();
    await assert.rejects(
      signIntermediate({ rootCertPem: root.rootCertPem, rootKeyPem: other.rootKeyPem, csrPem }),
      rejectsWith('CA_KEY_MISMATCH'),
    );
    await assert.rejects(
      signIntermediate({ ...rootPem, csrPem, trustDomain: 'other.example' }),
      rejectsWith('CA_TRUST_DOMAIN_MISMATCH'),
    );
    await assert.rejects(signIntermediate({ ...rootPem, csrPem, ttlMs: -1 }), rejectsWith('TTL_INVALID'));
  });
});

function rootOf(r: RootCa): { rootCertPem: string; rootKeyPem: string } {
  return { rootCertPem: r.rootCertPem, rootKeyPem: r.rootKeyPem };
}

describe('writePluggedCa', () => {
  it('writes the four plug-in files (key 0600) that loadPluggedCa reads, and never overwrites without force', async () => {
    const dir = join(tmp, 'plugged', 'east');
    const material = await createIntermediateCa({ ...rootOf(root), cluster: 'east' });
    await writePluggedCa(dir, material);
    assert.deepEqual((await readdir(dir)).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    assert.equal((await stat(join(dir, 'ca-key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    const ca = await CertificateAuthority.loadPluggedCa(dir);
    assert.deepEqual(ca.certChainPem, [material.caCertPem], 'the root stays out of the chain');
    assert.equal(ca.rootCertPem, root.rootCertPem);

    const next = await createIntermediateCa({ ...rootOf(root), cluster: 'east' });
    await assert.rejects(writePluggedCa(dir, next), rejectsWith('CA_FILES_EXIST'));
    assert.equal(await readFile(join(dir, 'ca-key.pem'), 'utf8'), material.caKeyPem, 'untouched');

    const partial = join(tmp, 'plugged', 'partial');
    await writePluggedCa(partial, material);
    await rm(join(partial, 'ca-key.pem'));
    await assert.rejects(writePluggedCa(partial, next), rejectsWith('CA_FILES_EXIST'));
    await assert.rejects(readFile(join(partial, 'ca-key.pem')), { code: 'ENOENT' }, 'nothing written');

    await chmod(join(dir, 'ca-key.pem'), 0o644);
    await writePluggedCa(dir, next, { force: true });
    assert.equal(await readFile(join(dir, 'ca-key.pem'), 'utf8'), next.caKeyPem);
    assert.equal((await stat(join(dir, 'ca-key.pem'))).mode & 0o777, 0o600, 'a replaced key is 0600 again');
    assert.deepEqual((await readdir(dir)).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    assert.equal((await CertificateAuthority.loadPluggedCa(dir)).caCertPem, next.caCertPem);
  });
});
