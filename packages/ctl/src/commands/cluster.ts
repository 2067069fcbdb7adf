import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { request } from 'undici';
import {
  EtcdKvStore,
  keys,
  publishTrustRoot,
  rootFingerprint,
  type ClusterRecord,
  type ClusterStatus,
  type ExportedService,
} from '@fedmesh/federation';
import { CertificateAuthority, createIntermediateCa, writePluggedCa } from '@fedmesh/pki';
import { adminToken, meshUp, readState, type MeshState } from '../local-mesh.js';
import { DEFAULT_STATE_DIR } from './mesh.js';

/** JoinOptions are the flags of `fedmesh cluster join`. */
export interface JoinOptions {
  mesh: string;
  cluster: string;
  network: string;
  etcd: string[];
  nats: string[];
  root?: string;
  intermediate?: string;
  stateDir: string;
  file: string[];
  subnet?: string;
}

/** JoinCheck is one verified step of a join, as the progress display shows it. */
export interface JoinCheck {
  step: string;
  ok: boolean;
  detail: string;
  ms: number;
}

type Say = (line: string) => void;

async function step(checks: JoinCheck[], say: Say, name: string, fn: () => Promise<string>): Promise<boolean> {
  const t0 = Date.now();
  try {
    const detail = await fn();
    checks.push({ step: name, ok: true, detail, ms: Date.now() - t0 });
    say(`  ✔ ${name}: ${detail} (${Date.now() - t0} ms)`);
    return true;
  } catch (err) {
    checks.push({ step: name, ok: false, detail: (err as Error).message, ms: Date.now() - t0 });
    say(`  ✘ ${name}: ${(err as Error).message}`);
    return false;
  }
}

async function poll<T>(timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  return undefined;
}

async function sleepEndpointsByCluster(state: MeshState): Promise<Map<string, number>> {
  const sleep = state.pods.find((p) => p.name === state.sleep.pod);
  const res = await request(`http://${sleep?.admin}/config_dump`, { headersTimeout: 5_000, bodyTimeout: 10_000 });
  const dump = (await res.body.json()) as {
    endpoints: { resource: { endpoints?: { lb_endpoints?: { metadata?: unknown }[] }[] } }[];
  };
  const out = new Map<string, number>();
  for (const e of dump.endpoints)
    for (const le of e.resource.endpoints ?? [])
      for (const lb of le.lb_endpoints ?? []) {
        const w = (
          lb.metadata as { filter_metadata?: { istio?: { fields?: { workload?: { stringValue?: string } } } } }
        )?.filter_metadata?.istio?.fields?.workload?.stringValue;
        const cluster = w?.split(';')[4];
        if (cluster) out.set(cluster, (out.get(cluster) ?? 0) + 1);
      }
  return out;
}

async function callThroughSleep(state: MeshState, host: string): Promise<{ status: number; cluster?: string }> {
  const res = await request(`http://${state.sleep.outbound}/`, {
    headers: { host },
    headersTimeout: 5_000,
    bodyTimeout: 5_000,
  });
  if (res.statusCode !== 200) {
    await res.body.dump();
    return { status: res.statusCode };
  }
  const body = (await res.body.json()) as { cluster?: string };
  return { status: 200, ...(body.cluster !== undefined ? { cluster: body.cluster } : {}) };
}

/**
 * clusterJoin is `fedmesh cluster join`: it obtains the cluster's intermediate under the mesh root (made from
 * `--root`, or `--intermediate` as given), starts the cluster's local mesh with istiod joined to the federation
 * (which registers the cluster in etcd under a lease and publishes the trust bundle), then verifies, for every other
 * cluster, trust (the mesh root is in the bundle), discovery (our sidecars hold that cluster's endpoints) and the data
 * path (a request from our `sleep` is answered by a workload of that cluster). Returns every check; `ok` is false if
 * any failed.
 */
