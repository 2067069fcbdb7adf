// proxy: our sidecar pair against an nginx pair, on loopback, in one run (issue 5 item 7). Three paths to the
// same app (nginx answering 200 with a small JSON body):
//   (a) direct:  client → app
//   (b) fedmesh: client → our sidecar (outbound 15001) → mTLS → our sidecar (inbound 15006) → app
//   (c) nginx:   client → nginx (outbound) → mTLS (proxy_ssl_certificate, verified) → nginx (inbound) → app
// For each: max rps (wrk, 1 thread, --connections), the latency at a fixed --rate from an open-loop generator that
// corrects coordinated omission (bench/proxy-loadgen.ts, hdr-histogram-js), the proxies' CPU time per request and
// their RSS. Load generators run on CPU 1 (taskset -c 1); proxies, the app and istiod on CPU 0. Ratios are printed
// against nginx and against the issue's targets. Run after `pnpm build` (needs nginx, wrk and taskset):
//   node --import tsx bench/proxy.ts [--seconds 10] [--latency-seconds 15] [--rate 1000] [--connections 64]
//     [--rounds 1] [--access-log on|off] [--proxy-node-flags "--max-semi-space-size=1 …"] [--cpu-prof DIR]
// --proxy-node-flags restarts our two sidecars with those node flags instead of the local mesh's own
// (PROXY_NODE_FLAGS); --cpu-prof DIR adds `--cpu-prof` and prints their top frames at the end.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { meshDown, meshUp, PROXY_NODE_FLAGS, type MeshState } from '../packages/ctl/dist/index.js';
import type { LoadResult } from './proxy-loadgen.js';
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

