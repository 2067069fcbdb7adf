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
  createIntermediateCsr,
  generateKeyPair,
  isPkiError,
  requestCertificate,
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
  it('issues [leaf, intermediate, root] for the token identity, 24 h by default', async () => {
    const token = tokens.mint({ namespace: 'bookinfo', serviceAccount: 'reviews' });
    const { key, csrPem } = await csrFor();
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
    assert.ok(!serialized.includes(token) && !serialized.includes('-----BEGIN'), 'no token, CSR or cert in logs');
  });

  it('honours validity_duration in seconds', async () => {
    const token = tokens.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const { certChainPem } = await ask({ csrPem: (await csrFor()).csrPem, token, ttlSeconds: 3600 });
    const ttl = new Date(new X509Certificate(certChainPem[0] ?? '').validTo).getTime() - Date.now();
    assert.ok(Math.abs(ttl - 3600_000) < 5_000);
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
});

/** openssl makes requests fedmesh never would: weak RSA and unsupported curves. */
function opensslCsr(newkey: string[]): string {
  return execFileSync('openssl', ['req', '-new', '-nodes', ...newkey, '-keyout', '/dev/null', '-subj', '/CN=corpus'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

/** tamperSignature flips one bit in the signature at the end of a CSR's DER. */
function tamperSignature(csrPem: string): string {
  const body = csrPem.trim().split('\n').slice(1, -1).join('');
  const der = Buffer.from(body, 'base64');
  der[der.length - 2] = (der[der.length - 2] ?? 0) ^ 0x01;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
}

type AskOptions = Parameters<typeof ask>[0];

/**
 * A corpus entry: a hostile or broken request. `refused` entries must get the CA's one opaque refusal with that
 * logged reason and no certificate; `constrained` entries may be answered, but only with an X509-SVID for the
 * authenticated caller (`caller`), one URI SAN, cA=false and no certificate-signing key usage.
 */
type CorpusCase = { readonly name: string; readonly request: () => Promise<AskOptions> } & (
  | { readonly refused: string }
  | { readonly constrained: { readonly namespace: string; readonly serviceAccount: string } }
);

const caller = { namespace: 'bookinfo', serviceAccount: 'reviews' };
const istiodSpiffeId = 'spiffe://cluster.local/ns/istio-system/sa/istiod';

const CORPUS: readonly CorpusCase[] = [
  // Identity: the CSR's names and requested powers are never the caller's to choose.
  {
    name: "a SAN other than the caller's (istiod's SPIFFE ID and a DNS name)",
    constrained: caller,
    request: async () => ({
      token: tokens.mint(caller),
      csrPem: (await csrFor({ uris: [istiodSpiffeId], dns: ['istiod.istio-system.svc'] })).csrPem,
    }),
  },
  {
    name: 'two URI SANs',
    constrained: caller,
    request: async () => ({
      token: tokens.mint(caller),
      csrPem: (await csrFor({ uris: ['spiffe://cluster.local/ns/bookinfo/sa/reviews', istiodSpiffeId] })).csrPem,
    }),
  },
  {
    name: 'a request for CA powers (basicConstraints cA=true pathLen 0, keyCertSign)',
    constrained: caller,
    request: async () => ({
      token: tokens.mint(caller),
      csrPem: (await createIntermediateCsr({ cluster: 'evil' })).csrPem,
    }),
  },
  // Lifetime.
  {
    name: 'a TTL one second above the 90-day maximum',
    refused: 'TTL_TOO_LONG',
    request: async () => ({ token: tokens.mint(caller), csrPem: (await csrFor()).csrPem, ttlSeconds: 90 * 86400 + 1 }),
  },
  {
    name: 'a negative TTL',
    refused: 'TTL_INVALID',
    request: async () => ({ token: tokens.mint(caller), csrPem: (await csrFor()).csrPem, ttlSeconds: -60 }),
  },
  // The CSR itself.
  {
    name: 'an RSA-1024 key',
    refused: 'CSR_WEAK_KEY',
    request: async () => ({ token: tokens.mint(caller), csrPem: opensslCsr(['-newkey', 'rsa:1024']) }),
  },
  {
    name: 'an EC key on secp256k1 (not P-256/P-384)',
    refused: 'CSR_WEAK_KEY',
    request: async () => ({
      token: tokens.mint(caller),
      csrPem: opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']),
    }),
  },
  {
    name: 'a bad self-signature',
    refused: 'CSR_BAD_SIGNATURE',
    request: async () => ({ token: tokens.mint(caller), csrPem: tamperSignature((await csrFor()).csrPem) }),
  },
  {
    name: 'an oversized CSR (800 DNS SANs, over 16 KiB)',
    refused: 'CSR_TOO_LARGE',
    request: async () => ({
      token: tokens.mint(caller),
      csrPem: (await csrFor({ dns: Array.from({ length: 800 }, (_, i) => `host-${i}.example.com`) })).csrPem,
    }),
  },
  {
    name: 'no CSR at all',
    refused: 'CSR_MALFORMED',
    request: async () => ({ token: tokens.mint(caller), csrPem: 'not a csr' }),
  },
  // Credentials.
  { name: 'a missing token', refused: 'NO_CREDENTIALS', request: async () => ({ csrPem: (await csrFor()).csrPem }) },
  {
    name: 'a token that is not a JWT',
    refused: 'NO_CREDENTIALS',
    request: async () => ({ token: 'garbage', csrPem: (await csrFor()).csrPem }),
  },
  {
    name: 'an expired token',
    refused: 'TOKEN_EXPIRED',
    request: async () => {
      const token = tokens.mint({ ...caller, ttlMs: 60_000 });
      clock = 2 * 60_000;
      return { token, csrPem: (await csrFor()).csrPem };
    },
  },
  {
    name: 'a replayed expired token (it worked once, before it expired)',
    refused: 'TOKEN_EXPIRED',
    request: async () => {
      const token = tokens.mint({ ...caller, ttlMs: 60_000 });
      await ask({ token, csrPem: (await csrFor()).csrPem });
      clock = 2 * 60_000;
      return { token, csrPem: (await csrFor()).csrPem };
    },
  },
  {
    name: 'a wrong-audience token',
    refused: 'TOKEN_WRONG_AUDIENCE',
    request: async () => ({
      token: tokens.mint({ ...caller, audience: 'kubernetes' }),
      csrPem: (await csrFor()).csrPem,
    }),
  },
  {
    name: 'a token with a forged signature',
    refused: 'TOKEN_BAD_SIGNATURE',
    request: async () => {
      const [header, claims] = tokens.mint(caller).split('.');
      return { token: `${header}.${claims}.AAAA`, csrPem: (await csrFor()).csrPem };
    },
  },
  {
    name: 'a token whose subject was raised to istiod after signing',
    refused: 'TOKEN_BAD_SIGNATURE',
    request: async () => {
      const [header = '', claims = '', signature = ''] = tokens.mint(caller).split('.');
      const body = JSON.parse(Buffer.from(claims, 'base64url').toString()) as Record<string, unknown>;
      const raised = Buffer.from(JSON.stringify({ ...body, sub: 'system:serviceaccount:istio-system:istiod' }));
      return { token: `${header}.${raised.toString('base64url')}.${signature}`, csrPem: (await csrFor()).csrPem };
    },
  },
  {
    name: 'a token minted by another istiod',
    refused: 'TOKEN_UNKNOWN_KEY',
    request: async () => ({
      token: new LocalTokenAuthenticator({ trustDomain: TD }).mint(caller),
      csrPem: (await csrFor()).csrPem,
    }),
  },
  {
    name: 'a renewal with a client certificate from a foreign root (claims istiod)',
    refused: 'NO_CREDENTIALS',
    request: async () => {
      // The TLS layer does not verify it (client certificates are optional), so it is no credential at all.
      const foreign = await CertificateAuthority.createSelfSigned({ stateDir: join(tmp, 'foreign'), trustDomain: TD });
      const key = await generateKeyPair('ec-p256');
      const identity = { trustDomain: TD, namespace: 'istio-system', serviceAccount: 'istiod' };
      const forged = await foreign.signWorkload({ publicKey: key.publicKey, identity });
      return { csrPem: (await csrFor()).csrPem, clientCert: { certPem: forged.certPem, keyPem: key.privateKeyPem } };
    },
  },
];

/** assertOnlyCaller checks an answer to a hostile request: an X509-SVID for the caller, and nothing more. */
function assertOnlyCaller(certChainPem: string[], expected: { namespace: string; serviceAccount: string }): void {
  const leaf = new X509Certificate(certChainPem[0] ?? '');
  assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/ns/${expected.namespace}/sa/${expected.serviceAccount}`);
  assert.equal(leaf.ca, false);
  assert.ok(leaf.verify(new X509Certificate(certChainPem[1] ?? '').publicKey));
  const text = execFileSync('openssl', ['x509', '-noout', '-ext', 'basicConstraints,keyUsage'], {
    input: certChainPem[0],
    encoding: 'utf8',
  });
  assert.match(text, /CA:FALSE/);
  assert.match(text, /Digital Signature/);
  assert.doesNotMatch(text, /Certificate Sign|CRL Sign|pathlen/);
}

describe('a corpus of bad CSRs and tokens against CreateCertificate over TLS', () => {
  const outcomes: { name: string; outcome: 'refused' | 'constrained' }[] = [];

  for (const entry of CORPUS) {
    it(entry.name, async () => {
      try {
        const options = await entry.request();
        const before = logs.length;
        const issuedNow = () => logs.slice(before).filter((l) => l.msg === 'certificate issued');
        if ('refused' in entry) {
          await refused(ask(options), entry.refused);
          assert.equal(issuedNow().length, 0, 'no certificate issued');
          outcomes.push({ name: entry.name, outcome: 'refused' });
        } else {
          const { certChainPem } = await ask(options);
          assertOnlyCaller(certChainPem, entry.constrained);
          assert.equal(issuedNow().length, 1);
          assert.ok(!JSON.stringify(issuedNow()).includes(istiodSpiffeId));
          outcomes.push({ name: entry.name, outcome: 'constrained' });
        }
      } finally {
        clock = 0;
      }
    });
  }

  it("covers every case: 16 refused, 3 answered only with the caller's identity, none issued wrongly", () => {
    assert.equal(outcomes.length, CORPUS.length);
    assert.equal(outcomes.filter((o) => o.outcome === 'refused').length, 16);
    assert.equal(outcomes.filter((o) => o.outcome === 'constrained').length, 3);
    const issuedIds = new Set(logs.filter((l) => l.msg === 'certificate issued').map((l) => l.obj['spiffeId']));
    assert.ok(!issuedIds.has(istiodSpiffeId), "istiod's identity was never issued");
    const serialized = JSON.stringify(logs);
    for (const secret of ['eyJ', '-----BEGIN', 'garbage']) {
      assert.ok(!serialized.includes(secret), `no ${secret} in the logs: tokens, CSRs and keys are never logged`);
    }
  });
});
