/**
 * Proxy lifecycle: SIGTERM drains `fedmesh proxy` (new connections refused, in-flight requests finish, exit 0),
 * admin `/drain_listeners` and `/quitquitquit`, and serving on the last config while istiod is away, then
 * reconnecting to a restarted istiod and receiving new config.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Istiod } from '@fedmesh/istiod';
import { CLI } from '../cli.js';
import { testLogger, waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  addApp,
  admin,
  apply,
  closeAll,
  logLines,
  send,
  service,
  startMesh,
  waitForEndpoints,
  type Reply,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let manifest: string;
let client: TestPod;
let app: TestApp;
const children = new Set<ChildProcess>();

before(async () => {
  mesh = await startMesh(service('slow'));
  manifest = path.join(mesh.dir, 'manifests.yaml');
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  app = (await addApp(mesh, 'slow', 0)).app;
  await waitForEndpoints(client, 'slow', 1);
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await closeAll(mesh, [app]);
});

/** ChildProxy is a `fedmesh proxy` process on its own address. */
interface ChildProxy {
  proc: ChildProcess;
  ip: string;
  exited: Promise<number | null>;
  pod: TestPod;
}

let nextChild = 200;

async function startChildProxy(drainDuration: string): Promise<ChildProxy> {
  const ip = `127.0.${mesh.subnet}.${nextChild++}`;
  const name = `cli-${nextChild}`;
  const dir = path.join(mesh.dir, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'root-cert.pem'), mesh.rootCertPem());
  fs.writeFileSync(
    path.join(dir, 'token'),
    mesh.istiod.tokens.mint({ namespace: 'default', serviceAccount: 'client' }),
  );
  const out = fs.openSync(path.join(mesh.dir, `${name}.log`), 'w');
  const proc = spawn(
    process.execPath,
    [
      CLI,
      'proxy',
      '--ip',
      ip,
      '--pod',
      name,
      '--namespace',
      'default',
      '--service-account',
      'client',
      '--labels',
      '{"app":"client"}',
      '--discovery',
      mesh.istiod.addresses.xdsTls,
      '--root-cert',
      path.join(dir, 'root-cert.pem'),
      '--token-file',
      path.join(dir, 'token'),
      '--drain-duration',
      drainDuration,
    ],
    { stdio: ['ignore', out, out] },
  );
  children.add(proc);
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      children.delete(proc);
      resolve(code);
    }),
  );
  // A TestPod view of the child, for the request helpers (they only use the address).
  const pod = { name, ip } as TestPod;
  await waitUntil(
    async () => (await admin(pod, '/ready').catch(() => ({ status: 0 }))).status === 200,
    30_000,
    `${name} ready`,
  );
  app.handler = (_r, res, a) => a.ok(res);
  await waitUntil(
    async () => (await send(pod, 'slow:8080').catch(() => undefined))?.status === 200,
    20_000,
    `${name} routes`,
  );
  return { proc, ip, exited, pod };
}

