import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { content, Tag } from './der.js';
import {
  CertificateAuthority,
  generateKeyPair,
  isPkiError,
  MAX_CERT_TTL_MS,
  splitPemBundle,
  type PkiReason,
} from './index.js';
import { keyIdentifier } from './keys.js';
import { parseCertificateParts } from './x509.js';

const SAMPLES = new URL('../../../../shared/fixtures/istio-samples/certs/', import.meta.url).pathname;
const identity = { trustDomain: 'cluster.local', namespace: 'bookinfo', serviceAccount: 'productpage' };

function rejectsWith(reason: PkiReason): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isPkiError(err), `expected PkiError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    return true;
  };
}

function opensslVerify(rootPem: string, chainPem: readonly string[], purpose: string, dir: string): string {
  const root = join(dir, 'verify-root.pem');
  const untrusted = join(dir, 'verify-untrusted.pem');
  const leaf = join(dir, 'verify-leaf.pem');
  writeFileSync(root, rootPem);
  writeFileSync(untrusted, chainPem.slice(1).join('') || rootPem);
  writeFileSync(leaf, chainPem[0] ?? '');
  return execFileSync('openssl', ['verify', '-CAfile', root, '-untrusted', untrusted, '-purpose', purpose, leaf], {
    encoding: 'utf8',
  });
}

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedmesh-pki-ca-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('CertificateAuthority.loadPluggedCa with Istio samples/certs', () => {
  it('loads the sample set as it is', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    assert.equal(ca.trustDomain, 'cluster.local');
    const rootFile = await readFile(join(SAMPLES, 'root-cert.pem'), 'utf8');
    assert.deepEqual(ca.rootCertsPem, splitPemBundle(rootFile));
    assert.equal(ca.rootCertPem, ca.rootCertsPem[0]);
    assert.deepEqual(ca.certChainPem, splitPemBundle(await readFile(join(SAMPLES, 'ca-cert.pem'), 'utf8')));
    assert.equal(ca.caNotAfter.getUTCFullYear(), 2117);
  });

  it('issues an X509-SVID that verifies up to root-cert.pem and has the SPIFFE properties', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    const key = await generateKeyPair('ec-p256');
    const before = Date.now();
    const issued = await ca.signWorkload({ publicKey: key.publicKey, identity });
    assert.equal(issued.chainPem.length, 2, 'leaf + intermediate, no root');
    assert.equal(issued.chainPem[0], issued.certPem);

    const leaf = new X509Certificate(issued.certPem);
    const intermediate = new X509Certificate(issued.chainPem[1] ?? '');
    const root = new X509Certificate(ca.rootCertPem);
    assert.ok(leaf.checkIssued(intermediate) && leaf.verify(intermediate.publicKey));
    assert.ok(intermediate.checkIssued(root) && intermediate.verify(root.publicKey));
    assert.ok(leaf.checkPrivateKey(key.privateKey));

    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/bookinfo/sa/productpage');
    assert.equal(leaf.ca, false);
    assert.deepEqual([...(leaf.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(leaf.subject, undefined);
    assert.ok(Math.abs(new Date(leaf.validFrom).getTime() - (before - 60_000)) < 2_000, 'notBefore = now - 1 min');
    assert.ok(Math.abs(new Date(leaf.validTo).getTime() - (before + 24 * 3600_000)) < 2_000, 'TTL 24 h');
    assert.equal(issued.notAfter.getTime(), new Date(leaf.validTo).getTime());
    assert.equal(BigInt(`0x${leaf.serialNumber}`), BigInt(`0x${issued.serialNumber}`));

    const parts = parseCertificateParts(leaf.raw);
    const ext = (oid: string) => parts.extensions.get(oid);
    assert.equal(ext('2.5.29.19')?.critical, true, 'basicConstraints critical');
    assert.equal(content(ext('2.5.29.19')?.value ?? assert.fail()).length, 0, 'cA=false is the empty SEQUENCE');
    assert.equal(ext('2.5.29.15')?.critical, true, 'keyUsage critical');
    assert.deepEqual([...content(ext('2.5.29.15')?.value ?? assert.fail())], [7, 0x80], 'digitalSignature only');
    assert.equal(ext('2.5.29.17')?.critical, true, 'SAN critical with an empty subject');
    assert.equal(ext('2.5.29.37')?.critical, false);
    assert.deepEqual(content(ext('2.5.29.14')?.value ?? assert.fail()), keyIdentifier(parts.spki));
    const aki = ext('2.5.29.35')?.value ?? assert.fail();
    const intermediateKeyId = keyIdentifier(parseCertificateParts(intermediate.raw).spki);
    assert.deepEqual(content(aki).subarray(2), intermediateKeyId, 'AKI = SHA-1 of the issuer key');
    assert.equal(ext('2.5.29.35')?.value.tag, Tag.SEQUENCE);

    assert.match(opensslVerify(ca.rootCertPem, issued.chainPem, 'sslclient', tmp), /OK/);
    assert.match(opensslVerify(ca.rootCertPem, issued.chainPem, 'sslserver', tmp), /OK/);
  });

  it('adds keyEncipherment for RSA leaf keys and O= when asked', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    const key = await generateKeyPair('rsa-2048');
    const issued = await ca.signWorkload({ publicKey: key.publicKey, identity, organization: 'fedmesh' });
    const leaf = new X509Certificate(issued.certPem);
    assert.equal(leaf.subject, 'O=fedmesh');
    const parts = parseCertificateParts(leaf.raw);
    assert.deepEqual([...content(parts.extensions.get('2.5.29.15')?.value ?? assert.fail())], [5, 0xa0]);
    assert.equal(parts.extensions.get('2.5.29.17')?.critical, false, 'SAN not critical with a subject');
  });

  it('gives each certificate a distinct random serial', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    const key = await generateKeyPair('ec-p256');
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++)
      serials.add((await ca.signWorkload({ publicKey: key.publicKey, identity })).serialNumber);
    assert.equal(serials.size, 20);
  });

  it('rejects (does not clamp) a TTL over 90 days, and bad identities', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    const { publicKey } = await generateKeyPair('ec-p256');
    await assert.rejects(
      ca.signWorkload({ publicKey, identity, ttlMs: MAX_CERT_TTL_MS + 1 }),
      rejectsWith('TTL_TOO_LONG'),
    );
    await assert.rejects(ca.signWorkload({ publicKey, identity, ttlMs: 0 }), rejectsWith('TTL_INVALID'));
    const ninety = await ca.signWorkload({ publicKey, identity, ttlMs: MAX_CERT_TTL_MS });
    assert.ok(ninety.notAfter.getTime() - Date.now() > MAX_CERT_TTL_MS - 5_000);
    await assert.rejects(
      ca.signWorkload({ publicKey, identity: { ...identity, trustDomain: 'other.example' } }),
      rejectsWith('IDENTITY_WRONG_TRUST_DOMAIN'),
    );
    await assert.rejects(
      ca.signWorkload({ publicKey, identity: { ...identity, namespace: 'a/b' } }),
      rejectsWith('IDENTITY_INVALID'),
    );
  });

  it('issues serving certificates with DNS and IP SANs and serverAuth only', async () => {
    const ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    const { publicKey } = await generateKeyPair('ec-p256');
    const issued = await ca.signServing({ publicKey, dnsNames: ['istiod.istio-system.svc'], ips: ['127.0.0.1'] });
    const leaf = new X509Certificate(issued.certPem);
    assert.equal(leaf.subjectAltName, 'DNS:istiod.istio-system.svc, IP Address:127.0.0.1');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    assert.equal(leaf.checkHost('istiod.istio-system.svc'), 'istiod.istio-system.svc');
    assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
    await assert.rejects(ca.signServing({ publicKey }), rejectsWith('IDENTITY_INVALID'));
  });
});

describe('CertificateAuthority.loadPluggedCa refuses broken material', () => {
  async function copySamples(name: string): Promise<string> {
    const dir = join(tmp, name);
    await cp(SAMPLES, dir, { recursive: true });
    for (const file of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem']) {
      await writeFile(join(dir, file), await readFile(join(SAMPLES, file)), { mode: 0o600 });
    }
    return dir;
  }

  it('accepts cert-chain.pem with the root appended (newer Istio tooling) and keeps the root out of the chain', async () => {
    const dir = await copySamples('with-root');
    const chain = await readFile(join(SAMPLES, 'cert-chain.pem'), 'utf8');
    await writeFile(join(dir, 'cert-chain.pem'), chain + (await readFile(join(SAMPLES, 'root-cert.pem'), 'utf8')));
    const ca = await CertificateAuthority.loadPluggedCa(dir);
    assert.equal(ca.certChainPem.length, 1);
  });

  it('refuses a missing file, a key that does not match, a chain to another root, and a leaf as CA', async () => {
    const missing = await copySamples('missing');
    await unlink(join(missing, 'cert-chain.pem'));
    await assert.rejects(CertificateAuthority.loadPluggedCa(missing), rejectsWith('CA_FILES_MISSING'));

    const wrongKey = await copySamples('wrong-key');
    await writeFile(join(wrongKey, 'ca-key.pem'), (await generateKeyPair('rsa-2048')).privateKeyPem);
    await assert.rejects(CertificateAuthority.loadPluggedCa(wrongKey), rejectsWith('CA_KEY_MISMATCH'));

    const foreign = await CertificateAuthority.createSelfSigned({ stateDir: join(tmp, 'foreign'), trustDomain: 'x.y' });
    const wrongRoot = await copySamples('wrong-root');
    await writeFile(join(wrongRoot, 'root-cert.pem'), foreign.rootCertPem);
    await assert.rejects(CertificateAuthority.loadPluggedCa(wrongRoot), rejectsWith('CA_CHAIN_INVALID'));

    const notCa = await copySamples('not-ca');
    const key = await generateKeyPair('ec-p256');
    const leaf = await foreign.signWorkload({
      publicKey: key.publicKey,
      identity: { ...identity, trustDomain: 'x.y' },
    });
    await writeFile(join(notCa, 'ca-cert.pem'), leaf.certPem);
    await writeFile(join(notCa, 'ca-key.pem'), key.privateKeyPem);
    await assert.rejects(CertificateAuthority.loadPluggedCa(notCa), rejectsWith('CA_NOT_A_CA'));
  });
});

describe('CertificateAuthority.createSelfSigned', () => {
  it('creates a P-256 root on first start, in the plug-in layout with a 0600 key, and loads it later', async () => {
    const stateDir = join(tmp, 'self-signed', 'ca');
    const first = await CertificateAuthority.createSelfSigned({ stateDir, trustDomain: 'mesh.example', org: 'Acme' });
    assert.equal((await stat(join(stateDir, 'ca-key.pem'))).mode & 0o777, 0o600);
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    const root = new X509Certificate(first.rootCertPem);
    assert.equal(root.ca, true);
    assert.equal(root.subject, 'O=Acme\nCN=fedmesh root CA');
    assert.equal(root.subjectAltName, 'URI:spiffe://mesh.example');
    assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(root.verify(root.publicKey));
    assert.deepEqual(first.certChainPem, [], 'the root signs directly: nothing to append');
    assert.equal(await readFile(join(stateDir, 'ca-cert.pem'), 'utf8'), first.rootCertPem);

    const again = await CertificateAuthority.createSelfSigned({ stateDir, trustDomain: 'mesh.example' });
    assert.equal(again.rootCertPem, first.rootCertPem);
    const { publicKey } = await generateKeyPair('ec-p256');
    const issued = await again.signWorkload({ publicKey, identity: { ...identity, trustDomain: 'mesh.example' } });
    assert.deepEqual(issued.chainPem, [issued.certPem]);
    assert.ok(new X509Certificate(issued.certPem).verify(root.publicKey));

    await assert.rejects(
      CertificateAuthority.createSelfSigned({ stateDir, trustDomain: 'other.example' }),
      rejectsWith('CA_TRUST_DOMAIN_MISMATCH'),
    );
    await unlink(join(stateDir, 'root-cert.pem'));
    await assert.rejects(
      CertificateAuthority.createSelfSigned({ stateDir, trustDomain: 'mesh.example' }),
      rejectsWith('CA_FILES_MISSING'),
    );
  });
});

describe('splitPemBundle', () => {
  it('returns one normalized PEM per certificate and skips other blocks', async () => {
    const root = await readFile(join(SAMPLES, 'root-cert.pem'), 'utf8');
    const chain = await readFile(join(SAMPLES, 'cert-chain.pem'), 'utf8');
    const key = await readFile(join(SAMPLES, 'ca-key.pem'), 'utf8');
    const bundle = `junk\n${chain.replaceAll('\n', '\r\n')}${key}\n${root}`;
    const parts = splitPemBundle(bundle);
    assert.equal(parts.length, 2);
    assert.equal(new X509Certificate(parts[1] ?? '').fingerprint256, new X509Certificate(root).fingerprint256);
    assert.deepEqual(splitPemBundle('nothing here'), []);
  });
});
