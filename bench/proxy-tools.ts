// proxy-tools: the load tools and /proc readings bench/proxy.ts uses. wrk (HTTP/1.1) and h2load (HTTP/2 over
// cleartext, prior knowledge) measure max rps from CPU 1; proxy-loadgen.ts measures latency at a fixed rate.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { LoadResult } from './proxy-loadgen.js';

/** Protocol is what the client speaks to the first hop: HTTP/1.1, or HTTP/2 over cleartext (h2c). */
export type Protocol = 'http1' | 'h2';

/** MaxRun is one max-rps run: completed requests per second and what went wrong, if anything. */
export interface MaxRun {
  rps: number;
  errors: string;
}

/** run executes a command and resolves its exit code and output (never rejects). */
export function run(
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

/** cpuTicks is a process's user + system CPU time in clock ticks (1/100 s), 0 when it is gone. */
export function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** rssKb is a process's resident set in KiB, 0 when it is gone. */
export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * maxRps runs the max-throughput tool pinned to CPU 1 for `seconds` with `inFlight` requests outstanding: wrk
 * (1 thread, `inFlight` connections) for HTTP/1.1, h2load (1 thread, 8 connections × inFlight/8 streams) for h2c.
 */
export async function maxRps(
  proto: Protocol,
  target: string,
  host: string,
  seconds: number,
  inFlight: number,
): Promise<MaxRun> {
  const url = `http://${target}/`;
  if (proto === 'http1') {
    const r = await run(
      'taskset',
      ['-c', '1', 'wrk', '-t1', `-c${inFlight}`, `-d${seconds}s`, '-H', `Host: ${host}`, url],
      (seconds + 30) * 1000,
    );
    if (r.code !== 0) throw new Error(`wrk ${target}: ${r.stderr || r.stdout}`);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
    const errs = [/Socket errors:[^\n]*/.exec(r.stdout)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(r.stdout)?.[0]];
    return { rps, errors: errs.filter(Boolean).join('; ') };
  }
  const streams = Math.max(1, Math.round(inFlight / 8));
  // h2load sends `host` as a header beside `:authority`, which nginx refuses (400): set `:authority` itself.
  const argv = ['-c', '1', 'h2load', '-t1', '-c8', `-m${streams}`, `-D${seconds}`, '-H', `:authority: ${host}`, url];
  const r = await run('taskset', argv, (seconds + 30) * 1000);
  const done = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(r.stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(r.stdout);
  if (!done) throw new Error(`h2load ${target}: ${r.stderr || r.stdout}`);
  const ok = Number(codes?.[1] ?? 0) + Number(codes?.[2] ?? 0);
  const failed = Number(done[4]) + Number(codes?.[3] ?? 0) + Number(codes?.[4] ?? 0);
  return { rps: ok / seconds, errors: failed > 0 ? `${failed} failed or non-2xx` : '' };
}

/** openLoop runs proxy-loadgen.ts pinned to CPU 1 (without the caller's NODE_OPTIONS) and returns its result. */
export async function openLoop(
  proto: Protocol,
  target: string,
  host: string,
  rate: number,
  seconds: number,
): Promise<LoadResult> {
  const script = path.join(import.meta.dirname, 'proxy-loadgen.ts');
  const argv = ['-c', '1', process.execPath, '--import', 'tsx', script, '--target', target, '--host', host];
  argv.push('--rate', String(rate), '--seconds', String(seconds), '--warmup', '2');
  argv.push(...(proto === 'h2' ? ['--h2', '--connections', '4'] : ['--connections', '64']));
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('taskset', argv, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    child.stdout.on('data', (d: Buffer) => (s += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(s);
      else reject(new Error(`load generator exited ${code}`));
    });
  });
  return JSON.parse(out) as LoadResult;
}

/** alive reports whether a process exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** stopAndWait sends SIGTERM and waits up to `timeoutMs` for the process to exit, then SIGKILLs it. */
export async function stopAndWait(pid: number, timeoutMs: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/**
 * restartProxy re-runs a sidecar with other node flags: same entry and arguments (from /proc), same log file.
 * Resolves the new pid once its admin `/ready` answers 200 (30 s at most).
 */
export async function restartProxy(pid: number, flags: string[], admin: string): Promise<number> {
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
