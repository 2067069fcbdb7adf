/**
 * WebSocket through real sidecars: undici's WebSocket client dials its sidecar's outbound listener (explicit mode,
 * the URL names the service), the HTTP/1.1 Upgrade goes over mTLS to the server sidecar and on to the app; the
 * 101 comes back and messages flow both ways until the close. The upgrade passes the same RBAC as any request,
 * an `Upgrade: h2c` that no HCM enables is served as plain HTTP/1.1, and each tunnel is one request with code 101
 * in both sidecars' metrics.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Agent, WebSocket } from 'undici';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import { accessLogs, apply, closeAll, remove, startMesh } from '../resilience/helpers.js';
import { counter, run, serviceYaml } from './helpers.js';
import { startWsEcho, type WsEcho } from './ws-echo.js';

let mesh: LocalMesh;
let client: TestPod;
let server: TestPod;
let app: WsEcho;
let dispatcher: Agent;

before(async () => {
  mesh = await startMesh(serviceYaml('chat', 'http', 8080, 9090));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  server = await mesh.addPod({ name: 'chat-0', serviceAccount: 'chat', labels: { app: 'chat' } });
  app = await startWsEcho(server.ip, 9090);
  await waitUntil(
    () => (client.sidecar.clusters.get('outbound|8080||chat.default.svc.cluster.local')?.endpoints.length ?? 0) > 0,
    20_000,
    'chat endpoints at the client',
  );
  // The app knows the mesh only as its sidecar's address: every connection goes to 15001, the URL names the service.
  dispatcher = new Agent({
    connect: (_opts, cb) => {
      const s = net.connect(15001, client.ip);
      s.once('connect', () => cb(null, s));
      s.once('error', (err) => cb(err, null));
    },
  });
});

after(async () => {
  await dispatcher?.close();
  await app?.close();
  await closeAll(mesh, []);
});

interface Session {
  ws: WebSocket;
  received: (string | Buffer)[];
  opened: Promise<boolean>;
  closed: Promise<number>;
}

function connect(path: string): Session {
  const ws = new WebSocket(`ws://chat:8080${path}`, { dispatcher });
  ws.binaryType = 'arraybuffer';
  const received: (string | Buffer)[] = [];
  ws.addEventListener('message', (e) =>
    received.push(typeof e.data === 'string' ? e.data : Buffer.from(e.data as ArrayBuffer)),
  );
  const opened = new Promise<boolean>((resolve) => {
    ws.addEventListener('open', () => resolve(true));
    ws.addEventListener('error', () => resolve(false));
  });
  const closed = new Promise<number>((resolve) => ws.addEventListener('close', (e) => resolve(e.code)));
  return { ws, received, opened, closed };
}

test('a WebSocket echo works through both sidecars over mTLS, text and binary, in order', async () => {
  const s = connect('/chat?room=1');
  assert.equal(await s.opened, true);
  const big = Buffer.alloc(200_000, 7);
  for (let i = 0; i < 20; i++) s.ws.send(`message ${i}`);
  s.ws.send(big);
  await waitUntil(() => s.received.length === 21, 15_000, 'echoes of 21 messages');
  assert.deepEqual(
    s.received.slice(0, 20),
    Array.from({ length: 20 }, (_, i) => `message ${i}`),
  );
  const last = s.received[20];
  assert.ok(Buffer.isBuffer(last) && last.equals(big));
  s.ws.close(1000, 'done');
  assert.equal(await s.closed, 1000);
  // The app saw the upgrade from the server sidecar, with the caller's verified identity.
  const up = app.upgrades.at(-1);
  assert.equal(app.paths.at(-1), '/chat?room=1');
  assert.match(String(up?.['x-forwarded-client-cert']), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/);
  assert.equal(up?.host, 'chat:8080');
  await waitUntil(
    async () =>
      (await counter(client, 'istio_requests_total', { reporter: 'source', response_code: '101' })) >= 1 &&
      (await counter(server, 'istio_requests_total', { reporter: 'destination', response_code: '101' })) >= 1,
    10_000,
    'the tunnel recorded as a 101 by both sidecars',
  );
  const log = accessLogs(mesh, 'chat-0').find((l) => l.path === '/chat?room=1');
  assert.equal(log?.response_code, 101);
  assert.ok((log?.bytes_received ?? 0) > big.length, 'the tunnel counted its bytes');
  assert.equal(log?.downstream_peer_principal, 'spiffe://cluster.local/ns/default/sa/client');
});

test('an AuthorizationPolicy DENY on a path refuses the upgrade: the app never sees it', async () => {
  apply(
    mesh,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: chat-deny, namespace: default }
spec:
  selector: { matchLabels: { app: chat } }
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`,
  );
  try {
    await waitUntil(
      async () => {
        const s = connect('/admin');
        const ok = await s.opened;
        if (ok) s.ws.close();
        return !ok;
      },
      20_000,
      'the DENY policy in force',
    );
    const before = app.upgrades.length;
    const s = connect('/admin');
    assert.equal(await s.opened, false);
    assert.equal(app.upgrades.length, before);
    const ok = connect('/chat');
    assert.equal(await ok.opened, true, 'other paths still upgrade');
    ok.ws.close();
    await ok.closed;
  } finally {
    remove(mesh, 'AuthorizationPolicy/default/chat-deny');
  }
});

test('an Upgrade type no HCM enables (curl --http2, Upgrade: h2c) is served as a plain HTTP/1.1 request', async () => {
  const r = await run('curl', [
    '-s',
    '--http2',
    '-H',
    'host: chat:8080',
    '-w',
    '\n%{http_code} %{http_version}',
    `http://${client.ip}:15001/plain`,
  ]);
  // The echo app answers plain requests with 426; what matters is that the request got there and back as HTTP/1.1.
  assert.match(r.stdout, /websocket only\n\n426 1\.1$/, r.stdout + r.stderr);
});
