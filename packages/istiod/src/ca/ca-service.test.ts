import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import {
  CertificateAuthority,
  createCsr,
  generateKeyPair,
  isPkiError,
  requestCertificate,
  spiffeUri,
  verifySpiffePeer,
  type PkiLogger,
} from '@fedmesh/pki';
import {
  CA_REFUSAL_MESSAGE,
  CA_REFUSAL_STATUS,
  CertificateAuthenticator,
  LocalTokenAuthenticator,
  startCaServer,
  type RunningCaServer,
} from './index.js';

const SAMPLES = new URL('../../../../../shared/fixtures/istio-samples/certs/', import.meta.url).pathname;
const TD = 'cluster.local';

interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

function recordingLogger(lines: LogLine[]): PkiLogger {
  const at = (level: LogLine['level']) => (obj: Record<string, unknown>, msg: string) =>
    lines.push({ level, obj, msg });
  return { info: at('info'), warn: at('warn'), error: at('error') };
}

let tmp = '';
let ca: CertificateAuthority;
let server: RunningCaServer;
let clock = 0; // ms added to the token authenticator's clock
const logs: LogLine[] = [];
const tokens = new LocalTokenAuthenticator({ trustDomain: TD, now: () => Date.now() + clock });

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedmesh-istiod-ca-'));
  ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
  server = await startCaServer({
    ca,
    authenticators: [tokens, new CertificateAuthenticator({ trustDomains: [TD] })],
    logger: recordingLogger(logs),
  });
});
after(async () => {
  await server.close();
  await rm(tmp, { recursive: true, force: true });
});

async function csrFor(sans?: { uris?: string[]; dns?: string[] }) {
  const key = await generateKeyPair('ec-p256');
  return { key, csrPem: createCsr({ privateKey: key.privateKey, ...(sans ? { subjectAltNames: sans } : {}) }) };
}

function ask(options: {
  csrPem: string;
  token?: string;
  ttlSeconds?: number;
  clientCert?: { certPem: string; keyPem: string };
}) {
  // serverName: the serving certificate also names localhost, and Node warns (DEP0123) when SNI is an IP address.
  return requestCertificate({
    address: server.address,
    rootCertsPem: ca.rootCertsPem,
    serverName: 'localhost',
    ...options,
  });
}

/** refused asserts a rejection is the CA's single opaque refusal, and returns the last refusal log line. */
async function refused(promise: Promise<unknown>, reason: string): Promise<void> {
  const before = logs.length;
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isPkiError(err, 'CA_REFUSED'), String(err));
    const cause = err.cause as grpc.ServiceError;
    assert.equal(cause.code, CA_REFUSAL_STATUS);
    assert.equal(cause.details, CA_REFUSAL_MESSAGE);
    return true;
  });
  const line = logs.slice(before).find((l) => l.msg === CA_REFUSAL_MESSAGE);
  assert.equal(line?.level, 'warn');
  assert.equal(line.obj['reason'], reason);
}

