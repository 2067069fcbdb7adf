/**
 * ProxylessMesh: a real istiod in this process, real @grpc/grpc-js echo backends registered as Pods behind
 * Services (plain gRPC, no sidecar), and @grpc/grpc-js-xds clients that dial `xds:///<host>:<port>` against
 * istiod's plaintext ADS port (15010), as Istio's proxyless gRPC mode does. grpc-js-xds reads its bootstrap once
 * per process, so each test file runs one mesh and one client node; tests isolate themselves by service name.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';
import * as protoLoader from '@grpc/proto-loader';
import { parseManifests, parseResource } from '@fedmesh/api';
import { Istiod } from '@fedmesh/istiod';
import { freeSubnet, testLogger, waitUntil } from '../harness.js';

/** EchoRequest is the request message of `fedmesh.echo.Echo`. */
export interface EchoRequest {
  message?: string;
  sleep_ms?: number;
  request_id?: string;
  fail_first?: boolean;
}

/** EchoResponse is the response message: the backend that answered and the method it saw. */
export interface EchoResponse {
  pod: string;
  method: string;
  message: string;
}

type Unary = (
  req: EchoRequest,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: EchoResponse) => void,
) => grpc.ClientUnaryCall;

/** EchoClient is the generated client of `fedmesh.echo.Echo`. */
export interface EchoClient extends grpc.Client {
  Echo: Unary;
  Ping: Unary;
}

const PROTO = path.join(import.meta.dirname, 'echo.proto');

function loadEcho(): {
  service: grpc.ServiceDefinition;
  Client: new (target: string, creds: grpc.ChannelCredentials) => EchoClient;
} {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    fedmesh: { echo: { Echo: grpc.ServiceClientConstructor } };
  };
  const ctor = pkg.fedmesh.echo.Echo;
  return {
    service: ctor.service,
    Client: ctor as unknown as new (t: string, c: grpc.ChannelCredentials) => EchoClient,
  };
}

/** Backend is one echo server registered as a Pod. */
export interface Backend {
  pod: string;
  ip: string;
  port: number;
  server: grpc.Server;
  /** calls counts the calls this backend answered (or failed on purpose). */
  calls: number;
  /** inFlight counts calls currently held by this backend. */
  inFlight: number;
  maxInFlight: number;
}

/** BackendSpec describes a backend pod for {@link ProxylessMesh.addBackend}. */
export interface BackendSpec {
  pod: string;
  app: string;
  version?: string;
  port: number;
  namespace?: string;
  region?: string;
  zone?: string;
}

/** CallResult is what one RPC ended with: the answering pod, or the gRPC status code and details. */
export type CallResult = { ok: true; pod: string; method: string } | { ok: false; code: grpc.status; details: string };

/**
 * unrefLongTimers works around grpc-js-xds 1.14.1: its priority and weighted-target balancers arm a 15-minute
 * retention timer when a child is deactivated (after a failover or a locality change) and never clear it on
 * destroy, so a test process would stay alive 15 minutes after its last call. While installed, timers of 10
 * minutes or more are unref'd; the returned function restores `setTimeout`.
 */
function unrefLongTimers(): () => void {
  const original = globalThis.setTimeout;
  const patched = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const t = original(fn, ms, ...args);
    if (typeof ms === 'number' && ms >= 10 * 60_000) t.unref();
    return t;
  }) as typeof setTimeout;
  globalThis.setTimeout = Object.assign(patched, original);
  return () => {
    globalThis.setTimeout = original;
  };
}

/** CLIENT_LOCALITY is the locality of the suite's client node. */
export const CLIENT_LOCALITY = { region: 'us-east1', zone: 'us-east1-a' };

/** ProxylessMesh is an in-process istiod plus echo backends and proxyless clients; see the file comment. */
export class ProxylessMesh {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-proxyless-'));
  istiod!: Istiod;
  subnet = 0;
  nodeId = '';
  readonly backends = new Map<string, Backend>();
  private readonly clients: EchoClient[] = [];
  private readonly echo = loadEcho();
  private nextIp = 20;
  private restoreTimers: (() => void) | undefined;

