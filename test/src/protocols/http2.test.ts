/**
 * HTTP/2 through real sidecars: mTLS between proxies negotiates h2 by ALPN and multiplexes (100 concurrent requests
 * over at most 2 upstream TLS connections, where HTTP/1.1 needs one each); a peer that speaks only http/1.1 is still
 * served; h2c with prior knowledge on the outbound listener and h2 over TLS on the inbound one (curl, h2load); a
 * listener update's GOAWAY is survived without failed requests; a rapid-reset flood gets GOAWAY ENHANCE_YOUR_CALM
 * while other connections keep being served.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import type tls from 'node:tls';
import { after, before, test } from 'node:test';
import { parseResource } from '@fedmesh/api';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  accessLogs,
  addApp,
  apply,
  closeAll,
  remove,
  send,
  startMesh,
  waitForCluster,
  type TestApp,
} from '../resilience/helpers.js';
import { issueIdentity } from '../security/fixture.js';
import { counter, identityFiles, inboundHandshakes, outboundHandshakes, run, serviceYaml } from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let mux: { pod: TestPod; app: TestApp };
let legacy: { server: https.Server; versions: string[]; connections: number; ip: string };

const MUX_CLUSTER = 'outbound|8080||mux.default.svc.cluster.local';
const LEGACY_CLUSTER = 'outbound|8080||legacy.default.svc.cluster.local';

/** startLegacyPeer runs, where a pod's sidecar would accept mTLS, a server that speaks only HTTP/1.1 (ALPN http/1.1). */
async function startLegacyPeer(): Promise<typeof legacy> {
  const ip = `127.0.${mesh.subnet}.200`;
  mesh.istiod.store.apply(
    [
      parseResource({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'legacy-0', namespace: 'default', labels: { app: 'legacy' } },
        spec: { serviceAccountName: 'legacy', containers: [{ name: 'app', image: 'legacy' }] },
        status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
      }),
    ],
    'protocols-test',
  );
  const id = await issueIdentity(mesh, 'default', 'legacy');
  const out: typeof legacy = { server: undefined as unknown as https.Server, versions: [], connections: 0, ip };
  out.server = https.createServer(
    { cert: id.certPem, key: id.keyPem, ca: id.rootPem, requestCert: true, ALPNProtocols: ['http/1.1'] },
    (req, res) => {
      out.versions.push(req.httpVersion);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ pod: 'legacy-0' }));
    },
  );
  out.server.on('secureConnection', (s: tls.TLSSocket) => {
    out.connections++;
    assert.notEqual(s.alpnProtocol, 'h2');
  });
  await new Promise<void>((r) => out.server.listen(15006, ip, () => r()));
  return out;
}

before(async () => {
  mesh = await startMesh(serviceYaml('mux', 'http', 8080, 9090) + serviceYaml('legacy', 'http', 8080, 9090));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  mux = await addApp(mesh, 'mux', 0);
  legacy = await startLegacyPeer();
  await waitUntil(
    () =>
      (client.sidecar.clusters.get(MUX_CLUSTER)?.endpoints.length ?? 0) > 0 &&
      (client.sidecar.clusters.get(LEGACY_CLUSTER)?.endpoints.length ?? 0) > 0,
    20_000,
    'endpoints of mux and legacy at the client',
  );
});

after(async () => {
  legacy?.server.closeAllConnections();
  await new Promise<void>((r) => (legacy ? legacy.server.close(() => r()) : r()));
  await closeAll(mesh, mux ? [mux.app] : []);
});

/** holdUntil makes the app hold responses until `n` are open at once, then answer them all; returns the peak. */
function holdUntil(app: TestApp, n: number): { peak: () => number } {
  let peak = 0;
  app.handler = (_r, res, a) => {
    a.hold(res);
    peak = Math.max(peak, a.held.length);
    if (a.held.length >= n) a.release();
  };
  return { peak: () => peak };
}

