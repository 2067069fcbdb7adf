/**
 * Real infrastructure for tests: `etcd` and `nats-server` processes on loopback ports with temp dirs, stopped and
 * cleaned up by `stop()`. `.ci/run` installs them (Debian's etcd-server and nats-server).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** freePort asks the kernel for a free TCP port on a host. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** RunningProcess is a started helper process. */
export interface RunningProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  dir: string;
  /** stop kills the process (SIGKILL after 3 s) and removes its temp dir. */
  stop(): Promise<void>;
  /** pause and resume send SIGSTOP/SIGCONT: an outage without losing state. */
  pause(): void;
  resume(): void;
}

async function waitPort(host: string, port: number, proc: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}`);
    if (await connects(host, port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on ${host}:${port}`);
}

function running(proc: ChildProcess, url: string, port: number, dir: string): RunningProcess {
  return {
    url,
    port,
    proc,
    dir,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGCONT');
        proc.kill('SIGTERM');
        await Promise.race([new Promise((r) => proc.once('exit', r)), new Promise((r) => setTimeout(r, 3_000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
  };
}

/** startEtcd runs `etcd` on 127.0.0.1 with a temp data dir; ready when its client port accepts connections. */
export async function startEtcd(): Promise<RunningProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const proc = spawn(
    'etcd',
    [
      '--data-dir',
      dir,
      '--name',
      'default',
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `default=http://127.0.0.1:${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: 'ignore' },
  );
  await waitPort('127.0.0.1', client, proc, 'etcd');
  return running(proc, `http://127.0.0.1:${client}`, client, dir);
}

/** startNats runs `nats-server` on 127.0.0.1 (JetStream in a temp dir); ready when its port accepts connections. */
export async function startNats(configText?: string): Promise<RunningProcess> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-nats-'));
  const port = await freePort();
  const bin = fs.existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
  const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir];
  if (configText) {
    fs.writeFileSync(path.join(dir, 'nats.conf'), configText);
    args.push('-c', path.join(dir, 'nats.conf'));
  }
  const proc = spawn(bin, args, { stdio: 'ignore' });
  await waitPort('127.0.0.1', port, proc, 'nats-server');
  return running(proc, `nats://127.0.0.1:${port}`, port, dir);
}