  /**
   * start starts istiod on 127.0.N.1 and points grpc-js-xds at its plaintext ADS port through
   * GRPC_XDS_BOOTSTRAP_CONFIG: node `sidecar~127.0.N.9~client-0.default~default.svc.cluster.local` with
   * `GENERATOR: grpc` and locality {@link CLIENT_LOCALITY}.
   */
  async start(): Promise<void> {
    this.restoreTimers = unrefLongTimers();
    this.subnet = await freeSubnet();
    this.istiod = new Istiod({
      host: `127.0.${this.subnet}.1`,
      xdsPlainPort: 15010,
      xdsTlsPort: 15012,
      monitoringPort: 15014,
      stateDir: path.join(this.dir, 'istiod'),
      configFiles: [],
      log: testLogger(this.dir, 'istiod'),
    });
    await this.istiod.start();
    this.nodeId = `sidecar~127.0.${this.subnet}.9~client-0.default~default.svc.cluster.local`;
    process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
      xds_servers: [
        {
          server_uri: this.istiod.addresses.xdsPlain,
          channel_creds: [{ type: 'insecure' }],
          server_features: ['xds_v3'],
        },
      ],
      node: {
        id: this.nodeId,
        metadata: { GENERATOR: 'grpc', NAMESPACE: 'default', SERVICE_ACCOUNT: 'client', LABELS: { app: 'client' } },
        locality: CLIENT_LOCALITY,
      },
    });
    xds.register();
  }

  /** apply validates and stores manifests (as `fedmesh apply` would); throws on any invalid document. */
  apply(yaml: string): void {
    const { resources, errors } = parseManifests(yaml, { file: 'test.yaml' });
    const bad = errors.filter((e) => e.severity === 'error');
    if (bad.length > 0) throw new Error(bad.map((e) => e.message).join('; '));
    this.istiod.store.apply(resources, 'test');
  }

  /** addService registers a Service `<name>` in `namespace` selecting `app: <name>`, one gRPC port. */
  addService(name: string, port: number, namespace = 'default'): string {
    this.istiod.store.apply(
      [
        parseResource({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name, namespace },
          spec: { selector: { app: name }, ports: [{ name: 'grpc', port, targetPort: port }] },
        }),
      ],
      'test',
    );
    return `${name}.${namespace}.svc.cluster.local:${port}`;
  }

  /**
   * addBackend starts an echo server on `ip` (default: the next free 127.0.N.x address) and registers its Pod
   * (ready). Passing the address of a stopped backend restarts it in place.
   */
  async addBackend(spec: BackendSpec, ip = `127.0.${this.subnet}.${this.nextIp++}`): Promise<Backend> {
    const b: Backend = {
      pod: spec.pod,
      ip,
      port: spec.port,
      server: new grpc.Server(),
      calls: 0,
      inFlight: 0,
      maxInFlight: 0,
    };
    const failed = new Set<string>();
    const handle =
      (method: string) =>
      (call: grpc.ServerUnaryCall<EchoRequest, EchoResponse>, cb: grpc.sendUnaryData<EchoResponse>): void => {
        b.calls++;
        const req = call.request;
        if (req.fail_first && req.request_id && !failed.has(req.request_id)) {
          failed.add(req.request_id);
          cb({ code: grpc.status.UNAVAILABLE, details: `${spec.pod} fails the first attempt` });
          return;
        }
        b.inFlight++;
        b.maxInFlight = Math.max(b.maxInFlight, b.inFlight);
        setTimeout(() => {
          b.inFlight--;
          cb(null, { pod: spec.pod, method, message: req.message ?? '' });
        }, req.sleep_ms ?? 0);
      };
    b.server.addService(this.echo.service, {
      Echo: handle('/fedmesh.echo.Echo/Echo'),
      Ping: handle('/fedmesh.echo.Echo/Ping'),
    });
    await new Promise<void>((resolve, reject) =>
      b.server.bindAsync(`${ip}:${spec.port}`, grpc.ServerCredentials.createInsecure(), (e) =>
        e ? reject(e) : resolve(),
      ),
    );
    this.backends.set(spec.pod, b);
    this.registerPod(spec, ip);
    return b;
  }

  /** registerPod stores (or replaces) a backend's Pod with the given address, Running and Ready. */
  registerPod(spec: BackendSpec, ip: string): void {
    const labels: Record<string, string> = { app: spec.app, version: spec.version ?? 'v1' };
    if (spec.region) labels['topology.kubernetes.io/region'] = spec.region;
    if (spec.zone) labels['topology.kubernetes.io/zone'] = spec.zone;
    this.istiod.store.apply(
      [
        parseResource({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: spec.pod, namespace: spec.namespace ?? 'default', labels },
          spec: { containers: [{ name: 'app', image: 'fedmesh/echo', ports: [{ containerPort: spec.port }] }] },
          status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
        }),
      ],
      'test',
    );
  }

  /** removePod deletes a backend's Pod from istiod (its server keeps running). */
  removePod(pod: string, namespace = 'default'): void {
    this.istiod.store.remove([`Pod/${namespace}/${pod}`]);
  }

  /** stopBackend shuts a backend's server down (its Pod stays registered). */
  async stopBackend(pod: string): Promise<void> {
    const b = this.backends.get(pod);
    if (!b) return;
    b.server.forceShutdown();
    this.backends.delete(pod);
  }

  /** client dials `xds:///<target>` through grpc-js-xds; closed by {@link ProxylessMesh.close}. */
  client(target: string): EchoClient {
    const c = new this.echo.Client(`xds:///${target}`, grpc.credentials.createInsecure());
    this.clients.push(c);
    return c;
  }

  /** call makes one unary call (default method Echo, 5 s deadline) and resolves its outcome, never rejecting. */
  call(
    client: EchoClient,
    req: EchoRequest = {},
    opts: { method?: 'Echo' | 'Ping'; metadata?: Record<string, string>; deadlineMs?: number } = {},
  ): Promise<CallResult> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
    const fn = client[opts.method ?? 'Echo'].bind(client);
    return new Promise((resolve) => {
      fn(req, md, { deadline: Date.now() + (opts.deadlineMs ?? 5000) }, (err, res) => {
        if (err) resolve({ ok: false, code: err.code, details: err.details });
        else resolve({ ok: true, pod: res?.pod ?? '', method: res?.method ?? '' });
      });
    });
  }

  /** tally makes `n` sequential calls and counts answers by pod (failures under `!<code>`). */
  async tally(
    client: EchoClient,
    n: number,
    opts: Parameters<ProxylessMesh['call']>[2] = {},
    req: EchoRequest = {},
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const r = await this.call(client, req, opts);
      const k = r.ok ? r.pod : `!${r.code}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
    return out;
  }

  /**
   * until polls batches of calls (`batch`, default 6, each with `req` and `opts`) until one batch satisfies
   * `check`, or throws after `timeoutMs` (default 20 s): the way to wait for a config change to reach the client.
   */
  async until(
    client: EchoClient,
    check: (t: Map<string, number>) => boolean,
    what: string,
    opts: Parameters<ProxylessMesh['call']>[2] & { batch?: number; timeoutMs?: number; req?: () => EchoRequest } = {},
  ): Promise<void> {
    const { batch = 6, timeoutMs = 20_000, req, ...callOpts } = opts;
    await waitUntil(
      async () => {
        const out = new Map<string, number>();
        for (let i = 0; i < batch; i++) {
          const r = await this.call(client, req?.() ?? {}, { deadlineMs: 2000, ...callOpts });
          const k = r.ok ? r.pod : `!${r.code}`;
          out.set(k, (out.get(k) ?? 0) + 1);
        }
        return check(out);
      },
      timeoutMs,
      what,
    );
  }

  /** metrics returns istiod's Prometheus text from 15014. */
  async metrics(): Promise<string> {
    const r = await fetch(`http://${this.istiod.addresses.monitoring}/metrics`);
    return r.text();
  }

  /** close closes every client and backend, stops istiod and removes the temp dir. */
  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    for (const b of this.backends.values()) b.server.forceShutdown();
    await this.istiod?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.restoreTimers?.();
  }
}

/** metricValue reads one sample from Prometheus text (`name{labels} value`); 0 when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (labels ? rest.startsWith(`{${labels}}`) || rest.startsWith(`{${labels},`) : rest.startsWith(' '))
      return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}
