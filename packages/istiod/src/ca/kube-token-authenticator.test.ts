import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { KubeConfig } from '@kubernetes/client-node';
import {
  CertificateAuthority,
  createCsr,
  generateKeyPair,
  isPkiError,
  requestCertificate,
  type PkiLogger,
} from '@fedmesh/pki';
import { FakeTokenIssuer, startFakeApiServer, type RunningFakeApiServer } from '../kube/testing/index.js';
import { CA_REFUSAL_MESSAGE, LocalTokenAuthenticator, startCaServer, type RunningCaServer } from './index.js';
import { KubeTokenAuthenticator } from './kube-token-authenticator.js';

const SAMPLES = new URL('../../../../../shared/fixtures/istio-samples/certs/', import.meta.url).pathname;
const TD = 'cluster.local';

let fake: RunningFakeApiServer;
let kube: KubeTokenAuthenticator;
const local = new LocalTokenAuthenticator({ trustDomain: TD });

function contextWith(token?: string): { metadata: grpc.Metadata } {
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  return { metadata };
}

function reviews(): number {
  return fake.server.requests.filter((r) => r.path.endsWith('/tokenreviews')).length;
}

async function refusedWith(token: string, reason: string): Promise<Error> {
  let thrown: unknown;
  await assert.rejects(kube.authenticate(contextWith(token)), (err: unknown) => {
    thrown = err;
    return isPkiError(err) && err.reason === reason;
  });
  const err = thrown as Error;
  assert.ok(!err.message.includes(token) && !String((err.cause as Error | undefined)?.message).includes(token));
  return err;
}

before(async () => {
  fake = await startFakeApiServer();
  fake.server.apply({
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: 'bookinfo-reviews', namespace: 'default' },
  });
  kube = new KubeTokenAuthenticator({ kubeConfig: fake.kubeConfig, trustDomain: TD, timeoutMs: 3000 });
});
after(() => fake.close());

describe('KubeTokenAuthenticator against a fake API server', () => {
  it('takes the identity from the TokenReview of an istio-ca token', async () => {
    const token = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
    });
    const caller = await kube.authenticate(contextWith(token));
    assert.deepEqual(caller, {
      identity: { trustDomain: TD, namespace: 'default', serviceAccount: 'bookinfo-reviews' },
      authenticator: 'kubernetes',
    });
  });

  it('refuses a token bound to another audience', async () => {
    const token = fake.server.issueToken({ namespace: 'default', serviceAccount: 'bookinfo-reviews' });
    const err = await refusedWith(token, 'TOKEN_WRONG_AUDIENCE');
    assert.match(
      err.message,
      /token audiences \["https:\/\/kubernetes\.default\.svc"\] is invalid for the target audiences \["istio-ca"\]/,
    );
  });

  it('refuses tokens the API server does not authenticate', async () => {
    const forged = new FakeTokenIssuer().issue({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
    });
    await refusedWith(forged, 'TOKEN_UNAUTHENTICATED');
    const orphan = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'deleted-sa',
      audiences: ['istio-ca'],
    });
    const err = await refusedWith(orphan, 'TOKEN_UNAUTHENTICATED');
    assert.match(err.message, /serviceaccounts "deleted-sa" not found/);
  });

  it('refuses an expired token without asking the API server', async () => {
    const token = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
      ttlSeconds: -10,
    });
    const before = reviews();
    await refusedWith(token, 'TOKEN_EXPIRED');
    assert.equal(reviews(), before);
  });

  it('refuses when the TokenReview cannot be made: API server refusing istiod, or down', async () => {
    const token = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
    });
    fake.server.failNext(1, 403, (_m, p) => p.endsWith('/tokenreviews'));
    await refusedWith(token, 'TOKEN_REVIEW_FAILED');
    await fake.server.stop();
    try {
      const err = await refusedWith(token, 'TOKEN_REVIEW_FAILED');
      assert.match(err.message, /ECONNREFUSED/);
    } finally {
      await fake.server.start();
    }
    assert.ok(await kube.authenticate(contextWith(token)), 'works again once the API server is back');
  });

  it('gives up on an API server that never answers after timeoutMs', async (t) => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => void sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    t.after(() => {
      for (const s of sockets) s.destroy();
      silent.close();
    });
    const port = (silent.address() as net.AddressInfo).port;
    const kc = new KubeConfig();
    kc.loadFromString(fake.kubeconfigYaml.replace(fake.server.url, `https://127.0.0.1:${port}`));
    const slow = new KubeTokenAuthenticator({ kubeConfig: kc, trustDomain: TD, timeoutMs: 300 });
    const token = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
    });
    await assert.rejects(slow.authenticate(contextWith(token)), (err: unknown) =>
      isPkiError(err, 'TOKEN_REVIEW_FAILED'),
    );
  });

  it('passes (null) on credentials that are not Kubernetes tokens, without a review', async () => {
    const before = reviews();
    assert.equal(await kube.authenticate(contextWith()), null);
    assert.equal(await kube.authenticate(contextWith('not-a-jwt')), null);
    assert.equal(await kube.authenticate(contextWith(local.mint({ namespace: 'default', serviceAccount: 'x' }))), null);
    const foreign = ['{"alg":"none"}', '{"iss":"https://accounts.example.com","sub":"x"}', 'sig'].map((p) =>
      Buffer.from(p).toString('base64url'),
    );
    assert.equal(await kube.authenticate(contextWith(foreign.join('.'))), null);
    assert.equal(reviews(), before);
  });
});

describe('the CA service with the Kubernetes authenticator in its chain', () => {
  let ca: CertificateAuthority;
  let server: RunningCaServer;
  const logs: { obj: Record<string, unknown>; msg: string }[] = [];
  const logger: PkiLogger = {
    info: (obj, msg) => logs.push({ obj, msg }),
    warn: (obj, msg) => logs.push({ obj, msg }),
    error: (obj, msg) => logs.push({ obj, msg }),
  };

  before(async () => {
    ca = await CertificateAuthority.loadPluggedCa(SAMPLES);
    server = await startCaServer({ ca, authenticators: [local, kube], logger });
  });
  after(() => server.close());

  async function ask(token: string) {
    const key = await generateKeyPair('ec-p256');
    const csrPem = createCsr({
      privateKey: key.privateKey,
      subjectAltNames: { uris: ['spiffe://cluster.local/ns/kube-system/sa/admin'] },
    });
    return requestCertificate({
      address: server.address,
      rootCertsPem: ca.rootCertsPem,
      serverName: 'localhost',
      csrPem,
      token,
    });
  }

  it('issues the reviewed identity (CSR SANs ignored) and refuses a wrong-audience token opaquely', async () => {
    const good = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['istio-ca'],
    });
    const { certChainPem } = await ask(good);
    assert.equal(
      new X509Certificate(certChainPem[0] ?? '').subjectAltName,
      'URI:spiffe://cluster.local/ns/default/sa/bookinfo-reviews',
    );

    const wrong = fake.server.issueToken({
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      audiences: ['vault'],
    });
    await assert.rejects(ask(wrong), (err: unknown) => {
      assert.ok(isPkiError(err, 'CA_REFUSED'));
      assert.equal((err.cause as grpc.ServiceError).details, CA_REFUSAL_MESSAGE);
      return true;
    });
    const refusal = logs.find((l) => l.msg === CA_REFUSAL_MESSAGE);
    assert.equal(refusal?.obj['reason'], 'TOKEN_WRONG_AUDIENCE');
    const text = JSON.stringify(logs);
    assert.ok(!text.includes(good) && !text.includes(wrong), 'tokens never logged');
  });
});
