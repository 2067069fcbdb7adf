// Delta ADS end to end: sidecars with `xdsProtocol: 'delta'` speak DeltaAggregatedResources to istiod over mutual
// TLS on 15012 (their client certificate checked against their Node, as for State of the World), and traffic
// follows what istiod sends: a VirtualService change, and an endpoint that goes away, reach them as deltas.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TypeUrl } from '@fedmesh/api/xds';
import { parseManifests } from '@fedmesh/api';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

const mesh = new LocalMesh();
let sleep: TestPod;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
  for (const v of ['v1', 'v2'])
    await mesh.addPod({
      name: `reviews-${v}-0`,
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: v },
      appPort: 9080,
      xdsProtocol: 'delta',
    });
  sleep = await mesh.addPod({
    name: 'sleep-0',
    serviceAccount: 'sleep',
    labels: { app: 'sleep' },
    xdsProtocol: 'delta',
  });
  await waitUntil(async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200, 15_000, 'route');
});
after(() => mesh.close());

function apply(yaml: string): void {
  const { resources, errors } = parseManifests(yaml, { file: 'test.yaml' });
  assert.deepEqual(errors, []);
  mesh.istiod.store.apply(resources, 'test');
}

async function pods(n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await get(`${sleep.ip}:15001`, 'reviews:9080');
    const k = r.status === 200 ? (JSON.parse(r.body) as { pod: string }).pod : `status-${r.status}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

test('delta sidecars are served on 15012 and every type is SYNCED', async () => {
  const ids = mesh.pods.map((p) => p.sidecar.node().id);
  const streams = mesh.istiod.discovery.ads.streams().filter((s) => ids.includes(s.node.id));
  assert.equal(streams.length, 3);
  for (const s of streams) assert.equal(s.protocol, 'delta', s.node.id);
  await waitUntil(
    () =>
      mesh.istiod.discovery
        .status()
        .filter((s) => ids.includes(s.id))
        .every((s) => ['LDS', 'CDS', 'EDS', 'RDS', 'SDS'].every((t) => s.types[t]?.status === 'SYNCED')),
    15_000,
    'every type SYNCED',
  );
});

test('a VirtualService change and an endpoint removal reach a delta sidecar', async () => {
  apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
`);
  await waitUntil(async () => (await pods(4))['reviews-v2-0'] === 4, 15_000, 'all traffic on v2');
  // Back to the service as a whole, then v2's pod leaves: only v1 answers, through an EDS delta.
  mesh.istiod.store.remove(['VirtualService/default/reviews']);
  await waitUntil(async () => ((await pods(8))['reviews-v1-0'] ?? 0) > 0, 15_000, 'v1 answering again');
  const before = sleep.sidecar.adsState().find((s) => s.typeUrl === TypeUrl.ClusterLoadAssignment)?.version;
  mesh.istiod.store.remove(['Pod/default/reviews-v2-0']);
  await waitUntil(async () => (await pods(6))['reviews-v1-0'] === 6, 15_000, 'only v1 answering');
  assert.notEqual(sleep.sidecar.adsState().find((s) => s.typeUrl === TypeUrl.ClusterLoadAssignment)?.version, before);
});
