/**
 * Helpers for the resilience tests: programmable apps behind real sidecars, config applied to the in-process
 * istiod, access-log and metric readers, and an HTTP client that times requests.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseManifests } from '@fedmesh/api';
import type { AccessLogEntry, EnvoyCluster } from '@fedmesh/proxy';
import { LocalMesh, waitUntil, type TestPod } from '../harness.js';

/** AppRequest is one request an app received. */
export interface AppRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** attempt is the `x-envoy-attempt-count` header (0 when absent). */
  attempt: number;
}

/** AppHandler answers one request; it may leave the response open (held) until the test releases it. */
export type AppHandler = (req: AppRequest, res: http.ServerResponse, app: TestApp) => void;

/** TestApp is an app on a pod's address whose behaviour a test sets, recording every request. */
export class TestApp {
  readonly requests: AppRequest[] = [];
  readonly held: http.ServerResponse[] = [];
  handler: AppHandler = (_req, res, app) => app.ok(res);
  private constructor(
    readonly name: string,
    readonly server: http.Server,
  ) {}

  /** start listens on `host:port`. */
  static async start(host: string, port: number, name: string): Promise<TestApp> {
    const box: { app?: TestApp } = {};
    const server = http.createServer((req, res) => {
      const app = box.app;
      if (!app) return void res.writeHead(503).end();
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r: AppRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          attempt: Number(req.headers['x-envoy-attempt-count'] ?? 0),
        };
        app.requests.push(r);
        app.handler(r, res, app);
      });
    });
    const app = new TestApp(name, server);
    box.app = app;
    await new Promise<void>((resolve) => server.listen(port, host, resolve));
    return app;
  }

  /** ok answers 200 with `{pod, attempt}`. */
  ok(res: http.ServerResponse, status = 200): void {
    const body = JSON.stringify({ pod: this.name });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  }

  /** hold keeps a response open until {@link TestApp.release}. */
  hold(res: http.ServerResponse): void {
    this.held.push(res);
  }

  /** release answers every held response (200 unless told). */
  release(status = 200): void {
    for (const res of this.held.splice(0)) if (!res.writableEnded && !res.destroyed) this.ok(res, status);
  }

  /** close releases held responses and stops the server. */
  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** apply validates manifests and applies them to istiod's store, as `fedmesh apply` would. */
export function apply(mesh: LocalMesh, yaml: string): void {
  const { resources, errors } = parseManifests(yaml, { file: 'test.yaml' });
  assert.deepEqual(
    errors.filter((e) => e.severity === 'error'),
    [],
  );
  mesh.istiod.store.apply(resources, 'resilience-test');
}

/** remove deletes config objects (`Kind/namespace/name`) from istiod's store. */
export function remove(mesh: LocalMesh, ...keys: string[]): void {
  mesh.istiod.store.remove(keys);
}

/** service renders a Kubernetes Service selecting `app: <name>` on port 8080 → 9090. */
export function service(name: string): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  selector: { app: ${name} }
  ports: [{ name: http, port: 8080, targetPort: 9090 }]
---
`;
}

/** APP_PORT is the target port apps listen on. */
export const APP_PORT = 9090;

/** startMesh starts istiod with the given manifest text (Services and config). */
export async function startMesh(yaml: string): Promise<LocalMesh> {
  const mesh = new LocalMesh();
  const file = path.join(mesh.dir, 'manifests.yaml');
  fs.writeFileSync(file, yaml);
  await mesh.start([file]);
  return mesh;
}

/** addApp adds a pod `<app>-<i>` running a {@link TestApp} behind a sidecar. */
export async function addApp(
  mesh: LocalMesh,
  app: string,
  i: number,
  labels: Record<string, string> = {},
): Promise<{ pod: TestPod; app: TestApp }> {
  const pod = await mesh.addPod({ name: `${app}-${i}`, serviceAccount: app, labels: { app, ...labels } });
  const a = await TestApp.start(pod.ip, APP_PORT, pod.name);
  return { pod, app: a };
}

/** Reply is a response as a client saw it. */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** ms is the time from sending to the end of the response, measured by the client. */
  ms: number;
}

/** SendOptions shape one request. */
export interface SendOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  /** localAddress binds the client socket (a different source IP). */
  localAddress?: string;
  timeoutMs?: number;
}

/** send makes one request through a pod's outbound listener (15001) with `Host: <host>`, on a new connection. */
export function send(client: TestPod, host: string, opts: SendOptions = {}): Promise<Reply> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: client.ip,
        port: 15001,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: { host, ...opts.headers },
        agent: false,
        timeout: opts.timeoutMs ?? 20_000,
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            ms: Number(process.hrtime.bigint() - t0) / 1e6,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** podOf returns the `pod` field of an app's JSON answer, or `status-<code>`. */
export function podOf(r: Reply): string {
  if (r.status !== 200) return `status-${r.status}`;
  return (JSON.parse(r.body) as { pod: string }).pod;
}

/** tally counts values. */
export function tally(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}

/** accessLogs returns a pod's access log entries (the sidecar's JSON log lines with msg `access`). */
export function accessLogs(mesh: LocalMesh, pod: string): (AccessLogEntry & { time: number })[] {
  const file = path.join(mesh.dir, `${pod}.log`);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"access"'))
    .map((l) => JSON.parse(l) as AccessLogEntry & { time: number });
}

/** logLines returns a pod's log entries with the given message. */
export function logLines(mesh: LocalMesh, pod: string, msg: string): Record<string, unknown>[] {
  const file = path.join(mesh.dir, `${pod}.log`);
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** admin makes a request to a pod's admin listener (15000). */
export function admin(pod: TestPod, pathName: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: pod.ip, port: 15000, path: pathName, method, agent: false, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('admin timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** metricValue sums a Prometheus sample's values over series whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const have = new Map<string, string>();
    for (const kv of (m[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1] ?? '', kv[2] ?? '');
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[2]);
  }
  return sum;
}

/** clusterOf names the outbound cluster of a test service. */
export function clusterOf(svc: string, subset = ''): string {
  return `outbound|8080|${subset}|${svc}.default.svc.cluster.local`;
}

/** waitForCluster waits until a pod's sidecar holds a cluster whose config satisfies `check`. */
export async function waitForCluster(
  pod: TestPod,
  name: string,
  check: (config: EnvoyCluster) => boolean,
  what = `${name} updated`,
): Promise<void> {
  await waitUntil(
    () => {
      const c = pod.sidecar.clusters.get(name);
      return c !== undefined && check(c.config);
    },
    20_000,
    what,
  );
}

/** waitForEndpoints waits until a pod's sidecar knows `n` endpoints of a test service's cluster. */
export async function waitForEndpoints(pod: TestPod, svc: string, n: number, subset = ''): Promise<void> {
  await waitUntil(
    () => (pod.sidecar.clusters.get(clusterOf(svc, subset))?.endpoints.length ?? 0) >= n,
    20_000,
    `${n} endpoints of ${svc} at ${pod.name}`,
  );
}

/** waitForRoute waits until a pod's outbound routes (as JSON) satisfy `check`. */
export async function waitForRoute(pod: TestPod, check: (routesJson: string) => boolean, what: string): Promise<void> {
  await waitUntil(() => check(JSON.stringify(pod.sidecar.configDump().routes)), 20_000, what);
}

/** closeAll closes apps and the mesh, even when one of them fails. */
export async function closeAll(mesh: LocalMesh | undefined, apps: readonly TestApp[]): Promise<void> {
  const results = await Promise.allSettled(apps.map((a) => a.close()));
  await mesh?.close();
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
