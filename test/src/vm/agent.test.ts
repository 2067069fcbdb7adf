/**
 * The VM agent below systemd, on loopback: a real istiod and pods (in this process), `fedmesh vm config` (the CLI)
 * against the mesh's state dir, and `fedmesh-vm-agent` as a real child process with a fake NOTIFY_SOCKET (python3)
 * recording READY=1, STATUS= and WATCHDOG=1. The VM's address is 127.0.N.50 and its app a counting HTTP server
 * whose readiness can be flipped.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseResource } from '@fedmesh/api';
import { Istiod, type StoredObject, type WorkloadEntryObject } from '@fedmesh/istiod';
import { Sidecar } from '@fedmesh/proxy';
import { FakeNotifySocket } from '@fedmesh/vm-agent/testing';
import { fedmesh } from '../cli.js';
import { freeSubnet, get, testLogger, waitUntil } from '../harness.js';

const AGENT = path.resolve(import.meta.dirname, '../../../packages/vm-agent/dist/main.js');

const MANIFESTS = `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: vm}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: vm}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 8080, targetPort: 8080}]
`;

const GROUP = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: vm}
spec:
  metadata: {labels: {app: legacy, version: vm}}
  template: {serviceAccount: legacy-sa, ports: {http: 8080}}
  probe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 1}
`;

let dir = '';
let subnet = 0;
let istiod: Istiod;
let notify: FakeNotifySocket;
const sidecars: Sidecar[] = [];
const servers: http.Server[] = [];
let agent: ChildProcess | undefined;
let vmHealthy = true;
const vmCallers: string[] = [];
const helloCallers: string[] = [];

function server(host: string, port: number, handler: http.RequestListener): Promise<http.Server> {
  const s = http.createServer(handler);
  servers.push(s);
  return new Promise((r) => s.listen(port, host, () => r(s)));
}

async function pod(name: string, ip: string, sa: string, labels: Record<string, string>): Promise<Sidecar> {
  istiod.store.apply(
    [
      parseResource({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'vm', labels },
        spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'x', ports: [{ containerPort: 8080 }] }] },
        status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
      }),
    ],
    'test',
  );
  const log = testLogger(dir, name);
  const s = new Sidecar({
    ip,
    podName: name,
    namespace: 'vm',
    serviceAccount: sa,
    labels,
    workloadName: name.replace(/-\d+$/, ''),
    clusterId: 'Kubernetes',
    discoveryAddress: istiod.addresses.xdsTls,
    rootCertPem: istiod.ca.rootCertsPem.join(''),
    token: istiod.tokens.mint({ namespace: 'vm', serviceAccount: sa }),
    adminPort: 15000,
    mtlsPort: 15006,
    log,
    accessLog: log,
  });
  sidecars.push(s);
  await s.start();
  await waitUntil(() => s.ready(), 15_000, `${name} ready`);
  return s;
}

/**
 * getUntilOk retries a request through a pod's outbound listener until it answers 200 (bounded, 10 s): a pod may
 * still hold a pooled connection to a VM proxy that was just replaced.
 */
async function getUntilOk(proxy: string, host: string): Promise<{ status: number; body: string }> {
  let last = { status: 0, body: '' };
  await waitUntil(
    async () => {
      last = await get(proxy, host).catch(() => ({ status: 0, body: '' }));
      return last.status === 200;
    },
    10_000,
    `200 from ${host} (last: ${last.status})`,
  );
  return last;
}

