import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { request } from 'undici';
import { EtcdKvStore } from '@fedmesh/federation';
import type { CaStatus } from '@fedmesh/istiod';
import { isPkiError } from '@fedmesh/pki';
import { caStatus, podOf, rotateRoot, shortFingerprint, type IstiodAdmin } from '../ca-rotation.js';
import { adminToken, readState } from '../local-mesh.js';
import { rotateFederatedRoot, type FederatedClusterTarget } from './ca-rotate-federation.js';

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1 || n > 3600) throw new InvalidArgumentError('must be 1-3600 seconds');
  return n;
}

function adminFor(stateDir: string): IstiodAdmin {
  const state = readState(stateDir);
  return { monitoring: state.istiod.monitoring, token: adminToken(state.stateDir) };
}

/** formatCaStatus renders {@link CaStatus} for people: the roots (primary first), then one line per workload. */
export function formatCaStatus(s: CaStatus): string {
  const lines = [`trust domain ${s.trustDomain}`, 'roots (primary first):'];
  for (const r of s.roots) {
    const roles = [r.primary && 'primary', r.signing && 'signing', r.staged && 'staged'].filter(Boolean).join(', ');
    lines.push(`  ${r.fingerprint}  ${r.subject}  until ${r.notAfter}${roles ? `  [${roles}]` : ''}`);
  }
  const served = s.servedRoots;
  if (served.length !== s.roots.length || served.some((fp, i) => fp !== s.roots[i]?.fingerprint))
    lines.push(`served to proxies (own roots, then mesh ${s.mesh?.name ?? ''}'s others): ${served.join(', ')}`);
  const onSigning = s.workloads.filter((w) => w.rootFingerprint === s.signingRoot).length;
  const synced = s.workloads.filter((w) => w.bundleSynced).length;
  lines.push(
    `workloads: ${s.workloads.length} connected, ${onSigning} on the signing root, ${synced} holding the current bundle`,
  );
  const rows = s.workloads.map((w) => [
    podOf(w.nodeId),
    w.spiffeId ?? '-',
    shortFingerprint(w.rootFingerprint),
    w.notAfter ?? '-',
    w.bundleSynced ? 'synced' : 'stale',
  ]);
  const head = ['WORKLOAD', 'SPIFFE ID', 'ROOT', 'NOT AFTER', 'BUNDLE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows]) lines.push(`  ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd());
  return lines.join('\n');
}

/** RotateRootFlags are the flags of `fedmesh ca rotate-root`, single-cluster and `--federation`. */
interface RotateRootFlags {
  stateDir?: string;
  newCa?: string;
  federation?: boolean;
  mesh?: string;
  etcd?: string[];
  clusterStateDir?: Record<string, string>;
  newRoot?: string;
  newIntermediate?: Record<string, string>;
  timeout: number;
  json?: boolean;
}

/** namedDir collects repeated `NAME=DIR` flags into a record. */
function namedDir(value: string, prev: Record<string, string> | undefined): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new InvalidArgumentError(`"${value}": must be NAME=DIR`);
  const name = value.slice(0, i);
  if (prev?.[name] !== undefined) throw new InvalidArgumentError(`${name} is given twice`);
  return { ...prev, [name]: value.slice(i + 1) };
}

