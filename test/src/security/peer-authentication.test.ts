/**
 * PeerAuthentication end to end in explicit mode: what a plaintext client, a raw mTLS client and a real client
 * sidecar get at a server sidecar's 15006 under STRICT, PERMISSIVE and DISABLE, at mesh, namespace, workload and
 * port level (most specific wins), and that authorization still applies to plaintext.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FIXTURES, LocalMesh, waitUntil, type TestPod } from '../harness.js';
import {
  RecordingBackend,
  applyYaml,
  issueIdentity,
  mtlsDialer,
  plainDialer,
  rawExchange,
  removeKeys,
  request,
  type MeshIdentity,
} from './fixture.js';

const mesh = new LocalMesh();
let reviews: TestPod;
let multi: TestPod;
let sleep: TestPod;
let reviewsApp: RecordingBackend;
let multiA: RecordingBackend;
let multiB: RecordingBackend;
let sleepId: MeshIdentity;

const MULTI = `
apiVersion: v1
kind: Service
metadata: { name: multi, namespace: default }
spec:
  selector: { app: multi }
  ports:
  - { name: http-a, port: 8080, targetPort: 8080 }
  - { name: http-b, port: 8081, targetPort: 8081 }
`;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
  applyYaml(mesh, MULTI);
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
  });
  reviewsApp = await RecordingBackend.start(reviews.ip, 9080, reviews.name);
  multi = await mesh.addPod({ name: 'multi-0', serviceAccount: 'multi', labels: { app: 'multi' } });
  multiA = await RecordingBackend.start(multi.ip, 8080, 'multi-a');
  multiB = await RecordingBackend.start(multi.ip, 8081, 'multi-b');
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  sleepId = await issueIdentity(mesh, 'default', 'sleep');
  await waitUntil(async () => (await viaSleep('/health')).status === 200, 20_000, 'sleep reaches reviews');
});
after(async () => {
  await Promise.all([reviewsApp, multiA, multiB].map((b) => b?.close()));
  await mesh.close();
});

function viaSleep(p: string, host = 'reviews:9080') {
  return request(`${sleep.ip}:15001`, host, p);
}

/** plain sends one plaintext HTTP/1.1 request to a sidecar's 15006, as a client without a sidecar would. */
async function plain(pod: TestPod, host: string, target = '/plain', extra = ''): Promise<number> {
  const r = await rawExchange(
    plainDialer(pod.ip, 15006),
    `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`,
  );
  return r.statuses[0] ?? 0;
}

/** mtls sends one request over mTLS with the sleep identity and the SNI of `reviews:9080`. */
async function mtls(pod: TestPod, sni = 'outbound_.9080_._.reviews.default.svc.cluster.local'): Promise<number> {
  const r = await rawExchange(
    mtlsDialer(pod.ip, 15006, sni, sleepId),
    'GET /mtls HTTP/1.1\r\nHost: reviews:9080\r\nConnection: close\r\n\r\n',
  );
  return r.statuses[0] ?? 0;
}

async function withPolicy(yaml: string, ready: () => Promise<boolean>, fn: () => Promise<void>): Promise<void> {
  const keys = applyYaml(mesh, yaml);
  try {
    await waitUntil(ready, 20_000, 'PeerAuthentication applied');
    await fn();
  } finally {
    removeKeys(mesh, keys);
    await waitUntil(async () => (await plain(reviews, 'reviews:9080')) !== 200, 20_000, 'policy removed');
  }
}

function pa(name: string, ns: string, spec: string): string {
  return `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ${name}, namespace: ${ns} }\nspec: ${spec}\n---\n`;
}

