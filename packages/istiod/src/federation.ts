import { EtcdKvStore, FederationMember, NatsTransport, type ClusterStatus } from '@fedmesh/federation';
import type { Logger } from 'pino';
import type { ConfigStore, StoredObject } from './config/store.js';
import type { ServiceObject } from './model/config.js';
import type { ServiceRegistry } from './model/service.js';
import { EXPORT_ANNOTATION, FederatedRegistry, exportedServices } from './registry/federated.js';

/** FederationSettings join an istiod to a federated mesh. Times in milliseconds. */
export interface FederationSettings {
  mesh: string;
  /** cluster is this cluster's name (also istiod's cluster ID). */
  cluster: string;
  network: string;
  /** etcd and nats are the client URLs of the mesh's shared etcd and NATS. */
  etcd: string[];
  nats: string[];
  etcdAuth?: { username: string; password: string };
  natsAuth?: { user: string; pass: string };
  gatewayAddress?: string;
  heartbeatIntervalMs?: number;
  withdrawAfterMs?: number;
  readmitAfterBeats?: number;
  /** publishTrust adds the local CA's roots to the mesh trust bundle (a mesh admin's act); by default they must already be there. */
  publishTrust?: boolean;
}

/**
 * FederationLink connects one istiod to the federation: it exports the local registry's services (debounced 100 ms
 * after each config change), feeds the peers' endpoints into a {@link FederatedRegistry}, and merges the mesh trust
 * bundle with istiod's own trust bundle (its TrustManager's, which follows a root rotation: docs/adr/0004).
 */
export class FederationLink {
  readonly registry: FederatedRegistry;
  private timer: NodeJS.Timeout | undefined;
  private exporting = Promise.resolve();
  private closed = false;

  private constructor(
    /** mesh is the federated mesh's name. */
    readonly mesh: string,
    readonly member: FederationMember,
    private readonly kv: EtcdKvStore,
    private readonly transport: NatsTransport,
    private readonly localRoots: () => readonly string[],
    network: string,
    log: Logger,
  ) {
    this.registry = new FederatedRegistry(member, network, (cluster, net) =>
      log.warn(
        { peer: cluster, network: net },
        'peer on another network has no east-west gateway (gatewayAddress); its endpoints are not used',
      ),
    );
  }

  /** start connects to etcd and NATS, joins, and exports the current services. Rejects if either is unreachable. */
  static async start(opts: {
    settings: FederationSettings;
    store: ConfigStore<StoredObject>;
    local: ServiceRegistry;
    istiodAddress: string;
    /** localRoots returns istiod's own trust bundle, primary first (read at join and on every bundle build). */
    localRoots: () => readonly string[];
    log: Logger;
  }): Promise<FederationLink> {
    const s = opts.settings;
    const kv = new EtcdKvStore({ endpoints: s.etcd, ...(s.etcdAuth ? { auth: s.etcdAuth } : {}) });
    const transport = await NatsTransport.connect({
      servers: s.nats,
      name: `istiod-${s.cluster}`,
      ...(s.natsAuth ? { user: s.natsAuth.user, pass: s.natsAuth.pass } : {}),
    });
    const member = new FederationMember({
      mesh: s.mesh,
      cluster: s.cluster,
      network: s.network,
      istiodAddress: opts.istiodAddress,
      ...(s.gatewayAddress !== undefined ? { gatewayAddress: s.gatewayAddress } : {}),
      ...(s.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: s.heartbeatIntervalMs } : {}),
      ...(s.withdrawAfterMs !== undefined ? { withdrawAfterMs: s.withdrawAfterMs } : {}),
      ...(s.readmitAfterBeats !== undefined ? { readmitAfterBeats: s.readmitAfterBeats } : {}),
      kv,
      transport,
      log: opts.log,
    });
    const link = new FederationLink(s.mesh, member, kv, transport, opts.localRoots, s.network, opts.log);
    try {
      await member.join(opts.localRoots(), s.publishTrust === true);
    } catch (err) {
      await member.close();
      await transport.close().catch(() => undefined);
      kv.close();
      throw err;
    }
    const exportOff = (svcHost: string): boolean => {
      const [name, ns] = svcHost.split('.');
      const obj = opts.store.get(`Service/${ns}/${name}`) as (ServiceObject & StoredObject) | undefined;
      return (
        obj?.metadata.annotations?.[EXPORT_ANNOTATION] === 'false' ||
        obj?.metadata.labels?.[EXPORT_ANNOTATION] === 'false'
      );
    };
    // A failed export (etcd unreachable) is retried with backoff until it succeeds: peers resync from etcd, so a
    // change that never reached it would stay invisible to them.
    let failures = 0;
    const doExport = (): void => {
      link.exporting = link.exporting
        .then(() => member.export(exportedServices(opts.local, (svc) => exportOff(svc.hostname))))
        .then(() => {
          failures = 0;
        })
        .catch((err: unknown) => {
          failures++;
          const retryInMs = Math.min(2_000, 250 * 2 ** Math.min(failures - 1, 3));
          opts.log.warn({ err: (err as Error).message, retryInMs }, 'federation export failed; retrying');
          if (link.closed) return;
          if (link.timer) clearTimeout(link.timer);
          link.timer = setTimeout(doExport, retryInMs);
        });
    };
    opts.store.on('change', () => {
      if (link.timer) clearTimeout(link.timer);
      link.timer = setTimeout(doExport, 100);
    });
    doExport();
    await link.exporting;
    return link;
  }

  /**
   * trustBundlePem returns the bundle this cluster's proxies trust: istiod's own roots in their order (the first is
   * the primary root proxies re-issue towards, docs/adr/0004), then every other root of the mesh trust bundle in
   * etcd, deduplicated, as one PEM. A root leaves it only once it is gone from both (a federated rotation retires it
   * from each istiod and from etcd).
   */
  trustBundlePem(): string {
    const seen = new Set<string>();
    const out: string[] = [];
    for (const pem of [...this.localRoots(), ...this.member.trustBundle()]) {
      const k = pem.replace(/\s+/g, '');
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(pem.endsWith('\n') ? pem : `${pem}\n`);
    }
    return out.join('');
  }

  /** meshTrustBundle returns the roots of the mesh trust bundle in etcd (PEM), as this member last saw them. */
  meshTrustBundle(): string[] {
    return this.member.trustBundle();
  }

  /** onChange registers a callback for remote endpoint, liveness or trust changes. */
  onChange(cb: () => void): void {
    this.member.on('change', cb);
    this.member.on('trust', cb);
  }

  /** status lists this cluster and its peers. */
  status(): ClusterStatus[] {
    return this.member.status();
  }

  /** close stops exporting, leaves the mesh (revoking the lease: peers withdraw at once) and disconnects. */
  async close(leave = true): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.exporting;
    if (leave) await this.member.leave();
    else await this.member.close();
    await this.transport.close().catch(() => undefined);
    this.kv.close();
  }
}