export async function clusterJoin(
  o: JoinOptions,
  say: Say = () => undefined,
): Promise<{ ok: boolean; checks: JoinCheck[]; state?: MeshState }> {
  const checks: JoinCheck[] = [];
  const stateDir = path.resolve(o.stateDir);
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  let caDir = o.intermediate ? path.resolve(o.intermediate) : path.join(stateDir, 'ca');
  say(`joining cluster ${o.cluster} (network ${o.network || '-'}) to mesh ${o.mesh}`);
  const caOk = await step(checks, say, 'intermediate CA', async () => {
    if (o.root && !o.intermediate) {
      if (!fs.existsSync(path.join(caDir, 'ca-cert.pem'))) {
        const rootCertPem = fs.readFileSync(path.join(o.root, 'root-cert.pem'), 'utf8');
        const rootKeyPem = fs.readFileSync(path.join(o.root, 'root-key.pem'), 'utf8');
        await writePluggedCa(caDir, await createIntermediateCa({ cluster: o.cluster, rootCertPem, rootKeyPem }));
      }
    } else if (!o.intermediate)
      throw new Error('give --root DIR (the mesh root) or --intermediate DIR (a plug-in CA directory)');
    const ca = await CertificateAuthority.loadPluggedCa(caDir);
    return `${path.relative(process.cwd(), caDir) || caDir} chains to the mesh root (valid until ${ca.caNotAfter.toISOString().slice(0, 10)})`;
  });
  if (!caOk) return { ok: false, checks };
  caDir = path.resolve(caDir);
  const trustOk = await step(checks, say, 'mesh trust', async () => {
    const rootPem = fs.readFileSync(path.join(caDir, 'root-cert.pem'), 'utf8');
    const kv = new EtcdKvStore({ endpoints: o.etcd });
    try {
      const bundle = await kv.getPrefix(keys.trustPrefix(o.mesh));
      const key = keys.trust(o.mesh, rootFingerprint(rootPem));
      if (bundle.has(key)) return `root ${rootFingerprint(rootPem).slice(0, 16)}… is in the mesh trust bundle`;
      if (!o.root)
        throw new Error(
          `the intermediate's root ${rootFingerprint(rootPem).slice(0, 16)}… is not in mesh ${o.mesh}'s trust bundle`,
        );
      await publishTrustRoot(kv, o.mesh, rootPem);
      return `root ${rootFingerprint(rootPem).slice(0, 16)}… published to the mesh trust bundle`;
    } finally {
      kv.close();
    }
  });
  if (!trustOk) return { ok: false, checks };
  let state: MeshState | undefined;
  const upOk = await step(checks, say, 'control plane and workloads', async () => {
    state = await meshUp({
      files: o.file,
      stateDir,
      caDir,
      ...(o.subnet !== undefined ? { subnet: Number(o.subnet) } : {}),
      federation: { mesh: o.mesh, cluster: o.cluster, network: o.network, etcd: o.etcd, nats: o.nats },
    });
    return `istiod ${state.istiod.xdsTls}, ${state.pods.length} pods`;
  });
  if (!upOk || !state) return { ok: false, checks };
  const s = state;
  const kv = new EtcdKvStore({ endpoints: o.etcd });
  try {
    let peers: ClusterRecord[] = [];
    await step(checks, say, 'registered in etcd', async () => {
      const rec = await kv.get(keys.cluster(o.mesh, o.cluster));
      if (!rec) throw new Error(`no record at ${keys.cluster(o.mesh, o.cluster)}`);
      const all = await kv.getPrefix(keys.clusters(o.mesh));
      peers = [...all.values()].map((v) => JSON.parse(v) as ClusterRecord).filter((r) => r.cluster !== o.cluster);
      return `${keys.cluster(o.mesh, o.cluster)} under a lease; peers: ${peers.map((p) => p.cluster).join(', ') || 'none'}`;
    });
    const rootPem = fs.readFileSync(path.join(caDir, 'root-cert.pem'), 'utf8').replace(/\s+/g, '');
    await step(checks, say, 'trust bundle', async () => {
      const bundle = [...(await kv.getPrefix(keys.trustPrefix(o.mesh))).values()];
      if (!bundle.some((b) => b.replace(/\s+/g, '') === rootPem))
        throw new Error('the mesh root is not in the trust bundle');
      return `${bundle.length} root(s) in the mesh trust bundle, ours included`;
    });
    for (const peer of peers) {
      await step(checks, say, `discovery of ${peer.cluster}`, async () => {
        const n = await poll(20_000, async () => {
          const count = (await sleepEndpointsByCluster(s)).get(peer.cluster) ?? 0;
          return count > 0 ? count : undefined;
        });
        if (!n) throw new Error(`no endpoint of ${peer.cluster} reached our sidecars`);
        return `${n} endpoint(s) of ${peer.cluster} in our sidecars`;
      });
      await step(checks, say, `data path to ${peer.cluster}`, async () => {
        const services = [...(await kv.getPrefix(keys.endpointsOf(o.mesh, peer.cluster))).values()].map(
          (v) => JSON.parse(v) as ExportedService,
        );
        const target = services.find((svc) => svc.endpoints.length > 0 && svc.ports.length > 0);
        if (!target) throw new Error(`${peer.cluster} exports no service with endpoints`);
        const host = `${target.name}.${target.namespace}:${target.ports[0]?.port}`;
        const hit = await poll(20_000, async () => {
          for (let i = 0; i < 10; i++) {
            const r = await callThroughSleep(s, host);
            if (r.cluster === peer.cluster) return r;
          }
          return undefined;
        });
        if (!hit) throw new Error(`no answer from ${peer.cluster} for ${host}`);
        return `sleep -> ${host} answered by ${peer.cluster} over mTLS`;
      });
    }
  } finally {
    kv.close();
  }
  return { ok: checks.every((c) => c.ok), checks, state: s };
}

