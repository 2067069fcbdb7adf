/**
 * Proxyless gRPC conformance: NACKs. A RouteConfiguration gRPC cannot accept, pushed to the client by a
 * hand-crafted snapshot, is NACKed with the field path in `error_detail`; istiod records the NACK (stream state,
 * `proxy-status`, `pilot_total_xds_rejects`) and the client keeps routing with its last good config. And what
 * istiod generates itself from Istio features gRPC does not support is left out, never NACKed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { Snapshot, type ResourceEntry } from '@fedmesh/xds';
import { waitUntil } from '../harness.js';
import { ProxylessMesh, metricValue } from './mesh.js';

const mesh = new ProxylessMesh();
before(() => mesh.start());
after(() => mesh.close());

function rdsState() {
  return mesh.istiod.discovery.ads
    .streams()
    .find((s) => s.node.id === mesh.nodeId)
    ?.types.get(TypeUrl.RouteConfiguration);
}

test('a route gRPC cannot accept is NACKed with its field path; istiod records it; the last good route keeps serving', async () => {
  const target = mesh.addService('strict', 50081);
  await mesh.addBackend({ pod: 'strict-0', app: 'strict', port: 50081 });
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('strict-0') === 6, 'strict-0 answering');
  const rejectsBefore = metricValue(await mesh.metrics(), 'pilot_total_xds_rejects', 'type="RDS"');

  // Hand-craft the client's snapshot: everything istiod generated, but the route's only domain has a wildcard in
  // the middle, which gRPC refuses (gRFC A28).
  const current = mesh.istiod.discovery.snapshotFor(mesh.nodeId);
  assert.ok(current);
  const resources: Record<string, ResourceEntry[]> = {};
  for (const t of Object.values(TypeUrl))
    resources[t] = [...current.resources(t)].map(([name, resource]) => ({ name, resource }));
  resources[TypeUrl.RouteConfiguration] = (resources[TypeUrl.RouteConfiguration] ?? []).map((e) =>
    e.name !== target
      ? e
      : {
          name: target,
          resource: encodeAny(TypeUrl.RouteConfiguration, {
            name: target,
            virtual_hosts: [
              {
                name: 'broken',
                domains: ['strict*.default'],
                routes: [
                  { match: { prefix: '/' }, route: { cluster: `outbound|50081||strict.default.svc.cluster.local` } },
                ],
              },
            ],
          }),
        },
  );
  const bad = new Snapshot(resources);
  mesh.istiod.discovery.cache.setSnapshot(mesh.nodeId, bad);

  await waitUntil(() => rdsState()?.nack?.version === bad.version(TypeUrl.RouteConfiguration), 15_000, 'RDS NACK');
  const message = rdsState()?.nack?.message ?? '';
  // grpc-js's own words: the resource's field path and what is wrong with it.
  assert.match(
    message,
    /RouteConfiguration message validation failed: \[virtual_hosts\[broken\]: domains entry has wildcard in the middle: strict\*\.default\]/,
  );
  const status = mesh.istiod.discovery.status().find((s) => s.id === mesh.nodeId);
  assert.equal(status?.types.RDS?.status, 'NACKED');
  await waitUntil(
    async () => metricValue(await mesh.metrics(), 'pilot_total_xds_rejects', 'type="RDS"') === rejectsBefore + 1,
    5000,
    'pilot_total_xds_rejects{type="RDS"} counts the NACK',
  );
  // The client kept its last good route.
  assert.deepEqual([...(await mesh.tally(client, 6)).entries()], [['strict-0', 6]]);

  // istiod's next push replaces the hand-crafted snapshot and is ACKed.
  mesh.istiod.discovery.pushAll();
  const good = mesh.istiod.discovery.snapshotFor(mesh.nodeId)?.version(TypeUrl.RouteConfiguration);
  await waitUntil(() => rdsState()?.ackedVersion === good, 15_000, 'the good route ACKed');
  assert.equal(mesh.istiod.discovery.status().find((s) => s.id === mesh.nodeId)?.types.RDS?.status, 'SYNCED');
});

test('Istio features gRPC does not support are left out of what istiod sends, so nothing is NACKed', async () => {
  const target = mesh.addService('partial', 50082);
  await mesh.addBackend({ pod: 'partial-v1', app: 'partial', version: 'v1', port: 50082 });
  await mesh.addBackend({ pod: 'partial-v2', app: 'partial', version: 'v2', port: 50082 });
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: partial, namespace: default}
spec:
  host: partial
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: partial, namespace: default}
spec:
  hosts: [partial]
  http:
  - match: [{uri: {prefix: /fedmesh.echo.Echo/Ping}}]
    redirect: {uri: /elsewhere}
  - match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: partial, subset: v1}}]
  - route: [{destination: {host: partial, subset: v2}}]
`);
  const rejects = metricValue(await mesh.metrics(), 'pilot_total_xds_rejects');
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('partial-v2') === 6, 'the last route serving');
  // LEAST_REQUEST became ROUND_ROBIN (gRPC NACKs it); the redirect and query routes were left out.
  assert.equal((await mesh.call(client, {}, { method: 'Ping' })).ok ? 'v2' : 'lost', 'v2');
  const cds = mesh.istiod.discovery.ads
    .streams()
    .find((s) => s.node.id === mesh.nodeId)
    ?.types.get(TypeUrl.Cluster);
  assert.equal(cds?.nack, undefined);
  assert.equal(
    rdsState()?.ackedVersion,
    mesh.istiod.discovery.snapshotFor(mesh.nodeId)?.version(TypeUrl.RouteConfiguration),
  );
  assert.equal(metricValue(await mesh.metrics(), 'pilot_total_xds_rejects'), rejects);
});
