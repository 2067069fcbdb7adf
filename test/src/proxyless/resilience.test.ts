/**
 * Proxyless gRPC conformance, modelled on gRPC's xDS interop cases for priority (locality) failover and
 * failback and for circuit breaking: DestinationRule `localityLbSetting` (with outlier detection, as Istio
 * requires for failover) becomes EDS priorities relative to the client's bootstrap locality, and
 * `connectionPool.http.http2MaxRequests` becomes the cluster's `max_requests`.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CLIENT_LOCALITY, ProxylessMesh, type CallResult } from './mesh.js';

const mesh = new ProxylessMesh();
before(() => mesh.start());
after(() => mesh.close());

const only = (pod: string) => (t: Map<string, number>) => t.size === 1 && t.has(pod);

test('priority failover and failback: a remote locality takes over when the local endpoints go, and traffic returns', async () => {
  const target = mesh.addService('geo', 50071);
  const local = { pod: 'geo-local', app: 'geo', port: 50071, ...CLIENT_LOCALITY };
  const near = { pod: 'geo-near', app: 'geo', port: 50071, region: CLIENT_LOCALITY.region, zone: 'us-east1-b' };
  const far = { pod: 'geo-far', app: 'geo', port: 50071, region: 'eu-west1', zone: 'eu-west1-b' };
  const localIp = (await mesh.addBackend(local)).ip;
  const nearIp = (await mesh.addBackend(near)).ip;
  await mesh.addBackend(far);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: geo, namespace: default}
spec:
  host: geo
  trafficPolicy:
    loadBalancer: {localityLbSetting: {enabled: true}}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s}
`);
  const client = mesh.client(target);
  await mesh.until(client, only('geo-local'), 'every call in the client zone (priority 0)', { batch: 12 });

  // The local pod goes away: the same region, other zone, is next (priority 1), not the far region.
  mesh.removePod('geo-local');
  await mesh.until(client, only('geo-near'), 'failover to the other zone of the region', { batch: 12 });
  // Then the region's last pod goes too: the far region takes over.
  mesh.removePod('geo-near');
  await mesh.until(client, only('geo-far'), 'failover to the far region', { batch: 12 });

  // Failback: the local pod returns and takes all the traffic again.
  mesh.registerPod(local, localIp);
  await mesh.until(client, only('geo-local'), 'failback to the client zone', { batch: 12 });
  mesh.registerPod(near, nearIp);

  // The data plane fails over on its own when priority 0 stops answering while still listed, and fails back
  // when it answers again.
  await mesh.stopBackend('geo-local');
  await mesh.until(client, only('geo-near'), 'failover when the local backend dies', {
    batch: 12,
    timeoutMs: 30_000,
  });
  await mesh.addBackend(local, localIp);
  await mesh.until(client, only('geo-local'), 'failback once it listens again', { batch: 12, timeoutMs: 60_000 });
});

test('circuit_breaking: http2MaxRequests caps concurrent calls; the excess fails with UNAVAILABLE', async () => {
  const target = mesh.addService('breaker', 50072);
  const backend = await mesh.addBackend({ pod: 'breaker-0', app: 'breaker', port: 50072 });
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: breaker, namespace: default}
spec:
  host: breaker
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: 2}}
`);
  const client = mesh.client(target);
  await mesh.until(client, only('breaker-0'), 'breaker answering');
  // n slow calls started 25 ms apart, all overlapping. (grpc-js counts a call once its stream has started,
  // a tick after the pick, so calls picked in the same tick would all pass the check.)
  const burst = async (n: number) => {
    const calls: Promise<CallResult>[] = [];
    for (let i = 0; i < n; i++) {
      calls.push(mesh.call(client, { sleep_ms: 1500 }, { deadlineMs: 10_000 }));
      await new Promise((r) => setTimeout(r, 25));
    }
    return Promise.all(calls);
  };
  // Wait for the limit to be in force: of 4 overlapping slow calls, 2 admitted.
  let results = await burst(4);
  for (let i = 0; i < 20 && results.filter((r) => r.ok).length !== 2; i++) results = await burst(4);
  backend.maxInFlight = 0;
  results = await burst(6);
  const ok = results.filter((r) => r.ok).length;
  const dropped = results.filter((r) => !r.ok && r.code === grpc.status.UNAVAILABLE).length;
  assert.equal(ok, 2, `2 calls admitted, got ${JSON.stringify(results)}`);
  assert.equal(dropped, 4, 'the other 4 fail with UNAVAILABLE');
  assert.equal(backend.maxInFlight, 2, 'the backend never held more than 2 calls at once');
  // Below the limit every call succeeds.
  const calm = await Promise.all([mesh.call(client, { sleep_ms: 100 }), mesh.call(client, { sleep_ms: 100 })]);
  assert.deepEqual(
    calm.map((r) => r.ok),
    [true, true],
  );
});
