/**
 * One cluster's local mesh of pods for the netns suite, run inside the cluster's namespace with
 * `ip netns exec <ns> node --import tsx pods-runner.ts <config.json>`. Each pod is a real fedmesh sidecar on its own
 * 127.0.N.x (loopback is per namespace) with an echo backend that answers `{pod, cluster, version, xfcc}`; pods are
 * registered with the cluster's istiod through its admin API, as `fedmesh up` does. The test drives it with JSON
 * lines on stdin (`{id, cmd, …}`) and reads one JSON answer per command on stdout (`{id, ok, …}`); every client
 * request runs here, inside the namespace.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import pino, { type Logger } from 'pino';
import { Sidecar } from '@fedmesh/proxy';

/** PodPlan is one pod to run: an app with a backend on `ports`, or a client (no backend) such as sleep. */
export interface PodPlan {
  name: string;
  app: string;
  version: string;
  serviceAccount: string;
  ports: number[];
  ip: string;
  /** registerOnly pods are registered with istiod (readiness toggled by `setReady`) but not started. */
  registerOnly?: boolean;
}

/** PodsRunnerConfig is the JSON file the runner reads. */
export interface PodsRunnerConfig {
  cluster: string;
  region: string;
  dir: string;
  istiod: { xdsTls: string; monitoring: string };
  adminTokenFile: string;
  rootCertFile: string;
  pods: PodPlan[];
}

interface RunningPod {
  plan: PodPlan;
  ready: boolean;
  sidecar?: Sidecar | undefined;
  backends: http.Server[];
  requests: number;
  lastXfcc: string | null;
}

type Command = { id: number; cmd: string } & Record<string, unknown>;

const cfg = JSON.parse(fs.readFileSync(process.argv[2] ?? '', 'utf8')) as PodsRunnerConfig;
const log: Logger = pino(
  { level: process.env.FEDMESH_TEST_LOG_LEVEL ?? 'info', base: { cluster: cfg.cluster } },
  pino.destination({ dest: path.join(cfg.dir, 'pods.log'), sync: false }),
);
const adminToken = fs.readFileSync(cfg.adminTokenFile, 'utf8').trim();
const rootCertPem = fs.readFileSync(cfg.rootCertFile, 'utf8');
const pods = new Map<string, RunningPod>();
const watches = new Map<number, { stop: () => { t: number; sig: string }[] }>();
let nextWatch = 1;

function podManifest(p: PodPlan, ready: boolean): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: 'default',
      labels: { app: p.app, version: p.version, 'topology.kubernetes.io/region': cfg.region },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: `${p.app}-${p.version}`, uid: p.app }],
    },
    spec: {
      serviceAccountName: p.serviceAccount,
      containers: [{ name: 'app', image: 'fedmesh/echo', ports: p.ports.map((c) => ({ containerPort: c })) }],
    },
    status: {
      phase: 'Running',
      podIP: p.ip,
      podIPs: [{ ip: p.ip }],
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    },
  };
}

