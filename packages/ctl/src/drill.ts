import fs from 'node:fs';
import path from 'node:path';
import { Pool, request } from 'undici';
import {
  adminToken,
  applyText,
  podManifest,
  readState,
  startPod,
  type MeshState,
  type PodPlan,
  type PodState,
} from './local-mesh.js';

/** DrillOptions configure {@link failoverDrill}. Times in milliseconds. */
export interface DrillOptions {
  /** service is the service name (e.g. `reviews`); namespace defaults to `default`, port to its first port. */
  service: string;
  namespace?: string;
  port?: number;
  /** cluster is the cluster whose endpoints are taken away; clusterStateDir is its local mesh's state dir. */
  cluster: string;
  clusterStateDir: string;
  /** fromStateDir is the local mesh whose `sleep` sends the load (may be the same cluster or another). */
  fromStateDir: string;
  /** rps is the fixed request rate (default 40); durationMs the whole run (default 8,000); takeAwayAtMs when the endpoints go (default 1,500). */
  rps?: number;
  durationMs?: number;
  takeAwayAtMs?: number;
  /** restore starts the pods again afterwards (default true). */
  restore?: boolean;
}

/** DrillReport is what `fedmesh failover drill` prints. */
export interface DrillReport {
  service: string;
  cluster: string;
  requests: number;
  failed: number;
  /** answeredBy counts responses per answering cluster, before and after the take-away. */
  answeredBy: { before: Record<string, number>; after: Record<string, number> };
  /** failoverMs is the time from the take-away to the last response from the drilled cluster (0 if none after). */
  failoverMs: number;
  /** withdrawnMs is the time until the client's sidecar held no endpoint of the drilled cluster (-1 if never). */
  withdrawnMs: number;
  podsTakenAway: string[];
  restoredMs: number | null;
}

async function clientEndpointsOf(admin: string, host: string, port: number, cluster: string): Promise<number> {
  const res = await request(`http://${admin}/config_dump`, { headersTimeout: 2_000, bodyTimeout: 5_000 });
  const dump = (await res.body.json()) as {
    endpoints: { name: string; resource: { endpoints?: { lb_endpoints?: { metadata?: unknown }[] }[] } }[];
  };
  const want = `outbound|${port}||${host}`;
  let n = 0;
  for (const e of dump.endpoints) {
    if (e.name !== want) continue;
    for (const le of e.resource.endpoints ?? [])
      for (const lb of le.lb_endpoints ?? []) {
        const w = (
          lb.metadata as { filter_metadata?: { istio?: { fields?: { workload?: { stringValue?: string } } } } }
        )?.filter_metadata?.istio?.fields?.workload?.stringValue;
        if (w?.split(';')[4] === cluster) n++;
      }
  }
  return n;
}

