/**
 * Retries (retryOn conditions, perTryTimeout, retry budget and maxRetries), route timeouts, and fault injection
 * (delay and abort by percentage), through real sidecars: client → outbound proxy → mTLS → inbound proxy → app.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { binomialBounds } from '@fedmesh/ctl';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  accessLogs,
  addApp,
  admin,
  apply,
  clusterOf,
  closeAll,
  metricValue,
  podOf,
  remove,
  send,
  service,
  startMesh,
  waitForCluster,
  waitForEndpoints,
  waitForRoute,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let app: TestApp;
let pair: TestApp[] = [];
let killed = 1;
const apps: TestApp[] = [];

const HOST = 'flaky:8080';

before(async () => {
  mesh = await startMesh(service('flaky') + service('pair'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  app = (await addApp(mesh, 'flaky', 0)).app;
  pair = [(await addApp(mesh, 'pair', 0)).app, (await addApp(mesh, 'pair', 1)).app];
  apps.push(app, ...pair);
  await waitForEndpoints(client, 'flaky', 1);
  await waitForEndpoints(client, 'pair', 2);
});

after(async () => {
  await closeAll(mesh, apps);
});

function virtualService(http: string): void {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky, namespace: default }
spec:
  hosts: [flaky]
  http:
${http}`,
  );
}

/** failFirst makes the app answer `status` to its first `n` requests from now, then 200. */
function failFirst(n: number, status: number): void {
  const start = app.requests.length;
  app.handler = (_r, res, a) => (a.requests.length - start <= n ? a.ok(res, status) : a.ok(res));
}

function lastLog(pod = 'client-0'): ReturnType<typeof accessLogs>[number] | undefined {
  return accessLogs(mesh, pod).at(-1);
}

