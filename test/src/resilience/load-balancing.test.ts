/**
 * Load balancing through real sidecars: ROUND_ROBIN, RANDOM, LEAST_REQUEST (power of two choices) and consistent
 * hashing (ring hash by header, cookie and source IP; Maglev by query parameter).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { binomialBounds } from '@fedmesh/ctl';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  apply,
  clusterOf,
  closeAll,
  podOf,
  send,
  service,
  startMesh,
  tally,
  waitForCluster,
  waitForEndpoints,
  waitForRoute,
  type Reply,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
const apps: TestApp[] = [];
let lr: TestApp[] = [];

before(async () => {
  mesh = await startMesh(service('lb') + service('lr'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  for (let i = 0; i < 3; i++) apps.push((await addApp(mesh, 'lb', i)).app);
  lr = [(await addApp(mesh, 'lr', 0)).app, (await addApp(mesh, 'lr', 1)).app];
  await waitForEndpoints(client, 'lb', 3);
  await waitForEndpoints(client, 'lr', 2);
});

after(async () => {
  await closeAll(mesh, [...apps, ...lr]);
});

function loadBalancer(host: string, lb: string): void {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${host}, namespace: default }
spec:
  host: ${host}
  trafficPolicy:
    loadBalancer: ${lb}`,
  );
}

async function pods(n: number, headers: Record<string, string> = {}, path = '/'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(podOf(await send(client, 'lb:8080', { headers, path })));
  return out;
}

describe('simple policies', () => {
  test('ROUND_ROBIN: 30 requests land exactly 10 on each of 3 endpoints, in turn', async () => {
    loadBalancer('lb', '{ simple: ROUND_ROBIN }');
    await waitForCluster(client, clusterOf('lb'), (c) => c.lb_policy === 'ROUND_ROBIN');
    const seq = await pods(30);
    assert.deepEqual(tally(seq), { 'lb-0': 10, 'lb-1': 10, 'lb-2': 10 });
    for (let i = 3; i < 30; i++) assert.equal(seq[i], seq[i - 3], 'a fixed rotation');
  });

  test('RANDOM: each endpoint gets about a third, not in a fixed rotation', async (t) => {
    loadBalancer('lb', '{ simple: RANDOM }');
    await waitForCluster(client, clusterOf('lb'), (c) => c.lb_policy === 'RANDOM');
    const n = 150;
    const seq = await pods(n);
    const [lo, hi] = binomialBounds(n, 1 / 3);
    t.diagnostic(`RANDOM: ${JSON.stringify(tally(seq))} (bounds ${lo}..${hi})`);
    for (const [pod, k] of Object.entries(tally(seq))) assert.ok(k >= lo && k <= hi, `${pod}: ${k}`);
    assert.ok(
      seq.some((p, i) => i > 0 && p === seq[i - 1]),
      'a random sequence repeats a host somewhere',
    );
  });

  test('LEAST_REQUEST: an endpoint holding requests gets about a quarter of new ones (P2C), not half', async (t) => {
    loadBalancer('lr', '{ simple: LEAST_REQUEST }');
    await waitForCluster(client, clusterOf('lr'), (c) => c.lb_policy === 'LEAST_REQUEST');
    const slow = lr[0] as TestApp;
    slow.handler = (_r, res, a) => a.hold(res);
    const pending: Promise<Reply>[] = [];
    /** dispatch sends one request and waits until it is answered by `fast` or held by `slow`. */
    async function dispatch(): Promise<'slow' | 'fast'> {
      const held = slow.held.length;
      const p = send(client, 'lr:8080');
      pending.push(p);
      let done = false;
      void p.then(() => (done = true));
      await waitUntil(() => done || slow.held.length > held, 10_000, 'request dispatched');
      return slow.held.length > held ? 'slow' : 'fast';
    }
    // Warm up until the slow endpoint holds one request, so that every decision below compares 1+ with 0.
    for (let i = 0; i < 40 && slow.held.length === 0; i++) await dispatch();
    assert.ok(slow.held.length > 0);
    const n = 80;
    let toSlow = 0;
    for (let i = 0; i < n; i++) if ((await dispatch()) === 'slow') toSlow++;
    slow.release();
    await Promise.all(pending);
    // Two samples with replacement: the busy endpoint wins only when both samples are it, p = 1/4 (RR would be 1/2).
    const [lo, hi] = binomialBounds(n, 0.25);
    t.diagnostic(`LEAST_REQUEST: ${toSlow} of ${n} to the busy endpoint (bounds ${lo}..${hi})`);
    assert.ok(toSlow >= lo && toSlow <= hi, `${toSlow} of ${n} to the busy endpoint`);
    slow.handler = (_r, res, a) => a.ok(res);
  });
});

