/**
 * istiod with `--kubeconfig` against the fake Kubernetes API server: readiness and ADS wait for the first sync,
 * objects flow from the API server to proxies, and `fedmesh istiod --kubeconfig` runs (or refuses a bad file).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Istiod } from '@fedmesh/istiod';
import { startFakeApiServer, type FakeObject } from '@fedmesh/istiod/testing';
import { Sidecar } from '@fedmesh/proxy';
import { CLI, fedmesh } from './cli.js';
import { freeSubnet, get, startBackend, testLogger, waitUntil } from './harness.js';

async function ready(addr: string): Promise<number> {
  try {
    const res = await fetch(`http://${addr}/ready`, { signal: AbortSignal.timeout(5000) });
    return res.status;
  } catch {
    return 0;
  }
}

function pod(name: string, ip: string, labels: Record<string, string>, sa: string): FakeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels },
    spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'app', ports: [{ containerPort: 9080 }] }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

describe('istiod --kubeconfig against a fake API server', () => {
  it('is not ready and serves no ADS until synced, then routes to pods from the API server', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-istiod-kube-'));
    const fake = await startFakeApiServer();
    const subnet = await freeSubnet();
    const ip = (n: number): string => `127.0.${subnet}.${n}`;
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, fake.kubeconfigYaml, { mode: 0o600 });
    const istiod = new Istiod({
      host: ip(1),
      xdsPlainPort: 15010,
      xdsTlsPort: 15012,
      monitoringPort: 15014,
      stateDir: path.join(dir, 'istiod'),
      configFiles: [],
      kubeconfig,
      log: testLogger(dir, 'istiod'),
    });
    const sidecars: Sidecar[] = [];
    const backend = await startBackend(ip(11), 9080, 'reviews-v1-0');
    t.after(async () => {
      for (const s of sidecars) await s.stop();
      backend.server.closeAllConnections();
      backend.server.close();
      await istiod.stop();
      await fake.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    await fake.server.stop(); // the API server is down when istiod starts
    await istiod.start();
    assert.equal(await ready(istiod.addresses.monitoring), 503, '/ready is false before the first sync');

    const s = fake.server;
    s.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sleep', namespace: 'default' } });
    s.apply({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'reviews', namespace: 'default' },
      spec: { selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080 }] },
    });
    s.apply(pod('reviews-v1-0', ip(11), { app: 'reviews', version: 'v1' }, 'bookinfo-reviews'));
    s.apply(pod('sleep-0', ip(10), { app: 'sleep' }, 'sleep'));

    const log = testLogger(dir, 'sleep');
    const sleep = new Sidecar({
      ip: ip(10),
      podName: 'sleep-0',
      namespace: 'default',
      serviceAccount: 'sleep',
      labels: { app: 'sleep' },
      workloadName: 'sleep',
      clusterId: 'Kubernetes',
      discoveryAddress: istiod.addresses.xdsTls,
      rootCertPem: istiod.ca.rootCertsPem.join(''),
      token: istiod.tokens.mint({ namespace: 'default', serviceAccount: 'sleep' }),
      adminPort: 15000,
      mtlsPort: 15006,
      log,
      accessLog: log.child({ scope: 'access' }),
    });
    sidecars.push(sleep);
    await sleep.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(sleep.ready(), false, 'no config is served before the sync');

    await s.start();
    await waitUntil(async () => (await ready(istiod.addresses.monitoring)) === 200, 20_000, '/ready after sync');
    await waitUntil(() => sleep.ready(), 30_000, 'sleep gets config after the sync');
    // reviews has no sidecar here (sidecar.istio.io/inject: false): plain-text to the backend.
    s.apply({
      ...pod('reviews-v1-0', ip(11), { app: 'reviews', version: 'v1' }, 'bookinfo-reviews'),
      metadata: {
        name: 'reviews-v1-0',
        namespace: 'default',
        labels: { app: 'reviews', version: 'v1' },
        annotations: { 'sidecar.istio.io/inject': 'false' },
      },
    });
    await waitUntil(
      async () => (await get(`${ip(10)}:15001`, 'reviews:9080').catch(() => ({ status: 0 }))).status === 200,
      20_000,
      'sleep → reviews routed from API-server objects',
    );
    assert.ok(backend.requests.length >= 1);
  });
});

describe('fedmesh istiod --kubeconfig', () => {
  it('runs against the API server and becomes ready; a bad kubeconfig is refused with its path', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-istiod-kube-cli-'));
    const fake = await startFakeApiServer();
    const subnet = await freeSubnet();
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, fake.kubeconfigYaml, { mode: 0o600 });
    const child = spawn(
      process.execPath,
      [
        CLI,
        'istiod',
        '--state-dir',
        path.join(dir, 'state'),
        '--host',
        `127.0.${subnet}.1`,
        '--kubeconfig',
        kubeconfig,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    t.after(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
      await fake.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await waitUntil(async () => (await ready(`127.0.${subnet}.1:15014`)) === 200, 30_000, `istiod ready; ${stderr}`);
    assert.ok(fake.server.listCount('services') >= 1, 'istiod listed Services from the API server');
    child.kill('SIGTERM');
    await exited;

    const bad = await fedmesh([
      'istiod',
      '--state-dir',
      path.join(dir, 's2'),
      '--kubeconfig',
      path.join(dir, 'missing'),
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /kubeconfig [^ ]*missing: ENOENT/);
  });
});
