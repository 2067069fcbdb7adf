/**
 * Network namespaces for the cross-cluster end-to-end tests: `infra` (etcd, nats-server, and a bridge),
 * `east` and `west` (one cluster each), joined by veth pairs to the bridge inside `infra`. Nothing is created in
 * the host namespace and nothing there dials these addresses: every client runs inside a namespace
 * (`ip netns exec`). In each cluster namespace, iptables lets new TCP connections to the other cluster reach its
 * east-west gateway port only, so that only gateways cross networks.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** SUBNET is the private /24 the namespaces share (on the bridge in `infra`; never routed outside it). */
export const SUBNET = '10.233.77';

/** ClusterNet is one cluster's namespace and address. */
export interface ClusterNet {
  name: 'east' | 'west';
  ns: string;
  ip: string;
}

/** ip runs `ip ARGS…`; rejects with stderr on failure. */
export async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 10_000 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** inNs runs a command inside a namespace and returns its stdout; rejects on a non-zero exit. */
export async function inNs(ns: string, cmd: string, args: string[]): Promise<string> {
  try {
    return (await run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: 15_000 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${ns}: ${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * netnsUnavailable returns why network namespaces can't be used here (not root, no iproute2, no permission), or
 * undefined when a probe namespace could be created and removed.
 */
export async function netnsUnavailable(): Promise<string | undefined> {
  const probe = `fmprobe${randomBytes(3).toString('hex')}`;
  try {
    await ip('netns', 'add', probe);
  } catch (err) {
    return `ip netns is unavailable: ${(err as Error).message}`;
  }
  await ip('netns', 'del', probe).catch(() => undefined);
  return undefined;
}

/** spawnInNs starts a long-running process inside a namespace (`ip netns exec` execs it, so the pid is its own). */
export function spawnInNs(
  ns: string,
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
}

/**
 * Topology creates and removes the three namespaces, the bridge, the veth pairs and the iptables rules.
 * {@link Topology.destroy} is safe to call after a partial {@link Topology.create}.
 */
export class Topology {
  readonly id = randomBytes(3).toString('hex');
  readonly infra = { ns: `fm${this.id}-infra`, ip: `${SUBNET}.1` };
  readonly east: ClusterNet = { name: 'east', ns: `fm${this.id}-east`, ip: `${SUBNET}.2` };
  readonly west: ClusterNet = { name: 'west', ns: `fm${this.id}-west`, ip: `${SUBNET}.3` };
  /** isolated tells whether iptables enforces "only gateways cross networks" (false if iptables is missing). */
  isolated = false;
  private created: string[] = [];

  /** create builds everything; throws (leaving what it made for destroy) on the first failure. */
  async create(gatewayPort: number): Promise<void> {
    for (const ns of [this.infra.ns, this.east.ns, this.west.ns]) {
      await ip('netns', 'add', ns);
      this.created.push(ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    await ip('-n', this.infra.ns, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', this.infra.ns, 'addr', 'add', `${this.infra.ip}/24`, 'dev', 'br0');
    await ip('-n', this.infra.ns, 'link', 'set', 'br0', 'up');
    for (const c of [this.east, this.west]) {
      const hostSide = `ve-${c.name}`;
      await ip('-n', this.infra.ns, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c.ns);
      await ip('-n', this.infra.ns, 'link', 'set', hostSide, 'master', 'br0', 'up');
      await ip('-n', c.ns, 'addr', 'add', `${c.ip}/24`, 'dev', 'eth0');
      await ip('-n', c.ns, 'link', 'set', 'eth0', 'up');
    }
    this.isolated = await this.isolate(gatewayPort).then(
      () => true,
      () => false,
    );
  }

  /** other returns the other cluster. */
  other(c: ClusterNet): ClusterNet {
    return c.name === 'east' ? this.west : this.east;
  }

  /** setLink takes a cluster's veth down or up (a partition of that cluster from everything else). */
  async setLink(c: ClusterNet, up: boolean): Promise<void> {
    await ip('-n', c.ns, 'link', 'set', 'eth0', up ? 'up' : 'down');
  }

  /** destroy removes the namespaces (their veths and bridge go with them). Processes must be stopped first. */
  async destroy(): Promise<void> {
    for (const ns of this.created.reverse()) await ip('netns', 'del', ns).catch(() => undefined);
    this.created = [];
  }

  private async isolate(gatewayPort: number): Promise<void> {
    for (const c of [this.east, this.west]) {
      const peer = this.other(c).ip;
      const rules = [
        ['-A', 'OUTPUT', '-o', 'eth0', '-p', 'tcp', '--syn', '-d', this.infra.ip, '-j', 'ACCEPT'],
        [
          '-A',
          'OUTPUT',
          '-o',
          'eth0',
          '-p',
          'tcp',
          '--syn',
          '-d',
          peer,
          '--dport',
          String(gatewayPort),
          '-j',
          'ACCEPT',
        ],
        ['-A', 'OUTPUT', '-o', 'eth0', '-p', 'tcp', '--syn', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
      ];
      for (const r of rules) await inNs(c.ns, 'iptables', r);
    }
  }
}
