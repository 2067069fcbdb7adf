import path from 'node:path';
import {
  keys,
  publishTrustRoot,
  retiredTrustKey,
  retireTrustRoot,
  rootFingerprint,
  type ClusterStatus,
  type KvStore,
} from '@fedmesh/federation';
import type { CaStatus, WorkloadTrustStatus } from '@fedmesh/istiod';
import { CertificateAuthority, certificateFingerprint, splitPemBundle } from '@fedmesh/pki';
import { adminCall, CaApiError, caStatus, podOf, shortFingerprint, type IstiodAdmin } from '../ca-rotation.js';

/** FederatedClusterTarget is one cluster of a federated rotation: its istiod's admin API and its new intermediate. */
export interface FederatedClusterTarget {
  /** name is the cluster's name in the mesh (`/fedmesh/<mesh>/clusters/<name>`). */
  name: string;
  admin: IstiodAdmin;
  /** newCaDir is the cluster's new intermediate in Istio's plug-in layout, signed by the new root; istiod reads it. */
  newCaDir: string;
  /** onBundle is told the bundle this cluster's istiod serves after each phase (the local mesh's `root-cert.pem`). */
  onBundle?: (bundlePem: string) => void;
}

/** FederatedRotationOptions configure {@link rotateFederatedRoot}. Times in milliseconds. */
export interface FederatedRotationOptions {
  mesh: string;
  /** kv is the mesh's etcd, with the right to write `/fedmesh/<mesh>/trust/` (a mesh admin's). */
  kv: KvStore;
  /** clusters must name every cluster registered in the mesh; the rotation refuses to start otherwise. */
  clusters: readonly FederatedClusterTarget[];
  /** newRootPem is the new root certificate (PEM, exactly one certificate; its key stays offline). */
  newRootPem: string;
  /** phaseTimeoutMs bounds each wait (default 120,000). */
  phaseTimeoutMs?: number;
  /** pollMs is how often each istiod is asked for its status (default 250). */
  pollMs?: number;
  /** log receives one progress line per change, for people. */
  log?: (line: string) => void;
}

/** FederatedPhase names the mesh-wide phases of {@link rotateFederatedRoot}, in order. */
export type FederatedPhase = 'preflight' | 'publish' | 'distribute' | 're-issue' | 'retire' | 'distribute-retired';

/** FederatedRotationReport is what a finished federated rotation did; times are ms since the start. */
export interface FederatedRotationReport {
  mesh: string;
  /** newRoot is the new root's SHA-256 fingerprint (`AB:CD:…`, as `fedmesh ca status` prints it). */
  newRoot: string;
  /** retiredRoots are the fingerprints of the roots removed from the istiods' bundles and from etcd. */
  retiredRoots: string[];
  /** phases gives the elapsed ms at which each mesh-wide phase finished. */
  phases: Partial<Record<FederatedPhase, number>>;
  /** clusters gives, per cluster, its workload count and when its own steps finished. */
  clusters: Record<string, { workloads: number; phases: Partial<Record<'add' | 'activate' | 're-issue', number>> }>;
  totalMs: number;
}

const caStatusOf = (c: FederatedClusterTarget): Promise<CaStatus> => caStatus(c.admin);

/** Progress is one cluster's answer to a wait's condition. */
interface Progress {
  done: boolean;
  ready: number;
  total: number;
  behind: string[];
}

function progressOf(s: CaStatus, servedOk: boolean, workloadOk: (w: WorkloadTrustStatus) => boolean): Progress {
  const ok = s.workloads.filter((w) => servedOk && workloadOk(w));
  return {
    done: servedOk && ok.length === s.workloads.length,
    ready: ok.length,
    total: s.workloads.length,
    behind: s.workloads.filter((w) => !(servedOk && workloadOk(w))).map((w) => podOf(w.nodeId)),
  };
}

/** Rotation carries the options and the clock of one {@link rotateFederatedRoot} run. */
class Rotation {
  readonly started = Date.now();
  readonly report: FederatedRotationReport;
  constructor(
    readonly o: FederatedRotationOptions,
    readonly newRoot: string,
  ) {
    this.report = { mesh: o.mesh, newRoot, retiredRoots: [], phases: {}, clusters: {}, totalMs: 0 };
    for (const c of o.clusters) this.report.clusters[c.name] = { workloads: 0, phases: {} };
  }

  log(line: string): void {
    this.o.log?.(line);
  }

  elapsed(): number {
    return Date.now() - this.started;
  }