/** registerCluster adds `fedmesh cluster join|status|list`. */
export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('join clusters into one federated mesh and inspect it');
  cluster
    .command('join')
    .description(
      'start this cluster under the mesh root, register it in etcd, and verify trust, discovery and the data path to every other cluster',
    )
    .requiredOption('--mesh <mesh>', 'mesh name')
    .requiredOption('--cluster <name>', 'this cluster')
    .option('--network <net>', 'network of this cluster', '')
    .requiredOption('--etcd <urls...>', 'etcd client URLs')
    .requiredOption('--nats <urls...>', 'NATS URLs')
    .option('--root <dir>', 'mesh root (root-cert.pem, root-key.pem): an intermediate is made for this cluster')
    .option('--intermediate <dir>', 'a plug-in CA directory already signed by the mesh root')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .option('--subnet <n>', 'use 127.0.<n>.0/24')
    .requiredOption('-f, --file <files...>', 'manifests of the workloads this cluster runs')
    .option('--json', 'print the checks as JSON')
    .action(async (o: JoinOptions & { json?: boolean }) => {
      const res = await clusterJoin(o, o.json ? () => undefined : (l) => console.log(l));
      if (o.json) console.log(JSON.stringify({ ok: res.ok, checks: res.checks }, null, 2));
      else
        console.log(
          res.ok ? `cluster ${o.cluster} joined mesh ${o.mesh}` : `cluster ${o.cluster}: join verification failed`,
        );
      if (!res.ok) process.exitCode = 1;
    });
  cluster
    .command('status')
    .description(
      "this cluster's view of the mesh: each cluster's liveness, exported services and the sequence it acknowledged",
    )
    .option('--state-dir <dir>', 'state directory of a local mesh joined to a federation', DEFAULT_STATE_DIR)
    .option('--json', 'print JSON')
    .action(async (o: { stateDir: string; json?: boolean }) => {
      const state = readState(o.stateDir);
      const res = await request(`http://${state.istiod.monitoring}/v1/federation/status`, {
        headers: { authorization: `Bearer ${adminToken(state.stateDir)}` },
        headersTimeout: 5_000,
        bodyTimeout: 5_000,
      });
      if (res.statusCode !== 200) throw new Error(`istiod: HTTP ${res.statusCode} ${await res.body.text()}`);
      const rows = (await res.body.json()) as ClusterStatus[];
      if (o.json) return console.log(JSON.stringify(rows, null, 2));
      const self = rows.find((r) => r.self);
      const header = [
        'CLUSTER',
        'NETWORK',
        'LIVE',
        'SERVICES',
        'ENDPOINTS',
        'SEQ',
        `ACKED ${self?.cluster ?? ''} SEQ`,
        'LAST BEAT',
      ];
      const lines = [
        header,
        ...rows.map((r) => [
          r.self ? `${r.cluster} (this)` : r.cluster,
          r.network || '-',
          r.live ? 'yes' : 'NO',
          String(r.services),
          String(r.endpoints),
          String(r.seq),
          r.self ? '-' : r.ackedSeq === null ? '?' : `${r.ackedSeq}/${self?.seq ?? 0}`,
          r.lastBeatAgoMs === null ? '-' : `${r.lastBeatAgoMs} ms ago`,
        ]),
      ];
      const w = header.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
      for (const l of lines)
        console.log(
          l
            .map((c, i) => c.padEnd((w[i] ?? 0) + 3))
            .join('')
            .trimEnd(),
        );
    });
  cluster
    .command('list')
    .description('list the clusters of a mesh from etcd: network, istiod, gateway, exported services')
    .requiredOption('--mesh <mesh>', 'mesh name')
    .requiredOption('--etcd <urls...>', 'etcd client URLs')
    .option('--json', 'print JSON')
    .action(async (o: { mesh: string; etcd: string[]; json?: boolean }) => {
      const kv = new EtcdKvStore({ endpoints: o.etcd });
      try {
        const rows: {
          cluster: string;
          network: string;
          istiod: string;
          gateway: string;
          services: number;
          endpoints: number;
          seq: number;
          joinedAt: string;
        }[] = [];
        for (const v of (await kv.getPrefix(keys.clusters(o.mesh))).values()) {
          const r = JSON.parse(v) as ClusterRecord;
          const svcs = [...(await kv.getPrefix(keys.endpointsOf(o.mesh, r.cluster))).values()].map(
            (x) => JSON.parse(x) as ExportedService,
          );
          rows.push({
            cluster: r.cluster,
            network: r.network,
            istiod: r.istiodAddress,
            gateway: r.gatewayAddress || '-',
            services: svcs.length,
            endpoints: svcs.reduce((n, x) => n + x.endpoints.length, 0),
            seq: svcs.reduce((n, x) => Math.max(n, x.seq), 0),
            joinedAt: r.joinedAt,
          });
        }
        rows.sort((a, b) => (a.cluster < b.cluster ? -1 : 1));
        if (o.json) return console.log(JSON.stringify(rows, null, 2));
        const header = ['CLUSTER', 'NETWORK', 'ISTIOD', 'GATEWAY', 'SERVICES', 'ENDPOINTS', 'SEQ'];
        const lines = [
          header,
          ...rows.map((r) => [
            r.cluster,
            r.network || '-',
            r.istiod,
            r.gateway,
            String(r.services),
            String(r.endpoints),
            String(r.seq),
          ]),
        ];
        const w = header.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
        for (const l of lines)
          console.log(
            l
              .map((c, i) => c.padEnd((w[i] ?? 0) + 3))
              .join('')
              .trimEnd(),
          );
      } finally {
        kv.close();
      }
    });
}
