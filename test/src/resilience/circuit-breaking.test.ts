/**
 * Circuit breaking from DestinationRule `connectionPool`, through real sidecars: requests beyond the limits are
 * answered 503 with response flag UO and `x-envoy-overloaded`, and never reach the app.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  accessLogs,
  addApp,
  admin,
  apply,
  clusterOf,
  closeAll,
  metricValue,
  send,
  service,
  startMesh,
  waitForCluster,
  waitForEndpoints,
  type Reply,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let server: TestPod;
let app: TestApp;

before(async () => {
  mesh = await startMesh(service('cb'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  const a = await addApp(mesh, 'cb', 0);
  server = a.pod;
  app = a.app;
  await waitForEndpoints(client, 'cb', 1);
});

after(async () => {
  await closeAll(mesh, [app]);
});

function pool(connectionPool: string): void {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: cb, namespace: default }
spec:
  host: cb
  trafficPolicy:
    connectionPool: ${connectionPool}`,
  );
}

/** concurrent sends `n` requests at once while the app holds them; resolves the early replies and the rest. */
async function overload(n: number, admitted: number): Promise<{ early: Reply[]; late: Reply[] }> {
  app.handler = (_r, res, a) => a.hold(res);
  const seen = app.requests.length;
  const replies: Reply[] = [];
  const all = Array.from({ length: n }, () => send(client, 'cb:8080').then((r) => (replies.push(r), r)));
  // The overflowed requests are answered while the admitted ones are still held at the app.
  await waitUntil(() => replies.length >= n - admitted && app.requests.length - seen >= 1, 15_000, 'overflow replies');
  const early = [...replies];
  await new Promise((r) => setTimeout(r, 200));
  app.handler = (_r, res, a) => a.ok(res);
  app.release();
  await Promise.all(all);
  return { early, late: replies.slice(early.length) };
}

test('tcp.maxConnections 1 + http1MaxPendingRequests 1: of 5 concurrent requests 2 are served and 3 get 503 UO', async () => {
  pool('{ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }');
  await waitForCluster(client, clusterOf('cb'), (c) => JSON.stringify(c).includes('"max_connections":{"value":1}'));
  const before = accessLogs(mesh, 'client-0').length;
  const { early, late } = await overload(5, 2);
  assert.equal(early.length, 3, JSON.stringify(early.map((r) => r.status)));
  for (const r of early) {
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-envoy-overloaded'], 'true');
    assert.match(r.body, /reset reason: overflow/);
  }
  assert.deepEqual(
    late.map((r) => r.status),
    [200, 200],
  );
  await waitUntil(() => accessLogs(mesh, 'client-0').length >= before + 5, 10_000, 'access logs');
  const flags = accessLogs(mesh, 'client-0')
    .slice(before)
    .map((l) => l.response_flags)
    .sort();
  assert.deepEqual(flags, ['-', '-', 'UO', 'UO', 'UO']);
  const stats = (await admin(client, '/stats/prometheus')).body;
  assert.equal(metricValue(stats, 'envoy_cluster_upstream_rq_pending_overflow', { cluster_name: clusterOf('cb') }), 3);
  assert.equal(metricValue(stats, 'istio_requests_total', { response_code: '503', response_flags: 'UO' }), 3);
});

test('http.http2MaxRequests 2: the third and fourth concurrent requests overflow at once', async () => {
  pool('{ http: { http2MaxRequests: 2 } }');
  await waitForCluster(client, clusterOf('cb'), (c) => JSON.stringify(c).includes('"max_requests":{"value":2}'));
  const { early, late } = await overload(4, 2);
  assert.deepEqual(
    early.map((r) => r.status),
    [503, 503],
  );
  assert.deepEqual(
    late.map((r) => r.status),
    [200, 200],
  );
});

test('http.maxRequestsPerConnection 1: every request opens a new mTLS connection to the server sidecar', async () => {
  const handshakes = async (): Promise<number> =>
    metricValue((await admin(server, '/stats/prometheus')).body, 'fedmesh_tls_handshakes_total', {
      direction: 'inbound',
      result: 'ok',
    });
  pool('{ http: { maxRequestsPerConnection: 1 } }');
  await waitForCluster(client, clusterOf('cb'), (c) => JSON.stringify(c).includes('max_requests_per_connection'));
  app.handler = (_r, res, a) => a.ok(res);
  let before = await handshakes();
  for (let i = 0; i < 5; i++) assert.equal((await send(client, 'cb:8080')).status, 200);
  assert.equal((await handshakes()) - before, 5);
  pool('{ http: { maxRequestsPerConnection: 0 } }');
  await waitForCluster(client, clusterOf('cb'), (c) => !JSON.stringify(c).includes('max_requests_per_connection'));
  before = await handshakes();
  for (let i = 0; i < 5; i++) assert.equal((await send(client, 'cb:8080')).status, 200);
  assert.equal((await handshakes()) - before, 1, 'without the limit one pooled connection carries all five');
});