  /**
   * wait polls every cluster in `clusters` until `check` says it is done, printing a line whenever the counts
   * change; it throws after the phase timeout naming the clusters and workloads behind (unreachable istiods
   * included). Resolves each cluster's last status, and hands each served bundle to `onBundle`.
   */
  async wait(
    what: string,
    clusters: readonly FederatedClusterTarget[],
    check: (s: CaStatus) => Progress,
  ): Promise<Map<string, CaStatus>> {
    const timeoutMs = this.o.phaseTimeoutMs ?? 120_000;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const answers = await Promise.all(
        clusters.map(async (c) => {
          try {
            const s = await caStatusOf(c);
            return { c, s, p: check(s) };
          } catch (err) {
            return { c, err: (err as Error).message };
          }
        }),
      );
      const line = `${what}: ${answers
        .map((a) =>
          a.err !== undefined
            ? `${a.c.name} unreachable (${a.err})`
            : `${a.c.name} ${a.p.ready}/${a.p.total}${a.p.done ? ' ✔' : ''}`,
        )
        .join(', ')}`;
      if (line !== last) this.log(line);
      last = line;
      if (answers.every((a) => a.err === undefined && a.p.done)) {
        const out = new Map<string, CaStatus>();
        for (const a of answers)
          if (a.s) {
            out.set(a.c.name, a.s);
            a.c.onBundle?.(a.s.servedBundlePem);
            const entry = this.report.clusters[a.c.name];
            if (entry) entry.workloads = a.s.workloads.length;
          }
        return out;
      }
      if (Date.now() > deadline) {
        const behind = answers
          .filter((a) => a.err !== undefined || !a.p.done)
          .map((a) =>
            a.err !== undefined
              ? `${a.c.name}: istiod at ${a.c.admin.monitoring} unreachable (${a.err})`
              : `${a.c.name}: ${a.p.behind.join(', ') || 'its istiod has not served the expected bundle yet'}`,
          );
        throw new Error(
          `${what}: timed out after ${timeoutMs} ms; still waiting for ${behind.join('; ')}. ` +
            'Nothing was rolled back; run the command again to resume.',
        );
      }
      await new Promise((r) => setTimeout(r, this.o.pollMs ?? 250));
    }
  }

  markPhase(p: FederatedPhase): void {
    this.report.phases[p] = this.elapsed();
  }

  markCluster(name: string, p: 'add' | 'activate' | 're-issue'): void {
    const entry = this.report.clusters[name];
    if (entry) entry.phases[p] = this.elapsed();
  }
}

/** registeredClusters lists the clusters registered in the mesh (`/fedmesh/<mesh>/clusters/`). */
async function registeredClusters(kv: KvStore, mesh: string): Promise<string[]> {
  const prefix = keys.clusters(mesh);
  return [...(await kv.getPrefix(prefix)).keys()].map((k) => k.slice(prefix.length)).sort();
}

/** requireAllCovered refuses to go on when a registered cluster has no target: its workloads would lose trust. */
async function requireAllCovered(r: Rotation, when: string): Promise<void> {
  const given = new Set(r.o.clusters.map((c) => c.name));
  const missing = (await registeredClusters(r.o.kv, r.o.mesh)).filter((n) => !given.has(n));
  if (missing.length > 0)
    throw new Error(
      `${when}: cluster(s) ${missing.join(', ')} are registered in mesh ${r.o.mesh} but not part of this rotation; ` +
        'their workloads would stop being trusted when the old root is retired. Give --cluster-state-dir and ' +
        '--new-intermediate for each, and run the command again.',
    );
}

