/**
 * Outlier detection, locality failover and weights, and the panic threshold, through real sidecars. The client
 * runs in region r1, zone z1; istiod computes endpoint priorities relative to it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { binomialBounds } from '@fedmesh/ctl';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  admin,
  apply,
  clusterOf,
  closeAll,
  logLines,
  metricValue,
  podOf,
  send,
  service,
  startMesh,
  tally,
  waitForCluster,
  waitForEndpoints,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
const apps = new Map<string, TestApp>();

const R1Z1 = { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z1' };
const R1Z2 = { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z2' };
const R2Z1 = { 'topology.kubernetes.io/region': 'r2', 'topology.kubernetes.io/zone': 'z1' };

before(async () => {
  mesh = await startMesh(service('od') + service('loc') + service('panic'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client', ...R1Z1 } });
  for (const [svc, i, labels] of [
    ['od', 0, {}],
    ['od', 1, {}],
    ['loc', 0, R1Z1],
    ['loc', 1, R1Z2],
    ['loc', 2, R2Z1],
    ['panic', 0, {}],
    ['panic', 1, {}],
    ['panic', 2, {}],
  ] as const) {
    const { app } = await addApp(mesh, svc, i, labels);
    apps.set(app.name, app);
  }
  await waitForEndpoints(client, 'od', 2);
  await waitForEndpoints(client, 'loc', 3);
  await waitForEndpoints(client, 'panic', 3);
});

after(async () => {
  await closeAll(mesh, [...apps.values()]);
});

function app(name: string): TestApp {
  const a = apps.get(name);
  assert.ok(a, name);
  return a;
}

function failing(name: string, status = 500): void {
  app(name).handler = (_r, res, a) => a.ok(res, status);
}

function healthy(name: string): void {
  app(name).handler = (_r, res, a) => a.ok(res);
}

function destinationRule(host: string, trafficPolicy: string): void {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
${trafficPolicy
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}`,
  );
}

async function hits(host: string, n: number): Promise<Record<string, number>> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(podOf(await send(client, `${host}:8080`)));
  return tally(out);
}

async function healthFlags(host: string): Promise<string> {
  return (await admin(client, '/clusters')).body
    .split('\n')
    .filter((l) => l.startsWith(clusterOf(host)) && l.includes('::health_flags::'))
    .join('\n');
}

describe('outlier detection', () => {
  test('a failing endpoint is ejected after consecutive 5xx and returns after baseEjectionTime once healthy', async (t) => {
    destinationRule(
      'od',
      // A long interval against a short base ejection: a returned host that fails again is re-ejected well before
      // the next sweep could decay its multiplier, however slow the machine.
      `outlierDetection: { consecutive5xxErrors: 2, interval: 5s, baseEjectionTime: 1s, maxEjectionPercent: 100 }`,
    );
    await waitForCluster(client, clusterOf('od'), (c) => c.outlier_detection !== undefined);
    failing('od-1');
    let failures = 0;
    await waitUntil(
      async () => {
        if ((await send(client, 'od:8080')).status === 500) failures++;
        return (await healthFlags('od')).includes('/failed_outlier_check');
      },
      15_000,
      'od-1 ejected',
    );
    assert.equal(failures, 2, 'ejected at the second consecutive 5xx');
    const ejectedAt = Date.now();
    assert.match(
      await healthFlags('od'),
      /od\.default\.svc\.cluster\.local::127\.0\.\d+\.\d+:9090::health_flags::\/failed_outlier_check/,
    );
    assert.deepEqual(await hits('od', 20), { 'od-0': 20 }, 'no traffic reaches the ejected endpoint');
    healthy('od-1');
    await waitUntil(async () => ((await hits('od', 4))['od-1'] ?? 0) > 0, 20_000, 'od-1 back in rotation');
    const downMs = Date.now() - ejectedAt;
    assert.ok(downMs >= 900, `back after ${downMs} ms, not before its ejection time`);
    t.diagnostic(`od-1 ejected after 2 consecutive 500s, back in rotation ${downMs} ms later`);
    assert.ok(!(await healthFlags('od')).includes('failed_outlier_check'));
    const stats = (await admin(client, '/stats/prometheus')).body;
    assert.ok(
      metricValue(stats, 'envoy_cluster_outlier_detection_ejections_enforced_total', {
        cluster_name: clusterOf('od'),
      }) >= 1,
    );
  });

  test('a host that keeps failing is ejected for baseEjectionTime × its ejection count, growing by 1 s each time', async (t) => {
    failing('od-1');
    const start = logLines(mesh, 'client-0', 'host ejected').length;
    const deadline = Date.now() + 30_000;
    // Keep traffic flowing: each time od-1 returns it fails again at once.
    while (Date.now() < deadline && logLines(mesh, 'client-0', 'host ejected').length < start + 2) {
      await send(client, 'od:8080');
      await new Promise((r) => setTimeout(r, 20));
    }
    const ejections = logLines(mesh, 'client-0', 'host ejected').slice(start);
    assert.ok(ejections.length >= 2, 'ejected twice');
    const returned = logLines(mesh, 'client-0', 'host returned');
    // Each ejection lasts one baseEjectionTime longer than the one before (the multiplier only decays while the
    // host stays healthy, so it may not start at 1 right after the previous test).
    const [d1, d2] = ejections.slice(0, 2).map((e) => e.durationMs as number);
    assert.ok(d1 !== undefined && d1 % 1000 === 0 && d2 === d1 + 1000, `ejection durations ${d1}, ${d2}`);
    t.diagnostic(`consecutive ejections lasted ${d1} ms then ${d2} ms`);
    const second = ejections[1] as { time: number; host: string };
    const back = returned.find((r) => (r.time as number) > (ejections[0] as { time: number }).time);
    assert.ok(back && second.time >= (back.time as number), 'ejected again only after returning');
    healthy('od-1');
  });
});

describe('locality load balancing (client in r1/z1)', () => {
  test('failover: traffic stays in the same zone, then moves to the same region, then to another region', async () => {
    destinationRule(
      'loc',
      `outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 }`,
    );
    await waitForCluster(client, clusterOf('loc'), (c) => c.outlier_detection !== undefined);
    await waitUntil(
      () => client.sidecar.clusters.get(clusterOf('loc'))?.endpoints.some((e) => e.priority === 2) ?? false,
      20_000,
      'priorities in EDS',
    );
    assert.deepEqual(await hits('loc', 20), { 'loc-0': 20 }, 'same zone first');
    failing('loc-0', 503);
    await hits('loc', 3);
    assert.deepEqual(await hits('loc', 20), { 'loc-1': 20 }, 'then same region');
    failing('loc-1', 503);
    await hits('loc', 3);
    assert.deepEqual(await hits('loc', 20), { 'loc-2': 20 }, 'then another region');
    healthy('loc-0');
    healthy('loc-1');
  });

  test('distribute: 80% to r1/z1 and 20% to r2, none to r1/z2', async (t) => {
    destinationRule(
      'loc',
      `loadBalancer:
  localityLbSetting:
    distribute: [{ from: r1/z1/*, to: { 'r1/z1/*': 80, 'r2/*': 20 } }]`,
    );
    await waitForCluster(
      client,
      clusterOf('loc'),
      (c) => JSON.stringify(c).includes('locality_weighted_lb_config') && c.outlier_detection === undefined,
    );
    await waitUntil(
      () => client.sidecar.clusters.get(clusterOf('loc'))?.endpoints.length === 2,
      20_000,
      'r1/z2 left out of EDS',
    );
    const n = 200;
    const h = await hits('loc', n);
    t.diagnostic(`distribute 80/20: ${JSON.stringify(h)}`);
    const [lo, hi] = binomialBounds(n, 0.8);
    assert.equal(h['loc-1'], undefined, JSON.stringify(h));
    assert.ok(
      (h['loc-0'] ?? 0) >= lo && (h['loc-0'] ?? 0) <= hi && (h['loc-0'] ?? 0) + (h['loc-2'] ?? 0) === n,
      JSON.stringify(h),
    );
  });
});

describe('panic threshold', () => {
  async function ejectTwo(): Promise<void> {
    failing('panic-0');
    failing('panic-1');
    await waitUntil(
      async () => {
        await send(client, 'panic:8080');
        return ((await healthFlags('panic')).match(/failed_outlier_check/g) ?? []).length === 2;
      },
      20_000,
      'two of three ejected',
    );
  }

  test('Istio disables panic with outlier detection (minHealthPercent 0): all traffic to the one healthy host', async () => {
    destinationRule(
      'panic',
      `outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100 }`,
    );
    await waitForCluster(client, clusterOf('panic'), (c) => c.outlier_detection !== undefined);
    await ejectTwo();
    assert.deepEqual(await hits('panic', 30), { 'panic-2': 30 });
  });

  test('minHealthPercent 50: with one healthy host of three the priority panics and traffic spreads over all', async (t) => {
    healthy('panic-0');
    healthy('panic-1');
    destinationRule(
      'panic',
      `outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100, minHealthPercent: 50 }`,
    );
    await waitForCluster(client, clusterOf('panic'), (c) =>
      JSON.stringify(c).includes('"healthy_panic_threshold":{"value":50}'),
    );
    await ejectTwo();
    const h = await hits('panic', 30);
    t.diagnostic(`panic mode spread: ${JSON.stringify(h)}`);
    assert.ok((h['status-500'] ?? 0) > 0 && (h['panic-2'] ?? 0) > 0, JSON.stringify(h));
  });
});
