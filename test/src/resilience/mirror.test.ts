/**
 * Mirroring (`mirror`, `mirrors`, `mirrorPercentage`) through real sidecars: a fire-and-forget copy reaches the
 * mirror service with `-shadow` appended to the Host, and its response never affects the main request.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { binomialBounds } from '@fedmesh/ctl';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  apply,
  closeAll,
  podOf,
  send,
  service,
  startMesh,
  waitForEndpoints,
  waitForRoute,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let main: TestApp;
let shadow: TestApp;
let shadow2: TestApp;

before(async () => {
  mesh = await startMesh(service('main') + service('shadow') + service('shadow2'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  main = (await addApp(mesh, 'main', 0)).app;
  shadow = (await addApp(mesh, 'shadow', 0)).app;
  shadow2 = (await addApp(mesh, 'shadow2', 0)).app;
  for (const svc of ['main', 'shadow', 'shadow2']) await waitForEndpoints(client, svc, 1);
});

after(async () => {
  await closeAll(mesh, [main, shadow, shadow2]);
});

function mirrorVs(spec: string): void {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: main, namespace: default }
spec:
  hosts: [main]
  http:
  - route: [{ destination: { host: main } }]
${spec}`,
  );
}

test('a mirrored POST reaches the mirror with Host main-shadow and the same body, while the main request completes without waiting for it', async () => {
  mirrorVs(`    mirror: { host: shadow }
    mirrorPercentage: { value: 100 }`);
  await waitForRoute(client, (r) => r.includes('request_mirror_policies'), 'mirror policy');
  shadow.handler = (_r, res, a) => a.hold(res);
  const n = 5;
  for (let i = 0; i < n; i++) {
    const r = await send(client, 'main:8080', { method: 'POST', path: `/orders/${i}`, body: `order ${i}` });
    assert.equal(r.status, 200);
    assert.equal(podOf(r), 'main-0');
  }
  // Every main response arrived while the mirror was still holding its copies: nothing waited for them.
  await waitUntil(() => shadow.held.length === n, 10_000, 'mirrored copies');
  assert.equal(shadow.requests.length, n);
  for (let i = 0; i < n; i++) {
    const m = shadow.requests[i];
    assert.equal(m?.method, 'POST');
    assert.equal(m?.url, `/orders/${i}`);
    assert.equal(m?.body, `order ${i}`);
    assert.equal(m?.headers.host, 'main-shadow:8080');
  }
  assert.equal(main.requests.at(-1)?.headers.host, 'main:8080');
  shadow.release();
});

test('a failing mirror (resets, 500s) never fails the main request', async () => {
  let k = 0;
  shadow.handler = (_r, res, a) => (k++ % 2 === 0 ? res.socket?.destroy() : a.ok(res, 500));
  const statuses = [];
  for (let i = 0; i < 20; i++) statuses.push((await send(client, 'main:8080')).status);
  assert.deepEqual([...new Set(statuses)], [200]);
  await waitUntil(() => k >= 20, 10_000, 'mirror attempts');
});

test('mirrorPercentage 25 mirrors about a quarter of requests', async (t) => {
  shadow.handler = (_r, res, a) => a.ok(res);
  mirrorVs(`    mirror: { host: shadow }
    mirrorPercentage: { value: 25 }`);
  await waitForRoute(client, (r) => r.includes('"numerator":250000'), 'mirror 25%');
  const seen = shadow.requests.length;
  const n = 200;
  for (let i = 0; i < n; i++) assert.equal((await send(client, 'main:8080')).status, 200);
  await new Promise((r) => setTimeout(r, 500));
  const mirrored = shadow.requests.length - seen;
  const [lo, hi] = binomialBounds(n, 0.25);
  t.diagnostic(`mirrored ${mirrored} of ${n} (bounds ${lo}..${hi})`);
  assert.ok(mirrored >= lo && mirrored <= hi, `${mirrored} of ${n} mirrored`);
});

test('mirrors: several mirror destinations, each with its own percentage', async (t) => {
  mirrorVs(`    mirrors:
    - destination: { host: shadow }
      percentage: { value: 100 }
    - destination: { host: shadow2 }
      percentage: { value: 50 }`);
  await waitForRoute(client, (r) => r.includes('"numerator":500000'), 'two mirrors');
  const [s1, s2] = [shadow.requests.length, shadow2.requests.length];
  const n = 100;
  for (let i = 0; i < n; i++) assert.equal((await send(client, 'main:8080')).status, 200);
  await waitUntil(() => shadow.requests.length - s1 === n, 10_000, 'every request mirrored to shadow');
  await new Promise((r) => setTimeout(r, 500));
  const m2 = shadow2.requests.length - s2;
  const [lo, hi] = binomialBounds(n, 0.5);
  t.diagnostic(`shadow got ${n} of ${n}, shadow2 ${m2} of ${n} (bounds ${lo}..${hi})`);
  assert.ok(m2 >= lo && m2 <= hi, `${m2} of ${n} mirrored to shadow2`);
  assert.equal(shadow2.requests.at(-1)?.headers.host, 'main-shadow:8080');
});
