/**
 * Proxyless gRPC conformance, modelled on gRPC's xDS interop cases traffic_splitting, path_matching,
 * header_matching, fault_injection and timeout, plus retries: VirtualServices and DestinationRules applied to
 * istiod are what @grpc/grpc-js-xds clients route by. Each case has its own Service.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ProxylessMesh } from './mesh.js';

const mesh = new ProxylessMesh();
before(() => mesh.start());
after(() => mesh.close());

/** addVersioned registers a Service with one backend per version and a DestinationRule with a subset each. */
async function addVersioned(name: string, port: number, versions: string[]): Promise<string> {
  const target = mesh.addService(name, port);
  for (const v of versions) await mesh.addBackend({ pod: `${name}-${v}`, app: name, version: v, port });
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: default}
spec:
  host: ${name}
  subsets:
${versions.map((v) => `  - {name: ${v}, labels: {version: ${v}}}`).join('\n')}
`);
  return target;
}

/**
 * binomialBounds returns [lo, hi] such that a Binomial(n, p) count falls outside with probability below ~1e-6
 * (mean ± 5 standard deviations).
 */
function binomialBounds(n: number, p: number): [number, number] {
  const sd = Math.sqrt(n * p * (1 - p));
  return [Math.floor(n * p - 5 * sd), Math.ceil(n * p + 5 * sd)];
}

test('traffic_splitting: an 80/20 VirtualService splits calls within binomial bounds', async () => {
  const target = await addVersioned('split', 50061, ['v1', 'v2']);
  const client = mesh.client(target);
  await mesh.until(client, (t) => (t.get('split-v1') ?? 0) + (t.get('split-v2') ?? 0) === 6, 'split answering');
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split, namespace: default}
spec:
  hosts: [split]
  http:
  - route:
    - {destination: {host: split, subset: v1}, weight: 80}
    - {destination: {host: split, subset: v2}, weight: 20}
`);
  // Wait for the route to land: before it, round robin gives 50/50; with it, v1 clearly dominates.
  await mesh.until(client, (t) => (t.get('split-v1') ?? 0) >= 35, 'the 80/20 route', { batch: 40 });
  const n = 400;
  const t = await mesh.tally(client, n);
  const v2 = t.get('split-v2') ?? 0;
  const [lo, hi] = binomialBounds(n, 0.2);
  assert.equal((t.get('split-v1') ?? 0) + v2, n, 'every call answered by v1 or v2');
  assert.ok(v2 >= lo && v2 <= hi, `v2 got ${v2} of ${n}, want ${lo}..${hi}`);
});

test('path_matching: a uri prefix and an exact path pick the subset per method', async () => {
  const target = await addVersioned('paths', 50062, ['v1', 'v2', 'v3']);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: paths, namespace: default}
spec:
  hosts: [paths]
  http:
  - match: [{uri: {exact: /fedmesh.echo.Echo/Ping}}]
    route: [{destination: {host: paths, subset: v2}}]
  - match: [{uri: {prefix: /fedmesh.echo.Echo/}}]
    route: [{destination: {host: paths, subset: v1}}]
  - route: [{destination: {host: paths, subset: v3}}]
`);
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('paths-v1') === 6, 'Echo on v1');
  assert.deepEqual([...(await mesh.tally(client, 10, { method: 'Ping' })).entries()], [['paths-v2', 10]]);
  assert.deepEqual([...(await mesh.tally(client, 10, { method: 'Echo' })).entries()], [['paths-v1', 10]]);
});

test('header_matching: exact, prefix, regex, presence and withoutHeaders matches on call metadata', async () => {
  const target = await addVersioned('headers', 50063, ['v1', 'v2', 'v3', 'v4', 'v5']);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: headers, namespace: default}
spec:
  hosts: [headers]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: headers, subset: v2}}]
  - match: [{headers: {x-tier: {prefix: gold-}}}]
    route: [{destination: {host: headers, subset: v3}}]
  - match: [{headers: {x-build: {regex: "^[0-9]+\\\\.[0-9]+$"}}}]
    route: [{destination: {host: headers, subset: v4}}]
  - match: [{headers: {x-canary: {}}, withoutHeaders: {x-opt-out: {}}}]
    route: [{destination: {host: headers, subset: v5}}]
  - route: [{destination: {host: headers, subset: v1}}]
`);
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get('headers-v2') === 6, 'jason on v2', { metadata: { 'end-user': 'jason' } });
  const one = async (metadata: Record<string, string>): Promise<string> => {
    const r = await mesh.call(client, {}, { metadata });
    assert.ok(r.ok, JSON.stringify(r));
    return r.pod;
  };
  assert.equal(await one({ 'end-user': 'jason' }), 'headers-v2');
  assert.equal(await one({ 'end-user': 'jasonx' }), 'headers-v1', 'exact means exact');
  assert.equal(await one({ 'x-tier': 'gold-plus' }), 'headers-v3');
  assert.equal(await one({ 'x-tier': 'silver' }), 'headers-v1');
  assert.equal(await one({ 'x-build': '12.7' }), 'headers-v4');
  assert.equal(await one({ 'x-build': '12.7.1' }), 'headers-v1', 'the regex is anchored');
  assert.equal(await one({ 'x-canary': 'anything' }), 'headers-v5');
  assert.equal(await one({ 'x-canary': 'yes', 'x-opt-out': '1' }), 'headers-v1', 'withoutHeaders excludes');
  assert.equal(await one({}), 'headers-v1');
});

