// proxy: our sidecar pair against an nginx pair and a naive Node pair, on loopback, in one run (issue 5 item 7).
// Four paths to the same app (nginx answering 200 with a small JSON body):
//   (a) direct:  client → app
//   (b) fedmesh: client → our sidecar (outbound 15001) → mTLS → our sidecar (inbound 15006) → app
//   (c) nginx:   client → nginx (outbound) → mTLS (proxy_ssl_certificate, verified) → nginx (inbound) → app
//   (d) naive:   client → node http proxy → mTLS (same certificates, keep-alive https.Agent) → node https proxy
//                → app (bench/naive-node-pair.ts: no features, plain node with our proxies' node flags; HTTP/1.1
//                only), which says how much of the gap to nginx is Node itself and how much fedmesh's features
// For each: max rps (wrk, 1 thread, --connections), the latency at a fixed --rate from an open-loop generator that
// corrects coordinated omission (bench/proxy-loadgen.ts, hdr-histogram-js), the proxies' CPU time per request and
// their RSS. Load generators run on CPU 1 (taskset -c 1); proxies, the app and istiod on CPU 0. Ratios are printed
// against nginx, against the naive Node pair and against the issue's targets. Run after `pnpm build` (needs nginx, wrk and taskset):
//   node --import tsx bench/proxy.ts [--seconds 10] [--latency-seconds 15] [--rate 1000] [--connections 64]
//     [--rounds 1] [--access-log on|off] [--proxy-node-flags="--max-semi-space-size=1 …"] [--cpu-prof DIR]
//     [--h2-upgrade-policy DO_NOT_UPGRADE|UPGRADE]
// --proxy-node-flags restarts our two sidecars with those node flags instead of the local mesh's own
// (PROXY_NODE_FLAGS); --cpu-prof DIR adds `--cpu-prof` and prints their top frames at the end.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { meshDown, meshUp, PROXY_NODE_FLAGS, type MeshState } from '../packages/ctl/dist/index.js';
import type { ChildProcess } from 'node:child_process';
import type { LoadResult } from './proxy-loadgen.js';
import { startNaiveProxy } from './naive-node-pair.js';
import { cpuTicks, maxRps, openLoop, restartProxy, rssKb, run, stopAndWait, type Protocol } from './proxy-tools.js';
import { summarizeProfile } from './proxy-profile.js';
import {
  appConfig,
  inboundConfig,
  nginxPids,
  outboundConfig,
  startNginx,
  stopNginx,
  writeNginxCerts,
  type NginxInstance,
  type NginxPlan,
} from './proxy-nginx.js';

const TARGETS = { throughputVsNginx: 0.75, addedP99VsNginx: 1.5, rssMb: 60 };
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    'latency-seconds': { type: 'string', default: '15' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '1' },
    'access-log': { type: 'string', default: 'on' },
    'cpu-prof': { type: 'string' },
    'proxy-node-flags': { type: 'string' },
    'h2-upgrade-policy': { type: 'string' },
  },
});
const seconds = Number(args.seconds);
const latencySeconds = Number(args['latency-seconds']);
const rate = Number(args.rate);
const connections = Number(args.connections);
const rounds = Number(args.rounds);
const accessLog = args['access-log'] !== 'off';
const CLK_TCK = 100;
const HOST = 'app:8080';

const MANIFEST = `apiVersion: v1
kind: Service
metadata: { name: app, namespace: default }
spec: { selector: { app: app }, ports: [{ name: http, port: 8080 }] }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: app, namespace: default }
spec:
  replicas: 1
  selector: { matchLabels: { app: app } }
  template:
    metadata: { labels: { app: app, version: v1 } }
    spec:
      serviceAccountName: app
      containers: [{ name: app, image: app, ports: [{ containerPort: 8080 }] }]
`;
/** H2_POLICY, when --h2-upgrade-policy is given, is a DestinationRule setting it for the app (DO_NOT_UPGRADE: HTTP/1.1 between our proxies). */
const H2_POLICY =
  args['h2-upgrade-policy'] === undefined
    ? ''
    : `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: app, namespace: default }
spec:
  host: app.default.svc.cluster.local
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: ${args['h2-upgrade-policy']} } } }
`;