function connectRefused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('drain', () => {
  test('SIGTERM: new connections are refused, the in-flight request finishes, and fedmesh proxy exits 0', async (t) => {
    const child = await startChildProxy('10s');
    app.handler = (_r, res, a) => a.hold(res);
    const inflight = send(child.pod, 'slow:8080');
    await waitUntil(() => app.held.length === 1, 10_000, 'request held at the app');
    child.proc.kill('SIGTERM');
    await waitUntil(() => connectRefused(child.ip, 15001), 10_000, 'outbound listener refusing connections');
    assert.equal((await admin(child.pod, '/ready')).body, 'DRAINING\n');
    let exitedEarly = false;
    void child.exited.then(() => (exitedEarly = true));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(exitedEarly, false, 'the proxy waits for the in-flight request');
    const t0 = Date.now();
    app.release();
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(await child.exited, 0);
    t.diagnostic(`SIGTERM drain: exit ${Date.now() - t0} ms after the last in-flight request finished`);
  });

  test('a request still running when the drain window ends is cut off, and the proxy still exits 0', async () => {
    const child = await startChildProxy('1s');
    app.handler = (_r, res, a) => a.hold(res);
    const inflight = send(child.pod, 'slow:8080').then(
      (r: Reply) => r.status,
      () => 'reset',
    );
    await waitUntil(() => app.held.length === 1, 10_000, 'request held at the app');
    child.proc.kill('SIGTERM');
    assert.equal(await child.exited, 0);
    assert.equal(app.held.length, 1, 'the app never answered');
    assert.equal(await inflight, 'reset');
    app.release();
  });

  test('admin POST /quitquitquit drains and exits 0', async () => {
    const child = await startChildProxy('5s');
    assert.equal((await admin(child.pod, '/quitquitquit', 'POST')).status, 200);
    assert.equal(await child.exited, 0);
  });

  test('admin POST /drain_listeners?inboundonly stops accepting on 15006 only; /ready turns DRAINING', async () => {
    const extra = await mesh.addPod({ name: 'extra-0', serviceAccount: 'extra', labels: { app: 'extra' } });
    assert.equal(await connectRefused(extra.ip, 15001), false);
    assert.equal((await admin(extra, '/drain_listeners?inboundonly', 'POST')).status, 200);
    assert.equal(await connectRefused(extra.ip, 15001), false, 'outbound keeps accepting');
    assert.equal((await admin(extra, '/ready')).status, 503);
    assert.equal((await send(extra, 'slow:8080')).status, 200);
    assert.equal((await admin(extra, '/drain_listeners', 'POST')).status, 200);
    assert.equal(await connectRefused(extra.ip, 15001), true);
  });
});

describe('control plane outage', () => {
  test('istiod stops: traffic keeps flowing on the last config; istiod restarts: the proxy reconnects and gets new config', async (t) => {
    app.handler = (_r, res, a) => a.ok(res);
    const old = mesh.istiod;
    const pods = old.store.list('Pod');
    await old.stop();
    const stoppedAt = Date.now();
    // Three seconds without a control plane: every request is still served on the last config.
    let served = 0;
    while (Date.now() - stoppedAt < 3_000) {
      assert.equal((await send(client, 'slow:8080')).status, 200);
      served++;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(served >= 3, `${served} requests served while istiod was down`);
    await waitUntil(
      () => logLines(mesh, 'client-0', 'ads stream lost; reconnecting').length >= 3,
      30_000,
      'reconnect attempts',
    );
    const delays = logLines(mesh, 'client-0', 'ads stream lost; reconnecting').map((l) => l.delayMs as number);
    assert.ok(new Set(delays).size > 1, `jittered reconnect delays: ${delays.join(', ')}`);
    for (let i = 0; i < 5; i++) assert.equal((await send(client, 'slow:8080')).status, 200);

    const next = new Istiod({
      host: `127.0.${mesh.subnet}.1`,
      xdsPlainPort: 15010,
      xdsTlsPort: 15012,
      monitoringPort: 15014,
      stateDir: path.join(mesh.dir, 'istiod'),
      configFiles: [manifest],
      log: testLogger(mesh.dir, 'istiod-2'),
    });
    await next.start();
    mesh.istiod = next;
    next.store.apply(pods, 'test');
    const restartedAt = Date.now();
    apply(
      mesh,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: slow, namespace: default }
spec:
  hosts: [slow]
  http:
  - route: [{ destination: { host: slow } }]
    headers: { response: { set: { x-config: after-restart } } }`,
    );
    await waitUntil(
      async () => (await send(client, 'slow:8080')).headers['x-config'] === 'after-restart',
      60_000,
      'new config after the restart',
    );
    t.diagnostic(
      `istiod outage: ${restartedAt - stoppedAt} ms down (${served} requests served), new config applied ${Date.now() - restartedAt} ms after restart; reconnect delays ${delays.join(', ')} ms`,
    );
  });
});