function startAgent(configDir: string, stateDir: string, logName: string): ChildProcess {
  const out = fs.openSync(path.join(dir, `${logName}.log`), 'a');
  const child = spawn(process.execPath, [AGENT, '--config-dir', configDir, '--state-dir', stateDir], {
    env: { ...process.env, NOTIFY_SOCKET: notify.socketPath, WATCHDOG_USEC: '2000000', FEDMESH_LOG_LEVEL: 'info' },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  return child;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent did not exit in ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-vm-agent-e2e-'));
  subnet = await freeSubnet();
  const meshDir = path.join(dir, 'mesh');
  fs.mkdirSync(meshDir);
  const manifests = path.join(dir, 'mesh.yaml');
  fs.writeFileSync(manifests, MANIFESTS);
  istiod = new Istiod({
    host: `127.0.${subnet}.1`,
    xdsPlainPort: 15010,
    xdsTlsPort: 15012,
    monitoringPort: 15014,
    stateDir: path.join(meshDir, 'istiod'),
    configFiles: [manifests],
    log: testLogger(dir, 'istiod'),
  });
  await istiod.start();
  // The part of `fedmesh up`'s state.json that `fedmesh vm config` reads.
  fs.writeFileSync(
    path.join(meshDir, 'state.json'),
    JSON.stringify({ version: 1, stateDir: meshDir, istiod: { pid: process.pid, ...istiod.addresses } }),
  );
  notify = await FakeNotifySocket.start(dir);
  await server(`127.0.${subnet}.11`, 8080, (req, res) => {
    helloCallers.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('hello');
  });
  await server(`127.0.${subnet}.50`, 8080, (req, res) => {
    if (req.url === '/healthz') return void res.writeHead(vmHealthy ? 200 : 503).end();
    vmCallers.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('legacy on a VM');
  });
  await pod('sleep-0', `127.0.${subnet}.10`, 'sleep', { app: 'sleep' });
  await pod('hello-0', `127.0.${subnet}.11`, 'hello', { app: 'hello' });
});

after(async () => {
  if (agent && agent.exitCode === null && agent.signalCode === null) {
    agent.kill('SIGKILL');
    await exited(agent, 5_000).catch(() => undefined);
  }
  for (const s of sidecars) await s.stop();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await notify?.close();
  await istiod?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('fedmesh vm config and fedmesh-vm-agent (no systemd)', () => {
  const meshDir = () => path.join(dir, 'mesh');
  const cfg = () => path.join(dir, 'etc-fedmesh');
  const state = () => path.join(dir, 'var-lib-fedmesh');
  const vmIp = () => `127.0.${subnet}.50`;

  it('vm config refuses what it cannot use, with the reason', async () => {
    const wg = path.join(dir, 'wg.yaml');
    fs.writeFileSync(wg, GROUP);
    const notApplied = await fedmesh([
      'vm',
      'config',
      '--workload-group',
      wg,
      '--cluster',
      'Kubernetes',
      '-o',
      cfg(),
      '--state-dir',
      meshDir(),
    ]);
    assert.equal(notApplied.code, 1);
    assert.match(
      notApplied.stderr,
      /WorkloadGroup vm\/legacy is not in istiod's config; apply it first \(fedmesh apply -f /,
    );
    const applied = await fedmesh(['apply', '-f', wg, '--state-dir', meshDir()]);
    assert.equal(applied.code, 0, applied.stderr);
    const wrongCluster = await fedmesh([
      'vm',
      'config',
      '--workload-group',
      wg,
      '--cluster',
      'west',
      '-o',
      cfg(),
      '--state-dir',
      meshDir(),
    ]);
    assert.match(wrongCluster.stderr, /--cluster west: this istiod serves cluster Kubernetes/);
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, GROUP.replace('periodSeconds: 1', 'periodSeconds: -1'));
    const badFile = await fedmesh([
      'vm',
      'config',
      '--workload-group',
      bad,
      '--cluster',
      'Kubernetes',
      '-o',
      cfg(),
      '--state-dir',
      meshDir(),
    ]);
    assert.match(badFile.stderr, /spec\.probe\.periodSeconds: must be ≥ 0/);
    assert.equal(fs.existsSync(cfg()), false, 'nothing written on failure');
  });

  it('vm config writes cluster.env, mesh.yaml, root-cert.pem, istio-token (0600) and hosts', async () => {
    const r = await fedmesh([
      'vm',
      'config',
      '--workload-group',
      path.join(dir, 'wg.yaml'),
      '--cluster',
      'Kubernetes',
      '-o',
      cfg(),
      '--state-dir',
      meshDir(),
      '--instance-ip',
      vmIp(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /spiffe:\/\/cluster\.local\/ns\/vm\/sa\/legacy-sa/);
    assert.deepEqual(fs.readdirSync(cfg()).sort(), [
      'cluster.env',
      'hosts',
      'istio-token',
      'mesh.yaml',
      'root-cert.pem',
    ]);
    assert.equal(fs.statSync(path.join(cfg(), 'istio-token')).mode & 0o777, 0o600);
    const env = fs.readFileSync(path.join(cfg(), 'cluster.env'), 'utf8');
    assert.match(env, /^SERVICE_ACCOUNT='legacy-sa'$/m);
    assert.match(env, /^ISTIO_META_AUTO_REGISTER_GROUP='legacy'$/m);
    assert.match(env, /^FEDMESH_READINESS_PROBE='\{.*"httpGet":\{"path":"\/healthz","port":8080\}/m);
    assert.match(
      fs.readFileSync(path.join(cfg(), 'hosts'), 'utf8'),
      new RegExp(`^127\\.0\\.${subnet}\\.1 istiod\\.istio-system\\.svc$`, 'm'),
    );
    assert.match(
      fs.readFileSync(path.join(cfg(), 'mesh.yaml'), 'utf8'),
      /discoveryAddress: "istiod\.istio-system\.svc:15012"/,
    );
    assert.equal(fs.readFileSync(path.join(cfg(), 'root-cert.pem'), 'utf8'), istiod.ca.rootCertsPem.join(''));
    // The agent reads them back: `fedmesh-vm-agent --check` prints the identity and where istiod is.
    const check = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(process.execPath, [AGENT, '--check', '--config-dir', cfg()], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (out += d.toString()));
      c.on('exit', (code) => resolve({ code, out }));
    });
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /identity +spiffe:\/\/cluster\.local\/ns\/vm\/sa\/legacy-sa/);
    assert.match(
      check.out,
      new RegExp(`istiod +istiod\\.istio-system\\.svc:15012 \\(dial 127\\.0\\.${subnet}\\.1:15012\\)`),
    );
  });

  it('the agent gets a certificate, auto-registers, reports READY=1, and serves pod → VM and VM → pod over mTLS', async () => {
    const startedAt = Date.now();
    agent = startAgent(cfg(), state(), 'agent-1');
    const ready = await notify.waitFor('READY', '1', 30_000);
    const statuses = notify.messages.filter((m) => m.at <= ready.at).map((m) => m.fields['STATUS'] ?? '');
    assert.ok(
      statuses.some((s) => s.includes('with the bootstrap token')),
      statuses.join('\n'),
    );
    assert.ok(
      statuses.some((s) => s.includes('waiting for the first configuration')),
      statuses.join('\n'),
    );
    const certFile = path.join(state(), 'workload-certificate.json');
    assert.equal(fs.statSync(certFile).mode & 0o777, 0o600);
    assert.ok(fs.statSync(certFile).mtimeMs <= ready.at, 'the certificate is persisted before READY=1');
    console.log(`# agent start → READY=1: ${Math.round(ready.at - startedAt)} ms (process spawn included)`);

    const entries = () => istiod.store.list<WorkloadEntryObject & StoredObject>('WorkloadEntry');
    await waitUntil(() => entries().some((e) => e.spec.address === vmIp()), 10_000, 'WorkloadEntry');
    const sleep = sidecars[0];
    assert.ok(sleep);
    const vmEndpoint = () =>
      sleep.clusters
        .all()
        .find((c) => c.name === 'outbound|80||legacy.vm.svc.cluster.local')
        ?.endpoints.find((e) => e.address === vmIp());
    await waitUntil(() => vmEndpoint()?.healthy === true, 15_000, 'the VM healthy in the pod’s endpoints');
    const toVm = await getUntilOk(`127.0.${subnet}.10:15001`, 'legacy.vm.svc.cluster.local');
    assert.equal(toVm.body, 'legacy on a VM');
    assert.match(vmCallers.at(-1) ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/sleep/);
    const fromVm = await get(`${vmIp()}:15001`, 'hello.vm.svc.cluster.local:8080');
    assert.equal(fromVm.status, 200);
    assert.match(helloCallers.at(-1) ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/legacy-sa/);

    await notify.waitFor('WATCHDOG', '1', 5_000, notify.messages.indexOf(ready));
  });

  it('a failing probe takes the VM out of the endpoints; recovery puts it back', async () => {
    const sleep = sidecars[0];
    assert.ok(sleep);
    const vmEndpoint = () =>
      sleep.clusters
        .all()
        .find((c) => c.name === 'outbound|80||legacy.vm.svc.cluster.local')
        ?.endpoints.find((e) => e.address === vmIp());
    vmHealthy = false;
    const failedAt = Date.now();
    await waitUntil(() => vmEndpoint()?.healthy === false, 15_000, 'the VM unhealthy in the pod’s endpoints');
    console.log(
      `# failing probe → UNHEALTHY in a pod's EDS: ${Date.now() - failedAt} ms (period 1 s, failureThreshold 1)`,
    );
    await notify.waitFor('STATUS', undefined, 5_000);
    assert.ok(notify.messages.some((m) => m.fields['STATUS']?.includes('readiness probe failing: HTTP 503')));
    vmHealthy = true;
    await waitUntil(() => vmEndpoint()?.healthy === true, 15_000, 'the VM healthy again');
  });

  it('after kill -9, a new agent recovers its identity with no token and serves again', async () => {
    assert.ok(agent);
    fs.rmSync(path.join(cfg(), 'istio-token'));
    const from = notify.messages.length;
    agent.kill('SIGKILL');
    const killedAt = Date.now();
    await exited(agent, 5_000);
    agent = startAgent(cfg(), state(), 'agent-2');
    const ready = await notify.waitFor('READY', '1', 30_000, from);
    const statuses = notify.messages.slice(from).map((m) => m.fields['STATUS'] ?? '');
    assert.ok(
      statuses.some((s) => s.includes('renewing the persisted certificate')),
      statuses.join('\n'),
    );
    assert.ok(!statuses.some((s) => s.includes('bootstrap token')), statuses.join('\n'));
    await getUntilOk(`127.0.${subnet}.10:15001`, 'legacy.vm.svc.cluster.local');
    console.log(
      `# kill -9 → READY=1 again: ${Math.round(ready.at - killedAt)} ms, serving pods again: ${Date.now() - killedAt} ms (restart by the test, no systemd)`,
    );
    const istiodLog = fs.readFileSync(path.join(dir, 'istiod.log'), 'utf8');
    const issued = istiodLog
      .split('\n')
      .filter((l) => l.includes('certificate issued') && l.includes('/sa/legacy-sa'))
      .map((l) => (JSON.parse(l) as { authenticator: string }).authenticator);
    assert.deepEqual(issued.slice(0, 1), ['vm-token']);
    assert.equal(issued.at(-1), 'certificate', 'the restarted agent renewed with its persisted certificate');
  });

  it('stops cleanly on SIGTERM (istiod marks the entry disconnected); with no certificate and no token it refuses to start', async () => {
    assert.ok(agent);
    agent.kill('SIGTERM');
    assert.equal(await exited(agent, 15_000), 0);
    await waitUntil(
      () =>
        istiod.store
          .list<WorkloadEntryObject & StoredObject>('WorkloadEntry')
          .some((e) => e.metadata.annotations?.['istio.io/disconnectedAt'] !== undefined),
      10_000,
      'disconnectedAt',
    );
    const empty = path.join(dir, 'empty-state');
    const lone = startAgent(cfg(), empty, 'agent-3');
    assert.equal(await exited(lone, 15_000), 1);
    assert.match(
      fs.readFileSync(path.join(dir, 'agent-3.log'), 'utf8'),
      /no usable certificate in .* and no bootstrap token at .*istio-token: run `fedmesh vm config` again/,
    );
  });
});