/** preflight checks every cluster's istiod and new intermediate before anything changes. */
async function preflight(r: Rotation): Promise<void> {
  const { o, newRoot } = r;
  if (o.clusters.length === 0) throw new Error('preflight: no cluster given');
  await requireAllCovered(r, 'preflight');
  for (const c of o.clusters) {
    let self: ClusterStatus | undefined;
    let s: CaStatus;
    try {
      self = (await adminCall<ClusterStatus[]>(c.admin, 'GET', '/v1/federation/status')).find((x) => x.self);
      s = await caStatusOf(c);
    } catch (err) {
      throw new Error(`preflight: ${c.name}: istiod at ${c.admin.monitoring}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (self?.cluster !== c.name)
      throw new Error(`preflight: ${c.name}: this istiod is cluster ${self?.cluster ?? '?'}, not ${c.name}`);
    if (s.mesh?.name !== o.mesh)
      throw new Error(`preflight: ${c.name}: this istiod is in mesh ${s.mesh?.name ?? '?'}, not ${o.mesh}`);
    const dir = path.resolve(c.newCaDir);
    let ca: CertificateAuthority;
    try {
      ca = await CertificateAuthority.loadPluggedCa(dir, { trustDomain: s.trustDomain });
    } catch (err) {
      const reason = (err as { reason?: string }).reason;
      throw new Error(
        `preflight: ${c.name}: new intermediate ${dir}: ${(err as Error).message}${reason ? ` (${reason})` : ''}`,
        { cause: err },
      );
    }
    const root = certificateFingerprint(ca.rootCertPem);
    if (root !== newRoot && s.signingRoot !== newRoot)
      throw new Error(
        `preflight: ${c.name}: new intermediate ${dir} chains to root ${shortFingerprint(root)}, not to the new root ${shortFingerprint(newRoot)}`,
      );
    const state = s.signingRoot === newRoot ? 'signing' : s.stagedRoot === newRoot ? 'staged' : 'not added';
    r.log(
      `preflight: ${c.name}: istiod ${c.admin.monitoring}, ${s.workloads.length} workloads, ` +
        `${s.roots.length} root(s) of its own, new intermediate ${state}`,
    );
  }
  r.markPhase('preflight');
}

/** publish adds the new root to the mesh trust bundle in etcd (skipped when it is there). */
async function publish(r: Rotation): Promise<void> {
  const { kv, mesh, newRootPem } = r.o;
  const key = keys.trust(mesh, rootFingerprint(newRootPem));
  const bundle = await kv.getPrefix(keys.trustPrefix(mesh));
  if (bundle.has(key)) r.log(`publish: root ${shortFingerprint(r.newRoot)} already in ${keys.trustPrefix(mesh)}`);
  else {
    await publishTrustRoot(kv, mesh, newRootPem);
    r.log(`publish: root ${shortFingerprint(r.newRoot)} added at ${key} (${bundle.size + 1} roots in the mesh bundle)`);
  }
  r.markPhase('publish');
}

/** holdsNewRoot: the cluster serves a bundle with the new root and every proxy ACKed it. */
const holdsNewRoot =
  (newRoot: string) =>
  (s: CaStatus): Progress =>
    progressOf(s, s.servedRoots.includes(newRoot), (w) => w.bundleSynced);

/** onNewRoot: the new root is primary and signing, and every workload holds a certificate under it. */
const onNewRoot =
  (newRoot: string) =>
  (s: CaStatus): Progress =>
    progressOf(
      s,
      s.signingRoot === newRoot && s.servedRoots[0] === newRoot,
      (w) => w.bundleSynced && w.rootFingerprint === newRoot,
    );

/** onlyNewRoot: the served bundle is the new root alone and every proxy ACKed it. */
const onlyNewRoot =
  (newRoot: string) =>
  (s: CaStatus): Progress =>
    progressOf(
      s,
      s.servedRoots.length === 1 && s.servedRoots[0] === newRoot,
      (w) => w.bundleSynced && w.rootFingerprint === newRoot,
    );

/** reissue adds and activates one cluster's new intermediate, then waits until its workloads re-issued. */
async function reissue(r: Rotation, c: FederatedClusterTarget): Promise<void> {
  let s = await caStatusOf(c);
  if (s.signingRoot === r.newRoot) r.log(`add [${c.name}]: the new intermediate already signs`);
  else if (s.stagedRoot === r.newRoot) r.log(`add [${c.name}]: the new intermediate is already staged`);
  else {
    await adminCall(c.admin, 'POST', '/v1/ca/roots', { caDir: path.resolve(c.newCaDir) });
    r.log(`add [${c.name}]: new intermediate staged; root ${shortFingerprint(r.newRoot)} in its own bundle`);
  }
  r.markCluster(c.name, 'add');
  await r.wait(`add [${c.name}]: proxies holding the bundle`, [c], holdsNewRoot(r.newRoot));
  s = await caStatusOf(c);
  if (s.signingRoot !== r.newRoot) {
    await adminCall(c.admin, 'POST', '/v1/ca/activate');
    r.log(`activate [${c.name}]: the new intermediate signs; root ${shortFingerprint(r.newRoot)} is primary`);
  }
  r.markCluster(c.name, 'activate');
  await r.wait(`re-issue [${c.name}]: workloads on ${shortFingerprint(r.newRoot)}`, [c], onNewRoot(r.newRoot));
  r.markCluster(c.name, 're-issue');
}

/**
 * retire removes every other root: first from each istiod's own bundle (each refuses while one of its workloads
 * still holds a certificate under it), then from etcd with a tombstone. istiods first, so that an istiod restarted
 * in between still finds all of its own roots in the mesh bundle when it joins.
 */
async function retire(r: Rotation): Promise<void> {
  const { kv, mesh } = r.o;
  await requireAllCovered(r, 'retire');
  const statuses = await r.wait('retire: every cluster on the new root', r.o.clusters, onNewRoot(r.newRoot));
  const retired = new Set<string>();
  for (const c of r.o.clusters) {
    for (const root of statuses.get(c.name)?.roots ?? []) {
      if (root.fingerprint === r.newRoot) continue;
      try {
        await adminCall(c.admin, 'POST', '/v1/ca/retire', { fingerprint: root.fingerprint });
      } catch (err) {
        if (!(err instanceof CaApiError && err.status === 404))
          throw new Error(`retire [${c.name}]: ${(err as Error).message}`, { cause: err });
      }
      retired.add(root.fingerprint);
      r.log(`retire [${c.name}]: root ${shortFingerprint(root.fingerprint)} left istiod's own bundle`);
    }
  }
  for (const [key, pem] of await kv.getPrefix(keys.trustPrefix(mesh))) {
    const certs = splitPemBundle(pem);
    const first = certs[0];
    if (certs.length !== 1 || first === undefined) {
      r.log(`retire [etcd]: ${key} does not hold one certificate; left alone`);
      continue;
    }
    const fp = certificateFingerprint(first);
    if (fp === r.newRoot) continue;
    const id = key.slice(keys.trustPrefix(mesh).length);
    await retireTrustRoot(kv, mesh, id);
    retired.add(fp);
    r.log(`retire [etcd]: root ${shortFingerprint(fp)} removed from ${key} (tombstone ${retiredTrustKey(mesh, id)})`);
  }
  r.report.retiredRoots = [...retired];
  r.markPhase('retire');
}

/**
 * rotateFederatedRoot rotates the root of a federated mesh with traffic flowing (docs/adr/0004, "Federated
 * meshes"): preflight (every registered cluster is given, each istiod answers for its cluster and mesh, each new
 * intermediate chains to the new root) → publish the new root to the mesh trust bundle in etcd → distribute (wait
 * until every cluster's istiod serves a bundle holding it and every proxy ACKed it) → per cluster, one after the
 * other: add its new intermediate, activate it, wait until its workloads re-issued → retire every other root from
 * each istiod and from etcd (tombstoned: `cluster join` and `publishTrustRoot` refuse it from then on) → distribute
 * again. Each wait is bounded by `phaseTimeoutMs` and throws naming the clusters and workloads behind; nothing is
 * rolled back and every step checks what is done first, so running it again resumes. Throws on a refused step
 * ({@link CaApiError} from istiod, etcd errors) with the cluster named.
 */
export async function rotateFederatedRoot(o: FederatedRotationOptions): Promise<FederatedRotationReport> {
  const certs = splitPemBundle(o.newRootPem);
  const rootPem = certs[0];
  if (certs.length !== 1 || rootPem === undefined)
    throw new Error(`the new root must be exactly one certificate (found ${certs.length})`);
  const r = new Rotation({ ...o, newRootPem: rootPem }, certificateFingerprint(rootPem));
  r.log(
    `mesh ${o.mesh}: rotating clusters ${o.clusters.map((c) => c.name).join(', ')} to root ${shortFingerprint(r.newRoot)}`,
  );
  await preflight(r);
  await publish(r);
  await r.wait(`distribute: proxies holding root ${shortFingerprint(r.newRoot)}`, o.clusters, holdsNewRoot(r.newRoot));
  r.markPhase('distribute');
  for (const c of o.clusters) await reissue(r, c);
  r.markPhase('re-issue');
  await retire(r);
  await r.wait('distribute-retired: proxies holding only the new root', o.clusters, onlyNewRoot(r.newRoot));
  r.markPhase('distribute-retired');
  r.report.totalMs = r.elapsed();
  const workloads = Object.values(r.report.clusters).reduce((n, c) => n + c.workloads, 0);
  r.log(
    `done in ${(r.report.totalMs / 1000).toFixed(1)} s: ${workloads} workloads in ${o.clusters.length} clusters on ` +
      `${shortFingerprint(r.newRoot)}; retired ${r.report.retiredRoots.map(shortFingerprint).join(', ') || 'none'}`,
  );
  return r.report;
}
