import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseManifests, formatManifestError, type MeshResource } from '@fedmesh/api';
import { request } from 'undici';
import { reserveSubnet } from './subnet.js';
import { startIngressGateway, wantsIngressGateway, type GatewayState } from './commands/gateway-local.js';

/** PodState is one local pod in `state.json`. */
export interface PodState {
  name: string;
  namespace: string;
  app: string;
  version: string;
  serviceAccount: string;
  address: string;
  /** ports are the app's container ports; the sidecar adds 15000 (admin), 15001 (outbound) and 15006 (inbound). */
  ports: number[];
  /** labels and deployment are the pod's labels and owning Deployment (older state files may lack them). */
  labels?: Record<string, string>;
  deployment?: string;
  spiffeId: string;
  pids: { app?: number; proxy: number };
  outbound: string;
  admin: string;
}

/** MeshState is `state.json`: where istiod and every pod of a local mesh are. */
export interface MeshState {
  version: 1;
  stateDir: string;
  subnet: string;
  /** cluster is the cluster name (istiod's cluster ID); federation is set when the mesh joined one. */
  cluster: string;
  federation?: UpFederation;
  istiod: { pid: number; host: string; xdsPlain: string; xdsTls: string; monitoring: string };
  pods: PodState[];
  /** gateways are the gateway processes (`fedmesh up` starts an ingress gateway when a Gateway selects one). */
  gateways?: GatewayState[];
  sleep: { outbound: string; pod: string };
  startedAt: string;
}

/** UpFederation joins a local mesh's istiod to a federated mesh at start. */
export interface UpFederation {
  mesh: string;
  cluster: string;
  network: string;
  etcd: string[];
  nats: string[];
}