/** federatedIstiod returns the cluster a local mesh's istiod is joined as, or undefined when it is not federated. */
async function federatedIstiod(admin: IstiodAdmin): Promise<string | undefined> {
  const res = await request(`http://${admin.monitoring}/v1/federation/status`, {
    headers: { authorization: `Bearer ${admin.token}` },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  if (res.statusCode !== 200) {
    await res.body.dump();
    return undefined;
  }
  const rows = (await res.body.json()) as { cluster: string; self: boolean }[];
  return rows.find((r) => r.self)?.cluster ?? '?';
}

async function rotateSingle(o: RotateRootFlags): Promise<void> {
  const given = (['mesh', 'etcd', 'clusterStateDir', 'newRoot', 'newIntermediate'] as const).filter(
    (k) => o[k] !== undefined,
  );
  if (given.length > 0) throw new Error(`${given.map(flagName).join(', ')}: only with --federation`);
  if (o.stateDir === undefined || o.newCa === undefined)
    throw new Error('give --state-dir and --new-ca (or --federation with its flags)');
  const state = readState(o.stateDir);
  const admin = { monitoring: state.istiod.monitoring, token: adminToken(state.stateDir) };
  const cluster = await federatedIstiod(admin);
  if (cluster !== undefined)
    throw new Error(
      `the istiod of ${o.stateDir} is cluster ${cluster} of a federated mesh: every cluster must trust a new root ` +
        'before any signs under it; use --federation --mesh M --etcd URL --cluster-state-dir NAME=DIR… --new-root DIR ' +
        '--new-intermediate NAME=DIR…',
    );
  const rootFile = path.join(state.stateDir, 'root-cert.pem');
  try {
    const report = await rotateRoot({
      admin,
      newCaDir: o.newCa,
      phaseTimeoutMs: o.timeout * 1000,
      log: (line) => console.error(line),
      onBundle: (pem) => fs.writeFileSync(rootFile, pem),
    });
    if (o.json) console.log(JSON.stringify(report, null, 2));
  } catch (err) {
    if (isPkiError(err)) throw new Error(`new CA ${o.newCa}: ${err.message} (${err.reason})`, { cause: err });
    throw err;
  }
}

function flagName(k: string): string {
  return `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

async function rotateFederated(o: RotateRootFlags): Promise<void> {
  const stray = (['stateDir', 'newCa'] as const).filter((k) => o[k] !== undefined);
  if (stray.length > 0)
    throw new Error(`${stray.map(flagName).join(', ')}: not with --federation (use --cluster-state-dir, --new-root)`);
  const missing = (['mesh', 'etcd', 'clusterStateDir', 'newRoot', 'newIntermediate'] as const).filter(
    (k) => o[k] === undefined,
  );
  if (missing.length > 0) throw new Error(`--federation needs ${missing.map(flagName).join(', ')}`);
  const mesh = o.mesh ?? '';
  const dirs = o.clusterStateDir ?? {};
  const intermediates = o.newIntermediate ?? {};
  const noIntermediate = Object.keys(dirs).filter((n) => intermediates[n] === undefined);
  if (noIntermediate.length > 0)
    throw new Error(
      `--new-intermediate missing for ${noIntermediate.join(', ')} (make one: fedmesh ca intermediate create ` +
        `--root ${o.newRoot ?? 'NEWROOT'} --cluster ${noIntermediate[0] ?? 'NAME'} --out DIR)`,
    );
  const extra = Object.keys(intermediates).filter((n) => dirs[n] === undefined);
  if (extra.length > 0) throw new Error(`--new-intermediate for ${extra.join(', ')}, which has no --cluster-state-dir`);
  const clusters: FederatedClusterTarget[] = Object.entries(dirs).map(([name, dir]) => {
    const state = readState(dir);
    if (state.federation?.mesh !== mesh || state.federation.cluster !== name)
      throw new Error(
        `--cluster-state-dir ${name}=${dir}: that local mesh is ${state.federation ? `cluster ${state.federation.cluster} of mesh ${state.federation.mesh}` : 'not federated'}`,
      );
    const rootFile = path.join(state.stateDir, 'root-cert.pem');
    return {
      name,
      admin: { monitoring: state.istiod.monitoring, token: adminToken(state.stateDir) },
      newCaDir: intermediates[name] ?? '',
      onBundle: (pem) => fs.writeFileSync(rootFile, pem),
    };
  });
  const rootFile = path.join(o.newRoot ?? '', 'root-cert.pem');
  let newRootPem: string;
  try {
    newRootPem = fs.readFileSync(rootFile, 'utf8');
  } catch (err) {
    throw new Error(`--new-root: cannot read ${rootFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, {
      cause: err,
    });
  }
  const kv = new EtcdKvStore({ endpoints: o.etcd ?? [] });
  try {
    const report = await rotateFederatedRoot({
      mesh,
      kv,
      clusters,
      newRootPem,
      phaseTimeoutMs: o.timeout * 1000,
      log: (line) => console.error(line),
    });
    if (o.json) console.log(JSON.stringify(report, null, 2));
  } finally {
    kv.close();
  }
}

/**
 * registerCaRotation adds to `fedmesh ca` (creating it if `registerCa` has not):
 * - `ca status --state-dir DIR [--json]`: the trust bundle's roots and, per workload of a local mesh, its SPIFFE ID,
 *   the root its certificate chains to, notAfter and whether it holds the current bundle;
 * - `ca rotate-root --state-dir DIR --new-ca DIR [--timeout S] [--json]`: add → distribute → re-issue → retire
 *   (docs/adr/0004), printing progress; keeps `<state-dir>/root-cert.pem` equal to the bundle so restarted proxies
 *   trust istiod. Refused on a federated istiod. Exits 1 with the reason when a step is refused or a wait times out
 *   (rerun to resume);
 * - `ca rotate-root --federation --mesh M --etcd URL… --cluster-state-dir NAME=DIR… --new-root DIR
 *   --new-intermediate NAME=DIR… [--timeout S] [--json]`: the same across every cluster of a federated mesh
 *   ({@link rotateFederatedRoot}), keeping each cluster's `root-cert.pem` equal to the bundle its istiod serves.
 */
export function registerCaRotation(program: Command): void {
  const ca =
    program.commands.find((c) => c.name() === 'ca') ??
    program.command('ca').description('CA material, trust bundle and root rotation');
  ca.command('status')
    .description("the trust bundle's roots and which root each workload's certificate chains to")
    .requiredOption('--state-dir <dir>', 'state directory of a local mesh (fedmesh up)')
    .option('--json', 'print JSON')
    .action(async (o: { stateDir: string; json?: boolean }) => {
      const status = await caStatus(adminFor(o.stateDir));
      console.log(o.json ? JSON.stringify(status, null, 2) : formatCaStatus(status));
    });
  ca.command('rotate-root')
    .description('rotate the mesh root with traffic flowing: add, distribute, re-issue, retire')
    .option('--state-dir <dir>', 'state directory of a local mesh (fedmesh up)')
    .option('--new-ca <dir>', 'the new CA in Istio plug-in layout (ca-cert.pem, ca-key.pem, …)')
    .option('--federation', 'rotate the root of a federated mesh: every cluster, through etcd (docs/adr/0004)')
    .option('--mesh <mesh>', '--federation: mesh name')
    .option('--etcd <urls...>', "--federation: the mesh's etcd client URLs")
    .option(
      '--cluster-state-dir <name=dir>',
      '--federation: a cluster and the state directory of its local mesh (repeat for every cluster)',
      namedDir,
    )
    .option('--new-root <dir>', '--federation: directory with the new root-cert.pem (its key is not needed)')
    .option(
      '--new-intermediate <name=dir>',
      "--federation: a cluster's new intermediate under the new root, plug-in layout (repeat per cluster)",
      namedDir,
    )
    .option('--timeout <seconds>', 'bound on each wait (distribute, re-issue)', seconds, 120)
    .option('--json', 'print the report as JSON at the end')
    .action((o: RotateRootFlags) => (o.federation ? rotateFederated(o) : rotateSingle(o)));
}