test('fault_injection: abort with an HTTP or gRPC status, and a fixed delay, per route', async () => {
  const target = await addVersioned('faulty', 50064, ['v1']);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faulty, namespace: default}
spec:
  hosts: [faulty]
  http:
  - match: [{headers: {x-fault: {exact: abort-http}}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: faulty, subset: v1}}]
  - match: [{headers: {x-fault: {exact: abort-grpc}}}]
    fault: {abort: {grpcStatus: PERMISSION_DENIED, percentage: {value: 100}}}
    route: [{destination: {host: faulty, subset: v1}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 400ms, percentage: {value: 100}}}
    route: [{destination: {host: faulty, subset: v1}}]
  - route: [{destination: {host: faulty, subset: v1}}]
`);
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get(`!${grpc.status.UNAVAILABLE}`) === 6, 'the abort route', {
    metadata: { 'x-fault': 'abort-http' },
  });
  const before = mesh.backends.get('faulty-v1')?.calls ?? 0;
  const http = await mesh.call(client, {}, { metadata: { 'x-fault': 'abort-http' } });
  assert.deepEqual(http.ok ? http : { ok: http.ok, code: http.code }, { ok: false, code: grpc.status.UNAVAILABLE });
  const g = await mesh.call(client, {}, { metadata: { 'x-fault': 'abort-grpc' } });
  assert.deepEqual(g.ok ? g : { ok: g.ok, code: g.code }, { ok: false, code: grpc.status.PERMISSION_DENIED });
  assert.equal(mesh.backends.get('faulty-v1')?.calls, before, 'aborted calls never reach the backend');
  const started = Date.now();
  const delayed = await mesh.call(client, {}, { metadata: { 'x-fault': 'delay' } });
  const took = Date.now() - started;
  assert.equal(delayed.ok, true);
  assert.ok(took >= 390, `the delayed call took ${took} ms, want ≥ 400 ms`);
  assert.equal((await mesh.call(client)).ok, true, 'no fault without the header');
});

test('timeout: a VirtualService timeout ends slow calls with DEADLINE_EXCEEDED, fast ones succeed', async () => {
  const target = await addVersioned('slow', 50065, ['v1']);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slow, namespace: default}
spec:
  hosts: [slow]
  http:
  - timeout: 300ms
    route: [{destination: {host: slow, subset: v1}}]
`);
  const client = mesh.client(target);
  await mesh.until(client, (t) => t.get(`!${grpc.status.DEADLINE_EXCEEDED}`) === 2, 'the 300 ms timeout', {
    deadlineMs: 5000,
    batch: 2,
    req: () => ({ sleep_ms: 1500 }),
  });
  // the test's own deadline is 5 s: what ends the call is the route's 300 ms.
  const slow = await mesh.call(client, { sleep_ms: 1500 }, { deadlineMs: 5000 });
  assert.equal(slow.ok ? 'ok' : slow.code, grpc.status.DEADLINE_EXCEEDED);
  const fast = await mesh.call(client, { sleep_ms: 10 }, { deadlineMs: 5000 });
  assert.equal(fast.ok, true);
});

test('retries: an UNAVAILABLE first attempt is retried per the route; attempts: 0 turns retries off', async () => {
  const target = await addVersioned('flaky', 50066, ['v1']);
  mesh.apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: default}
spec:
  hosts: [flaky]
  http:
  - match: [{headers: {x-retries: {exact: "off"}}}]
    retries: {attempts: 0}
    route: [{destination: {host: flaky, subset: v1}}]
  - retries: {attempts: 2, retryOn: unavailable}
    route: [{destination: {host: flaky, subset: v1}}]
`);
  const client = mesh.client(target);
  let id = 0;
  await mesh.until(client, (t) => t.get(`!${grpc.status.UNAVAILABLE}`) === 1, 'the no-retry route', {
    metadata: { 'x-retries': 'off' },
    batch: 1,
    req: () => ({ fail_first: true, request_id: `wait${id++}` }),
  });
  const once = (metadata: Record<string, string> = {}) =>
    mesh.call(client, { fail_first: true, request_id: `r${id++}` }, { metadata });
  const calls = (): number => mesh.backends.get('flaky-v1')?.calls ?? 0;
  let before = calls();
  const retried = await once();
  assert.equal(retried.ok, true, JSON.stringify(retried));
  assert.equal(calls() - before, 2, 'the backend saw the failed attempt and the retry');
  before = calls();
  const plain = await once({ 'x-retries': 'off' });
  assert.equal(plain.ok ? 'ok' : plain.code, grpc.status.UNAVAILABLE);
  assert.equal(calls() - before, 1, 'no retry with attempts: 0');
});
