/**
 * VM auto-registration end to end inside one process: a real istiod (ADS and CA on 15012, admin API on 15014) and
 * real sidecars on loopback addresses. The "VM" is a sidecar that bootstraps with a VM token and asks for
 * auto-registration; a pod calls it over mTLS once it reports healthy.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import {
  parseManifests,
  WORKLOAD_HEALTH_SERVICE,
  WorkloadEntryAnnotations,
  type WorkloadHealthAck,
} from '@fedmesh/api';
import { Sidecar, type WorkloadCertificate } from '@fedmesh/proxy';
import { Istiod } from '../istiod.js';
import type { StoredObject } from '../config/store.js';
import type { WorkloadEntryObject } from './workload-entry-registry.js';

const MANIFESTS = `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: vm}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: vm}
spec:
  metadata: {labels: {app: legacy}}
  template: {serviceAccount: legacy-sa, ports: {http: 8080}}
  probe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
`;

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function get(proxy: string, host: string): Promise<{ status: number; body: string }> {
  const [h, p] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: h, port: Number(p), path: '/', headers: { host }, agent: false, timeout: 5_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

let dir = '';
let subnet = 0;
let istiod: Istiod;
const sidecars: Sidecar[] = [];
let backend: http.Server;
const seenCallers: string[] = [];

function adminPost(
  pathName: string,
  body: string,
  token?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const [h, p] = istiod.addresses.monitoring.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: h,
        port: Number(p),
        path: pathName,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        timeout: 5_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function report(
  cert: WorkloadCertificate | undefined,
  request: unknown,
): Promise<{ code: number; ack?: WorkloadHealthAck }> {
  const Client = grpc.makeGenericClientConstructor(WORKLOAD_HEALTH_SERVICE, 'h');
  const creds = grpc.credentials.createSsl(
    Buffer.from(istiod.ca.rootCertsPem.join('')),
    cert ? Buffer.from(cert.keyPem) : null,
    cert ? Buffer.from(cert.chainPem) : null,
  );
  const client = new Client(istiod.addresses.xdsTls, creds, {
    'grpc.ssl_target_name_override': 'istiod.istio-system.svc',
  });
  type ReportFn = (
    req: unknown,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, ack?: WorkloadHealthAck) => void,
  ) => void;
  const call = (client as unknown as { Report: ReportFn }).Report.bind(client);
  return new Promise((resolve) => {
    call(request, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err, ack) => {
      client.close();
      resolve(err ? { code: err.code } : { code: 0, ...(ack ? { ack } : {}) });
    });
  });
}

function sidecar(opts: {
  ip: string;
  name: string;
  sa: string;
  token: string;
  labels?: Record<string, string>;
  nodeMetadata?: Record<string, string>;
}): Sidecar {
  const log = pino({ level: 'warn' }, pino.destination({ dest: path.join(dir, `${opts.name}.log`), sync: true }));
  const s = new Sidecar({
    ip: opts.ip,
    podName: opts.name,
    namespace: 'vm',
    serviceAccount: opts.sa,
    labels: opts.labels ?? {},
    workloadName: opts.name,
    clusterId: 'Kubernetes',
    discoveryAddress: istiod.addresses.xdsTls,
    rootCertPem: istiod.ca.rootCertsPem.join(''),
    token: opts.token,
    adminPort: 15000,
    mtlsPort: 15006,
    ...(opts.nodeMetadata ? { nodeMetadata: opts.nodeMetadata } : {}),
    log,
    accessLog: log,
  });
  sidecars.push(s);
  return s;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-vm-autoreg-'));
  for (let i = 0; i < 50 && subnet === 0; i++) {
    const n = 10 + Math.floor(Math.random() * 240);
    if ((await portFree(`127.0.${n}.1`, 15012)) && (await portFree(`127.0.${n}.50`, 15006))) subnet = n;
  }
  assert.ok(subnet, 'a free 127.0.N.0/24');
  const file = path.join(dir, 'vm.yaml');
  fs.writeFileSync(file, MANIFESTS);
  istiod = new Istiod({
    host: `127.0.${subnet}.1`,
    xdsPlainPort: 15010,
    xdsTlsPort: 15012,
    monitoringPort: 15014,
    stateDir: path.join(dir, 'istiod'),
    configFiles: [file],
    log: pino({ level: 'info' }, pino.destination({ dest: path.join(dir, 'istiod.log'), sync: true })),
  });
  await istiod.start();
  backend = http.createServer((req, res) => {
    seenCallers.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('vm says hi');
  });
  await new Promise<void>((r) => backend.listen(8080, `127.0.${subnet}.50`, () => r()));
});

after(async () => {
  for (const s of sidecars) await s.stop();
  backend?.closeAllConnections();
  backend?.close();
  await istiod?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('VM auto-registration through istiod', () => {
  it('mints bootstrap tokens only for existing groups, behind the admin token', async () => {
    const admin = fs.readFileSync(path.join(dir, 'istiod', 'admin-token'), 'utf8');
    assert.equal((await adminPost('/v1/vm/bootstrap', '{}')).status, 401);
    const bad = await adminPost(
      '/v1/vm/bootstrap',
      JSON.stringify({ namespace: 'VM', workloadGroup: 'legacy', ttlSeconds: 5 }),
      admin,
    );
    assert.equal(bad.status, 400);
    assert.match(String(bad.json['error']), /namespace: must be a lowercase RFC 1123 label/);
    assert.match(String(bad.json['error']), /ttlSeconds: must be ≥ 60/);
    const missing = await adminPost(
      '/v1/vm/bootstrap',
      JSON.stringify({ namespace: 'vm', workloadGroup: 'nope' }),
      admin,
    );
    assert.equal(missing.status, 404);
    const ok = await adminPost('/v1/vm/bootstrap', JSON.stringify({ namespace: 'vm', workloadGroup: 'legacy' }), admin);
    assert.equal(ok.status, 200);
    assert.equal(ok.json['serviceAccount'], 'legacy-sa');
    assert.equal(ok.json['discoveryAddress'], istiod.addresses.xdsTls);
    assert.match(String(ok.json['rootCertPem']), /BEGIN CERTIFICATE/);
    const expiresIn = Date.parse(String(ok.json['expiresAt'])) - Date.now();
    assert.ok(expiresIn > 3_590_000 && expiresIn <= 3_600_000, `1 h token, got ${expiresIn} ms`);
    assert.ok(
      !fs.readFileSync(path.join(dir, 'istiod.log'), 'utf8').includes(String(ok.json['token'])),
      'token not logged',
    );
  });

  it('registers the VM, keeps it out of the endpoints until healthy, then routes pod → VM over mTLS', async () => {
    const admin = fs.readFileSync(path.join(dir, 'istiod', 'admin-token'), 'utf8');
    const boot = await adminPost(
      '/v1/vm/bootstrap',
      JSON.stringify({ namespace: 'vm', workloadGroup: 'legacy' }),
      admin,
    );
    const vmIp = `127.0.${subnet}.50`;
    const vm = sidecar({
      ip: vmIp,
      name: 'vm-1',
      sa: 'legacy-sa',
      token: String(boot.json['token']),
      nodeMetadata: { AUTO_REGISTER_GROUP: 'legacy' },
    });
    await vm.start();
    // A pod in the mesh: registered as a Pod, bootstrapped with a local token.
    const sleepIp = `127.0.${subnet}.10`;
    const [pod] = parseManifests(`apiVersion: v1
kind: Pod
metadata: {name: sleep-0, namespace: vm, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: app, image: x}]}
status: {phase: Running, podIP: ${sleepIp}, conditions: [{type: Ready, status: 'True'}]}
`).resources;
    istiod.store.apply([pod as unknown as StoredObject], 'test');
    const sleep = sidecar({
      ip: sleepIp,
      name: 'sleep-0',
      sa: 'sleep',
      token: istiod.tokens.mint({ namespace: 'vm', serviceAccount: 'sleep' }),
      labels: { app: 'sleep' },
    });
    await sleep.start();
    await waitUntil(() => vm.ready() && sleep.ready(), 15_000, 'sidecars ready');

    const entries = () => istiod.store.list<WorkloadEntryObject & StoredObject>('WorkloadEntry');
    await waitUntil(() => entries().length === 1, 10_000, 'WorkloadEntry');
    const we = entries()[0];
    assert.equal(we?.spec.address, vmIp);
    assert.equal(we?.metadata.annotations?.[WorkloadEntryAnnotations.autoRegistrationGroup], 'legacy');
    const cluster = 'outbound|80||legacy.vm.svc.cluster.local';
    const vmEndpoint = () =>
      sleep.clusters
        .all()
        .find((c) => c.name === cluster)
        ?.endpoints.find((e) => e.address === vmIp);
    await waitUntil(() => vmEndpoint() !== undefined, 10_000, 'the VM in the pod’s EDS');
    assert.equal(vmEndpoint()?.healthy, false, 'unhealthy before the first report');

    // Health reports: only the VM's own identity, with a client certificate, about a registered proxy.
    const proxyId = vm.node().id;
    assert.equal((await report(undefined, { proxyId, healthy: true, message: '' })).code, grpc.status.UNAUTHENTICATED);
    assert.equal(
      (await report(sleep.certificate(), { proxyId, healthy: true, message: '' })).code,
      grpc.status.PERMISSION_DENIED,
    );
    assert.equal((await report(vm.certificate(), { proxyId, healthy: 'yes' })).code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      (await report(vm.certificate(), { proxyId: 'sidecar~x', healthy: true, message: '' })).code,
      grpc.status.NOT_FOUND,
    );
    const ok = await report(vm.certificate(), { proxyId, healthy: true, message: '' });
    assert.equal(ok.code, 0);
    assert.equal(ok.ack?.workloadEntry, `vm/${we?.metadata.name}`);
    await waitUntil(() => vmEndpoint()?.healthy === true, 10_000, 'the VM healthy in the pod’s EDS');

    const res = await get(`${sleepIp}:15001`, 'legacy.vm.svc.cluster.local');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'vm says hi');
    assert.match(seenCallers.at(-1) ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/sleep/);
    assert.equal(vm.certificate()?.spiffeId, 'spiffe://cluster.local/ns/vm/sa/legacy-sa');

    await report(vm.certificate(), { proxyId, healthy: false, message: 'HTTP 503' });
    await waitUntil(() => vmEndpoint()?.healthy === false, 10_000, 'the VM unhealthy again');

    // Disconnect: the entry is marked and stays for the grace period.
    await vm.stop();
    await waitUntil(
      () => entries()[0]?.metadata.annotations?.[WorkloadEntryAnnotations.disconnectedAt] !== undefined,
      10_000,
      'disconnectedAt',
    );
    assert.equal(entries().length, 1);
  });
});
