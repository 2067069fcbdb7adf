import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FederationSettings } from '@fedmesh/istiod';
import { Gateway } from '@fedmesh/proxy';
import { FIXTURES, LocalMesh, freeSubnet, get, testLogger, waitUntil, type TestPod } from './harness.js';
import { startEtcd, startNats, type RunningProcess } from './infra.js';

// Two clusters on two networks, east and west, on loopback: each istiod joined through a real etcd and
// nats-server, each with an east-west gateway configured by Istio's own multicluster/expose-services.yaml. A
// sidecar reaches the other network only through that network's gateway (15443, SNI passed through).
// The netns suite (test/src/netns) runs the same across real network namespaces; this one runs anywhere.
let etcd: RunningProcess;
let nats: RunningProcess;
const east = new LocalMesh();
const west = new LocalMesh();
const gateways: Gateway[] = [];
let eastSleep: TestPod;
let westRatings: TestPod;
let westGatewayIp = '';
let eastGatewayIp = '';
const bookinfo = path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml');
const expose = path.join(FIXTURES, 'multicluster/expose-services.yaml');
const ca = path.join(FIXTURES, 'certs');
const RATINGS = 'ratings.default.svc.cluster.local';

function federation(cluster: string, gatewayIp: string): { federation: FederationSettings; clusterId: string } {
  return {
    clusterId: cluster,
    federation: {
      mesh: 'mn',
      cluster,
      network: `net-${cluster}`,
      etcd: [etcd.url],
      nats: [nats.url],
      gatewayAddress: `${gatewayIp}:15443`,
      heartbeatIntervalMs: 250,
      withdrawAfterMs: 2_000,
      // Both clusters load Istio's sample CA: the first to join publishes its root as the mesh admin would.
      publishTrust: cluster === 'east',
    },
  };
}

async function startGateway(mesh: LocalMesh, ip: string, cluster: string): Promise<Gateway> {
  const gw = new Gateway({
    ip,
    podName: 'istio-eastwestgateway-0',
    namespace: 'istio-system',
    serviceAccount: 'istio-eastwestgateway',
    labels: { istio: 'eastwestgateway', app: 'istio-eastwestgateway' },
    workloadName: 'istio-eastwestgateway',
    clusterId: cluster,
    network: `net-${cluster}`,
    discoveryAddress: mesh.istiod.addresses.xdsTls,
    rootCertPem: mesh.rootCertPem(),
    token: mesh.istiod.tokens.mint({ namespace: 'istio-system', serviceAccount: 'istio-eastwestgateway' }),
    adminPort: 15000,
    limits: { helloTimeoutMs: 2_000 },
    log: testLogger(mesh.dir, `gateway-${cluster}`),
  });
  gateways.push(gw);
  await gw.start();
  await waitUntil(() => gw.ready(), 15_000, `${cluster} gateway ready`);
  return gw;
}

before(async () => {
  etcd = await startEtcd();
  nats = await startNats();
  eastGatewayIp = `127.0.${await freeSubnet()}.1`;
  westGatewayIp = `127.0.${await freeSubnet()}.1`;
  await east.start([bookinfo, expose], ca, federation('east', eastGatewayIp));
  await west.start([bookinfo, expose], ca, federation('west', westGatewayIp));
  await startGateway(east, eastGatewayIp, 'east');
  await startGateway(west, westGatewayIp, 'west');
  eastSleep = await east.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  await east.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
    appPort: 9080,
  });
  westRatings = await west.addPod({
    name: 'ratings-v1-0',
    serviceAccount: 'bookinfo-ratings',
    labels: { app: 'ratings', version: 'v1' },
    appPort: 9080,
  });
});

after(async () => {
  for (const g of gateways) await g.stop();
  await east.close();
  await west.close();
  await nats.stop();
  await etcd.stop();
});

test("east's sleep reaches ratings (only in west) through west's gateway over mTLS, with its own SPIFFE ID", async () => {
  await waitUntil(
    async () => (await get(`${eastSleep.ip}:15001`, 'ratings:9080').catch(() => ({ status: 0 }))).status === 200,
    20_000,
    'ratings reachable from east',
  );
  const westGw = gateways[1];
  assert.ok(westGw);
  const seen = westRatings.backend?.requests.length ?? 0;
  const res = await get(`${eastSleep.ip}:15001`, 'ratings:9080', '/ratings/0');
  assert.equal(res.status, 200);
  const body = JSON.parse(res.body) as { pod: string; xfcc: string };
  assert.equal(body.pod, 'ratings-v1-0');
  assert.match(body.xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
  assert.equal(westRatings.backend?.requests.length, seen + 1);
  // East's sidecar holds only west's gateway for ratings, dialled at 15443.
  const c = eastSleep.sidecar.clusters.get(`outbound|9080||${RATINGS}`);
  assert.ok(c);
  assert.deepEqual(
    c.endpoints.map((e) => [e.address, e.port, e.networkGateway, e.weight]),
    [[westGatewayIp, 15443, 'net-west', 1]],
  );
  assert.deepEqual(eastSleep.sidecar.clusters.upstreamTarget(c, c.endpoints[0]!), { host: westGatewayIp, port: 15443 });
  // The connection crossed west's gateway, which saw only the SNI (its TCP metrics name the service from it).
  // (An attempt made before the gateway had endpoints is counted too, as UH: look at the connection that went through.)
  const opened = (await westGw.tcp.opened.get()).values.find(
    (v) => v.labels.destination_service === RATINGS && v.labels.response_flags === '-',
  );
  assert.ok(opened && opened.value >= 1, 'west gateway opened a connection for ratings');
  assert.equal(opened.labels.destination_workload, 'ratings-v1');
});

test("the gateway's weight follows the number of endpoints behind it", async () => {
  const c = (): ReturnType<typeof eastSleep.sidecar.clusters.get> =>
    eastSleep.sidecar.clusters.get(`outbound|9080||${RATINGS}`);
  // Two more ratings pods in west (registered, not started): west exports 3 healthy endpoints.
  const pod = (name: string, ip: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels: { app: 'ratings', version: 'v1' } },
    spec: { serviceAccountName: 'bookinfo-ratings', containers: [{ name: 'app', image: 'x' }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  });
  const { parseResource } = await import('@fedmesh/api');
  const extra = [pod('ratings-v1-x1', `127.0.${west.subnet}.201`), pod('ratings-v1-x2', `127.0.${west.subnet}.202`)];
  west.istiod.store.apply(
    extra.map((p) => parseResource(p)),
    'test',
  );
  await waitUntil(() => c()?.endpoints[0]?.weight === 3, 10_000, 'gateway weight 3');
  west.istiod.store.remove(extra.map((p) => `Pod/default/${p.metadata.name}`));
  await waitUntil(() => c()?.endpoints[0]?.weight === 1, 10_000, 'gateway weight back to 1');
});