describe('retries', () => {
  test('retryOn 5xx: a request succeeds after two injected 503s, and the app sees x-envoy-attempt-count 1, 2, 3', async () => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 3, retryOn: 5xx }`);
    await waitForRoute(client, (r) => r.includes('"retry_on":"5xx"'), 'retry policy');
    failFirst(2, 503);
    const seen = app.requests.length;
    const r = await send(client, HOST);
    assert.equal(r.status, 200);
    assert.deepEqual(
      app.requests.slice(seen).map((q) => q.attempt),
      [1, 2, 3],
    );
    const log = lastLog();
    assert.equal(log?.attempts, 3);
    assert.equal(log?.response_flags, '-');
    const stats = (await admin(client, '/stats/prometheus')).body;
    assert.equal(metricValue(stats, 'envoy_cluster_upstream_rq_retry', { cluster_name: clusterOf('flaky') }), 2);
    assert.equal(
      metricValue(stats, 'envoy_cluster_upstream_rq_retry_success', { cluster_name: clusterOf('flaky') }),
      1,
    );
  });

  test('when retries run out the last 503 reaches the client with flag URX', async () => {
    failFirst(100, 503);
    const seen = app.requests.length;
    const r = await send(client, HOST);
    assert.equal(r.status, 503);
    assert.equal(app.requests.length - seen, 4, '1 attempt + 3 retries');
    assert.equal(lastLog()?.response_flags, 'URX');
  });

  test('gateway-error does not retry a 500; retriable-status-codes and retriable-4xx do retry their codes', async () => {
    virtualService(`  - match: [{ uri: { prefix: /gw } }]
    route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: gateway-error }
  - match: [{ uri: { prefix: /teapot } }]
    route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: "418" }
  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: retriable-4xx }`);
    await waitForRoute(client, (r) => r.includes('retriable-4xx'), 'retry policies');
    failFirst(1, 500);
    let seen = app.requests.length;
    assert.equal((await send(client, HOST, { path: '/gw' })).status, 500);
    assert.equal(app.requests.length - seen, 1);
    failFirst(1, 418);
    seen = app.requests.length;
    assert.equal((await send(client, HOST, { path: '/teapot' })).status, 200);
    assert.equal(app.requests.length - seen, 2);
    failFirst(1, 409);
    seen = app.requests.length;
    assert.equal((await send(client, HOST, { path: '/other' })).status, 200);
    assert.equal(app.requests.length - seen, 2);
  });

  test('an app that resets the connection: its sidecar answers 503 (UC), which retryOn 5xx retries', async () => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: 5xx }`);
    await waitForRoute(client, (r) => r.includes('"retry_on":"5xx"') && !r.includes('retriable-4xx'), 'retry on 5xx');
    const start = app.requests.length;
    app.handler = (_r, res, a) => (a.requests.length - start === 1 ? res.socket?.destroy() : a.ok(res));
    const r = await send(client, HOST);
    assert.equal(r.status, 200, r.body);
    assert.equal(lastLog()?.attempts, 2);
    assert.ok(accessLogs(mesh, 'flaky-0').some((l) => l.response_flags === 'UC' && l.response_code === 503));
  });

  test('perTryTimeout: a stuck first attempt is abandoned and the retry answers', async () => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: 5xx, perTryTimeout: 300ms }`);
    await waitForRoute(client, (r) => r.includes('"per_try_timeout"'), 'per-try timeout');
    const start = app.requests.length;
    app.handler = (_r, res, a) => (a.requests.length - start === 1 ? a.hold(res) : a.ok(res));
    const r = await send(client, HOST);
    assert.equal(r.status, 200);
    assert.ok(r.ms >= 300, `took ${r.ms} ms, at least the per-try timeout`);
    assert.equal(lastLog()?.attempts, 2);
    app.release();
    const stats = (await admin(client, '/stats/prometheus')).body;
    assert.ok(
      metricValue(stats, 'envoy_cluster_upstream_rq_per_try_timeout', { cluster_name: clusterOf('flaky') }) >= 1,
    );
  });

  test('retryOn reset: when the upstream sidecar drops the connection mid-request, the retry goes to another host', async () => {
    apply(
      mesh,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: pair, namespace: default }
spec:
  hosts: [pair]
  http:
  - route: [{ destination: { host: pair } }]
    retries: { attempts: 2, retryOn: reset }`,
    );
    await waitForRoute(client, (r) => r.includes('"retry_on":"reset"'), 'retry on reset');
    for (const a of pair) a.handler = (_r, res, x) => x.hold(res);
    const reply = send(client, 'pair:8080');
    await waitUntil(() => pair.some((a) => a.held.length > 0), 10_000, 'first attempt at an app');
    const victim = pair.findIndex((a) => a.held.length > 0);
    const other = pair[1 - victim];
    assert.ok(other);
    other.handler = (_r, res, x) => x.ok(res);
    mesh.pods.find((p) => p.name === `pair-${victim}`)?.sidecar.listeners.close();
    const r = await reply;
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).pod, `pair-${1 - victim}`);
    const log = accessLogs(mesh, 'client-0').at(-1);
    assert.equal(log?.attempts, 2);
    pair[victim]?.release();
    killed = victim;
  });

  test('connect-failure: with one endpoint refusing connections every request is retried on the other', async () => {
    remove(mesh, 'VirtualService/default/pair');
    await waitForRoute(client, (r) => !r.includes('"retry_on":"reset"'), 'default retry policy');
    const results: string[] = [];
    for (let i = 0; i < 20; i++) results.push(podOf(await send(client, 'pair:8080')));
    assert.deepEqual(
      [...new Set(results)],
      [`pair-${1 - killed}`],
      'Istio default retry policy covers connect-failure',
    );
    const logs = accessLogs(mesh, 'client-0').slice(-20);
    assert.ok(
      logs.some((l) => l.attempts === 2 && l.response_flags === '-'),
      'some requests needed a retry',
    );
  });
});

