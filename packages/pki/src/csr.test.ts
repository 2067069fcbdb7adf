import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import forge from 'node-forge';
import { createCsr, generateKeyPair, isPkiError, parseCsr, type PkiReason } from './index.js';
import { decodePemBlocks, derToPem } from './pem.js';

function rejectsWith(reason: PkiReason): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isPkiError(err), `expected PkiError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    return true;
  };
}

/** tamper flips one byte of a PEM's DER at `offset` (negative: from the end). */
function tamper(pem: string, offset: number): string {
  const [block] = decodePemBlocks(pem);
  assert.ok(block);
  const der = Buffer.from(block.der);
  const at = offset < 0 ? der.length + offset : offset;
  der[at] = (der[at] ?? 0) ^ 0x01;
  return derToPem(der, block.label);
}

function opensslCsr(args: string[]): string {
  return execFileSync('openssl', ['req', '-new', '-nodes', '-subj', '/CN=weak', '-keyout', '/dev/null', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

function forgeRsaCsr(modulusLength: number): string {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: 'forge' }]);
  csr.sign(
    forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    forge.md.sha256.create(),
  );
  return forge.pki.certificationRequestToPem(csr);
}

describe('generateKeyPair', () => {
  it('makes P-256 workload keys and RSA-2048 keys with Node crypto', async () => {
    const ec = await generateKeyPair('ec-p256');
    assert.equal(ec.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.match(ec.privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    const rsa = await generateKeyPair('rsa-2048');
    assert.equal(rsa.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  });
});

describe('createCsr and parseCsr', () => {
  it('round-trips an EC P-256 request with SANs, and openssl accepts its signature', async () => {
    const key = await generateKeyPair('ec-p256');
    const pem = createCsr({
      privateKey: key.privateKey,
      subject: { organization: 'fedmesh' },
      subjectAltNames: { uris: ['spiffe://cluster.local/ns/a/sa/b'], dns: ['a.example'], ips: ['10.1.2.3', '::1'] },
    });
    assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n/);
    const csr = parseCsr(pem);
    assert.equal(csr.keyType, 'ec');
    assert.equal(csr.keyType === 'ec' ? csr.curve : undefined, 'P-256');
    assert.deepEqual(csr.subjectAltNames, {
      uris: ['spiffe://cluster.local/ns/a/sa/b'],
      dns: ['a.example'],
      ips: ['10.1.2.3', '0:0:0:0:0:0:0:1'],
    });
    assert.deepEqual(csr.extensionsRequested, ['2.5.29.17']);
    assert.ok(csr.publicKey.equals(key.publicKey));
    const out = execFileSync('openssl', ['req', '-verify', '-noout'], { input: pem, stdio: 'pipe' });
    assert.ok(out !== undefined);
  });

  it('round-trips an RSA-2048 request given as PEM, with no attributes', async () => {
    const key = await generateKeyPair('rsa-2048');
    const csr = parseCsr(createCsr({ privateKey: key.privateKeyPem }));
    assert.equal(csr.keyType, 'rsa');
    assert.equal(csr.keyType === 'rsa' ? csr.keyBits : 0, 2048);
    assert.deepEqual(csr.subjectAltNames, { uris: [], dns: [], ips: [] });
    assert.deepEqual(csr.extensionsRequested, []);
  });

  it('accepts requests made by forge and by openssl, and the legacy NEW CERTIFICATE REQUEST label', () => {
    assert.equal(parseCsr(forgeRsaCsr(2048)).keyType, 'rsa');
    const fromOpenssl = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']);
    const parsed = parseCsr(fromOpenssl);
    assert.equal(parsed.keyType === 'ec' ? parsed.curve : undefined, 'P-384');
    const legacy = fromOpenssl.replaceAll('CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST');
    assert.equal(parseCsr(legacy).keyType, 'ec');
  });

  it('refuses weak keys: RSA-1024 and EC P-521', () => {
    assert.throws(() => parseCsr(forgeRsaCsr(1024)), rejectsWith('CSR_WEAK_KEY'));
    const p521 = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521']);
    assert.throws(() => parseCsr(p521), rejectsWith('CSR_WEAK_KEY'));
  });

  it('refuses a request whose signature or signed content was altered', async () => {
    const key = await generateKeyPair('ec-p256');
    const pem = createCsr({ privateKey: key.privateKey, subjectAltNames: { dns: ['a.example'] } });
    assert.throws(() => parseCsr(tamper(pem, -1)), rejectsWith('CSR_BAD_SIGNATURE'));
    const san = decodePemBlocks(pem)[0]?.der.indexOf('a.example') ?? -1;
    assert.ok(san > 0);
    assert.throws(() => parseCsr(tamper(pem, san)), rejectsWith('CSR_BAD_SIGNATURE'));
  });

  it('refuses oversized input before parsing it', async () => {
    const key = await generateKeyPair('ec-p256');
    const dns = Array.from({ length: 800 }, (_, i) => `host-${i}.example.com`);
    const big = createCsr({ privateKey: key.privateKey, subjectAltNames: { dns } });
    assert.ok(Buffer.byteLength(big) > 16 * 1024);
    assert.throws(() => parseCsr(big), rejectsWith('CSR_TOO_LARGE'));
    assert.equal(parseCsr(big, { maxBytes: 64 * 1024 }).subjectAltNames.dns.length, 800);
    assert.throws(() => parseCsr('x'.repeat(20_000)), rejectsWith('CSR_TOO_LARGE'));
  });

  it('refuses malformed input', async () => {
    const key = await generateKeyPair('ec-p256');
    const pem = createCsr({ privateKey: key.privateKey });
    const der = decodePemBlocks(pem)[0]?.der ?? Buffer.alloc(0);
    for (const bad of [
      'garbage',
      '',
      pem + pem,
      pem.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE'),
      derToPem(der.subarray(0, der.length - 5), 'CERTIFICATE REQUEST'),
      derToPem(Buffer.concat([der, Buffer.of(0)]), 'CERTIFICATE REQUEST'),
      derToPem(Buffer.from('not der at all'), 'CERTIFICATE REQUEST'),
    ]) {
      assert.throws(() => parseCsr(bad), rejectsWith('CSR_MALFORMED'), JSON.stringify(bad.slice(0, 40)));
    }
  });

  it('refuses to create a request for an unsupported key', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    assert.throws(() => createCsr({ privateKey }), rejectsWith('KEY_UNSUPPORTED'));
  });
});
