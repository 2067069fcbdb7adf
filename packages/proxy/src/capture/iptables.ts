import { execFile } from 'node:child_process';
import { ErrorCode, MeshError } from '@fedmesh/api';

/** ISTIO_PROXY_UID is the uid (and gid) the sidecar runs as in capture mode, so its own traffic is not captured. */
export const ISTIO_PROXY_UID = 1337;

/** OUTBOUND_CAPTURE_PORT is where captured outbound TCP is redirected (the `virtualOutbound` listener). */
export const OUTBOUND_CAPTURE_PORT = 15001;

/** INBOUND_CAPTURE_PORT is where captured inbound TCP is redirected (the `virtualInbound` listener). */
export const INBOUND_CAPTURE_PORT = 15006;

/**
 * DEFAULT_INBOUND_EXCLUDED_PORTS are the proxy's own ports, never redirected inbound: admin 15000, outbound
 * 15001, inbound 15006 (explicit-mode peers dial it directly), 15020 and 15090 (Prometheus), 15021 (health).
 */
export const DEFAULT_INBOUND_EXCLUDED_PORTS: readonly number[] = [15000, 15001, 15006, 15020, 15021, 15090];

/** CaptureRulesOptions configure {@link captureRules}; every field has Istio's default. */
export interface CaptureRulesOptions {
  /** proxyUid is the proxy's uid (1337); its connections are never captured. */
  proxyUid?: number;
  /** proxyGid is the proxy's gid (the uid by default); its connections are never captured either. */
  proxyGid?: number;
  outboundPort?: number;
  inboundPort?: number;
  /** inboundExcludedPorts are destination ports that inbound capture leaves alone. */
  inboundExcludedPorts?: readonly number[];
}

function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new MeshError(ErrorCode.INVALID_CONFIG, `${what}: must be a port 1..65535, got ${n}`);
  return n;
}

function id(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0) throw new MeshError(ErrorCode.INVALID_CONFIG, `${what}: must be an id ≥ 0`);
  return n;
}

/**
 * captureRules renders the `nat` table rules of Istio's `istio-iptables` (REDIRECT mode) as `iptables-restore`
 * input, to be applied with `--noflush` in the pod's network namespace:
 * - `PREROUTING → ISTIO_INBOUND`: TCP to any port except the excluded ones goes to `ISTIO_IN_REDIRECT`,
 *   `REDIRECT --to-ports 15006`;
 * - `OUTPUT → ISTIO_OUTPUT`: connections the app makes over `lo` (to itself) return, the proxy's uid and gid
 *   return, `127.0.0.1` returns, everything else goes to `ISTIO_REDIRECT`, `REDIRECT --to-ports 15001`.
 * Unlike Istio, there is no `127.0.0.6` inbound passthrough source and no redirect of the proxy's own calls to
 * its pod's address back to 15006: an app calling its own service reaches itself directly. Throws a MeshError
 * (`FEDMESH_ERR_INVALID_CONFIG`) on an invalid port or id.
 */
export function captureRules(opts: CaptureRulesOptions = {}): string {
  const uid = id(opts.proxyUid ?? ISTIO_PROXY_UID, 'proxyUid');
  const gid = id(opts.proxyGid ?? uid, 'proxyGid');
  const outbound = port(opts.outboundPort ?? OUTBOUND_CAPTURE_PORT, 'outboundPort');
  const inbound = port(opts.inboundPort ?? INBOUND_CAPTURE_PORT, 'inboundPort');
  const excluded = [...new Set(opts.inboundExcludedPorts ?? DEFAULT_INBOUND_EXCLUDED_PORTS)].map((p) =>
    port(p, 'inboundExcludedPorts'),
  );
  return [
    '*nat',
    ':ISTIO_INBOUND - [0:0]',
    ':ISTIO_IN_REDIRECT - [0:0]',
    ':ISTIO_OUTPUT - [0:0]',
    ':ISTIO_REDIRECT - [0:0]',
    '-A PREROUTING -p tcp -j ISTIO_INBOUND',
    '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
    ...excluded.map((p) => `-A ISTIO_INBOUND -p tcp --dport ${p} -j RETURN`),
    '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
    `-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${inbound}`,
    `-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner ${uid} -j RETURN`,
    `-A ISTIO_OUTPUT -m owner --uid-owner ${uid} -j RETURN`,
    `-A ISTIO_OUTPUT -m owner --gid-owner ${gid} -j RETURN`,
    '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
    '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
    `-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${outbound}`,
    'COMMIT',
    '',
  ].join('\n');
}

/** CLEANUP_COMMANDS undo {@link captureRules}: unhook the chains, then flush and delete them (Istio's cleanup). */
export const CLEANUP_COMMANDS: readonly (readonly string[])[] = [
  ['-t', 'nat', '-D', 'PREROUTING', '-p', 'tcp', '-j', 'ISTIO_INBOUND'],
  ['-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '-j', 'ISTIO_OUTPUT'],
  ...['ISTIO_INBOUND', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT', 'ISTIO_REDIRECT'].flatMap((c) => [
    ['-t', 'nat', '-F', c],
    ['-t', 'nat', '-X', c],
  ]),
];

function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new MeshError(ErrorCode.UNAVAILABLE, `${cmd} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
    child.stdin?.on('error', () => undefined); // the command may exit before reading its input
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

function inNetns(netns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, [...args]];
}

/**
 * applyCaptureRules installs {@link captureRules} with `iptables-restore --noflush`, in network namespace
 * `netns` (through `ip netns exec`) or in the caller's own. Rejects with a MeshError (`FEDMESH_ERR_UNAVAILABLE`)
 * carrying iptables' message when it fails (not root, no `nat` table, chains already present).
 */
export async function applyCaptureRules(opts: CaptureRulesOptions & { netns?: string } = {}): Promise<void> {
  const [cmd, args] = inNetns(opts.netns, 'iptables-restore', ['--noflush']);
  await run(cmd, args, captureRules(opts));
}

/**
 * removeCaptureRules removes what {@link applyCaptureRules} installed; missing rules and chains are ignored, so
 * it can run after a partial install. Resolves the number of commands that succeeded.
 */
export async function removeCaptureRules(opts: { netns?: string } = {}): Promise<number> {
  let ok = 0;
  for (const c of CLEANUP_COMMANDS) {
    const [cmd, args] = inNetns(opts.netns, 'iptables', c);
    ok += await run(cmd, args).then(
      () => 1,
      () => 0,
    );
  }
  return ok;
}