describe('retry budget and max retries (circuit breakers)', () => {
  /** burst sends 4 requests whose first attempts all fail together, then counts retries in flight at the app. */
  async function burst(): Promise<{ statuses: number[]; flags: string[]; maxRetriesInFlight: number }> {
    let firstAttempts: ServerResponse[] = [];
    let retriesInFlight = 0;
    let maxRetriesInFlight = 0;
    app.handler = (req, res, a) => {
      if (req.attempt <= 1) {
        firstAttempts.push(res);
        if (firstAttempts.length === 4) {
          for (const r of firstAttempts) a.ok(r, 503);
          firstAttempts = [];
        }
        return;
      }
      retriesInFlight++;
      maxRetriesInFlight = Math.max(maxRetriesInFlight, retriesInFlight);
      setTimeout(() => {
        retriesInFlight--;
        a.ok(res, 503);
      }, 200);
    };
    const before = accessLogs(mesh, 'client-0').length;
    const replies = await Promise.all([0, 1, 2, 3].map(() => send(client, HOST)));
    await waitUntil(() => accessLogs(mesh, 'client-0').length >= before + 4, 10_000, 'access logs');
    const flags = accessLogs(mesh, 'client-0')
      .slice(before)
      .map((l) => l.response_flags);
    return { statuses: replies.map((r) => r.status), flags, maxRetriesInFlight };
  }

  test('retryBudget {percent: 0, minRetryConcurrency: 1}: one retry at a time; the others get their 503 with flag UO', async () => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    retries: { attempts: 2, retryOn: 5xx }`);
    apply(
      mesh,
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: default }
spec:
  host: flaky
  trafficPolicy:
    retryBudget: { percent: 0, minRetryConcurrency: 1 }`,
    );
    await waitForCluster(client, clusterOf('flaky'), (c) => JSON.stringify(c).includes('retry_budget'));
    await waitForRoute(client, (r) => r.includes('"num_retries":{"value":2}'), 'two retries');
    const b = await burst();
    assert.deepEqual(b.statuses, [503, 503, 503, 503]);
    assert.equal(b.maxRetriesInFlight, 1);
    assert.ok(b.flags.filter((f) => f === 'UO').length >= 2, JSON.stringify(b.flags));
    const stats = (await admin(client, '/stats/prometheus')).body;
    assert.ok(
      metricValue(stats, 'envoy_cluster_upstream_rq_retry_overflow', { cluster_name: clusterOf('flaky') }) >= 2,
    );
  });

  test('connectionPool.http.maxRetries: 1 bounds concurrent retries the same way', async () => {
    apply(
      mesh,
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: default }
spec:
  host: flaky
  trafficPolicy:
    connectionPool: { http: { maxRetries: 1 } }`,
    );
    await waitForCluster(client, clusterOf('flaky'), (c) => JSON.stringify(c).includes('"max_retries":{"value":1}'));
    const b = await burst();
    assert.equal(b.maxRetriesInFlight, 1);
    assert.ok(b.flags.filter((f) => f === 'UO').length >= 2, JSON.stringify(b.flags));
  });
});

describe('timeouts', () => {
  test('a route timeout answers 504 with flag UT while the app is still working', async () => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    timeout: 500ms
    retries: { attempts: 0 }`);
    await waitForRoute(client, (r) => r.includes('"nanos":500000000'), 'route timeout');
    app.handler = (_r, res, a) => a.hold(res);
    const r = await send(client, HOST);
    app.release();
    assert.equal(r.status, 504);
    assert.equal(r.body, 'upstream request timeout');
    assert.ok(r.ms >= 500, `took ${r.ms} ms`);
    const log = lastLog();
    assert.equal(log?.response_flags, 'UT');
    assert.equal(log?.response_code_details, 'upstream_response_timeout');
    const stats = (await admin(client, '/stats/prometheus')).body;
    assert.ok(metricValue(stats, 'istio_requests_total', { response_code: '504', response_flags: 'UT' }) >= 1);
  });
});

describe('fault injection', () => {
  test('a 50% fixed delay delays about half the requests, each by at least the delay (flag DI)', async (t) => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    fault: { delay: { fixedDelay: 150ms, percentage: { value: 50 } } }`);
    await waitForRoute(client, (r) => r.includes('envoy.filters.http.fault'), 'fault delay');
    app.handler = (_r, res, a) => a.ok(res);
    const n = 80;
    const before = accessLogs(mesh, 'client-0').length;
    const replies = [];
    for (let i = 0; i < n; i++) replies.push(await send(client, HOST));
    await waitUntil(() => accessLogs(mesh, 'client-0').length >= before + n, 10_000, 'access logs');
    const logs = accessLogs(mesh, 'client-0').slice(before);
    const delayed = logs.filter((l) => l.response_flags === 'DI');
    const [lo, hi] = binomialBounds(n, 0.5);
    t.diagnostic(`delayed ${delayed.length} of ${n} (bounds ${lo}..${hi})`);
    assert.ok(delayed.length >= lo && delayed.length <= hi, `${delayed.length} delayed of ${n}`);
    for (const l of delayed) assert.ok(l.duration >= 150, `a delayed request took ${l.duration} ms`);
    assert.ok(replies.every((r) => r.status === 200));
  });

  test('a 30% abort answers the configured status to about 30% of requests (flag FI), never reaching the app', async (t) => {
    virtualService(`  - route: [{ destination: { host: flaky } }]
    fault: { abort: { httpStatus: 503, percentage: { value: 30 } } }`);
    await waitForRoute(client, (r) => r.includes('"http_status":503'), 'fault abort');
    const n = 200;
    const seen = app.requests.length;
    let aborted = 0;
    for (let i = 0; i < n; i++) {
      const r = await send(client, HOST);
      if (r.status === 503) {
        assert.equal(r.body, 'fault filter abort');
        aborted++;
      } else assert.equal(r.status, 200);
    }
    const [lo, hi] = binomialBounds(n, 0.3);
    t.diagnostic(`aborted ${aborted} of ${n} (bounds ${lo}..${hi})`);
    assert.ok(aborted >= lo && aborted <= hi, `${aborted} aborted of ${n}`);
    assert.equal(app.requests.length - seen, n - aborted);
  });
});