test('100 concurrent requests between proxies share at most 2 mTLS connections (h2 by ALPN)', async (t) => {
  const cluster = client.sidecar.clusters.get(MUX_CLUSTER);
  assert.ok(cluster?.h2, 'the mTLS cluster negotiates HTTP/2 (auto_config)');
  assert.ok(cluster.config.transport_socket?.typed_config.common_tls_context.alpn_protocols?.includes('h2'));
  const out0 = await outboundHandshakes(client);
  const in0 = await inboundHandshakes(mux.pod);
  const hold = holdUntil(mux.app, 100);
  const r = await run(
    'h2load',
    ['-n', '100', '-c', '1', '-m', '100', '-H', ':authority: mux:8080', `http://${client.ip}:15001/mux`],
    90_000,
  );
  mux.app.handler = (_r, res, a) => a.ok(res);
  assert.match(r.stdout, /100 succeeded/, r.stdout + r.stderr);
  assert.equal(hold.peak(), 100, 'all 100 requests were at the app at the same time');
  const outbound = (await outboundHandshakes(client)) - out0;
  const inbound = (await inboundHandshakes(mux.pod)) - in0;
  t.diagnostic(`100 concurrent requests: ${outbound} upstream and ${inbound} inbound TLS handshakes`);
  assert.ok(outbound <= 2, `client sidecar made ${outbound} upstream TLS handshakes`);
  assert.ok(inbound <= 2, `server sidecar accepted ${inbound} TLS handshakes`);
  assert.ok(cluster.h2.sessionCount() <= 2);
  await waitUntil(
    () => accessLogs(mesh, 'mux-0').filter((l) => l.path === '/mux' && l.protocol === 'HTTP/2').length >= 100,
    10_000,
    'the server sidecar logged 100 HTTP/2 requests',
  );
});

test('with h2UpgradePolicy DO_NOT_UPGRADE the same load needs a connection per concurrent request', async (t) => {
  // The contrast that shows the handshake count above measures multiplexing.
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: mux-h1, namespace: default }
spec:
  host: mux.default.svc.cluster.local
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: DO_NOT_UPGRADE } } }
`,
  );
  try {
    await waitForCluster(client, MUX_CLUSTER, (c) => !JSON.stringify(c).includes('"h2"'), 'mux cluster on HTTP/1.1');
    assert.equal(client.sidecar.clusters.get(MUX_CLUSTER)?.h2, undefined);
    const out0 = await outboundHandshakes(client);
    const hold = holdUntil(mux.app, 40);
    const r = await run(
      'h2load',
      ['-n', '40', '-c', '1', '-m', '40', '-H', ':authority: mux:8080', `http://${client.ip}:15001/h1`],
      90_000,
    );
    mux.app.handler = (_r, res, a) => a.ok(res);
    assert.match(r.stdout, /40 succeeded/, r.stdout + r.stderr);
    assert.equal(hold.peak(), 40);
    const outbound = (await outboundHandshakes(client)) - out0;
    t.diagnostic(`40 concurrent requests over HTTP/1.1: ${outbound} upstream TLS handshakes`);
    assert.ok(outbound >= 39, `HTTP/1.1 upstream made ${outbound} handshakes for 40 concurrent requests`);
  } finally {
    remove(mesh, 'DestinationRule/default/mux-h1');
    await waitForCluster(client, MUX_CLUSTER, (c) => JSON.stringify(c).includes('auto_config'));
  }
});

test('a peer that speaks only http/1.1 is served over HTTP/1.1 keep-alive connections', async () => {
  const n0 = legacy.versions.length;
  for (let i = 0; i < 10; i++) assert.equal((await send(client, 'legacy:8080')).status, 200);
  const burst = await Promise.all(Array.from({ length: 10 }, () => send(client, 'legacy:8080')));
  assert.deepEqual(
    burst.map((r) => r.status),
    Array<number>(10).fill(200),
  );
  assert.equal(legacy.versions.length - n0, 20);
  assert.ok(legacy.versions.every((v) => v === '1.1'));
  // One ALPN probe, then the keep-alive pool: at most one connection per concurrent request, not one per request.
  assert.ok(legacy.connections <= 12, `${legacy.connections} connections for 20 requests`);
  assert.equal(client.sidecar.clusters.get(LEGACY_CLUSTER)?.h2?.sessionCount(), 0);
});

test('h2c with prior knowledge on the outbound listener and h2 over TLS on the inbound one (curl)', async () => {
  const h2c = await run('curl', [
    '-s',
    '--http2-prior-knowledge',
    '-H',
    'host: mux:8080',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{http_version}',
    `http://${client.ip}:15001/h2c`,
  ]);
  assert.equal(h2c.stdout, '200 2');
  const h1 = await run('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{http_version}',
    '-H',
    'host: mux:8080',
    `http://${client.ip}:15001/h1`,
  ]);
  assert.equal(h1.stdout, '200 1.1');
  // An external mTLS client at the peer port, with the SNI a sidecar sends: ALPN picks h2, or http/1.1 when asked.
  const id = await identityFiles(mesh, 'default', 'client');
  const sni = 'outbound_.8080_._.mux.default.svc.cluster.local';
  const tlsArgs = (version: string): string[] => [
    '-s',
    version,
    '-k',
    '--cert',
    id.cert,
    '--key',
    id.key,
    '--resolve',
    `${sni}:15006:${mux.pod.ip}`,
    '-w',
    '\n%{http_code} %{http_version}',
    `https://${sni}:15006/tls`,
  ];
  const h2 = await run('curl', tlsArgs('--http2'));
  assert.match(h2.stdout, /\n200 2$/, h2.stdout + h2.stderr);
  const seen = mux.app.requests.filter((q) => q.url === '/tls').at(-1);
  assert.match(
    String(seen?.headers['x-forwarded-client-cert']),
    /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/,
  );
  const tls11 = await run('curl', tlsArgs('--http1.1'));
  assert.match(tls11.stdout, /\n200 1\.1$/, tls11.stdout + tls11.stderr);
});

