import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { binomialBounds, readState, type MeshState } from '@fedmesh/ctl';
import { fedmesh } from './cli.js';
import { FIXTURES, get, waitUntil } from './harness.js';

// `fedmesh up` on Bookinfo (all subsets), then Istio's other routing samples through `fedmesh apply`.
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-cli-'));
const net = (f: string): string => path.join(FIXTURES, 'bookinfo/networking', f);
let state: MeshState;

before(async () => {
  const up = await fedmesh([
    'up',
    '-f',
    path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
    net('destination-rule-all.yaml'),
    '--state-dir',
    stateDir,
  ]);
  assert.equal(up.code, 0, up.stderr);
  state = readState(stateDir);
});

after(async () => {
  const down = await fedmesh(['down', '--state-dir', stateDir]);
  fs.rmSync(stateDir, { recursive: true, force: true });
  assert.equal(down.code, 0, down.stderr);
});

async function versions(
  n: number,
  host = 'reviews:9080',
  headers: Record<string, string> = {},
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await get(state.sleep.outbound, host, '/', headers);
    const key = r.status === 200 ? (JSON.parse(r.body) as { version: string }).version : `status-${r.status}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

async function applyAndWait(file: string, settled: () => Promise<boolean>): Promise<void> {
  const res = await fedmesh(['apply', '-f', file, '--state-dir', stateDir]);
  assert.equal(res.code, 0, res.stderr);
  await waitUntil(settled, 10_000, `${path.basename(file)} in effect`);
}

test('up writes state.json with istiod, every Bookinfo pod and the sleep client', () => {
  assert.deepEqual(
    state.pods.map((p) => p.name),
    ['details-v1-0', 'productpage-v1-0', 'ratings-v1-0', 'reviews-v1-0', 'reviews-v2-0', 'reviews-v3-0', 'sleep-0'],
  );
  for (const p of state.pods) assert.match(p.address, /^127\.0\.\d+\.\d+$/);
  assert.equal(
    state.pods.find((p) => p.name === 'reviews-v2-0')?.spiffeId,
    'spiffe://cluster.local/ns/default/sa/bookinfo-reviews',
  );
});

test('without a VirtualService requests round-robin across every reviews pod', async () => {
  const v = await versions(90);
  assert.deepEqual(Object.keys(v).sort(), ['v1', 'v2', 'v3']);
  for (const k of ['v1', 'v2', 'v3']) assert.ok((v[k] ?? 0) >= 20, JSON.stringify(v));
});

test('an absolute-form proxy request (curl -x style) is routed', async () => {
  const [host, port] = state.sleep.outbound.split(':');
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      { host, port: Number(port), path: 'http://details:9080/details/0', agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 200);
});

test('virtual-service-all-v1.yaml sends every request to v1', async () => {
  await applyAndWait(net('virtual-service-all-v1.yaml'), async () => (await versions(10)).v1 === 10);
  assert.deepEqual(await versions(50), { v1: 50 });
});

test('virtual-service-reviews-80-20.yaml splits 80:20 within binomial bounds', async () => {
  await applyAndWait(net('virtual-service-reviews-80-20.yaml'), async () => ((await versions(20)).v2 ?? 0) > 0);
  const n = 300;
  const v = await versions(n);
  const [lo, hi] = binomialBounds(n, 0.8);
  assert.ok((v.v1 ?? 0) >= lo && (v.v1 ?? 0) <= hi && (v.v1 ?? 0) + (v.v2 ?? 0) === n, JSON.stringify(v));
});

test('virtual-service-reviews-v3.yaml and -50-v3.yaml route to v3 and split v1/v3', async () => {
  await applyAndWait(net('virtual-service-reviews-v3.yaml'), async () => (await versions(10)).v3 === 10);
  await applyAndWait(net('virtual-service-reviews-50-v3.yaml'), async () => ((await versions(20)).v1 ?? 0) > 0);
  const v = await versions(200);
  const [lo, hi] = binomialBounds(200, 0.5);
  assert.ok((v.v3 ?? 0) >= lo && (v.v3 ?? 0) <= hi && (v.v1 ?? 0) + (v.v3 ?? 0) === 200, JSON.stringify(v));
});

test('virtual-service-reviews-test-v2.yaml routes end-user: jason to v2 by header match', async () => {
  await applyAndWait(
    net('virtual-service-reviews-test-v2.yaml'),
    async () => (await versions(5, 'reviews:9080', { 'end-user': 'jason' })).v2 === 5,
  );
  assert.deepEqual(await versions(30, 'reviews:9080', { 'end-user': 'jason' }), { v2: 30 });
  assert.deepEqual(await versions(30), { v1: 30 });
});

test('fault-injection-details-v1.yaml aborts details calls with 555', async () => {
  await applyAndWait(
    net('fault-injection-details-v1.yaml'),
    async () => (await get(state.sleep.outbound, 'details:9080')).status === 555,
  );
  assert.equal((await get(state.sleep.outbound, 'details:9080', '/details/1')).status, 555);
});

test('a malformed VirtualService is refused with its field path and the previous routing keeps serving', async () => {
  const bad = path.join(stateDir, 'bad-vs.yaml');
  fs.writeFileSync(
    bad,
    [
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata:',
      '  name: reviews',
      'spec:',
      '  hosts: [reviews]',
      '  http:',
      '  - route:',
      '    - destination: {host: reviews, subset: v3}',
      '      weight: 150',
      '',
    ].join('\n'),
  );
  const res = await fedmesh(['apply', '-f', bad, '--state-dir', stateDir]);
  assert.equal(res.code, 1);
  assert.match(res.stderr, /bad-vs\.yaml\[0\] VirtualService default\/reviews: spec\.http\[0\]\.route\[0\]\.weight: /);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await versions(20, 'reviews:9080', { 'end-user': 'jason' }), { v2: 20 });
  assert.deepEqual(await versions(20), { v1: 20 });
});

test('proxy-status shows every proxy with each xDS type SYNCED', async () => {
  await waitUntil(
    async () => {
      const r = await fedmesh(['proxy-status', '--state-dir', stateDir]);
      return (
        r.code === 0 &&
        r.stdout
          .trim()
          .split('\n')
          .slice(1)
          .filter((l) => (l.match(/SYNCED/g) ?? []).length === 5).length === 7
      );
    },
    15_000,
    'all proxies SYNCED',
  );
  const r = await fedmesh(['proxy-status', '--state-dir', stateDir]);
  assert.match(r.stdout, /^NAME\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS\s+ISTIOD/);
  assert.match(r.stdout, /reviews-v2-0\.default\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED/);
});

test('proxy-config shows clusters, endpoints, listeners, routes and secrets of one proxy', async () => {
  const clusters = await fedmesh(['proxy-config', 'cluster', 'productpage-v1-0', '--state-dir', stateDir]);
  assert.equal(clusters.code, 0, clusters.stderr);
  assert.match(clusters.stdout, /reviews\.default\.svc\.cluster\.local\s+9080\s+v2\s+outbound\s+EDS/);
  const endpoints = await fedmesh(['proxy-config', 'endpoint', 'productpage-v1-0', '--state-dir', stateDir]);
  const v3 = state.pods.find((p) => p.name === 'reviews-v3-0');
  assert.match(
    endpoints.stdout,
    new RegExp(`${v3?.address.replace(/\./g, '\\.')}:9080\\s+HEALTHY\\s+outbound\\|9080\\|v3\\|reviews`),
  );
  const listeners = await fedmesh(['proxy-config', 'listener', 'reviews-v1-0.default', '--state-dir', stateDir]);
  assert.match(
    listeners.stdout,
    /virtualInbound\s+\S+\s+15006\s+.*outbound_\.9080_\._\.reviews\.default\.svc\.cluster\.local/,
  );
  const secrets = await fedmesh(['proxy-config', 'secret', 'reviews-v1-0', '--state-dir', stateDir]);
  assert.match(
    secrets.stdout,
    /default\s+Cert Chain\s+ACTIVE\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/bookinfo-reviews/,
  );
  const json = await fedmesh(['proxy-config', 'route', 'sleep-0', '-o', 'json', '--state-dir', stateDir]);
  assert.ok(Array.isArray(JSON.parse(json.stdout)));
});

test('analyze reports Istio codes and exits non-zero on errors', async () => {
  const bad = path.join(stateDir, 'analyze-bad.yaml');
  fs.writeFileSync(
    bad,
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n',
  );
  const r = await fedmesh([
    'analyze',
    '-f',
    path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
    net('destination-rule-all.yaml'),
    bad,
  ]);
  assert.equal(r.code, 79);
  assert.match(
    r.stdout,
    /Error \[IST0101\] \(VirtualService default\/x analyze-bad\.yaml\) Referenced host\+subset in destinationrule not found: "reviews\+v9"/,
  );
  const ok = await fedmesh([
    'analyze',
    '-f',
    path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
    net('destination-rule-all.yaml'),
    net('virtual-service-all-v1.yaml'),
  ]);
  assert.equal(ok.code, 0, ok.stdout);
});
