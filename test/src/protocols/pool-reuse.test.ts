/**
 * Upstream connection pools across config pushes, through real sidecars: a CDS push that leaves a cluster's
 * config and the proxy's certificate as they were keeps that cluster's mTLS connections (HTTP/2 sessions chosen by
 * ALPN, and HTTP/1.1 keep-alive sockets under h2UpgradePolicy DO_NOT_UPGRADE), so the server sidecar accepts no
 * new TLS handshake after it; a push that changes the cluster itself replaces its pool, as Envoy drains a cluster
 * whose config changed. Connections are counted where they land: the server sidecar's
 * `fedmesh_tls_handshakes_total{direction="inbound",result="ok"}`.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  apply,
  clusterOf,
  closeAll,
  send,
  service,
  startMesh,
  waitForCluster,
  waitForEndpoints,
  type TestApp,
} from '../resilience/helpers.js';
import { inboundHandshakes, outboundHandshakes } from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let h2: { pod: TestPod; app: TestApp };
let h1: { pod: TestPod; app: TestApp };

const H1_RULE = (extra: string): string => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: h1, namespace: default }
spec:
  host: h1.default.svc.cluster.local
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: DO_NOT_UPGRADE }${extra} } }
`;

before(async () => {
  mesh = await startMesh(service('h2') + service('h1') + H1_RULE(''));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  h2 = await addApp(mesh, 'h2', 0);
  h1 = await addApp(mesh, 'h1', 0);
  await waitForEndpoints(client, 'h2', 1);
  await waitForEndpoints(client, 'h1', 1);
  await waitForCluster(client, clusterOf('h1'), (c) => !JSON.stringify(c).includes('"h2"'), 'h1 on HTTP/1.1');
});

after(async () => {
  await closeAll(mesh, [h2.app, h1.app]);
});

/** sequential sends `n` requests one after another and asserts each was answered by the app. */
async function sequential(host: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) assert.equal((await send(client, host)).status, 200, `${host} request ${i}`);
}

test('a CDS push that changes neither a cluster nor the certificate keeps its upstream connections', async (t) => {
  await sequential('h2:8080', 3);
  await sequential('h1:8080', 3);
  assert.notEqual(client.sidecar.clusters.get(clusterOf('h2'))?.h2, undefined, 'h2 cluster has an HTTP/2 pool');
  assert.equal(client.sidecar.clusters.get(clusterOf('h1'))?.h2, undefined, 'h1 cluster uses keep-alive sockets');
  const h2Before = await inboundHandshakes(h2.pod);
  const h1Before = await inboundHandshakes(h1.pod);
  const outBefore = await outboundHandshakes(client);
  assert.ok(h2Before >= 1 && h1Before >= 1, `handshakes before the push: h2 ${h2Before}, h1 ${h1Before}`);

  // An unrelated Service: istiod pushes the whole CDS again (SotW), h1's and h2's clusters unchanged.
  const h2Cluster = client.sidecar.clusters.get(clusterOf('h2'));
  apply(mesh, service('other'));
  await waitForCluster(client, clusterOf('other'), () => true, 'the pushed cluster for other');
  assert.equal(client.sidecar.clusters.get(clusterOf('h2')), h2Cluster, 'the unchanged cluster was kept');

  await sequential('h2:8080', 3);
  await sequential('h1:8080', 3);
  const h2After = await inboundHandshakes(h2.pod);
  const h1After = await inboundHandshakes(h1.pod);
  const outAfter = await outboundHandshakes(client);
  t.diagnostic(`inbound handshakes h2 ${h2Before} → ${h2After}, h1 ${h1Before} → ${h1After}`);
  assert.equal(h2After, h2Before, 'the HTTP/2 session to h2 survived the push');
  assert.equal(h1After, h1Before, 'the keep-alive socket to h1 survived the push');
  assert.equal(outAfter, outBefore, 'the client sidecar made no upstream handshake');
});

test('a push that changes the cluster replaces its pool: the next request makes a new connection', async () => {
  await sequential('h1:8080', 2);
  const before = await inboundHandshakes(h1.pod);
  apply(mesh, H1_RULE(', tcp: { maxConnections: 77 }'));
  await waitForCluster(client, clusterOf('h1'), (c) => JSON.stringify(c).includes('77'), 'h1 max_connections 77');
  await sequential('h1:8080', 2);
  const afterPush = await inboundHandshakes(h1.pod);
  assert.equal(
    afterPush,
    before + 1,
    `one new upstream connection after the cluster changed (${before} → ${afterPush})`,
  );
});