function kill(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

async function deletePods(state: MeshState, pods: readonly PodState[]): Promise<void> {
  const body = pods.map((p) => JSON.stringify(podManifest(planOf(p)))).join('\n---\n');
  const res = await request(`http://${state.istiod.monitoring}/v1/delete`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken(state.stateDir)}`, 'content-type': 'application/yaml' },
    body,
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`istiod refused to delete pods: HTTP ${res.statusCode}`);
}

/** planOf recovers the plan a pod was started from (its manifest for istiod and its processes). */
function planOf(v: PodState): PodPlan {
  return {
    name: v.name,
    namespace: v.namespace,
    labels: v.labels ?? { app: v.app, version: v.version },
    sa: v.serviceAccount,
    ip: v.address,
    deployment: v.deployment ?? v.name.replace(/-\d+$/, ''),
    ports: v.ports,
    app: true,
  };
}

/**
 * failoverDrill takes a cluster's endpoints of one service away under load and measures the failover
 * (`fedmesh failover drill`): a client in `fromStateDir` sends `rps` requests per second through its sidecar; at
 * `takeAwayAtMs` every pod of the service in the drilled cluster is killed (SIGKILL) and deleted from its istiod,
 * as when Kubernetes deletes pods. It reports requests lost, who answered before and after, the time to the last
 * answer from the drilled cluster, and the time until the client's sidecar no longer held its endpoints; then it
 * restarts the pods (re-registered, new bootstrap tokens) unless `restore` is false.
 */
export async function failoverDrill(o: DrillOptions): Promise<DrillReport> {
  const ns = o.namespace ?? 'default';
  const target = readState(o.clusterStateDir);
  const from = readState(o.fromStateDir);
  const victims = target.pods.filter((p) => p.app === o.service && p.namespace === ns);
  if (victims.length === 0) throw new Error(`cluster ${o.cluster} runs no pod of ${o.service}.${ns}`);
  const port = o.port ?? victims[0]?.ports[0] ?? 80;
  const host = `${o.service}.${ns}.svc.cluster.local`;
  const sleepAdmin = from.pods.find((p) => p.name === from.sleep.pod)?.admin ?? '';
  const rps = o.rps ?? 40;
  const duration = o.durationMs ?? 8_000;
  const takeAwayAt = o.takeAwayAtMs ?? 1_500;
  const pool = new Pool(`http://${from.sleep.outbound}`, { connections: 16, keepAliveTimeout: 10_000 });
  const before: Record<string, number> = {};
  const after: Record<string, number> = {};
  let failed = 0;
  let requests = 0;
  let takenAt = 0;
  let lastFromDrilled = 0;
  let withdrawnMs = -1;
  const inflight: Promise<void>[] = [];
  const t0 = Date.now();
  const fire = async (): Promise<void> => {
    requests++;
    try {
      const res = await pool.request({
        path: '/',
        method: 'GET',
        headers: { host: `${o.service}.${ns}:${port}` },
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      if (res.statusCode !== 200) {
        failed++;
        await res.body.dump();
        return;
      }
      const body = (await res.body.json()) as { cluster?: string };
      const c = body.cluster ?? 'unknown';
      const bucket = takenAt > 0 ? after : before;
      bucket[c] = (bucket[c] ?? 0) + 1;
      if (takenAt > 0 && c === o.cluster) lastFromDrilled = Date.now();
    } catch {
      failed++;
    }
  };
  const total = Math.floor((rps * duration) / 1000);
  let restoredMs: number | null = null;
  try {
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rps;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (takenAt === 0 && Date.now() - t0 >= takeAwayAt) {
        takenAt = Date.now();
        for (const v of victims) {
          kill(v.pids.proxy);
          kill(v.pids.app);
        }
        void deletePods(target, victims);
        void (async () => {
          while (withdrawnMs < 0 && Date.now() - takenAt < 15_000) {
            if ((await clientEndpointsOf(sleepAdmin, host, port, o.cluster).catch(() => 1)) === 0)
              withdrawnMs = Date.now() - takenAt;
            else await new Promise((r) => setTimeout(r, 25));
          }
        })();
      }
      inflight.push(fire());
    }
    await Promise.all(inflight);
  } finally {
    await pool.close();
  }
  if (o.restore !== false) {
    const r0 = Date.now();
    const rootCertFile = path.join(target.stateDir, 'root-cert.pem');
    const plans = victims.map(planOf);
    const applied = await applyText(
      target,
      plans.map((p) => JSON.stringify(podManifest(p))).join('\n---\n'),
      'fedmesh-failover-drill',
    );
    if (applied.errors.length > 0)
      throw new Error(`re-registering pods failed: ${applied.errors.map((e) => e.text).join('; ')}`);
    const started = await Promise.all(
      plans.map((p) =>
        startPod({ stateDir: target.stateDir, istiod: target.istiod, cluster: target.cluster, rootCertFile }, p),
      ),
    );
    const next: MeshState = { ...target, pods: target.pods.map((p) => started.find((s) => s.name === p.name) ?? p) };
    fs.writeFileSync(path.join(target.stateDir, 'state.json'), JSON.stringify(next, null, 2));
    const deadline = Date.now() + 30_000;
    while (
      Date.now() < deadline &&
      (await clientEndpointsOf(sleepAdmin, host, port, o.cluster).catch(() => 0)) < victims.length
    )
      await new Promise((r) => setTimeout(r, 100));
    restoredMs = Date.now() - r0;
  }
  return {
    service: `${o.service}.${ns}:${port}`,
    cluster: o.cluster,
    requests,
    failed,
    answeredBy: { before, after },
    failoverMs: lastFromDrilled > 0 ? lastFromDrilled - takenAt : 0,
    withdrawnMs,
    podsTakenAway: victims.map((v) => v.name),
    restoredMs,
  };
}

/** formatDrillReport renders a {@link DrillReport} for people. */
export function formatDrillReport(r: DrillReport): string {
  const fmt = (m: Record<string, number>): string =>
    Object.entries(m)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ') || '-';
  return [
    `failover drill: ${r.service}, endpoints of cluster ${r.cluster} taken away (${r.podsTakenAway.join(', ')})`,
    `  requests: ${r.requests}, failed: ${r.failed}`,
    `  answered before: ${fmt(r.answeredBy.before)}`,
    `  answered after:  ${fmt(r.answeredBy.after)}`,
    `  time to failover (last answer from ${r.cluster}): ${r.failoverMs} ms`,
    `  endpoints withdrawn from the client's sidecar after: ${r.withdrawnMs < 0 ? 'not within 15 s' : `${r.withdrawnMs} ms`}`,
    `  restored: ${r.restoredMs === null ? 'no (--no-restore)' : `${r.restoredMs} ms`}`,
  ].join('\n');
}