interface PathUnderTest {
  name: 'direct' | 'fedmesh' | 'nginx' | 'naive';
  /** targets are where the client connects, per protocol it speaks to the first hop (undefined: not spoken). */
  targets: Record<Protocol, string | undefined>;
  /** proxies are the pids of each proxy of the path (one entry per proxy, each a list of processes). */
  proxies: number[][];
}

interface PathResult {
  rps: number;
  errors: string;
  /** cpuMsPerKreq is the proxies' CPU time (user + system) per 1,000 requests during the max-rps run. */
  cpuMsPerKreq: number;
  latency: LoadResult;
  /** rssMb is each proxy's peak resident set during the fixed-rate run (nginx: master + worker). */
  rssMb: number[];
}

async function measure(p: PathUnderTest, target: string, proto: Protocol): Promise<PathResult> {
  await maxRps(proto, target, HOST, 3, connections); // warm-up: pools, JIT, TLS sessions
  const all = p.proxies.flat();
  const before = all.map(cpuTicks);
  const max = await maxRps(proto, target, HOST, seconds, connections);
  const ticks = all.map(cpuTicks).reduce((s, t, i) => s + t - (before[i] ?? 0), 0);
  const peak = p.proxies.map(() => 0);
  const sample = (): void =>
    p.proxies.forEach(
      (pids, i) =>
        (peak[i] = Math.max(
          peak[i] ?? 0,
          pids.map(rssKb).reduce((a, b) => a + b, 0),
        )),
    );
  const sampler = setInterval(sample, 250);
  const latency = await openLoop(proto, target, HOST, rate, latencySeconds);
  clearInterval(sampler);
  return {
    rps: max.rps,
    errors: max.errors,
    cpuMsPerKreq: max.rps > 0 ? ((ticks * 1000) / CLK_TCK / (max.rps * seconds)) * 1000 : 0,
    latency,
    rssMb: peak.map((kb) => kb / 1024),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : ((s[(s.length - 1) >> 1] ?? 0) + (s[s.length >> 1] ?? 0)) / 2;
}

function pin(pid: number): Promise<unknown> {
  return run('taskset', ['-a', '-pc', '0', String(pid)], 5_000);
}

async function probe(target: string): Promise<string> {
  const r = await run('curl', ['-sS', '-m', '5', '-H', `Host: ${HOST}`, `http://${target}/`], 10_000);
  if (r.code !== 0) throw new Error(`probe ${target}: ${r.stderr}`);
  return r.stdout;
}

/** h2Refusal says why h2c prior knowledge fails against a target (undefined: 10 of 10 requests succeeded). */
async function h2Refusal(target: string): Promise<string | undefined> {
  const r = await run('h2load', ['-n', '10', '-c', '1', '-H', `:authority: ${HOST}`, `http://${target}/`], 15_000);
  if (/\b10 succeeded/.test(r.stdout)) return undefined;
  return (r.stdout.split('\n').find((l) => /requests:/.test(l)) ?? (r.stderr || `h2load exit ${r.code}`)).trim();
}

interface Bed {
  paths: PathUnderTest[];
  ours: number[];
  flags: string[];
  /** naive is the naive Node pair's processes (outbound, inbound). */
  naive: ChildProcess[];
}

/** startNginxPair starts the app, inbound and outbound nginx on the mesh's /24 (app on the app pod's address). */
async function startNginxPair(
  dir: string,
  state: MeshState,
  appAddress: string,
  nginx: NginxInstance[],
): Promise<NginxPlan> {
  const net = state.subnet.replace(/\.0\/24$/, '');
  const plan: NginxPlan = {
    dir,
    app: `${appAddress}:8080`,
    appH2: `${appAddress}:8081`,
    outbound: `${net}.3:15001`,
    outboundH2: `${net}.3:15002`,
    inbound: `${net}.4:15006`,
    accessLog,
  };
  const certs = path.join(dir, 'certs');
  nginx.push(await startNginx('app', dir, appConfig(path.join(dir, 'app'), plan.app, plan.appH2), 0));
  await writeNginxCerts(path.join(state.stateDir, 'istiod', 'ca'), certs);
  nginx.push(await startNginx('inbound', dir, inboundConfig(plan, path.join(dir, 'inbound'), certs), 0));
  nginx.push(await startNginx('outbound', dir, outboundConfig(plan, path.join(dir, 'outbound'), certs), 0));
  return plan;
}

/** startNaivePair starts the naive Node pair on the mesh's /24 (.5 outbound, .6 inbound) with the nginx certs. */
async function startNaivePair(dir: string, state: MeshState, app: string, bed: Bed): Promise<string> {
  const net = state.subnet.replace(/\.0\/24$/, '');
  const certs = path.join(dir, 'certs');
  const outbound = `${net}.5:15001`;
  const inbound = `${net}.6:15006`;
  bed.naive.push(await startNaiveProxy(dir, bed.flags, 'inbound', inbound, app, certs));
  bed.naive.push(await startNaiveProxy(dir, bed.flags, 'outbound', outbound, inbound, certs));
  return outbound;
}

/** setUp starts the mesh (our pair), the nginx pair and the app, pins everything to CPU 0 and checks each path. */
async function setUp(dir: string, nginx: NginxInstance[], onState: (s: MeshState) => void, bed: Bed): Promise<void> {
  fs.writeFileSync(path.join(dir, 'app.yaml'), MANIFEST + H2_POLICY);
  if (!accessLog) process.env.FEDMESH_LOG_LEVEL = 'warn';
  const state = await meshUp({ files: [path.join(dir, 'app.yaml')], stateDir: path.join(dir, 'mesh') });
  onState(state);
  const appPod = state.pods.find((p) => p.app === 'app');
  const sleepPod = state.pods.find((p) => p.name === 'sleep-0');
  if (!appPod?.pids.app || !sleepPod) throw new Error('mesh has no app pod or sleep pod');
  // Replace the echo app by the nginx app on the same address, so every path ends at the same C app.
  process.kill(appPod.pids.app, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  const plan = await startNginxPair(dir, state, appPod.address, nginx);
  const naiveOutbound = await startNaivePair(dir, state, plan.app, bed);
  bed.ours = [sleepPod.pids.proxy, appPod.pids.proxy];
  const profDir = args['cpu-prof'] ? path.resolve(args['cpu-prof']) : undefined;
  if (profDir) fs.mkdirSync(profDir, { recursive: true });
  if (args['proxy-node-flags'] !== undefined || profDir) {
    const extra = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
    bed.ours = [
      await restartProxy(sleepPod.pids.proxy, [...bed.flags, ...extra], sleepPod.admin),
      await restartProxy(appPod.pids.proxy, [...bed.flags, ...extra], appPod.admin),
    ];
  }
  const naivePids = bed.naive.map((c) => c.pid ?? 0);
  for (const pid of [state.istiod.pid, ...bed.ours, ...naivePids]) await pin(pid);
  const [app, inbound, outbound] = nginx;
  if (!app || !inbound || !outbound) throw new Error('nginx did not start');
  bed.paths = [
    { name: 'direct', targets: { http1: plan.app, h2: plan.appH2 }, proxies: [] },
    {
      name: 'fedmesh',
      targets: { http1: sleepPod.outbound, h2: sleepPod.outbound },
      proxies: bed.ours.map((pid) => [pid]),
    },
    {
      name: 'nginx',
      targets: { http1: plan.outbound, h2: plan.outboundH2 },
      proxies: [nginxPids(outbound), nginxPids(inbound)],
    },
    { name: 'naive', targets: { http1: naiveOutbound, h2: undefined }, proxies: naivePids.map((pid) => [pid]) },
  ];
  for (const p of bed.paths) {
    const body = await probe(p.targets.http1 ?? '');
    if (!body.includes('"service":"app"')) throw new Error(`${p.name}: unexpected answer ${body}`);
  }
}

function printProfiles(profDir: string, pids: number[]): void {
  for (const f of fs.readdirSync(profDir).filter((x) => pids.some((pid) => x.includes(`.${pid}.`)))) {
    const sum = summarizeProfile(path.join(profDir, f));
    console.log(`\nprofile ${f} (busy ${sum.busyMs.toFixed(0)} ms): top frames by self time`);
    for (const x of sum.self) console.log(`  ${(x.share * 100).toFixed(1).padStart(5)}%  ${x.frame}`);
    console.log('  by file, inclusive:');
    for (const x of sum.files) console.log(`  ${(x.share * 100).toFixed(1).padStart(5)}%  ${x.file}`);
  }
}

function row(proto: Protocol, round: number, p: PathUnderTest, res: PathResult): string {
  const l = res.latency;
  const ms = (us: number): string => (us / 1000).toFixed(3);
  return (
    `  ${proto.padEnd(5)} round ${round} ${p.name.padEnd(7)} max ${res.rps.toFixed(0).padStart(6)} rps` +
    `${res.errors ? ` (${res.errors})` : ''}  at ${rate} rps: p50 ${ms(l.p50)} p90 ${ms(l.p90)} p99 ${ms(l.p99)} ms` +
    ` (${l.completed} ok, ${l.errors} errors, ${l.achievedRps.toFixed(0)} rps)` +
    (p.proxies.length
      ? `  proxy CPU ${res.cpuMsPerKreq.toFixed(1)} ms/1k req  RSS ${res.rssMb.map((m) => m.toFixed(1)).join(' + ')} MB`
      : '')
  );
}

async function main(): Promise<void> {
  if (os.cpus().length < 2) throw new Error('needs 2 CPUs: the load generator on CPU 1, the proxies on CPU 0');
  for (const tool of ['nginx', 'wrk', 'taskset', 'curl'])
    if ((await run('sh', ['-c', `command -v ${tool}`], 5_000)).code !== 0)
      throw new Error(`${tool} is missing (apt-get install -y nginx-light wrk util-linux curl)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-bench-proxy-'));
  const nginx: NginxInstance[] = [];
  let state: MeshState | undefined;
  const flags = args['proxy-node-flags']?.split(/\s+/).filter(Boolean) ?? [...PROXY_NODE_FLAGS];
  const bed: Bed = { paths: [], ours: [], flags, naive: [] };
  try {
    await setUp(dir, nginx, (s) => (state = s), bed);
    const ours = bed.paths.find((p) => p.name === 'fedmesh');
    const h2Refused =
      (await run('sh', ['-c', 'command -v h2load'], 5_000)).code !== 0 ? 'h2load is missing' : undefined;
    const refusal = h2Refused ?? (ours?.targets.h2 ? await h2Refusal(ours.targets.h2) : 'no path');
    const protocols: Protocol[] = refusal === undefined ? ['http1', 'h2'] : ['http1'];
    const load = os.loadavg().map((l) => l.toFixed(2));
    console.log(
      `bench/proxy: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, load average ` +
        `${load.join(' ')}; max rps with ${connections} requests in flight for ${seconds}s (wrk / h2load); open loop ` +
        `${rate} rps for ${latencySeconds}s; access logs ${accessLog ? 'on' : 'off'}; rounds ${rounds}; our proxies: ` +
        `node ${flags.join(' ')}${args['h2-upgrade-policy'] ? `; h2UpgradePolicy ${args['h2-upgrade-policy']}` : ''}`,
    );
    const results = new Map<string, PathResult[]>();
    for (let r = 0; r < rounds; r++)
      for (const proto of protocols)
        for (const p of bed.paths) {
          const target = p.targets[proto];
          if (target === undefined) continue;
          const res = await measure(p, target, proto);
          const key = `${proto}:${p.name}`;
          results.set(key, [...(results.get(key) ?? []), res]);
          console.log(row(proto, r + 1, p, res));
        }
    for (const proto of protocols) report(results, proto);
    if (refusal !== undefined) console.log(`\nHTTP/2: not measured, our proxy does not speak h2c (${refusal})`);
    else
      console.log(
        '\nHTTP/2 is h2c (prior knowledge) from the client to the first proxy; between the proxies our pair speaks ' +
          'whatever ALPN picks, nginx only HTTP/1.1 (its upstream module has no HTTP/2); the naive pair is ' +
          'HTTP/1.1 only and not in the HTTP/2 rows.',
      );
    const profDir = args['cpu-prof'];
    if (profDir) {
      for (const pid of bed.ours) await stopAndWait(pid, 20_000); // the profile is written at exit
      printProfiles(path.resolve(profDir), bed.ours);
    }
  } finally {
    for (const pid of bed.ours) await stopAndWait(pid, 15_000);
    for (const c of bed.naive) c.kill('SIGKILL');
    for (const n of nginx.reverse()) await stopNginx(n);
    const st: MeshState | undefined = state;
    if (st) await meshDown(st.stateDir, 15_000).catch((err: unknown) => console.error(`mesh down: ${String(err)}`));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function report(results: Map<string, PathResult[]>, proto: Protocol): void {
  const has = (name: string): boolean => (results.get(`${proto}:${name}`) ?? []).length > 0;
  const m = (name: string, f: (r: PathResult) => number): number =>
    median((results.get(`${proto}:${name}`) ?? []).map(f));
  const added = (name: string, q: 'p50' | 'p90' | 'p99'): number =>
    (m(name, (r) => r.latency[q]) - m('direct', (r) => r.latency[q])) / 1000;
  const peak = (name: string): number => Math.max(...(results.get(`${proto}:${name}`) ?? []).flatMap((r) => r.rssMb));
  const of = (name: string): { rps: number; rss: number; cpu: number } => ({
    rps: m(name, (r) => r.rps),
    rss: peak(name),
    cpu: m(name, (r) => r.cpuMsPerKreq),
  });
  const ours = of('fedmesh');
  const ngx = of('nginx');
  const naive = has('naive') ? of('naive') : undefined;
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const x = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
  const direct = m('direct', (r) => r.rps);
  console.log(`\n${proto === 'h2' ? 'HTTP/2 (h2c)' : 'HTTP/1.1'} summary (medians over rounds)`);
  console.log(
    `  max rps            direct ${direct.toFixed(0)}   fedmesh ${ours.rps.toFixed(0)}   nginx ${ngx.rps.toFixed(0)}` +
      (naive ? `   naive node ${naive.rps.toFixed(0)}` : ''),
  );
  for (const q of ['p50', 'p90', 'p99'] as const) {
    const a = added('fedmesh', q);
    const b = added('nginx', q);
    const n = naive ? added('naive', q) : undefined;
    console.log(
      `  added ${q} (ms)     fedmesh +${a.toFixed(3)}   nginx +${b.toFixed(3)}   ratio ${x(a, b)}` +
        (n !== undefined ? `   naive node +${n.toFixed(3)}   fedmesh/naive ${x(a, n)}` : ''),
    );
  }
  console.log(
    `  proxy CPU/1k req   fedmesh ${ours.cpu.toFixed(1)} ms   nginx ${ngx.cpu.toFixed(1)} ms   ratio ${x(ours.cpu, ngx.cpu)}` +
      (naive ? `   naive node ${naive.cpu.toFixed(1)} ms` : ''),
  );
  console.log(
    `  peak RSS per proxy fedmesh ${ours.rss.toFixed(1)} MB   nginx ${ngx.rss.toFixed(1)} MB` +
      (naive ? `   naive node ${naive.rss.toFixed(1)} MB` : ''),
  );
  if (naive)
    console.log(
      `  against naive node: fedmesh throughput ${x(ours.rps, naive.rps)}, CPU/1k req ${x(ours.cpu, naive.cpu)}; ` +
        `naive node against nginx: throughput ${x(naive.rps, ngx.rps)}, CPU/1k req ${x(naive.cpu, ngx.cpu)}`,
    );
  const tp = ours.rps / ngx.rps;
  const p99 = added('fedmesh', 'p99') / added('nginx', 'p99');
  console.log(
    `  target throughput ≥ ${TARGETS.throughputVsNginx}x nginx: ${tp.toFixed(2)}x ${verdict(tp >= TARGETS.throughputVsNginx)}`,
  );
  console.log(
    `  target added p99 ≤ ${TARGETS.addedP99VsNginx}x nginx: ${p99.toFixed(2)}x ${verdict(p99 <= TARGETS.addedP99VsNginx && p99 >= 0)}`,
  );
  console.log(
    `  target RSS ≤ ${TARGETS.rssMb} MB per proxy at ${rate} rps: ${ours.rss.toFixed(1)} MB ${verdict(ours.rss <= TARGETS.rssMb)}`,
  );
}

await main();