async function admin(pathname: string, body: string, type = 'application/yaml'): Promise<unknown> {
  const res = await fetch(`http://${cfg.istiod.monitoring}${pathname}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': type },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const json = (await res.json()) as { errors?: { text: string }[]; error?: string };
  if (res.status !== 200) throw new Error(`istiod ${pathname}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

function applyPods(list: { plan: PodPlan; ready: boolean }[]): Promise<unknown> {
  return admin(
    '/v1/apply?source=pods-runner',
    list.map((p) => JSON.stringify(podManifest(p.plan, p.ready))).join('\n---\n'),
  );
}

function echoServer(pod: RunningPod): http.Server {
  const s = http.createServer(
    { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 15_000 },
    (req, res) => {
      pod.requests++;
      const xfcc = req.headers['x-forwarded-client-cert'];
      pod.lastXfcc = typeof xfcc === 'string' ? xfcc : null;
      req.resume();
      const body = JSON.stringify({
        pod: pod.plan.name,
        cluster: cfg.cluster,
        version: pod.plan.version,
        xfcc: pod.lastXfcc,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    },
  );
  s.maxConnections = 1024;
  return s;
}

async function startPod(pod: RunningPod): Promise<void> {
  const p = pod.plan;
  const token = (await admin(
    '/v1/token',
    JSON.stringify({ namespace: 'default', serviceAccount: p.serviceAccount }),
    'application/json',
  )) as { token: string };
  pod.backends = p.ports.map(() => echoServer(pod));
  await Promise.all(pod.backends.map((s, i) => new Promise<void>((r) => s.listen(p.ports[i], p.ip, () => r()))));
  const plog = log.child({ pod: p.name });
  const sidecar = new Sidecar({
    ip: p.ip,
    podName: p.name,
    namespace: 'default',
    serviceAccount: p.serviceAccount,
    labels: { app: p.app, version: p.version, 'topology.kubernetes.io/region': cfg.region },
    workloadName: `${p.app}-${p.version}`,
    clusterId: cfg.cluster,
    discoveryAddress: cfg.istiod.xdsTls,
    rootCertPem,
    token: token.token,
    adminPort: 15000,
    mtlsPort: 15006,
    log: plog,
    accessLog: plog.child({ scope: 'access' }),
  });
  pod.sidecar = sidecar;
  await sidecar.start();
  const deadline = Date.now() + 30_000;
  while (!sidecar.ready()) {
    if (Date.now() > deadline) throw new Error(`${p.name}: sidecar not ready within 30 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** killPod stops a pod abruptly: listeners and backends close and every open connection is reset. */
async function killPod(pod: RunningPod): Promise<void> {
  await pod.sidecar?.stop();
  for (const s of pod.backends) {
    s.closeAllConnections();
    s.close();
  }
  pod.sidecar = undefined;
  pod.backends = [];
}

function podOf(cmd: Command): RunningPod {
  const pod = pods.get(String(cmd.pod));
  if (!pod) throw new Error(`no pod ${String(cmd.pod)}`);
  return pod;
}

function endpointsOf(
  pod: RunningPod,
  cluster: string,
): { address: string; port: number; weight: number; healthy: boolean; gateway: string | null; cluster: string }[] {
  const c = pod.sidecar?.clusters.get(cluster);
  return (c?.endpoints ?? [])
    .map((e) => ({
      address: e.address,
      port: e.port,
      weight: e.weight,
      healthy: e.healthy,
      gateway: e.networkGateway ?? null,
      cluster: e.workload?.cluster ?? '',
    }))
    .sort((a, b) => (`${a.address}:${a.port}` < `${b.address}:${b.port}` ? -1 : 1));
}

function signature(pod: RunningPod, cluster: string): string {
  return endpointsOf(pod, cluster)
    .map((e) => `${e.address}:${e.port}/w${e.weight}${e.healthy ? '' : '/unhealthy'}`)
    .join(',');
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: 10_000 });

/** request sends one GET through a pod's outbound listener (15001) with a Host header. */
function request(
  from: RunningPod,
  host: string,
  pathname: string,
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: from.plan.ip, port: 15001, path: pathname, headers: { host }, agent, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ status: 0, body: '' }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/**
 * load runs `concurrency` closed loops of GETs for `durationMs`. A failed request may be retried `clientRetries`
 * times. Returns counts and a timeline `[startMs, endMs, servedBy | 'fail', attempts]` per request.
 */
async function load(cmd: Command): Promise<object> {
  const from = podOf(cmd);
  const host = String(cmd.host);
  const durationMs = Number(cmd.durationMs);
  const retries = Number(cmd.clientRetries ?? 0);
  const end = Date.now() + durationMs;
  const timeline: [number, number, string, number][] = [];
  let sent = 0;
  let firstTryFailed = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (Date.now() < end) {
      const t = Date.now();
      sent++;
      let served = 'fail';
      let attempts = 0;
      for (let attempt = 0; attempt <= retries; attempt++) {
        attempts++;
        const r = await request(from, host, '/load');
        if (r.status === 200) {
          served = (JSON.parse(r.body) as { cluster: string }).cluster;
          break;
        }
        if (attempt === 0) firstTryFailed++;
      }
      if (served === 'fail') failed++;
      timeline.push([t, Date.now(), served, attempts]);
      await new Promise((r) => setTimeout(r, Number(cmd.pauseMs ?? 5)));
    }
  };
  await Promise.all(Array.from({ length: Number(cmd.concurrency ?? 2) }, loop));
  timeline.sort((a, b) => a[0] - b[0]);
  return { sent, failed, firstTryFailed, timeline };
}

async function handle(cmd: Command): Promise<object> {
  switch (cmd.cmd) {
    case 'get': {
      const r = await request(podOf(cmd), String(cmd.host), typeof cmd.path === 'string' ? cmd.path : '/');
      return { status: r.status, body: r.body };
    }
    case 'load':
      return load(cmd);
    case 'kill': {
      const victims = [...pods.values()].filter((p) => p.plan.app === cmd.app && p.sidecar);
      const killedAt = Date.now();
      await Promise.all(victims.map(killPod));
      // The kubelet notices the dead containers and reports the pods not Ready.
      await applyPods(victims.map((p) => ({ plan: p.plan, ready: false })));
      for (const v of victims) v.ready = false;
      return { killedAt, reportedAt: Date.now(), pods: victims.map((v) => v.plan.name) };
    }
    case 'setReady': {
      const pod = podOf(cmd);
      const t0 = Date.now();
      await applyPods([{ plan: pod.plan, ready: Boolean(cmd.ready) }]);
      pod.ready = Boolean(cmd.ready);
      return { t0 };
    }
    case 'apply':
      return { result: await admin('/v1/apply?source=netns-test', String(cmd.yaml)) };
    case 'endpoints':
      return { endpoints: endpointsOf(podOf(cmd), String(cmd.cluster)) };
    case 'waitEndpoints': {
      // Polls every 2 ms until the cluster's endpoint signature (address:port/wN,…) equals `want`.
      const pod = podOf(cmd);
      const deadline = Date.now() + Number(cmd.timeoutMs ?? 10_000);
      for (;;) {
        const sig = signature(pod, String(cmd.cluster));
        if (sig === cmd.want) return { t: Date.now(), sig };
        if (Date.now() > deadline) return { t: -1, sig };
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    case 'watchStart': {
      const pod = podOf(cmd);
      const cluster = String(cmd.cluster);
      const changes: { t: number; sig: string }[] = [{ t: Date.now(), sig: signature(pod, cluster) }];
      const timer = setInterval(() => {
        const sig = signature(pod, cluster);
        if (sig !== changes[changes.length - 1]?.sig) changes.push({ t: Date.now(), sig });
      }, 2);
      const id = nextWatch++;
      watches.set(id, {
        stop: () => {
          clearInterval(timer);
          return changes;
        },
      });
      return { watch: id };
    }
    case 'watchStop': {
      const w = watches.get(Number(cmd.watch));
      watches.delete(Number(cmd.watch));
      return { changes: w?.stop() ?? [] };
    }
    case 'backend': {
      const pod = podOf(cmd);
      return { requests: pod.requests, lastXfcc: pod.lastXfcc };
    }
    case 'requestsTotal': {
      const text = (await podOf(cmd).sidecar?.metrics.registry.getSingleMetricAsString('istio_requests_total')) ?? '';
      const total = text
        .split('\n')
        .filter((l) => l.startsWith('istio_requests_total{'))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
      return { total };
    }
    default:
      throw new Error(`unknown command ${cmd.cmd}`);
  }
}

async function main(): Promise<void> {
  for (const plan of cfg.pods) pods.set(plan.name, { plan, ready: true, backends: [], requests: 0, lastXfcc: null });
  await applyPods([...pods.values()].map((p) => ({ plan: p.plan, ready: !p.plan.registerOnly })));
  for (const p of pods.values()) if (p.plan.registerOnly) p.ready = false;
  await Promise.all([...pods.values()].filter((p) => !p.plan.registerOnly).map(startPod));
  process.stdout.write(`${JSON.stringify({ ready: [...pods.keys()] })}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let cmd: Command;
    try {
      cmd = JSON.parse(line) as Command;
    } catch {
      return;
    }
    handle(cmd).then(
      (r) => process.stdout.write(`${JSON.stringify({ id: cmd.id, ok: true, ...r })}\n`),
      (err: unknown) =>
        process.stdout.write(`${JSON.stringify({ id: cmd.id, ok: false, error: (err as Error).message })}\n`),
    );
  });
  const stop = (): void => {
    void Promise.all([...pods.values()].map(killPod)).finally(() => process.exit(0));
  };
  rl.on('close', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`pods-runner: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