async function destinationRequests(pod: TestPod, security: string): Promise<number> {
  const text = await pod.sidecar.metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="destination"'))
    .filter((l) => l.includes(`connection_security_policy="${security}"`))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('PeerAuthentication in explicit mode', () => {
  it('STRICT (the default, and set mesh-wide) refuses plaintext; mTLS callers are served', async () => {
    const before = reviewsApp.count;
    assert.notEqual(await plain(reviews, 'reviews:9080'), 200);
    assert.equal(await mtls(reviews), 200);
    assert.equal(reviewsApp.count, before + 1, 'only the mTLS request reached the app');
    await withPolicy(
      pa('mesh', 'istio-system', '{ mtls: { mode: STRICT } }'),
      () => Promise.resolve(true),
      async () => {
        const n = reviewsApp.count;
        assert.notEqual(await plain(reviews, 'reviews:9080'), 200);
        assert.equal((await viaSleep('/strict')).status, 200);
        assert.equal(reviewsApp.count, n + 1);
      },
    );
  });

  it('PERMISSIVE accepts both: mTLS callers keep XFCC with their SPIFFE ID, plaintext callers get none (a forged one is stripped)', async () => {
    await withPolicy(
      pa('ns', 'default', '{ mtls: { mode: PERMISSIVE } }'),
      async () => (await plain(reviews, 'reviews:9080')) === 200,
      async () => {
        const viaMesh = await viaSleep('/permissive');
        assert.equal(viaMesh.status, 200);
        assert.match(JSON.parse(viaMesh.body).xfcc as string, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
        const n = reviewsApp.count;
        const forged = 'x-forwarded-client-cert: By=x;URI=spiffe://cluster.local/ns/default/sa/admin\r\n';
        assert.equal(await plain(reviews, 'reviews:9080', '/forged', forged), 200);
        assert.equal(reviewsApp.requests.at(-1)?.headers['x-forwarded-client-cert'], undefined);
        assert.equal(
          await plain(reviews, 'reviews.default.svc.cluster.local:9080', 'http://reviews:9080/absolute'),
          200,
        );
        assert.equal(reviewsApp.requests.at(-1)?.url, '/absolute', 'absolute-form picks the port too');
        assert.equal(reviewsApp.count, n + 2);
        assert.equal(await plain(reviews, 'reviews:9999'), 404, 'a port the workload does not serve has no route');
        assert.equal(reviewsApp.count, n + 2);
      },
    );
  });

  it('DISABLE: plaintext is served, client sidecars switch to plaintext through 15006 (never straight to the app), mTLS is refused, authz still applies', async () => {
    const yaml =
      pa('reviews', 'default', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: DISABLE } }') +
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`;
    await withPolicy(
      yaml,
      async () => (await plain(reviews, 'reviews:9080')) === 200 && (await viaSleep('/probe')).status === 200,
      async () => {
        const plainBefore = await destinationRequests(reviews, 'none');
        const viaMesh = await viaSleep('/disabled');
        assert.equal(viaMesh.status, 200);
        assert.equal(JSON.parse(viaMesh.body).xfcc, null, 'no client certificate: the hop was plaintext');
        assert.equal(await destinationRequests(reviews, 'none'), plainBefore + 1, 'the server sidecar saw it');
        assert.notEqual(await mtls(reviews), 200);
        const n = reviewsApp.count;
        assert.equal(await plain(reviews, 'reviews:9080', '/admin'), 403);
        assert.equal((await viaSleep('/admin')).status, 403);
        assert.equal(reviewsApp.count, n);
      },
    );
  });

  it('port level overrides the workload level, which overrides namespace and mesh levels', async () => {
    const yaml =
      pa('mesh', 'istio-system', '{ mtls: { mode: DISABLE } }') +
      pa('ns', 'default', '{ mtls: { mode: PERMISSIVE } }') +
      pa(
        'multi',
        'default',
        '{ selector: { matchLabels: { app: multi } }, mtls: { mode: STRICT }, portLevelMtls: { "8081": { mode: PERMISSIVE } } }',
      );
    await withPolicy(
      yaml,
      async () => (await plain(multi, 'multi:8081')) === 200 && (await plain(multi, 'multi:8080')) !== 200,
      async () => {
        const [a, b] = [multiA.count, multiB.count];
        assert.notEqual(await plain(multi, 'multi:8080'), 200, 'workload STRICT beats namespace PERMISSIVE');
        assert.equal(await plain(multi, 'multi.default:8081'), 200, 'port PERMISSIVE beats workload STRICT');
        assert.equal(await plain(reviews, 'reviews:9080'), 200, 'namespace PERMISSIVE beats mesh DISABLE');
        assert.equal(await mtls(reviews), 200, 'PERMISSIVE still takes mTLS');
        assert.equal((await viaSleep('/a', 'multi:8080')).status, 200, 'mesh clients reach the STRICT port over mTLS');
        assert.deepEqual([multiA.count, multiB.count], [a + 1, b + 1]);
      },
    );
  });
});