describe('IstioCertificateService/CreateCertificate over TLS', () => {
  it('issues a certificate for exactly the token identity, ignoring the SANs the CSR asks for', async () => {
    const token = tokens.mint({ namespace: 'bookinfo', serviceAccount: 'reviews' });
    const { key, csrPem } = await csrFor({ uris: ['spiffe://cluster.local/ns/istio-system/sa/istiod'], dns: ['evil'] });
    const before = logs.length;
    const { certChainPem } = await ask({ csrPem, token });

    assert.equal(certChainPem.length, 3, '[leaf, intermediate, root]');
    assert.equal(certChainPem[2], ca.rootCertPem);
    const leaf = new X509Certificate(certChainPem[0] ?? '');
    assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/bookinfo/sa/reviews');
    assert.ok(leaf.checkPrivateKey(key.privateKey));
    assert.ok(leaf.verify(new X509Certificate(certChainPem[1] ?? '').publicKey));
    const ttl = new Date(leaf.validTo).getTime() - Date.now();
    assert.ok(Math.abs(ttl - 24 * 3600_000) < 5_000, 'validity_duration 0 gives 24 h');

    const issuedLog = logs.slice(before).find((l) => l.msg === 'certificate issued');
    assert.equal(issuedLog?.obj['spiffeId'], 'spiffe://cluster.local/ns/bookinfo/sa/reviews');
    assert.equal(issuedLog.obj['authenticator'], 'local-token');
    const serialized = JSON.stringify(logs);
    assert.ok(!serialized.includes(token) && !serialized.includes('CERTIFICATE'), 'no token, CSR or cert in logs');
  });

  it('honours validity_duration in seconds', async () => {
    const token = tokens.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const { certChainPem } = await ask({ csrPem: (await csrFor()).csrPem, token, ttlSeconds: 3600 });
    const ttl = new Date(new X509Certificate(certChainPem[0] ?? '').validTo).getTime() - Date.now();
    assert.ok(Math.abs(ttl - 3600_000) < 5_000);
  });

  it('refuses missing, garbage, expired, wrong-audience and foreign tokens with the same opaque status', async () => {
    const { csrPem } = await csrFor();
    await refused(ask({ csrPem }), 'NO_CREDENTIALS');
    await refused(ask({ csrPem, token: 'garbage' }), 'NO_CREDENTIALS');
    const good = tokens.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const [header, claims] = good.split('.');
    await refused(ask({ csrPem, token: `${header}.${claims}.AAAA` }), 'TOKEN_BAD_SIGNATURE');
    const wrongAudience = tokens.mint({ namespace: 'default', serviceAccount: 'sleep', audience: 'kubernetes' });
    await refused(ask({ csrPem, token: wrongAudience }), 'TOKEN_WRONG_AUDIENCE');
    const other = new LocalTokenAuthenticator({ trustDomain: TD });
    await refused(
      ask({ csrPem, token: other.mint({ namespace: 'default', serviceAccount: 'sleep' }) }),
      'TOKEN_UNKNOWN_KEY',
    );

    const shortLived = tokens.mint({ namespace: 'default', serviceAccount: 'sleep', ttlMs: 60_000 });
    clock = 2 * 60_000;
    try {
      await refused(ask({ csrPem, token: shortLived }), 'TOKEN_EXPIRED');
    } finally {
      clock = 0;
    }
  });

  it('refuses a TTL over 90 days, a weak RSA-1024 CSR, a CSR with a bad signature and an oversized CSR', async () => {
    const token = tokens.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const { csrPem } = await csrFor();
    await refused(ask({ csrPem, token, ttlSeconds: 90 * 24 * 3600 + 1 }), 'TTL_TOO_LONG');

    const weak = execFileSync(
      'openssl',
      ['req', '-new', '-nodes', '-newkey', 'rsa:1024', '-keyout', '/dev/null', '-subj', '/CN=weak'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await refused(ask({ csrPem: weak, token }), 'CSR_WEAK_KEY');

    const lines = csrPem.trim().split('\n');
    const body = lines.slice(1, -1).join('');
    const der = Buffer.from(body, 'base64');
    der[der.length - 2] = (der[der.length - 2] ?? 0) ^ 0xff;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await refused(ask({ csrPem: tampered, token }), 'CSR_BAD_SIGNATURE');

    const dns = Array.from({ length: 800 }, (_, i) => `host-${i}.example.com`);
    await refused(ask({ csrPem: (await csrFor({ dns })).csrPem, token }), 'CSR_TOO_LARGE');
    await refused(ask({ csrPem: 'not a csr', token }), 'CSR_MALFORMED');
  });

  it('renews with the current client certificate over mTLS, keeping its identity', async () => {
    const token = tokens.mint({ namespace: 'bookinfo', serviceAccount: 'ratings' });
    const first = await csrFor();
    const current = await ask({ csrPem: first.csrPem, token });
    const next = await csrFor();
    const before = logs.length;
    const renewed = await ask({
      csrPem: next.csrPem,
      clientCert: { certPem: current.certChainPem.slice(0, -1).join(''), keyPem: first.key.privateKeyPem },
    });
    const leaf = new X509Certificate(renewed.certChainPem[0] ?? '');
    assert.deepEqual(verifySpiffePeer(leaf, { trustDomains: [TD] }), {
      trustDomain: TD,
      namespace: 'bookinfo',
      serviceAccount: 'ratings',
    });
    assert.ok(leaf.checkPrivateKey(next.key.privateKey));
    assert.equal(logs.slice(before).find((l) => l.msg === 'certificate issued')?.obj['authenticator'], 'certificate');
  });

  it('does not accept a client certificate from a foreign root as a renewal credential', async () => {
    const foreign = await CertificateAuthority.createSelfSigned({ stateDir: join(tmp, 'foreign'), trustDomain: TD });
    const key = await generateKeyPair('ec-p256');
    const identity = { trustDomain: TD, namespace: 'istio-system', serviceAccount: 'istiod' };
    const forged = await foreign.signWorkload({ publicKey: key.publicKey, identity });
    const { csrPem } = await csrFor();
    // The TLS layer does not verify it (client certificates are optional), so it is no credential at all.
    await refused(
      ask({ csrPem, clientCert: { certPem: forged.certPem, keyPem: key.privateKeyPem } }),
      'NO_CREDENTIALS',
    );
    assert.ok(!logs.some((l) => l.msg === 'certificate issued' && l.obj['spiffeId'] === spiffeUri(identity)));
  });
});