describe('consistent hashing', () => {
  test('ring hash by header: each user sticks to one endpoint, users spread over several', async () => {
    loadBalancer('lb', '{ consistentHash: { httpHeaderName: x-user } }');
    await waitForCluster(client, clusterOf('lb'), (c) => c.lb_policy === 'RING_HASH');
    await waitForRoute(client, (r) => r.includes('"header_name":"x-user"'), 'hash policy');
    const where = new Set<string>();
    for (let u = 0; u < 20; u++) {
      const seen = new Set(await pods(4, { 'x-user': `user-${u}` }));
      assert.equal(seen.size, 1, `user-${u} went to ${[...seen].join(', ')}`);
      where.add([...seen][0] ?? '');
    }
    assert.ok(where.size >= 2, 'users spread over endpoints');
  });

  test('ring hash by cookie with a ttl: the proxy sets the cookie, and requests carrying it stick', async () => {
    loadBalancer('lb', '{ consistentHash: { httpCookie: { name: sticky, ttl: 60s, path: / } } }');
    await waitForRoute(client, (r) => r.includes('"cookie":{"name":"sticky"'), 'cookie hash policy');
    const where = new Set<string>();
    for (let c = 0; c < 10; c++) {
      const first = await send(client, 'lb:8080');
      const setCookie = first.headers['set-cookie']?.[0] ?? '';
      const m = /^sticky="([0-9a-f]+)"; Max-Age=60; Path=\/; HttpOnly$/.exec(setCookie);
      assert.ok(m, setCookie);
      const cookie = `sticky="${m[1]}"`;
      const seen = new Set(await pods(4, { cookie }));
      assert.equal(seen.size, 1);
      where.add([...seen][0] ?? '');
      const again = await send(client, 'lb:8080', { headers: { cookie } });
      assert.equal(again.headers['set-cookie'], undefined, 'no new cookie once the client has one');
    }
    assert.ok(where.size >= 2, 'clients spread over endpoints');
  });

  test('ring hash by source IP: a client address always lands on one endpoint', async () => {
    loadBalancer('lb', '{ consistentHash: { useSourceIp: true } }');
    await waitForRoute(client, (r) => r.includes('"source_ip":true'), 'source IP hash policy');
    const where = new Set<string>();
    for (let a = 0; a < 12; a++) {
      const localAddress = `127.0.${mesh.subnet}.${200 + a}`;
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(podOf(await send(client, 'lb:8080', { localAddress })));
      assert.equal(seen.size, 1, `${localAddress} went to ${[...seen].join(', ')}`);
      where.add([...seen][0] ?? '');
    }
    assert.ok(where.size >= 2, 'source addresses spread over endpoints');
  });

  test('Maglev by query parameter: each user sticks, users spread', async () => {
    loadBalancer('lb', '{ consistentHash: { httpQueryParameterName: user, maglev: { tableSize: 65537 } } }');
    await waitForCluster(client, clusterOf('lb'), (c) => c.lb_policy === 'MAGLEV');
    await waitForRoute(client, (r) => r.includes('"query_parameter":{"name":"user"}'), 'query hash policy');
    const where = new Set<string>();
    for (let u = 0; u < 20; u++) {
      const seen = new Set(await pods(4, {}, `/items?user=u${u}&page=${u % 3}`));
      assert.equal(seen.size, 1);
      where.add([...seen][0] ?? '');
    }
    assert.ok(where.size >= 2);
  });
});
