/**
 * Proxyless gRPC conformance, modelled on gRPC's xDS interop cases ping_pong, round_robin and backends_changed:
 * @grpc/grpc-js-xds clients dial `xds:///<host>:<port>` and istiod (SotW over plaintext 15010) tells them
 * where to go. Each case uses its own Service so the shared xDS client cannot carry state between cases.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TypeUrl } from '@fedmesh/api/xds';
import { ProxylessMesh, metricValue } from './mesh.js';

const mesh = new ProxylessMesh();
before(() => mesh.start());
after(() => mesh.close());

test('ping_pong: a proxyless client reaches the only backend of a service', async () => {
  const target = mesh.addService('pingpong', 50051);
  await mesh.addBackend({ pod: 'pingpong-0', app: 'pingpong', port: 50051 });
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('pingpong-0') === 6, 'calls answered by pingpong-0');
  const r = await mesh.call(client, { message: 'hi' });
  assert.deepEqual(r, { ok: true, pod: 'pingpong-0', method: '/fedmesh.echo.Echo/Echo' });
  // istiod saw the client as proxyless: its listener is an api_listener named after the target.
  const snap = mesh.istiod.discovery.snapshotFor(mesh.nodeId);
  assert.ok(snap?.resources(TypeUrl.Listener).has(target));
  const status = mesh.istiod.discovery.status().find((s) => s.id === mesh.nodeId);
  assert.equal(status?.types.LDS?.status, 'SYNCED');
  assert.equal(status?.types.RDS?.status, 'SYNCED');
});

test('round_robin: calls spread evenly over every backend', async () => {
  const target = mesh.addService('rr', 50052);
  for (let i = 0; i < 3; i++) await mesh.addBackend({ pod: `rr-${i}`, app: 'rr', port: 50052 });
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.size === 3, 'all three backends answering', { batch: 9 });
  const t = await mesh.tally(client, 30);
  assert.deepEqual([...t.keys()].sort(), ['rr-0', 'rr-1', 'rr-2']);
  for (const [pod, n] of t) assert.equal(n, 10, `${pod} got ${n} of 30 calls (round robin is exact)`);
});

test('backends_changed: the client follows endpoints as pods come and go', async () => {
  const target = mesh.addService('moving', 50053);
  await mesh.addBackend({ pod: 'moving-a', app: 'moving', port: 50053 });
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('moving-a') === 6, 'moving-a answering');
  await mesh.addBackend({ pod: 'moving-b', app: 'moving', port: 50053 });
  await mesh.until(client, (t) => (t.get('moving-b') ?? 0) > 0 && (t.get('moving-a') ?? 0) > 0, 'both answering');
  mesh.removePod('moving-a');
  await mesh.until(client, (t) => t.get('moving-b') === 6, 'only moving-b answering');
  assert.deepEqual([...(await mesh.tally(client, 12)).entries()], [['moving-b', 12]]);
});

test('istiod counts pushes and convergence for proxyless clients on /metrics', async () => {
  const text = await mesh.metrics();
  for (const t of ['LDS', 'RDS', 'CDS', 'EDS'])
    assert.ok(metricValue(text, 'pilot_xds_pushes', `type="${t}"`) > 0, `pilot_xds_pushes{type="${t}"}`);
  assert.ok(metricValue(text, 'pilot_proxy_convergence_time_count') > 0, 'convergence observed');
  assert.equal(metricValue(text, 'pilot_total_xds_rejects', 'type="RDS"'), 0, 'nothing rejected');
});
