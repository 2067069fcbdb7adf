// xds-convergence: how long istiod takes from one config change until every connected ADS client has ACKed it,
// for 100 and 1,000 simulated clients, State of the World and Delta, for two changes: one endpoint added (a
// reviews pod) and one VirtualService changed (reviews weights). The control plane runs in a child process (so its
// RSS is its own); the simulated clients run here, each on its own gRPC channel to 127.0.0.1, and ACK every
// response at once without decoding it. The baseline, measured in the same run, is the transport-only floor: the
// same clients and the same fan-out through the same ADS server, but every node gets one snapshot built once (no
// per-proxy generation). Run after `pnpm build`:
//   node --import tsx bench/xds-convergence.ts [--clients 100,1000] [--rounds 10] [--debounce-ms 0]
//     [--protocols sotw,delta] [--changes endpoint,vs] [--services 20]
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
// Types from the xds package's own copy of grpc-js (the repository root does not depend on it).
import type * as Grpc from '../packages/xds/node_modules/@grpc/grpc-js/build/src/index.js';
import { TypeUrl } from '../packages/api/dist/xds/index.js';
import {
  ConfigStore,
  DiscoveryServer,
  IncrementalGenerator,
  IstiodMetrics,
  KubeObjectsRegistry,
  PushContext,
  createGenerators,
  loadManifestText,
  parseProxyNode,
  type DiscoveryOptions,
  type StoredObject,
} from '../packages/istiod/dist/index.js';
import {
  Snapshot,
  SnapshotCache,
  createAdsServer,
  loadAdsGrpc,
  type AdsServiceClient,
  type ResourceEntry,
  type WireDeltaDiscoveryResponse,
  type WireDiscoveryResponse,
} from '../packages/xds/dist/index.js';

// grpc-js and pino are dependencies of the packages, not of the repository root: load the packages' copies.
const grpc = createRequire(new URL('../packages/xds/package.json', import.meta.url))('@grpc/grpc-js') as typeof Grpc;
const pino = createRequire(new URL('../packages/istiod/package.json', import.meta.url))('pino') as (
  o: object,
) => DiscoveryOptions['log'];

const ROOT = new URL('../', import.meta.url);
const MESH = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};
const TYPES = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.Secret,
];
const WILDCARD_TYPES = new Set<string>([TypeUrl.Cluster, TypeUrl.Listener]);

type Mode = 'istiod' | 'floor';
type Change = 'endpoint' | 'vs';
type Protocol = 'sotw' | 'delta';

function nodeId(i: number): string {
  return `sidecar~${clientIp(i)}~sleep-${i}.default~default.svc.cluster.local`;
}
function clientIp(i: number): string {
  return `10.10.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The control-plane child.

/** meshManifests is Bookinfo (Deployments, Services, pods, all-mTLS DestinationRules, reviews 90/10), `services`
 * synthetic Services with 3 pods each, and the clients' own pods (app sleep, no Service). */
function meshManifests(clients: number, services: number): string {
  const read = (p: string): string => readFileSync(new URL(p, ROOT), 'utf8');
  const docs = [
    read('samples/istio/bookinfo.yaml'),
    read('packages/istiod/testdata/bookinfo-pods.yaml'),
    read('samples/istio/destination-rule-all-mtls.yaml'),
    read('samples/istio/virtual-service-reviews-90-10.yaml'),
  ];
  for (let s = 0; s < services; s++) {
    docs.push(`apiVersion: v1
kind: Service
metadata: {name: svc-${s}, namespace: default}
spec: {selector: {app: svc-${s}}, ports: [{name: http, port: 8080, targetPort: 8080}]}`);
    for (let p = 0; p < 3; p++) docs.push(pod(`svc-${s}-${p}`, `svc-${s}`, `10.20.${s}.${p + 1}`, 'v1'));
  }
  for (let i = 0; i < clients; i++) docs.push(pod(`sleep-${i}`, 'sleep', clientIp(i), 'v1'));
  return docs.join('\n---\n');
}

function pod(name: string, app: string, ip: string, version: string, sa = app): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: ${app}, version: ${version}}}
spec: {serviceAccountName: ${sa}, containers: [{name: app, image: fedmesh/echo, ports: [{containerPort: 9080}]}]}
status: {phase: Running, podIP: ${ip}, conditions: [{type: Ready, status: 'True'}]}`;
}

