/**
 * Test harness: a real istiod and real sidecars in this process, each pod on its own 127.0.N.x address, with
 * counting backends standing in for apps. Everything binds to loopback and is torn down by `close()`.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { parseResource, type MeshResource } from '@fedmesh/api';
import { Istiod, type FederationSettings, type IstiodOptions } from '@fedmesh/istiod';
import { reserveSubnet } from '@fedmesh/ctl';
import { Sidecar } from '@fedmesh/proxy';

/** FIXTURES is the shared Istio sample directory beside the repository. */
export const FIXTURES = path.resolve(import.meta.dirname, '../../../shared/fixtures/istio-samples');
/** SAMPLES is the repository's own copy of the Istio samples the demo runs. */
export const SAMPLES = path.resolve(import.meta.dirname, '../../samples/istio');

/** testLogger writes JSON logs to `<dir>/<name>.log` so failures can be read afterwards. */
export function testLogger(dir: string, name: string): Logger {
  return pino(
    { level: process.env.FEDMESH_TEST_LOG_LEVEL ?? 'info' },
    pino.destination({ dest: path.join(dir, `${name}.log`), sync: true }),
  );
}

/**
 * freeSubnet picks N such that 127.0.N.0/24 is unused by another test: reserved across processes with a lock file
 * (`reserveSubnet`, so test files starting together never share a block) and istiod's 15012 and a pod's 15001 free.
 */
export async function freeSubnet(): Promise<number> {
  return reserveSubnet([
    [1, 15012],
    [10, 15001],
  ]);
}

/** CountingBackend is an HTTP app that records every request it receives. */
export interface CountingBackend {
  server: http.Server;
  requests: http.IncomingHttpHeaders[];
}

/** startBackend starts an app on `host:port` that answers 200 with `{pod, caller}` and counts requests. */
export async function startBackend(host: string, port: number, pod: string): Promise<CountingBackend> {
  const requests: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.headers);
    req.resume();
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ pod, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return { server, requests };
}

/** PodSpec describes a pod for {@link LocalMesh.addPod}. */
export interface PodSpec {
  name: string;
  namespace?: string;
  serviceAccount: string;
  labels: Record<string, string>;
  /** appPort, when set, starts a counting backend on the pod's address. */
  appPort?: number;
  /** certTtlSeconds is the certificate lifetime the sidecar requests (default: the CA's, 24 h). */
  certTtlSeconds?: number;
  /** xdsProtocol is the sidecar's ADS variant (default State of the World). */
  xdsProtocol?: 'sotw' | 'delta';
}

/** TestPod is a started pod: its sidecar, address and backend. */
export interface TestPod {
  name: string;
  ip: string;
  sidecar: Sidecar;
  backend?: CountingBackend;
}

/** LocalMesh is an in-process istiod plus sidecars for integration tests. */
export class LocalMesh {
  readonly dir: string;
  istiod!: Istiod;
  subnet = 0;
  clusterId = 'Kubernetes';
  private nextIp = 10;
  readonly pods: TestPod[] = [];
  private istiodOptions!: IstiodOptions;
  private readonly podResources: MeshResource[] = [];
  private restarts = 0;

  /** constructor makes the temp dir only. */
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-test-'));
  }

  /** start starts istiod on 127.0.N.1 with the given manifest files (and plug-in CA dir, if any). */
  async start(
    files: string[],
    caDir?: string,
    extra: { federation?: FederationSettings; clusterId?: string } = {},
  ): Promise<void> {
    this.subnet = await freeSubnet();
    this.clusterId = extra.clusterId ?? 'Kubernetes';
    this.istiod = new Istiod(
      (this.istiodOptions = {
        host: `127.0.${this.subnet}.1`,
        xdsPlainPort: 15010,
        xdsTlsPort: 15012,
        monitoringPort: 15014,
        stateDir: path.join(this.dir, 'istiod'),
        configFiles: files,
        ...(caDir ? { caDir } : {}),
        ...(extra.federation ? { federation: extra.federation } : {}),
        mesh: { clusterId: this.clusterId },
        log: testLogger(this.dir, 'istiod'),
      }),
    );
    await this.istiod.start();
  }

  /**
   * restartIstiod stops istiod and starts a new one with the same options and state dir (its CA and trust state are
   * reloaded from there), then registers the pods again. Sidecars keep running and reconnect on their own.
   */
  async restartIstiod(): Promise<void> {
    await this.istiod.stop();
    this.istiod = new Istiod({ ...this.istiodOptions, log: testLogger(this.dir, `istiod-${++this.restarts}`) });
    await this.istiod.start();
    this.istiod.store.apply(this.podResources, 'test');
  }

  /** rootCertPem is the mesh root the sidecars trust istiod with. */
  rootCertPem(): string {
    return this.istiod.ca.rootCertsPem.join('');
  }

  /** addPod registers a Pod with istiod, starts its backend (if any) and its sidecar, and waits until it is ready. */
  async addPod(spec: PodSpec): Promise<TestPod> {
    const ip = `127.0.${this.subnet}.${this.nextIp++}`;
    const namespace = spec.namespace ?? 'default';
    this.podResources.push(
      parseResource({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: spec.name,
          namespace,
          labels: spec.labels,
          ownerReferences: [{ kind: 'Deployment', name: spec.name.replace(/-\d+$/, '') }],
        },
        spec: {
          serviceAccountName: spec.serviceAccount,
          containers: [
            { name: 'app', image: 'fedmesh/echo', ports: spec.appPort ? [{ containerPort: spec.appPort }] : [] },
          ],
        },
        status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
      }),
    );
    this.istiod.store.apply(this.podResources.slice(-1), 'test');
    const backend = spec.appPort ? await startBackend(ip, spec.appPort, spec.name) : undefined;
    const log = testLogger(this.dir, spec.name);
    const sidecar = new Sidecar({
      ip,
      podName: spec.name,
      namespace,
      serviceAccount: spec.serviceAccount,
      labels: spec.labels,
      workloadName: spec.name.replace(/-\d+$/, ''),
      clusterId: this.clusterId,
      discoveryAddress: this.istiod.addresses.xdsTls,
      rootCertPem: this.rootCertPem(),
      token: this.istiod.tokens.mint({ namespace, serviceAccount: spec.serviceAccount }),
      ...(spec.certTtlSeconds !== undefined ? { certTtlSeconds: spec.certTtlSeconds } : {}),
      ...(spec.xdsProtocol !== undefined ? { xdsProtocol: spec.xdsProtocol } : {}),
      adminPort: 15000,
      mtlsPort: 15006,
      log,
      accessLog: log.child({ scope: 'access' }),
    });
    await sidecar.start();
    await waitUntil(() => sidecar.ready(), 15_000, `${spec.name} ready`);
    const pod: TestPod = { name: spec.name, ip, sidecar, ...(backend ? { backend } : {}) };
    this.pods.push(pod);
    return pod;
  }

  /** close stops every sidecar, backend and istiod, and removes the temp dir. */
  async close(): Promise<void> {
    for (const p of this.pods) {
      await p.sidecar.stop();
      p.backend?.server.closeAllConnections();
      p.backend?.server.close();
    }
    await this.istiod?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** waitUntil polls `check` every 20 ms until it is true, or throws after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** get sends one HTTP/1.1 request through a proxy's outbound listener with a Host header; resolves status and body. */
export function get(
  proxyAddr: string,
  host: string,
  pathName = '/',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const [h, p] = proxyAddr.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: h, port: Number(p), path: pathName, headers: { host, ...headers }, agent: false, timeout: 10_000 },
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
