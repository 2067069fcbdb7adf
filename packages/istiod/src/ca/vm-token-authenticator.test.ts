import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import {
  CertificateAuthority,
  createCsr,
  generateKeyPair,
  isPkiError,
  requestCertificate,
  verifySpiffePeer,
  type PkiLogger,
  type PkiReason,
} from '@fedmesh/pki';
import {
  CertificateAuthenticator,
  LocalTokenAuthenticator,
  startCaServer,
  VmTokenAuthenticator,
  type RunningCaServer,
} from './index.js';

const TD = 'cluster.local';

function withAuthorization(value: string): { metadata: Metadata } {
  const metadata = new Metadata();
  metadata.add('authorization', value);
  return { metadata };
}

function rejectsWith(reason: PkiReason): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isPkiError(err), `expected PkiError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    return true;
  };
}

let tmp = '';
let ca: CertificateAuthority;
let server: RunningCaServer;
let clock = 0;
const groups = new Map<string, { serviceAccount: string }>([['vm/legacy', { serviceAccount: 'legacy-sa' }]]);
const logs: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
let vmTokens: VmTokenAuthenticator;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedmesh-vm-token-'));
  ca = await CertificateAuthority.createSelfSigned({ stateDir: join(tmp, 'ca'), trustDomain: TD });
  vmTokens = await VmTokenAuthenticator.load({
    keyFile: join(tmp, 'vm-token', 'signing-key.pem'),
    trustDomain: TD,
    workloadGroup: (ns, name) => groups.get(`${ns}/${name}`),
    now: () => Date.now() + clock,
  });
  const logger: PkiLogger = {
    info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
  };
  server = await startCaServer({
    ca,
    authenticators: [
      new CertificateAuthenticator({ trustDomains: [TD] }),
      new LocalTokenAuthenticator({ trustDomain: TD }),
      vmTokens,
    ],
    logger,
  });
});
after(async () => {
  await server.close();
  await rm(tmp, { recursive: true, force: true });
});

async function csr(): Promise<string> {
  const key = await generateKeyPair('ec-p256');
  return createCsr({ privateKey: key.privateKey, subjectAltNames: { uris: ['spiffe://cluster.local/ns/x/sa/admin'] } });
}

function ask(token: string) {
  return csr().then((csrPem) =>
    requestCertificate({
      address: server.address,
      rootCertsPem: ca.rootCertsPem,
      serverName: 'localhost',
      csrPem,
      token,
    }),
  );
}

async function refusedWithReason(token: string, reason: PkiReason): Promise<void> {
  const before = logs.length;
  await assert.rejects(ask(token), (err: unknown) => isPkiError(err, 'CA_REFUSED'));
  const refusal = logs.slice(before).find((l) => l.level === 'warn');
  assert.equal(refusal?.obj['reason'], reason);
  assert.ok(!JSON.stringify(logs.slice(before)).includes(token), 'the token must never be logged');
}

describe('VmTokenAuthenticator', () => {
  it('mints a 1 h ES256 JWT bound to namespace, ServiceAccount and WorkloadGroup, audience istio-ca', async () => {
    const { token, expiresAt } = await vmTokens.mint({
      namespace: 'vm',
      serviceAccount: 'legacy-sa',
      workloadGroup: 'legacy',
    });
    const [header = '', claims = ''] = token.split('.');
    assert.deepEqual(JSON.parse(Buffer.from(header, 'base64url').toString()), {
      alg: 'ES256',
      typ: 'JWT',
      kid: vmTokens.keyId,
    });
    const body = JSON.parse(Buffer.from(claims, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(body['iss'], 'fedmesh-istiod-vm');
    assert.equal(body['aud'], 'istio-ca');
    assert.equal(body['sub'], 'system:serviceaccount:vm:legacy-sa');
    assert.equal(body['fedmesh.io/workload-group'], 'legacy');
    assert.equal((body['exp'] as number) - (body['iat'] as number), 3600);
    assert.equal(expiresAt.getTime(), (body['exp'] as number) * 1000);
    assert.equal(typeof body['jti'], 'string');
    await assert.rejects(
      vmTokens.mint({ namespace: 'vm', serviceAccount: 'a:b', workloadGroup: 'legacy' }),
      rejectsWith('IDENTITY_INVALID'),
    );
    await assert.rejects(
      vmTokens.mint({ namespace: 'vm', serviceAccount: 'sa', workloadGroup: 'Bad_Group' }),
      TypeError,
    );
    await assert.rejects(
      vmTokens.mint({ namespace: 'vm', serviceAccount: 'sa', workloadGroup: 'g', ttlMs: 25 * 3600_000 }),
      TypeError,
    );
  });

  it('a CSR with a VM token gets the token identity (ns/sa), whatever SANs the CSR asks for', async () => {
    const { token } = await vmTokens.mint({ namespace: 'vm', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
    const { certChainPem } = await ask(token);
    const leaf = new X509Certificate(certChainPem[0] ?? '');
    assert.deepEqual(verifySpiffePeer(leaf, { trustDomains: [TD], peerRole: 'client' }), {
      trustDomain: TD,
      namespace: 'vm',
      serviceAccount: 'legacy-sa',
    });
    const issued = logs.findLast((l) => l.msg === 'certificate issued');
    assert.equal(issued?.obj['authenticator'], 'vm-token');
    // Still usable within its lifetime (a VM that restarts before it got its certificate).
    assert.ok(await ask(token));
  });

  it('refuses expired tokens, also a token replayed after expiry that worked before', async () => {
    const { token } = await vmTokens.mint({
      namespace: 'vm',
      serviceAccount: 'legacy-sa',
      workloadGroup: 'legacy',
      ttlMs: 60_000,
    });
    assert.ok(await ask(token));
    clock = 60_000 + 31_000; // past exp and the 30 s leeway
    try {
      await refusedWithReason(token, 'TOKEN_EXPIRED');
    } finally {
      clock = 0;
    }
    clock = -120_000; // a clock two minutes behind sees a token from the future
    try {
      const early = await vmTokens.mint({ namespace: 'vm', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
      clock = -240_000;
      await refusedWithReason(early.token, 'TOKEN_NOT_YET_VALID');
    } finally {
      clock = 0;
    }
  });

  it('refuses a token whose WorkloadGroup is gone or runs as another ServiceAccount', async () => {
    groups.set('vm/temp', { serviceAccount: 'temp-sa' });
    const { token } = await vmTokens.mint({ namespace: 'vm', serviceAccount: 'temp-sa', workloadGroup: 'temp' });
    assert.ok(await ask(token));
    groups.set('vm/temp', { serviceAccount: 'other-sa' });
    await refusedWithReason(token, 'TOKEN_BINDING_MISMATCH');
    groups.delete('vm/temp');
    await refusedWithReason(token, 'TOKEN_BINDING_MISMATCH');
    const unbound = await vmTokens.mint({ namespace: 'other', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
    await refusedWithReason(unbound.token, 'TOKEN_BINDING_MISMATCH');
  });

  it('refuses forged, altered and foreign-audience tokens; other issuers fall through', async () => {
    const { token } = await vmTokens.mint({ namespace: 'vm', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
    const [header = '', claims = '', signature = ''] = token.split('.');
    const body = JSON.parse(Buffer.from(claims, 'base64url').toString()) as Record<string, unknown>;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const check = (t: string) => vmTokens.authenticate(withAuthorization(`Bearer ${t}`));
    await assert.rejects(
      check(`${header}.${b64({ ...body, sub: 'system:serviceaccount:istio-system:istiod' })}.${signature}`),
      rejectsWith('TOKEN_BAD_SIGNATURE'),
    );
    await assert.rejects(
      check(`${header}.${b64({ ...body, 'fedmesh.io/workload-group': 'other' })}.${signature}`),
      rejectsWith('TOKEN_BAD_SIGNATURE'),
    );
    await assert.rejects(
      check(`${b64({ alg: 'none', kid: vmTokens.keyId })}.${claims}.`),
      rejectsWith('TOKEN_MALFORMED'),
    );
    await assert.rejects(
      check(`${b64({ alg: 'ES256', kid: 'someone' })}.${claims}.${signature}`),
      rejectsWith('TOKEN_UNKNOWN_KEY'),
    );
    const foreign = await vmTokens.mint({
      namespace: 'vm',
      serviceAccount: 'legacy-sa',
      workloadGroup: 'legacy',
      audience: 'kubernetes',
    });
    await refusedWithReason(foreign.token, 'TOKEN_WRONG_AUDIENCE');
    // A token signed by another istiod's key (same issuer name) is refused as an unknown key.
    const other = await VmTokenAuthenticator.load({
      keyFile: join(tmp, 'other', 'signing-key.pem'),
      trustDomain: TD,
      workloadGroup: (ns, name) => groups.get(`${ns}/${name}`),
    });
    const stranger = await other.mint({ namespace: 'vm', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
    await refusedWithReason(stranger.token, 'TOKEN_UNKNOWN_KEY');
    assert.equal(await check('not-a-jwt'), null);
    const pod = new LocalTokenAuthenticator({ trustDomain: TD }).mint({ namespace: 'vm', serviceAccount: 'legacy-sa' });
    assert.equal(await check(pod), null);
    assert.equal(await vmTokens.authenticate({ metadata: new Metadata() }), null);
  });

  it('keeps its signing key (0600) across restarts, so outstanding tokens stay valid', async () => {
    const keyFile = join(tmp, 'vm-token', 'signing-key.pem');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const { token } = await vmTokens.mint({ namespace: 'vm', serviceAccount: 'legacy-sa', workloadGroup: 'legacy' });
    const restarted = await VmTokenAuthenticator.load({
      keyFile,
      trustDomain: TD,
      workloadGroup: (ns, name) => groups.get(`${ns}/${name}`),
    });
    assert.equal(restarted.keyId, vmTokens.keyId);
    assert.deepEqual((await restarted.verify(token))?.identity.serviceAccount, 'legacy-sa');
    assert.match(await readFile(keyFile, 'utf8'), /BEGIN PRIVATE KEY/);
  });
});