/** UpOptions configure {@link meshUp}. */
export interface UpOptions {
  files: string[];
  stateDir: string;
  /** subnet is the third octet N of the mesh's loopback block 127.0.N.0/24; default: a free one in 10..250. */
  subnet?: number;
  caDir?: string;
  /** federation, when set, starts istiod joined to a federated mesh (cluster name, network, etcd and NATS URLs). */
  federation?: UpFederation;
  /** log receives progress lines for people. */
  log?: (line: string) => void;
  /** timeoutMs bounds the whole start (default 60,000 ms). */
  timeoutMs?: number;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** CLI_ENTRY is the compiled `fedmesh` entry that child processes run. */
export const CLI_ENTRY = path.join(here, 'main.js');
/** PROXY_ENTRY is the sidecar's lean entry: `proxy-main.js proxy …` takes the arguments of `fedmesh proxy`. */
export const PROXY_ENTRY = path.join(here, 'proxy-main.js');
/**
 * PROXY_NODE_FLAGS are the V8 flags sidecars run with: a 2 MB young-generation semi-space instead of V8's 16 MB,
 * which keeps mostly empty nursery out of every proxy's resident set. Scavenges then cost about 20% of a loaded
 * proxy's CPU (perf); 8 MB did not win consistently in full bench runs and costs ~20 MB (docs/adr/0016).
 */
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

async function pickSubnet(): Promise<number> {
  return reserveSubnet([
    [1, 15012],
    [2, 15001],
  ]);
}

async function waitFor(what: string, deadline: number, check: () => Promise<boolean>): Promise<void> {
  let delay = 20;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(250, delay * 2);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function httpOk(url: string, headers: Record<string, string> = {}): Promise<boolean> {
  const res = await request(url, { headers, headersTimeout: 2_000, bodyTimeout: 2_000 });
  await res.body.dump();
  return res.statusCode === 200;
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1_000 }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.on('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

function spawnChild(stateDir: string, logName: string, args: string[]): number {
  const logDir = path.join(stateDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  const out = fs.openSync(path.join(logDir, `${logName}.log`), 'a');
  // Sidecars run from their lean entry with a bounded young generation (PROXY_ENTRY, PROXY_NODE_FLAGS).
  const entry = args[0] === 'proxy' ? [...PROXY_NODE_FLAGS, PROXY_ENTRY] : [CLI_ENTRY];
  const child = spawn(process.execPath, [...entry, ...args], { detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${logName}`);
  return child.pid;
}

/** readState loads `<stateDir>/state.json`; throws if there is no running mesh there. */
export function readState(stateDir: string): MeshState {
  const file = path.join(stateDir, 'state.json');
  if (!fs.existsSync(file)) throw new Error(`no mesh state at ${file} (run fedmesh up first)`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as MeshState;
}

/** adminToken reads istiod's admin token from the state dir. */
export function adminToken(stateDir: string): string {
  return fs.readFileSync(path.join(stateDir, 'istiod', 'admin-token'), 'utf8').trim();
}

/** ApplyResult is istiod's answer to an apply: keys applied and problems (formatted with file, index and path). */
export interface ApplyResult {
  applied: string[];
  errors: { text: string; path: string; index: number; file?: string }[];
  warnings: string[];
}

/** applyText sends manifest text to a running istiod's admin API (`POST /v1/apply`). */
export async function applyText(state: MeshState, text: string, source: string): Promise<ApplyResult> {
  const res = await request(`http://${state.istiod.monitoring}/v1/apply?source=${encodeURIComponent(source)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken(state.stateDir)}`, 'content-type': 'application/yaml' },
    body: text,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const body = (await res.body.json()) as ApplyResult & { error?: string };
  if (res.statusCode !== 200 && res.statusCode !== 422)
    throw new Error(`istiod refused: ${res.statusCode} ${body.error ?? ''}`);
  return body;
}

/** podManifest renders the Kubernetes `v1` Pod that registers a local pod with istiod (Running and Ready). */
export function podManifest(p: Omit<PodPlan, 'app'>): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: p.name,
      namespace: p.namespace,
      labels: p.labels,
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'Deployment', name: p.deployment, uid: p.deployment, controller: true },
      ],
    },
    spec: {
      serviceAccountName: p.sa,
      containers: [{ name: 'app', image: 'fedmesh/echo', ports: p.ports.map((c) => ({ containerPort: c })) }],
    },
    status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

async function mintToken(
  state: Pick<MeshState, 'istiod' | 'stateDir'>,
  namespace: string,
  serviceAccount: string,
): Promise<string> {
  const res = await request(`http://${state.istiod.monitoring}/v1/token`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken(state.stateDir)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ namespace, serviceAccount, ttlSeconds: 600 }),
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  const body = (await res.body.json()) as { token?: string; error?: string };
  if (!body.token) throw new Error(`token refused: ${body.error ?? res.statusCode}`);
  return body.token;
}

/** PodPlan is what a local pod is started from (a Deployment replica, or the sleep client). */
export interface PodPlan {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  sa: string;
  ip: string;
  deployment: string;
  ports: number[];
  /** app is true when an echo app runs beside the sidecar. */
  app: boolean;
}

/** PodContext is what starting a pod needs from its mesh. */
export interface PodContext {
  stateDir: string;
  istiod: MeshState['istiod'];
  cluster: string;
  rootCertFile: string;
}

/**
 * startPod starts one pod of a local mesh: a bootstrap token for its ServiceAccount (file mode 0600), the echo app
 * (when it has ports) and its sidecar. Pids are appended to `pids` as soon as they exist. The pod must already be
 * registered with istiod.
 */
export async function startPod(ctx: PodContext, p: PodPlan, pids: number[] = []): Promise<PodState> {
  const { stateDir, istiod, cluster, rootCertFile } = ctx;
  const podDir = path.join(stateDir, 'pods', p.name);
  fs.mkdirSync(podDir, { recursive: true, mode: 0o700 });
  const tokenFile = path.join(podDir, 'token');
  fs.writeFileSync(tokenFile, await mintToken({ stateDir, istiod }, p.namespace, p.sa), { mode: 0o600 });
  let appPid: number | undefined;
  if (p.app && p.ports.length > 0) {
    appPid = spawnChild(stateDir, `${p.name}.app`, [
      'echo',
      '--host',
      p.ip,
      '--port',
      ...p.ports.map(String),
      '--service',
      p.labels.app ?? p.deployment,
      '--version',
      p.labels.version ?? 'v1',
      '--pod',
      p.name,
      '--namespace',
      p.namespace,
      '--service-account',
      p.sa,
      '--cluster',
      cluster,
    ]);
    pids.push(appPid);
  }
  const proxyPid = spawnChild(stateDir, `${p.name}.proxy`, [
    'proxy',
    '--ip',
    p.ip,
    '--pod',
    p.name,
    '--namespace',
    p.namespace,
    '--service-account',
    p.sa,
    '--workload',
    p.deployment,
    '--labels',
    JSON.stringify(p.labels),
    '--cluster-id',
    cluster,
    '--discovery',
    istiod.xdsTls,
    '--root-cert',
    rootCertFile,
    '--token-file',
    tokenFile,
  ]);
  pids.push(proxyPid);
  return {
    name: p.name,
    namespace: p.namespace,
    app: p.labels.app ?? p.deployment,
    version: p.labels.version ?? '',
    serviceAccount: p.sa,
    address: p.ip,
    ports: p.ports,
    labels: p.labels,
    deployment: p.deployment,
    spiffeId: `spiffe://cluster.local/ns/${p.namespace}/sa/${p.sa}`,
    pids: { ...(appPid !== undefined ? { app: appPid } : {}), proxy: proxyPid },
    outbound: `${p.ip}:15001`,
    admin: `${p.ip}:15000`,
  };
}

/**
 * meshUp starts a local mesh from manifests: istiod on 127.0.N.1 (with the manifests as its watched config, and
 * virtual IPs from 10.96.N.0/24 for Services without `spec.clusterIP`), then
 * for each Deployment replica an echo app and a sidecar on its own 127.0.N.x, each pod registered with istiod as a
 * Kubernetes Pod and given a bootstrap token for its ServiceAccount; plus a `sleep` client (namespace `default`,
 * ServiceAccount `sleep`) on 127.0.N.2; and when a Gateway selects `istio: ingressgateway` with HTTP(S) servers, an
 * ingress gateway (`fedmesh gateway --mode ingress`, `istio-ingressgateway-0.istio-system`) on 127.0.N.3.
 * Writes `<stateDir>/state.json` and returns it once every proxy is ready.
 * Throws (after stopping what it started) when the manifests have errors or a component fails to start in time.
 */
export async function meshUp(opts: UpOptions): Promise<MeshState> {
  const log = opts.log ?? (() => undefined);
  const stateDir = path.resolve(opts.stateDir);
  if (fs.existsSync(path.join(stateDir, 'state.json')))
    throw new Error(`a mesh is already running from ${stateDir} (fedmesh down --state-dir ${stateDir})`);
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const resources: MeshResource[] = [];
  for (const f of opts.files) {
    const { resources: rs, errors } = parseManifests(fs.readFileSync(f, 'utf8'), { file: path.basename(f) });
    const hard = errors.filter((e) => e.severity === 'error');
    if (hard.length > 0) throw new Error(`invalid manifests:\n${hard.map(formatManifestError).join('\n')}`);
    resources.push(...rs);
  }
  const subnet = opts.subnet ?? (await pickSubnet());
  const host = `127.0.${subnet}.1`;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const pids: number[] = [];
  try {
    const cluster = opts.federation?.cluster ?? 'Kubernetes';
    log(`starting istiod on ${host}`);
    const istiodDir = path.join(stateDir, 'istiod');
    const istiodPid = spawnChild(stateDir, 'istiod', [
      'istiod',
      '--host',
      host,
      '--state-dir',
      istiodDir,
      '--service-cidr',
      `10.96.${subnet}.0/24`,
      ...(opts.caDir ? ['--ca-dir', path.resolve(opts.caDir)] : []),
      ...(opts.federation
        ? [
            '--cluster-id',
            opts.federation.cluster,
            '--network',
            opts.federation.network,
            '--federation-mesh',
            opts.federation.mesh,
            '--etcd',
            ...opts.federation.etcd,
            '--nats',
            ...opts.federation.nats,
          ]
        : []),
      '--file',
      ...opts.files.map((f) => path.resolve(f)),
    ]);
    pids.push(istiodPid);
    const monitoring = `${host}:15014`;
    await waitFor('istiod', deadline, () => httpOk(`http://${monitoring}/ready`));
    const istiod = { pid: istiodPid, host, xdsPlain: `${host}:15010`, xdsTls: `${host}:15012`, monitoring };
    const partial = { stateDir, istiod };
    const rootCertFile = path.join(stateDir, 'root-cert.pem');
    fs.writeFileSync(rootCertFile, await fetchRootCert(istiodDir, opts.caDir));

    // Pods: one per Deployment replica, plus the sleep client.
    const plan: PodPlan[] = [];
    let next = 10;
    for (const r of resources) {
      if (r.kind !== 'Deployment') continue;
      const spec = r.spec as {
        replicas?: number;
        template: {
          metadata?: { labels?: Record<string, string> };
          spec: { serviceAccountName?: string; containers?: { ports?: { containerPort: number }[] }[] };
        };
      };
      const replicas = spec.replicas ?? 1;
      for (let i = 0; i < replicas; i++) {
        if (next > 254) throw new Error('too many pods for one /24');
        plan.push({
          name: `${r.metadata.name}-${i}`,
          namespace: r.metadata.namespace ?? 'default',
          labels: spec.template.metadata?.labels ?? {},
          sa: spec.template.spec.serviceAccountName ?? 'default',
          ip: `127.0.${subnet}.${next++}`,
          deployment: r.metadata.name,
          ports: (spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)),
          app: true,
        });
      }
    }
    plan.push({
      name: 'sleep-0',
      namespace: 'default',
      labels: { app: 'sleep' },
      sa: 'sleep',
      ip: `127.0.${subnet}.2`,
      deployment: 'sleep',
      ports: [],
      app: false,
    });

    const registered = await applyText(
      { ...partial, subnet: '', cluster, pods: [], sleep: { outbound: '', pod: '' }, version: 1, startedAt: '' },
      plan.map((p) => JSON.stringify(podManifest(p))).join('\n---\n'),
      'fedmesh-up',
    );
    if (registered.errors.length > 0)
      throw new Error(`pod registration failed: ${registered.errors.map((e) => e.text).join('; ')}`);

    const ctx: PodContext = { stateDir, istiod, cluster, rootCertFile };
    const pods: PodState[] = [];
    await Promise.all(
      plan.map(async (p) => {
        const pod = await startPod(ctx, p, pids);
        pods.push(pod);
      }),
    );
    pods.sort((a, b) => (a.name < b.name ? -1 : 1));
    const gateways: GatewayState[] = [];
    if (wantsIngressGateway(resources)) {
      const gw = await startIngressGateway(
        {
          stateDir,
          discovery: istiod.xdsTls,
          rootCertFile,
          cluster,
          token: (ns, sa) => mintToken(partial, ns, sa),
          spawn: (name, args) => spawnChild(stateDir, name, args),
        },
        `127.0.${subnet}.3`,
      );
      pids.push(gw.pid);
      gateways.push(gw);
    }
    const state: MeshState = {
      version: 1,
      stateDir,
      subnet: `127.0.${subnet}.0/24`,
      cluster,
      ...(opts.federation ? { federation: opts.federation } : {}),
      istiod,
      pods,
      ...(gateways.length > 0 ? { gateways } : {}),
      sleep: { outbound: `127.0.${subnet}.2:15001`, pod: 'sleep-0' },
      startedAt: new Date().toISOString(),
    };
    fs.writeFileSync(path.join(stateDir, 'state.json'), JSON.stringify(state, null, 2));
    log(`started ${pods.length} pods; waiting for their proxies`);
    await Promise.all(
      pods.map(async (p) => {
        await waitFor(`${p.name} proxy`, deadline, () => httpOk(`http://${p.admin}/ready`));
        for (const port of p.ports) await waitFor(`${p.name} app`, deadline, () => connects(p.address, port));
      }),
    );
    for (const g of gateways) await waitFor(`${g.name} gateway`, deadline, () => httpOk(`http://${g.admin}/ready`));
    return state;
  } catch (err) {
    for (const pid of pids) killQuietly(pid, 'SIGKILL');
    fs.rmSync(path.join(stateDir, 'state.json'), { force: true });
    throw err;
  }
}

async function fetchRootCert(istiodDir: string, caDir: string | undefined): Promise<string> {
  const file = caDir ? path.join(caDir, 'root-cert.pem') : path.join(istiodDir, 'ca', 'root-cert.pem');
  return fs.promises.readFile(file, 'utf8');
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * meshDown stops every process of a local mesh (SIGTERM, then SIGKILL after `graceMs`, default 5,000 ms),
 * checks none is left, and removes `state.json`. Returns the pids stopped. Throws if a process survives SIGKILL.
 */
export async function meshDown(stateDir: string, graceMs = 5_000): Promise<number[]> {
  const state = readState(stateDir);
  const pids = [
    state.istiod.pid,
    ...state.pods.flatMap((p) => [p.pids.proxy, ...(p.pids.app !== undefined ? [p.pids.app] : [])]),
    ...(state.gateways ?? []).map((g) => g.pid),
  ];
  for (const pid of pids) killQuietly(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) killQuietly(pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 100));
  const left = pids.filter(alive);
  if (left.length > 0) throw new Error(`processes still running: ${left.join(', ')}`);
  fs.rmSync(path.join(stateDir, 'state.json'), { force: true });
  return pids;
}
