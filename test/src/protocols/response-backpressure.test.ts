/**
 * Response back-pressure through real sidecars: while the downstream client does not read, the sidecars stop
 * reading the upstream response, so an app writing a 64 MiB body stalls well short of its end (nothing buffers
 * the rest in a proxy); once the client reads again the body arrives whole and in order. Between the sidecars
 * over HTTP/2 (ALPN, the default) and over HTTP/1.1 keep-alive (h2UpgradePolicy DO_NOT_UPGRADE). An HTTP/2 client
 * that resets its stream mid-response makes both sidecars cancel upstream, so the app's response is closed early.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  clusterOf,
  closeAll,
  service,
  startMesh,
  waitForCluster,
  waitForEndpoints,
  type TestApp,
} from '../resilience/helpers.js';

const CHUNK = Buffer.alloc(64 * 1024, 0).map((_, i) => i % 251);
const CHUNKS = 1024; // 64 MiB
const TOTAL = CHUNK.length * CHUNKS;

let mesh: LocalMesh;
let client: TestPod;
const apps: TestApp[] = [];

/** state is what the app has written of the current response, whether it finished, or was closed before that. */
const state = { written: 0, finished: false, closedEarly: false };

function streamBig(res: http.ServerResponse): void {
  state.written = 0;
  state.finished = false;
  state.closedEarly = false;
  res.on('close', () => {
    if (!res.writableFinished) state.closedEarly = true;
  });
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': TOTAL });
  let i = 0;
  const more = (): void => {
    while (i < CHUNKS) {
      i++;
      state.written += CHUNK.length;
      if (!res.write(CHUNK)) return void res.once('drain', more);
    }
    res.end(() => (state.finished = true));
  };
  more();
}

/**
 * streamSlow writes 1 KiB every 50 ms for 10 s: nothing is ever queued in the proxies, so their responses report
 * every write flushed, and only the stream's reset tells them the client left.
 */
function streamSlow(res: http.ServerResponse): void {
  state.written = 0;
  state.finished = false;
  state.closedEarly = false;
  let i = 0;
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  const timer = setInterval(() => {
    if (res.destroyed) return void clearInterval(timer);
    res.write(CHUNK.subarray(0, 1024));
    state.written += 1024;
    if (++i === 200) {
      clearInterval(timer);
      res.end(() => (state.finished = true));
    }
  }, 50);
  res.on('close', () => {
    clearInterval(timer);
    if (!res.writableFinished) state.closedEarly = true;
  });
}

before(async () => {
  mesh = await startMesh(
    service('big') +
      service('bigh1') +
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: bigh1, namespace: default }
spec:
  host: bigh1.default.svc.cluster.local
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: DO_NOT_UPGRADE } } }
`,
  );
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  for (const name of ['big', 'bigh1']) {
    const { app } = await addApp(mesh, name, 0);
    app.handler = (req, res) => (req.url === '/slow' ? streamSlow(res) : streamBig(res));
    apps.push(app);
    await waitForEndpoints(client, name, 1);
  }
  await waitForCluster(client, clusterOf('bigh1'), (c) => !JSON.stringify(c).includes('"h2"'), 'bigh1 on HTTP/1.1');
});

after(async () => {
  await closeAll(mesh, apps);
});

for (const [host, between] of [
  ['big:8080', 'HTTP/2'],
  ['bigh1:8080', 'HTTP/1.1'],
] as const)
  test(`a client that stops reading stalls the app's 64 MiB response (${between} between sidecars)`, async (t) => {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(
        { host: client.ip, port: 15001, path: '/big', headers: { host }, agent: false, timeout: 60_000 },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(res.statusCode, 200);
    res.pause();
    // Wait until the app has stopped making progress (every buffer on the way is full), then hold 1 s more.
    let last = -1;
    for (const deadline = Date.now() + 30_000; state.written === 0 || state.written !== last;) {
      assert.ok(Date.now() < deadline, 'the app did not stall while the client read nothing');
      last = state.written;
      await new Promise((r) => setTimeout(r, 500));
    }
    await new Promise((r) => setTimeout(r, 1_000));
    const held = state.written;
    t.diagnostic(`app wrote ${(held / 2 ** 20).toFixed(1)} MiB of 64 before stalling`);
    assert.equal(state.finished, false, 'the app finished although the client read nothing');
    assert.ok(held < TOTAL / 2, `the proxies took ${held} bytes from the app while the client read nothing`);

    const hash = crypto.createHash('sha256');
    let got = 0;
    res.on('data', (c: Buffer) => {
      got += c.length;
      hash.update(c);
    });
    res.resume();
    await new Promise<void>((resolve, reject) => {
      res.on('end', resolve);
      res.on('error', reject);
    });
    const want = crypto.createHash('sha256');
    for (let i = 0; i < CHUNKS; i++) want.update(CHUNK);
    assert.equal(got, TOTAL);
    assert.equal(hash.digest('hex'), want.digest('hex'), 'the body arrived whole and in order');
    await waitUntil(() => state.finished, 10_000, 'the app finished its response');
  });

test('an HTTP/2 client that resets its stream mid-response cancels the upstream request through both sidecars', async (t) => {
  const session = http2.connect(`http://${client.ip}:15001`);
  t.after(() => session.destroy());
  const stream = session.request({ ':method': 'GET', ':path': '/slow', ':authority': 'big:8080' });
  const status = await new Promise<number>((resolve, reject) => {
    stream.once('response', (h) => resolve(Number(h[':status'])));
    stream.once('error', reject);
  });
  assert.equal(status, 200);
  await new Promise<void>((resolve) => stream.once('data', () => resolve()));
  stream.close(http2.constants.NGHTTP2_CANCEL);
  // Node's Http2ServerResponse reports writableFinished after a reset; the proxies must still see the client gone
  // and cancel upstream, so the app's response is closed before its end instead of stalling forever.
  await waitUntil(() => state.closedEarly || state.finished, 15_000, "the app's response closed or finished");
  t.diagnostic(`app wrote ${state.written / 1024} KiB of 200 before the cancel reached it`);
  assert.equal(state.finished, false);
});