test("a listener update's GOAWAY is survived: requests in flight finish and new ones reconnect", async () => {
  await send(client, 'mux:8080'); // an open session to mux-0
  const out0 = await outboundHandshakes(client);
  let stop = false;
  const statuses: number[] = [];
  const load = (async () => {
    while (!stop) {
      const batch = await Promise.all(Array.from({ length: 4 }, () => send(client, 'mux:8080', { path: '/goaway' })));
      statuses.push(...batch.map((r) => r.status));
    }
  })();
  // A policy change rebuilds mux-0's inbound filter chain: its HTTP/2 sessions get GOAWAY.
  const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mux-allow, namespace: default }
spec:
  selector: { matchLabels: { app: mux } }
  rules: [{}]
`;
  apply(mesh, policy);
  await waitUntil(
    async () => (await counter(mux.pod, 'envoy_http_rbac_allowed')) > 0,
    20_000,
    'the new inbound chain serving requests',
  );
  for (let i = 0; i < 20; i++) statuses.push((await send(client, 'mux:8080', { path: '/goaway' })).status);
  stop = true;
  await load;
  remove(mesh, 'AuthorizationPolicy/default/mux-allow');
  assert.ok(statuses.length >= 20);
  assert.deepEqual(
    statuses.filter((s) => s !== 200),
    [],
  );
  assert.ok((await outboundHandshakes(client)) > out0, 'the client reconnected after GOAWAY');
});

test('a rapid-reset flood gets GOAWAY ENHANCE_YOUR_CALM and other connections keep being served', async (t) => {
  const good = http2.connect(`http://${client.ip}:15001`);
  const bad = http2.connect(`http://${client.ip}:15001`);
  good.on('error', () => undefined);
  bad.on('error', () => undefined);
  let goaway: number | undefined;
  bad.on('goaway', (code: number) => (goaway = code));
  await Promise.all([good, bad].map((s) => new Promise((r) => s.once('connect', r))));
  const goodStatus = (): Promise<number> =>
    new Promise((resolve) => {
      const s = good.request({ ':path': '/good', ':authority': 'mux:8080' });
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', () => resolve(0));
      s.resume();
    });
  const goodResults: number[] = [];
  const h1Results: number[] = [];
  let flooding = true;
  const background = (async () => {
    while (flooding) {
      const [a, b] = await Promise.all([goodStatus(), send(client, 'mux:8080').then((r) => r.status)]);
      goodResults.push(a);
      h1Results.push(b);
    }
  })();
  const before = await counter(client, 'fedmesh_http2_flood_goaways_total');
  let sent = 0;
  for (let i = 0; i < 2000 && goaway === undefined && !bad.destroyed && !bad.closed; i++) {
    try {
      const s = bad.request({ ':path': '/flood', ':authority': 'mux:8080' });
      s.on('error', () => undefined);
      s.close(http2.constants.NGHTTP2_CANCEL);
      sent++;
    } catch {
      break; // the session is closing
    }
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  await waitUntil(() => goaway !== undefined || bad.destroyed, 10_000, 'GOAWAY on the flooding connection');
  flooding = false;
  await background;
  t.diagnostic(
    `GOAWAY ${goaway} after ${sent} resets; ${goodResults.length + h1Results.length} requests on other connections`,
  );
  assert.equal(goaway, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.ok(sent < 2000, `the flood was cut after ${sent} resets`);
  assert.ok((await counter(client, 'fedmesh_http2_flood_goaways_total')) > before);
  await waitUntil(() => bad.destroyed, 5_000, 'the flooding connection closed');
  // The other connections were never refused, and keep working afterwards.
  for (let i = 0; i < 5; i++) goodResults.push(await goodStatus());
  assert.ok(goodResults.length >= 5);
  assert.deepEqual(
    [...goodResults, ...h1Results].filter((s) => s !== 200),
    [],
  );
  good.close();
});
