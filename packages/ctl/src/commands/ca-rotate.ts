import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { CaStatus } from '@fedmesh/istiod';
import { isPkiError } from '@fedmesh/pki';
import { caStatus, podOf, rotateRoot, shortFingerprint, type IstiodAdmin } from '../ca-rotation.js';
import { adminToken, readState } from '../local-mesh.js';

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

/**
 * registerCaRotation adds to `fedmesh ca` (creating it if `registerCa` has not):
 * - `ca status --state-dir DIR [--json]`: the trust bundle's roots and, per workload of a local mesh, its SPIFFE ID,
 *   the root its certificate chains to, notAfter and whether it holds the current bundle;
 * - `ca rotate-root --state-dir DIR --new-ca DIR [--timeout S] [--json]`: add → distribute → re-issue → retire
 *   (docs/adr/0004), printing progress; keeps `<state-dir>/root-cert.pem` equal to the bundle so restarted proxies
 *   trust istiod. Exits 1 with the reason when a step is refused or a wait times out (rerun to resume).
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
    .requiredOption('--state-dir <dir>', 'state directory of a local mesh (fedmesh up)')
    .requiredOption('--new-ca <dir>', 'the new CA in Istio plug-in layout (ca-cert.pem, ca-key.pem, …)')
    .option('--timeout <seconds>', 'bound on each wait (distribute, re-issue)', seconds, 120)
    .option('--json', 'print the report as JSON at the end')
    .action(async (o: { stateDir: string; newCa: string; timeout: number; json?: boolean }) => {
      const state = readState(o.stateDir);
      const rootFile = path.join(state.stateDir, 'root-cert.pem');
      try {
        const report = await rotateRoot({
          admin: { monitoring: state.istiod.monitoring, token: adminToken(state.stateDir) },
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
    });
}
