/**
 * Hosts for the VM end-to-end test, built from namespaces the test creates and removes: a network namespace for the
 * mesh, and a "VM" that is a real systemd as PID 1 in its own PID, mount, network, UTS and IPC namespaces
 * (`../shared/tools/systemd-in-namespace.sh`), wired to the mesh by a veth pair. Every command has a timeout; every
 * resource has a `close()` that works even after a failure; cgroups the VM's systemd made are removed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** SYSTEMD_IN_NAMESPACE is the shared tool that runs systemd as PID 1 in fresh namespaces. */
export const SYSTEMD_IN_NAMESPACE = path.resolve(
  import.meta.dirname,
  '../../../../shared/tools/systemd-in-namespace.sh',
);

/** RunResult is a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * run executes a command (no shell) with a timeout (and an optional abort signal, which kills it); resolves its exit
 * code and output, never rejects.
 */
export function run(cmd: string, args: string[], timeoutMs = 30_000, signal?: AbortSignal): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 8 * 1024 * 1024,
        ...(signal !== undefined ? { signal } : {}),
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr: err && typeof err.code !== 'number' ? `${stderr}${err.message}` : stderr });
      },
    );
  });
}

/** must runs a command and throws with its output when it fails. */
export async function must(cmd: string, args: string[], timeoutMs = 30_000, signal?: AbortSignal): Promise<string> {
  const r = await run(cmd, args, timeoutMs, signal);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** sleep waits `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** poll calls `check` every `everyMs` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function poll<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * HostLock serializes runs of this test on one machine (they share dpkg's database, /etc and the cgroup root): a lock
 * directory holding the owner's PID, made whole under a temporary name and renamed into place (so it never exists
 * without its PID); a lock whose owner is gone is taken over.
 */
export class HostLock {
  private constructor(private readonly dir: string) {}

  /** acquire waits up to `timeoutMs` for the lock (or until `signal` aborts: then it throws). */
  static async acquire(dir: string, timeoutMs: number, signal?: AbortSignal): Promise<HostLock> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const tmp = `${dir}.${process.pid}.${Date.now()}`;
      fs.mkdirSync(tmp);
      fs.writeFileSync(path.join(tmp, 'pid'), String(process.pid));
      try {
        fs.renameSync(tmp, dir);
        return new HostLock(dir);
      } catch (err) {
        fs.rmSync(tmp, { recursive: true, force: true });
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
      }
      let owner = 0;
      try {
        owner = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
      } catch {
        continue; // released meanwhile
      }
      let alive = false;
      try {
        process.kill(owner, 0);
        alive = owner > 0;
      } catch {
        alive = false;
      }
      if (!alive) fs.rmSync(dir, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`${dir} held by pid ${owner} for ${timeoutMs} ms`);
      else await sleep(500);
    }
  }

  /** release removes the lock. */
  release(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * sweepLeftovers removes what a run of this test killed before its cleanup (a SIGKILLed runner) left behind: VMs
 * (systemd with `--unit=<target>`) and mesh runners (`mesh-node.ts`), `fm-mesh-*` network namespaces, the cgroups
 * those VMs made (empty top-level `*.slice`, `*.scope`, `*.mount`, …), a dangling /dev/log, the package and its user. Call it only while
 * holding the {@link HostLock}: then no live run owns any of these. Returns what it removed.
 */
export async function sweepLeftovers(target: string, pkg: string, user: string): Promise<string[]> {
  const removed: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let cmdline = '';
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    const vmInit = cmdline.includes('systemd --system') && cmdline.includes(`--unit=${target}`);
    const runner = cmdline.includes('test/src/vm/mesh-node.ts');
    if (!vmInit && !runner) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
      removed.push(`${vmInit ? 'VM' : 'mesh runner'} pid ${pid}`);
    } catch {
      // gone
    }
  }
  for (const ns of (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '')) {
    if (!ns.startsWith('fm-mesh-')) continue;
    await run('ip', ['netns', 'del', ns]);
    removed.push(`netns ${ns}`);
  }
  if (removed.some((r) => r.startsWith('VM'))) {
    await sleep(500);
    const stale = [...cgroupDirs()]
      .filter((d) => /\.(slice|scope|mount|service|socket|swap)$/.test(d.split('/')[5] ?? ''))
      .sort((a, b) => b.length - a.length);
    for (const d of stale) {
      try {
        fs.rmdirSync(d);
        removed.push(d);
      } catch {
        // not empty, or not ours
      }
    }
  }
  // journald in a VM links /dev/log (the shared /dev) to its socket in the VM's /run: dangling on the host.
  try {
    if (fs.readlinkSync('/dev/log') === '/run/systemd/journal/dev-log' && !fs.existsSync('/dev/log')) {
      fs.rmSync('/dev/log');
      removed.push('/dev/log');
    }
  } catch {
    // no /dev/log, or not a symlink
  }
  const status = (await run('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', pkg])).stdout.trim();
  if (status !== '' && status !== 'un') {
    await must('dpkg', ['--purge', pkg], 120_000);
    removed.push(`package ${pkg}`);
  }
  if ((await run('getent', ['passwd', user])).code === 0) {
    await run('userdel', [user]);
    removed.push(`user ${user}`);
  }
  if ((await run('getent', ['group', user])).code === 0) {
    await run('groupdel', [user]);
    removed.push(`group ${user}`);
  }
  return removed;
}

/** MeshNamespace is a network namespace the test made (`ip netns add`), removed with every device in it. */
export class MeshNamespace {
  private constructor(readonly name: string) {}

  /** create adds the namespace and brings its loopback up. */
  static async create(name: string): Promise<MeshNamespace> {
    await must('ip', ['netns', 'add', name]);
    const ns = new MeshNamespace(name);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** exec runs a command inside the namespace and throws when it fails. */
  exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
    return must('ip', ['netns', 'exec', this.name, cmd, ...args], timeoutMs);
  }

  /** spawn starts a long-running process inside the namespace (stdin and stdout piped, stderr inherited). */
  spawn(cmd: string, args: string[], cwd?: string): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, cmd, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
      ...(cwd !== undefined ? { cwd } : {}),
    });
  }

  /** close deletes the namespace (its veth end goes with it, and so does the peer). */
  async close(): Promise<void> {
    await run('ip', ['netns', 'del', this.name]);
  }
}

function cgroupDirs(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string, depth: number): void => {
    if (depth > 6) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries)
      if (e.isDirectory()) {
        const p = path.join(dir, e.name);
        out.add(p);
        walk(p, depth + 1);
      }
  };
  walk('/sys/fs/cgroup', 0);
  return out;
}

/**
 * SystemdVm is a real systemd as PID 1 in fresh namespaces. `workDir` appears inside as /run/work; the units in
 * `unitDir` are copied into /run/systemd/system and `target` is started. Commands run inside with nsenter.
 */
export class SystemdVm {
  /** pid is systemd's PID as the host sees it. */
  pid = 0;
  private unshare: ChildProcess | undefined;
  private before = new Set<string>();

  /** constructor stores where the VM's work directory and units are; {@link SystemdVm.start} boots it. */
  constructor(
    readonly workDir: string,
    readonly unitDir: string,
    readonly target: string,
    private readonly consoleLog: string,
  ) {}

  /** start boots systemd and waits (up to `timeoutMs`) until `systemctl is-system-running` says running or degraded. */
  async start(timeoutMs = 30_000): Promise<void> {
    this.before = cgroupDirs();
    const out = fs.openSync(this.consoleLog, 'a');
    this.unshare = spawn(
      'unshare',
      [
        '--pid',
        '--fork',
        '--mount',
        '--net',
        '--uts',
        '--ipc',
        '--mount-proc',
        SYSTEMD_IN_NAMESPACE,
        this.workDir,
        this.unitDir,
        this.target,
      ],
      { stdio: ['ignore', out, out] },
    );
    fs.closeSync(out);
    const parent = this.unshare.pid;
    if (parent === undefined) throw new Error('unshare did not start');
    this.pid = await poll('systemd to start', timeoutMs, async () => {
      const children = fs
        .readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean);
      const child = Number(children[0] ?? 0);
      if (!child) return undefined;
      try {
        return fs.readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'systemd' ? child : undefined;
      } catch {
        return undefined;
      }
    });
    await poll(
      'systemd to finish booting',
      timeoutMs,
      async () => {
        const r = await this.run(['systemctl', 'is-system-running']);
        const state = r.stdout.trim();
        return state === 'running' || state === 'degraded' ? state : undefined;
      },
      100,
    );
  }

  /** run executes a command inside the VM's mount and PID namespaces (systemctl, dpkg, files); never rejects. */
  run(args: string[], timeoutMs = 30_000): Promise<RunResult> {
    return run('nsenter', ['-t', String(this.pid), '-m', '-p', '--', ...args], timeoutMs);
  }

  /** must is {@link SystemdVm.run} that throws on failure. */
  must(args: string[], timeoutMs = 30_000): Promise<string> {
    return must('nsenter', ['-t', String(this.pid), '-m', '-p', '--', ...args], timeoutMs);
  }

  /** runNet executes a host binary inside the VM's network namespace only (curl from the VM). */
  runNet(args: string[], timeoutMs = 30_000): Promise<RunResult> {
    return run('nsenter', ['-t', String(this.pid), '-n', '--', ...args], timeoutMs);
  }

  /** show returns unit properties (`systemctl show -p …`) as a record. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const out = await this.must(['systemctl', 'show', unit, ...props.flatMap((p) => ['-p', p])]);
    const rec: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) rec[line.slice(0, i)] = line.slice(i + 1);
    }
    return rec;
  }

  /** close kills systemd (and with it every process of its PID namespace) and removes the cgroups it made. */
  async close(): Promise<void> {
    if (this.pid) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const u = this.unshare;
    if (u && u.exitCode === null && u.signalCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5_000);
        u.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    // Empty cgroups can be removed once their processes are reaped; retry for a few seconds.
    // Only systemd's own units (`system.slice`, `init.scope`, `dev-mqueue.mount`, …) at the top of each hierarchy:
    // never the container's cgroups.
    const made = [...cgroupDirs()]
      .filter((d) => !this.before.has(d))
      .filter((d) => /\.(slice|scope|mount|service|socket|swap)$/.test(d.split('/')[5] ?? ''))
      .sort((a, b) => b.length - a.length);
    for (let attempt = 0; attempt < 50 && made.length > 0; attempt++) {
      for (const d of [...made]) {
        try {
          fs.rmdirSync(d);
          made.splice(made.indexOf(d), 1);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') made.splice(made.indexOf(d), 1);
        }
      }
      if (made.length > 0) await sleep(100);
    }
    if (made.length > 0) throw new Error(`cgroups left behind: ${made.join(', ')}`);
  }
}
