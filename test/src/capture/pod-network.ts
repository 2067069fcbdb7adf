/**
 * A pod network in network namespaces, for the transparent capture tests: one `node` namespace holding a bridge,
 * one namespace per pod with `eth0` on that bridge, and one veth from the bridge to the host so that pods reach
 * an istiod running in the test process on the host side's address. Everything lives on a private /24 the
 * network picks; the host never dials a pod address (commands run inside the namespaces through `ip netns exec`).
 * `close()` kills what was spawned and deletes the namespaces (which removes every veth) and `/etc/netns/<ns>`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** CommandResult is a finished command: exit code (null when killed), stdout and stderr. */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** sh runs a command and resolves its result; it never rejects (a missing binary is code 127). */
export function sh(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 15_000, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : err.code === 'ENOENT' ? 127 : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.on('error', () => undefined); // the command may exit before reading its input
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await sh(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * captureUnavailable says why capture tests cannot run here (not root, no `ip netns`, no iptables `nat` table with
 * the `owner` match, no `setpriv`), or undefined when a probe namespace accepted a REDIRECT rule.
 */
export async function captureUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root: network namespaces and iptables need root';
  const probe = `fmcprobe${randomBytes(3).toString('hex')}`;
  const add = await sh('ip', ['netns', 'add', probe]);
  if (add.code !== 0) return `ip netns is unavailable: ${add.stderr.trim() || `exit ${add.code}`}`;
  try {
    const rule = await sh('ip', [
      ...['netns', 'exec', probe, 'iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp'],
      ...['-m', 'owner', '!', '--uid-owner', '1337', '-j', 'REDIRECT', '--to-ports', '15001'],
    ]);
    if (rule.code !== 0) return `iptables nat REDIRECT is unavailable: ${rule.stderr.trim() || `exit ${rule.code}`}`;
    if ((await sh('setpriv', ['--version'])).code !== 0) return 'setpriv (util-linux) is missing';
    return undefined;
  } finally {
    await sh('ip', ['netns', 'del', probe]);
  }
}

/** Pod is one pod's namespace and address. */
export interface Pod {
  name: string;
  ns: string;
  ip: string;
}

/** PodNetworkOptions: the service CIDR routed out of each pod's `eth0` (so connect() to a VIP reaches OUTPUT). */
export interface PodNetworkOptions {
  serviceCidr: string;
}

/** PodNetwork is the bridge, the host link and the pods; create it with {@link PodNetwork.create}. */
export class PodNetwork {
  readonly pods: Pod[] = [];
  private readonly children = new Set<ChildProcess>();
  private nextHost = 10;

  private constructor(
    readonly id: string,
    /** prefix is the /24's first three octets, e.g. `10.216.37`. */
    readonly prefix: string,
    /** hostIp is the host side's address on the pod network (istiod binds it). */
    readonly hostIp: string,
    private readonly opts: PodNetworkOptions,
  ) {}

  /** nodeNs is the namespace holding the bridge. */
  get nodeNs(): string {
    return `fmc-${this.id}-node`;
  }

  /**
   * create builds the bridge and the host link on a /24 `10.216.N.0/24` that no route of the host covers yet
   * (bounded tries). On failure it removes what it made and rethrows.
   */
  static async create(opts: PodNetworkOptions): Promise<PodNetwork> {
    const routes = await must('ip', ['-4', 'route', 'show', 'table', 'all']);
    let prefix: string | undefined;
    for (let i = 0; i < 40 && !prefix; i++) {
      const p = `10.216.${10 + Math.floor(Math.random() * 240)}`;
      if (!routes.includes(`${p}.`)) prefix = p;
    }
    if (!prefix) throw new Error('no free 10.216.N.0/24');
    const net = new PodNetwork(randomBytes(3).toString('hex'), prefix, `${prefix}.1`, opts);
    try {
      const hostIf = `fmc${net.id}h`;
      await must('ip', ['netns', 'add', net.nodeNs]);
      await net.inNode('ip', ['link', 'set', 'lo', 'up']);
      await net.inNode('ip', ['link', 'add', 'br0', 'type', 'bridge']);
      await net.inNode('ip', ['link', 'set', 'br0', 'up']);
      await net.inNode('ip', ['link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', hostIf]);
      await net.inNode('ip', ['link', 'set', hostIf, 'netns', String(process.pid)]);
      await net.inNode('ip', ['link', 'set', 'uplink', 'master', 'br0', 'up']);
      await must('ip', ['addr', 'add', `${net.hostIp}/24`, 'dev', hostIf]);
      await must('ip', ['link', 'set', hostIf, 'up']);
      return net;
    } catch (err) {
      await net.close();
      throw err;
    }
  }

  private inNode(cmd: string, args: string[]): Promise<string> {
    return must('ip', ['netns', 'exec', this.nodeNs, cmd, ...args]);
  }

  /**
   * addPod makes a pod namespace with `lo`, `eth0` on the bridge at the next address, the service CIDR routed out
   * of `eth0`, and `/etc/netns/<ns>/hosts` mapping `hosts` (name → IP) for `ip netns exec`'s `/etc/hosts`.
   */
  async addPod(name: string, hosts: Record<string, string> = {}): Promise<Pod> {
    const pod: Pod = { name, ns: `fmc-${this.id}-${name}`, ip: `${this.prefix}.${this.nextHost++}` };
    await must('ip', ['netns', 'add', pod.ns]);
    this.pods.push(pod);
    const idx = this.pods.length;
    const inPod = (cmd: string, args: string[]): Promise<string> => must('ip', ['netns', 'exec', pod.ns, cmd, ...args]);
    await inPod('ip', ['link', 'set', 'lo', 'up']);
    await this.inNode('ip', ['link', 'add', `p${idx}`, 'type', 'veth', 'peer', 'name', 'eth0']);
    await this.inNode('ip', ['link', 'set', 'eth0', 'netns', pod.ns]);
    await this.inNode('ip', ['link', 'set', `p${idx}`, 'master', 'br0', 'up']);
    await inPod('ip', ['addr', 'add', `${pod.ip}/24`, 'dev', 'eth0']);
    await inPod('ip', ['link', 'set', 'eth0', 'up']);
    await inPod('ip', ['route', 'add', this.opts.serviceCidr, 'dev', 'eth0']);
    this.writeHosts(pod, hosts);
    return pod;
  }

  /** writeHosts (re)writes `/etc/netns/<ns>/hosts`, which `ip netns exec` bind-mounts over `/etc/hosts`. */
  writeHosts(pod: Pod, hosts: Record<string, string>): void {
    const dir = path.join('/etc/netns', pod.ns);
    fs.mkdirSync(dir, { recursive: true });
    const lines = ['127.0.0.1 localhost', ...Object.entries(hosts).map(([n, ip]) => `${ip} ${n}`)];
    fs.writeFileSync(path.join(dir, 'hosts'), `${lines.join('\n')}\n`);
  }

  /** exec runs a command inside a pod's namespace and resolves its result (never rejects). */
  exec(pod: Pod, cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<CommandResult> {
    return sh('ip', ['netns', 'exec', pod.ns, cmd, ...args], { timeoutMs });
  }

  /**
   * spawn starts a long-running process inside a pod's namespace, as `uid` when given (through `setpriv`, which
   * execs, as `ip netns exec` does, so the pid is the process's own), with stdout and stderr appended to `logFile`.
   */
  spawn(pod: Pod, argv: readonly string[], logFile: string, uid?: number): ChildProcess {
    const out = fs.openSync(logFile, 'a');
    const asUser = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
    const child = spawn('ip', ['netns', 'exec', pod.ns, ...asUser, ...argv], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** close kills the spawned processes, deletes every namespace made and their `/etc/netns` entries. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const timer = setTimeout(() => c.kill('SIGKILL'), 3_000);
            c.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    for (const p of this.pods) {
      await sh('ip', ['netns', 'del', p.ns]);
      fs.rmSync(path.join('/etc/netns', p.ns), { recursive: true, force: true });
    }
    await sh('ip', ['netns', 'del', this.nodeNs]);
  }
}