function vsWeights(v1: number, v3: number): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: ${v1}}
    - {destination: {host: reviews, subset: v3}, weight: ${v3}}`;
}

/** applyChange makes round `round`'s change in the store. */
function applyChange(store: ConfigStore<StoredObject>, change: Change, round: number): void {
  if (change === 'endpoint')
    loadManifestText(
      store,
      pod(
        `reviews-extra-${round}`,
        'reviews',
        `10.30.${Math.floor(round / 250)}.${(round % 250) + 1}`,
        'v3',
        'bookinfo-reviews',
      ),
      'bench',
      false,
    );
  else loadManifestText(store, vsWeights(90 - (round % 50), 10 + (round % 50)), 'bench', false);
}

async function child(mode: Mode, clients: number, services: number, debounceMs: number): Promise<void> {
  const store = new ConfigStore<StoredObject>();
  loadManifestText(store, meshManifests(clients, services), 'mesh', false);
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const rootPem = readFileSync(new URL('../shared/fixtures/istio-samples/certs/root-cert.pem', ROOT), 'utf8');
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  const representative = parseProxyNode({
    id: nodeId(0),
    metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', LABELS: { app: 'sleep', version: 'v1' } },
  });
  const generators = createGenerators();
  let version = 0;
  const snapshotFor = (): Snapshot => {
    const push = new PushContext(++version, MESH, store, [registry], rootPem);
    const resources: Record<string, ResourceEntry[]> = {};
    for (const [t, g] of generators) resources[t] = g(push, representative, []);
    return new Snapshot(resources);
  };
  let onChange: (change: Change, round: number) => void;
  if (mode === 'istiod') {
    const discovery = new DiscoveryServer({
      store,
      registries: [registry],
      mesh: MESH,
      trustBundlePem: () => rootPem,
      log: pino({ level: 'silent' }),
      metrics: new IstiodMetrics(),
      debounceMs,
    });
    server.addService(discovery.ads.service, discovery.ads.implementation);
    if (process.env.BENCH_TRACE) {
      const pushAll = discovery.pushAll.bind(discovery);
      discovery.pushAll = () => {
        const t = performance.now();
        pushAll();
        console.error(`pushAll ${(performance.now() - t).toFixed(1)} ms`);
      };
    }
    onChange = (change, round) => applyChange(store, change, round);
  } else {
    // The floor: the same ADS server and cache, but one snapshot built once per change and set for every node.
    const cache = new SnapshotCache();
    const ads = createAdsServer(cache, {
      onStreamOpen: (s) => cache.setSnapshot(s.node.id, current),
    });
    let current = snapshotFor();
    server.addService(ads.service, ads.implementation);
    onChange = (change, round) => {
      applyChange(store, change, round);
      current = snapshotFor();
      for (const id of new Set(ads.streams().map((s) => s.node.id))) cache.setSnapshot(id, current);
    };
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const eds = [...snapshotFor().resources(TypeUrl.ClusterLoadAssignment).keys()];
  let cpuAtChange = process.cpuUsage();
  process.on('message', (m: { cmd: string; change?: Change; round?: number }) => {
    if (m.cmd === 'change' && m.change && m.round !== undefined) {
      cpuAtChange = process.cpuUsage();
      onChange(m.change, m.round);
      process.send?.({ cmd: 'changed' });
    } else if (m.cmd === 'rss') {
      const cpu = process.cpuUsage(cpuAtChange);
      process.send?.({ cmd: 'rss', rss: process.memoryUsage().rss, cpuMs: (cpu.user + cpu.system) / 1000 });
    } else if (m.cmd === 'stop') {
      server.forceShutdown();
      process.exit(0);
    }
  });
  process.send?.({ cmd: 'ready', address: `127.0.0.1:${port}`, eds });
}

// ---------------------------------------------------------------------------------------------------------------
// The simulated clients.

class SimClient {
  private readonly client: AdsServiceClient;
  private sotw: Grpc.ClientDuplexStream<unknown, WireDiscoveryResponse> | undefined;
  private delta: Grpc.ClientDuplexStream<unknown, WireDeltaDiscoveryResponse> | undefined;
  /** acked holds, per type URL, the times (performance.now) of every response this client ACKed. */
  readonly acked = new Map<string, number[]>();

  constructor(
    Client: new (address: string, creds: Grpc.ChannelCredentials, opts?: Grpc.ChannelOptions) => AdsServiceClient,
    address: string,
    private readonly id: string,
    private readonly protocol: Protocol,
    private readonly eds: string[],
  ) {
    // A channel per client, as each proxy has its own connection.
    this.client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  }

  private names(t: string): string[] {
    if (WILDCARD_TYPES.has(t)) return [];
    if (t === TypeUrl.ClusterLoadAssignment) return this.eds;
    if (t === TypeUrl.RouteConfiguration) return ['outbound'];
    return ['ROOTCA'];
  }

  private record(t: string): void {
    let l = this.acked.get(t);
    if (!l) this.acked.set(t, (l = []));
    l.push(performance.now());
  }

  start(): void {
    const node = {
      id: this.id,
      metadata: { fields: { NAMESPACE: { stringValue: 'default' }, SERVICE_ACCOUNT: { stringValue: 'sleep' } } },
    };
    if (this.protocol === 'sotw') {
      const call = this.client.StreamAggregatedResources() as unknown as Grpc.ClientDuplexStream<
        unknown,
        WireDiscoveryResponse
      >;
      this.sotw = call;
      call.on('data', (r: WireDiscoveryResponse) => {
        call.write({
          type_url: r.type_url,
          version_info: r.version_info,
          response_nonce: r.nonce,
          resource_names: this.names(r.type_url),
        });
        this.record(r.type_url);
      });
      call.on('error', () => undefined);
      TYPES.forEach((t, i) => call.write({ ...(i === 0 ? { node } : {}), type_url: t, resource_names: this.names(t) }));
    } else {
      const call = this.client.DeltaAggregatedResources() as unknown as Grpc.ClientDuplexStream<
        unknown,
        WireDeltaDiscoveryResponse
      >;
      this.delta = call;
      call.on('data', (r: WireDeltaDiscoveryResponse) => {
        call.write({ type_url: r.type_url, response_nonce: r.nonce });
        this.record(r.type_url);
      });
      call.on('error', () => undefined);
      TYPES.forEach((t, i) =>
        call.write({
          ...(i === 0 ? { node } : {}),
          type_url: t,
          resource_names_subscribe: WILDCARD_TYPES.has(t) ? ['*'] : this.names(t),
        }),
      );
    }
  }

  /** lastAckAfter returns the last ACK time after `t0` of any type, and whether `type` was ACKed after `t0`. */
  since(t0: number, type: string): { last: number; got: boolean } {
    let last = 0;
    for (const l of this.acked.values()) for (const t of l) if (t > t0 && t > last) last = t;
    return { last, got: (this.acked.get(type) ?? []).some((t) => t > t0) };
  }

  close(): void {
    this.sotw?.cancel();
    this.delta?.cancel();
    this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The driver.

interface Result {
  mode: Mode;
  protocol: Protocol;
  change: Change;
  clients: number;
  /** allAcked is, per round, the ms from the change until the last client ACKed. */
  allAcked: number[];
  /** perClient is every client's ms from the change to its last ACK, over all rounds. */
  perClient: number[];
  rssMb: number;
  connectMs: number;
  /** cpuMs is, per round, the control plane's CPU time (user + system) from the change until it was sampled. */
  cpuMs: number[];
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN;
}

function request<T>(cp: ChildProcess, msg: object, reply: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: { cmd: string }) => {
      if (m.cmd !== reply) return;
      cp.off('message', on);
      resolve(m as T);
    };
    cp.on('message', on);
    cp.send(msg);
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

async function run(
  mode: Mode,
  protocol: Protocol,
  change: Change,
  clients: number,
  rounds: number,
  services: number,
  debounceMs: number,
): Promise<Result> {
  const cp = fork(
    fileURLToPath(import.meta.url),
    ['--child', mode, String(clients), String(services), String(debounceMs)],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // BENCH_PROF_DIR=dir writes a CPU profile of each control-plane process there.
      execArgv: [
        ...process.execArgv,
        ...(process.env.BENCH_PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROF_DIR] : []),
      ],
    },
  );
  const sims: SimClient[] = [];
  try {
    const ready = await new Promise<{ address: string; eds: string[] }>((resolve, reject) => {
      cp.once('message', (m: { cmd: string; address: string; eds: string[] }) => resolve(m));
      cp.once('exit', (code) => reject(new Error(`control plane exited with ${code}`)));
    });
    const { Client } = loadAdsGrpc();
    const t0 = performance.now();
    for (let i = 0; i < clients; i++) {
      const s = new SimClient(Client, ready.address, nodeId(i), protocol, ready.eds);
      sims.push(s);
      s.start();
      if (i % 50 === 49) await sleep(1); // let connections complete in batches
    }
    await until(() => sims.every((s) => TYPES.every((t) => s.acked.has(t))), 120_000, 'every client ACKing every type');
    const connectMs = performance.now() - t0;
    await sleep(300);
    const expected = change === 'endpoint' ? TypeUrl.ClusterLoadAssignment : TypeUrl.RouteConfiguration;
    const allAcked: number[] = [];
    const perClient: number[] = [];
    let rss = 0;
    const cpuMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const start = performance.now();
      await request(cp, { cmd: 'change', change, round: r }, 'changed');
      await until(
        () => sims.every((s) => s.since(start, expected).got),
        60_000,
        `round ${r}: every client ACKing ${expected}`,
      );
      await sleep(150); // any other type the change touched
      const times = sims.map((s) => s.since(start, expected).last - start);
      perClient.push(...times);
      allAcked.push(Math.max(...times));
      const sample = await request<{ rss: number; cpuMs: number }>(cp, { cmd: 'rss' }, 'rss');
      rss = Math.max(rss, sample.rss);
      cpuMs.push(sample.cpuMs);
      await sleep(100);
    }
    return { mode, protocol, change, clients, allAcked, perClient, rssMb: rss / 2 ** 20, connectMs, cpuMs };
  } finally {
    for (const s of sims) s.close();
    cp.send({ cmd: 'stop' });
    await new Promise((r) => cp.once('exit', r));
  }
}

/**
 * generationCpu measures, in this process, the CPU ms of generating every type for `clients` sidecars after each of
 * `rounds` changes: running every generator afresh (what istiod did before IncrementalGenerator) against
 * IncrementalGenerator, both on the same pushes.
 */
function generationCpu(
  clients: number,
  services: number,
  change: Change,
  rounds: number,
): { fresh: number[]; incremental: number[] } {
  const store = new ConfigStore<StoredObject>();
  loadManifestText(store, meshManifests(clients, services), 'mesh', false);
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const generators = createGenerators();
  const proxies = Array.from({ length: clients }, (_, i) =>
    parseProxyNode({
      id: nodeId(i),
      metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', LABELS: { app: 'sleep', version: 'v1' } },
    }),
  );
  const inc = new IncrementalGenerator();
  const fresh: number[] = [];
  const incremental: number[] = [];
  const cpuMs = (f: () => void): number => {
    const c = process.cpuUsage();
    f();
    const d = process.cpuUsage(c);
    return (d.user + d.system) / 1000;
  };
  for (let r = -1; r < rounds; r++) {
    if (r >= 0) applyChange(store, change, r);
    const push = new PushContext(r + 2, MESH, store, [registry], 'trust-bundle');
    const a = cpuMs(() => {
      for (const p of proxies) new Snapshot(Object.fromEntries([...generators].map(([t, g]) => [t, g(push, p, [])])));
    });
    const b = cpuMs(() => {
      for (const p of proxies)
        new Snapshot(Object.fromEntries([...generators].map(([t, g]) => [t, inc.generate(g, push, p, [])])));
    });
    if (r >= 0) {
      fresh.push(a);
      incremental.push(b);
    }
  }
  return { fresh, incremental };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '100,1000' },
      rounds: { type: 'string', default: '10' },
      'debounce-ms': { type: 'string', default: '0' },
      protocols: { type: 'string', default: 'sotw,delta' },
      changes: { type: 'string', default: 'endpoint,vs' },
      services: { type: 'string', default: '20' },
    },
  });
  const counts = values.clients.split(',').map(Number);
  const rounds = Number(values.rounds);
  const debounceMs = Number(values['debounce-ms']);
  const services = Number(values.services);
  const protocols = values.protocols.split(',') as Protocol[];
  const changes = values.changes.split(',') as Change[];
  console.log(
    `machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}, Node ${process.version}`,
  );
  console.log(
    `xds-convergence: Bookinfo (4 services, 6 pods, all-mTLS DestinationRules, reviews VirtualService) + ${services} services x 3 pods; ` +
      `clients are sidecar pods in default; ${rounds} rounds; debounce ${debounceMs} ms; control plane in a child process`,
  );
  console.log(
    "all-ACKed = ms from the change until the last client ACKed it (p50/p99 over rounds); per-client = each client's last ACK (p50/p99 over clients x rounds)",
  );
  console.log(
    "cpu ms = the control plane process's CPU time from the change to the end of the round (less sensitive to other load on the machine)",
  );
  console.log(
    'floor = same clients, same ADS server and fan-out, one snapshot built once per change (no per-proxy generation)\n',
  );
  console.log('generation CPU per push (this process, no network): every generator afresh vs IncrementalGenerator');
  console.log(['clients', 'change', 'fresh p50 ms', 'incremental p50 ms', 'ratio'].join('\t'));
  for (const n of counts)
    for (const change of changes) {
      const g = generationCpu(n, services, change, Math.min(rounds, 5));
      const f = quantile(g.fresh, 0.5);
      const i = quantile(g.incremental, 0.5);
      console.log([n, change, f.toFixed(1), i.toFixed(1), (i / f).toFixed(3)].join('\t'));
    }
  console.log('');
  const header = [
    'clients',
    'proto',
    'change',
    'mode',
    'all-ACKed p50',
    'p99',
    'per-client p50',
    'p99',
    'x floor (p50)',
    'cpu ms p50',
    'x floor (cpu)',
    'RSS MB',
    'connect ms',
  ];
  console.log(header.join('\t'));
  for (const n of counts)
    for (const protocol of protocols)
      for (const change of changes) {
        const floor = await run('floor', protocol, change, n, rounds, services, debounceMs);
        const real = await run('istiod', protocol, change, n, rounds, services, debounceMs);
        for (const r of [floor, real]) {
          const ratio = quantile(r.allAcked, 0.5) / quantile(floor.allAcked, 0.5);
          const cpuRatio = quantile(r.cpuMs, 0.5) / quantile(floor.cpuMs, 0.5);
          console.log(
            [
              n,
              protocol,
              change,
              r.mode,
              quantile(r.allAcked, 0.5).toFixed(1),
              quantile(r.allAcked, 0.99).toFixed(1),
              quantile(r.perClient, 0.5).toFixed(1),
              quantile(r.perClient, 0.99).toFixed(1),
              ratio.toFixed(2),
              quantile(r.cpuMs, 0.5).toFixed(1),
              cpuRatio.toFixed(2),
              r.rssMb.toFixed(0),
              r.connectMs.toFixed(0),
            ].join('\t'),
          );
        }
      }
  console.log(
    `\nload average at the end: ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') await child(argv[1] as Mode, Number(argv[2]), Number(argv[3]), Number(argv[4]));
else await main();