interface PathUnderTest {
  name: 'direct' | 'fedmesh' | 'nginx';
  target: string;
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

function run(
  cmd: string,
  argv: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, argv, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function wrk(target: string, durationS: number): Promise<{ rps: number; errors: string }> {
  const r = await run(
    'taskset',
    ['-c', '1', 'wrk', '-t1', `-c${connections}`, `-d${durationS}s`, '-H', `Host: ${HOST}`, `http://${target}/`],
    (durationS + 30) * 1000,
  );
  if (r.code !== 0) throw new Error(`wrk ${target}: ${r.stderr || r.stdout}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const errs = [/Socket errors:[^\n]*/.exec(r.stdout)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(r.stdout)?.[0]];
  return { rps, errors: errs.filter(Boolean).join('; ') };
}

async function openLoop(target: string): Promise<LoadResult> {
  const script = path.join(import.meta.dirname, 'proxy-loadgen.ts');
  const argv = ['-c', '1', process.execPath, '--import', 'tsx', script, '--target', target, '--host', HOST];
  argv.push('--rate', String(rate), '--seconds', String(latencySeconds), '--warmup', '2', '--connections', '64');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('taskset', argv, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    child.stdout.on('data', (d: Buffer) => (s += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (latencySeconds + 60) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(s);
      else reject(new Error(`load generator exited ${code}`));
    });
  });
  return JSON.parse(out) as LoadResult;
}

async function measure(p: PathUnderTest): Promise<PathResult> {
  await wrk(p.target, 3); // warm-up: pools, JIT, TLS sessions
  const all = p.proxies.flat();
  const before = all.map(cpuTicks);
  const max = await wrk(p.target, seconds);
  const ticks = all.map(cpuTicks).reduce((s, t, i) => s + t - (before[i] ?? 0), 0);
  const peak = p.proxies.map(() => 0);
  const sampler = setInterval(() => {
    p.proxies.forEach(
      (pids, i) =>
        (peak[i] = Math.max(
          peak[i] ?? 0,
          pids.map(rssKb).reduce((a, b) => a + b, 0),
        )),
    );
  }, 250);
  const latency = await openLoop(p.target);
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
  return s.length === 0 ? 0 : (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopAndWait(pid: number, timeoutMs: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/**
 * restartProxy re-runs a sidecar with other node flags: same entry and arguments (from /proc), same log file.
 * Resolves the new pid once its admin `/ready` answers 200.
 */
async function restartProxy(pid: number, flags: string[], admin: string): Promise<number> {
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const entry = argv.findIndex((a) => a.endsWith('.js'));
  const log = fs.openSync(fs.readlinkSync(`/proc/${pid}/fd/1`), 'a');
  await stopAndWait(pid, 15_000);
  const child = spawn(argv[0] ?? process.execPath, [...flags, ...argv.slice(entry)], {
    detached: true,
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error('could not restart a proxy');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${admin}/ready`], 5_000);
    if (r.stdout === '200') return child.pid;
    if (Date.now() > deadline) throw new Error(`restarted proxy ${admin} not ready`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

function pin(pid: number): Promise<unknown> {
  return run('taskset', ['-a', '-pc', '0', String(pid)], 5_000);
}

async function probe(target: string): Promise<string> {
  const r = await run('curl', ['-sS', '-m', '5', '-H', `Host: ${HOST}`, `http://${target}/`], 10_000);
  if (r.code !== 0) throw new Error(`probe ${target}: ${r.stderr}`);
  return r.stdout;
}

async function h2Supported(target: string): Promise<string | undefined> {
  const r = await run('h2load', ['-n', '10', '-c', '1', '-H', `Host: ${HOST}`, `http://${target}/`], 15_000);
  if (/\b10 succeeded/.test(r.stdout)) return undefined;
  return (r.stdout.split('\n').find((l) => /requests:/.test(l)) ?? (r.stderr || `h2load exit ${r.code}`)).trim();
}

async function main(): Promise<void> {
  if (os.cpus().length < 2) throw new Error('needs 2 CPUs: the load generator on CPU 1, the proxies on CPU 0');
  for (const tool of ['nginx', 'wrk', 'taskset', 'curl'])
    if ((await run('sh', ['-c', `command -v ${tool}`], 5_000)).code !== 0)
      throw new Error(`${tool} is missing (apt-get install -y nginx-light wrk util-linux curl)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-bench-proxy-'));
  const nginx: NginxInstance[] = [];
  let state: MeshState | undefined;
  let ours: number[] = [];
  try {
    fs.writeFileSync(path.join(dir, 'app.yaml'), MANIFEST);
    if (!accessLog) process.env.FEDMESH_LOG_LEVEL = 'warn';
    state = await meshUp({ files: [path.join(dir, 'app.yaml')], stateDir: path.join(dir, 'mesh') });
    const appPod = state.pods.find((p) => p.app === 'app');
    const sleepPod = state.pods.find((p) => p.name === 'sleep-0');
    if (!appPod?.pids.app || !sleepPod) throw new Error('mesh has no app pod or sleep pod');
    // Replace the echo app by the nginx app on the same address, so every path ends at the same C app.
    process.kill(appPod.pids.app, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    const net = state.subnet.replace(/\.0\/24$/, '');
    const plan = {
      dir,
      app: `${appPod.address}:8080`,
      outbound: `${net}.3:15001`,
      inbound: `${net}.4:15006`,
      accessLog,
    };
    nginx.push(await startNginx('app', dir, appConfig(path.join(dir, 'app'), plan.app), 0));
    await writeNginxCerts(path.join(state.stateDir, 'istiod', 'ca'), path.join(dir, 'certs'));
    nginx.push(
      await startNginx('inbound', dir, inboundConfig(plan, path.join(dir, 'inbound'), path.join(dir, 'certs')), 0),
    );
    nginx.push(
      await startNginx('outbound', dir, outboundConfig(plan, path.join(dir, 'outbound'), path.join(dir, 'certs')), 0),
    );
    ours = [sleepPod.pids.proxy, appPod.pids.proxy];
    const flags = args['proxy-node-flags']?.split(/\s+/).filter(Boolean) ?? [...PROXY_NODE_FLAGS];
    const profDir = args['cpu-prof'] ? path.resolve(args['cpu-prof']) : undefined;
    if (profDir) fs.mkdirSync(profDir, { recursive: true });
    if (args['proxy-node-flags'] !== undefined || profDir) {
      const extra = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
      ours = [
        await restartProxy(sleepPod.pids.proxy, [...flags, ...extra], sleepPod.admin),
        await restartProxy(appPod.pids.proxy, [...flags, ...extra], appPod.admin),
      ];
    }
    for (const pid of [state.istiod.pid, ...ours]) await pin(pid);
    const paths: PathUnderTest[] = [
      { name: 'direct', target: plan.app, proxies: [] },
      { name: 'fedmesh', target: sleepPod.outbound, proxies: ours.map((pid) => [pid]) },
      { name: 'nginx', target: plan.outbound, proxies: [nginxPids(nginx[2]!), nginxPids(nginx[1]!)] },
    ];
    for (const p of paths) {
      const body = await probe(p.target);
      if (!body.includes('"service":"app"')) throw new Error(`${p.name}: unexpected answer ${body}`);
    }
    const h2 = await h2Supported(sleepPod.outbound);

    console.log(
      `bench/proxy: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, ` +
        `load average ${os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}; wrk -t1 -c${connections} ${seconds}s; ` +
        `open loop ${rate} rps for ${latencySeconds}s; access logs ${accessLog ? 'on' : 'off'}; rounds ${rounds}; ` +
        `our proxies: node ${flags.join(' ')}`,
    );
    const results = new Map<string, PathResult[]>();
    for (let r = 0; r < rounds; r++)
      for (const p of paths) {
        const res = await measure(p);
        results.set(p.name, [...(results.get(p.name) ?? []), res]);
        const l = res.latency;
        console.log(
          `  round ${r + 1} ${p.name.padEnd(7)} max ${res.rps.toFixed(0).padStart(6)} rps${res.errors ? ` (${res.errors})` : ''}` +
            `  at ${rate} rps: p50 ${(l.p50 / 1000).toFixed(3)} p90 ${(l.p90 / 1000).toFixed(3)} p99 ${(l.p99 / 1000).toFixed(3)} ms` +
            ` (${l.completed} ok, ${l.errors} errors, ${l.achievedRps.toFixed(0)} rps)` +
            (p.proxies.length
              ? `  proxy CPU ${res.cpuMsPerKreq.toFixed(1)} ms/1k req  RSS ${res.rssMb.map((m) => m.toFixed(1)).join(' + ')} MB`
              : ''),
        );
      }
    report(results, h2);
    if (profDir) {
      for (const pid of ours) await stopAndWait(pid, 20_000); // the profile is written at exit
      for (const f of fs.readdirSync(profDir).filter((x) => ours.some((pid) => x.includes(`.${pid}.`)))) {
        const sum = summarizeProfile(path.join(profDir, f));
        console.log(`\nprofile ${f} (busy ${sum.busyMs.toFixed(0)} ms): top frames by self time`);
        for (const x of sum.self) console.log(`  ${(x.share * 100).toFixed(1).padStart(5)}%  ${x.frame}`);
        console.log('  by file, inclusive:');
        for (const x of sum.files) console.log(`  ${(x.share * 100).toFixed(1).padStart(5)}%  ${x.file}`);
      }
    }
  } finally {
    for (const pid of ours) await stopAndWait(pid, 15_000);
    for (const n of nginx.reverse()) await stopNginx(n);
    if (state)
      await meshDown(state.stateDir, 15_000).catch((err: unknown) =>
        console.error(`mesh down: ${(err as Error).message}`),
      );
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function report(results: Map<string, PathResult[]>, h2: string | undefined): void {
  const m = (name: string, f: (r: PathResult) => number): number => median((results.get(name) ?? []).map(f));
  const added = (name: string, q: 'p50' | 'p90' | 'p99'): number =>
    (m(name, (r) => r.latency[q]) - m('direct', (r) => r.latency[q])) / 1000;
  const ours = {
    rps: m('fedmesh', (r) => r.rps),
    rss: Math.max(...(results.get('fedmesh') ?? []).flatMap((r) => r.rssMb)),
  };
  const ngx = { rps: m('nginx', (r) => r.rps), rss: Math.max(...(results.get('nginx') ?? []).flatMap((r) => r.rssMb)) };
  const line = (label: string, value: number, ref: number, target: number, higherIsBetter: boolean): string => {
    const ratio = value / ref;
    const ok = higherIsBetter ? ratio >= target : ratio <= target;
    return `  ${label.padEnd(34)} ${ratio.toFixed(2)}x  (target ${higherIsBetter ? '≥' : '≤'} ${target}x: ${ok ? 'met' : 'MISSED'})`;
  };
  console.log('\nHTTP/1.1 summary (medians over rounds)');
  console.log(
    `  max rps            direct ${m('direct', (r) => r.rps).toFixed(0)}   fedmesh ${ours.rps.toFixed(0)}   nginx ${ngx.rps.toFixed(0)}`,
  );
  for (const q of ['p50', 'p90', 'p99'] as const)
    console.log(
      `  added ${q} (ms)     fedmesh +${added('fedmesh', q).toFixed(3)}   nginx +${added('nginx', q).toFixed(3)}   ratio ${(added('fedmesh', q) / added('nginx', q)).toFixed(2)}x`,
    );
  console.log(
    `  proxy CPU/1k req   fedmesh ${m('fedmesh', (r) => r.cpuMsPerKreq).toFixed(1)} ms   nginx ${m('nginx', (r) => r.cpuMsPerKreq).toFixed(1)} ms   ratio ${(m('fedmesh', (r) => r.cpuMsPerKreq) / m('nginx', (r) => r.cpuMsPerKreq)).toFixed(2)}x`,
  );
  console.log(`  peak RSS per proxy fedmesh ${ours.rss.toFixed(1)} MB   nginx ${ngx.rss.toFixed(1)} MB`);
  console.log('Targets');
  console.log(line('throughput vs the nginx pair', ours.rps, ngx.rps, TARGETS.throughputVsNginx, true));
  console.log(
    line('added p99 vs the nginx pair', added('fedmesh', 'p99'), added('nginx', 'p99'), TARGETS.addedP99VsNginx, false),
  );
  console.log(
    `  RSS per proxy at ${rate} rps             ${ours.rss.toFixed(1)} MB  (target ≤ ${TARGETS.rssMb} MB: ${ours.rss <= TARGETS.rssMb ? 'met' : 'MISSED'})`,
  );
  console.log(
    h2 === undefined
      ? 'HTTP/2: our outbound listener answered h2c; HTTP/2 rows are not measured yet'
      : `HTTP/2: not measured, our proxy does not speak it yet (h2load against its outbound listener: ${h2})`,
  );
}

await main();
