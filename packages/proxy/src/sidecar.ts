import type { Logger } from 'pino';
import { TypeUrl } from '@fedmesh/api/xds';
import { AdsClient, DeltaAdsClient, type TypeState, type XdsNode } from '@fedmesh/xds';
import { AdminServer } from './admin.js';
import { loadOriginalDst, redirectedDestination } from './capture/original-dst.js';
import { CertManager, chainEndsAtPrimary, type WorkloadCertificate } from './cert-manager.js';
import { ClusterManager } from './cluster-manager.js';
import { ClusterStats } from './cluster-stats.js';
import { DrainController } from './drain.js';
import { MutableCertificateProvider } from './grpc-certificates.js';
import { ListenerManager, type AcceptedListener, type HandshakeObserver } from './listener-manager.js';
import { ProxyMetrics } from './metrics.js';
import type { RouteTable } from './route-table.js';
import type { TlsMaterial } from './secrets.js';
import type { EnvoyCluster, EnvoySecret } from './xds/envoy-schemas.js';
import { ClusterType, ListenerType, RouteConfigurationType, SecretType } from './xds/resource-types.js';
import {
  applyListeners,
  createAdsClient,
  dumpResources,
  proxyHandlerContext,
  proxyNode,
  routeConfigNames,
  subscribeEndpoints,
  workloadTlsMaterial,
  stopProxy,
  type ProxyIdentity,
} from './proxy-wiring.js';

/** SidecarOptions describe the workload a sidecar proxy serves and where its control plane is. */
export interface SidecarOptions extends ProxyIdentity {
  /** discoveryAddress is istiod's `host:port` for ADS and the CA over TLS (15012). */
  discoveryAddress: string;
  /** rootCertPem is the mesh root, used to trust istiod until SDS delivers the trust bundle. */
  rootCertPem: string;
  /** token is the bootstrap credential for the first certificate. */
  token: string | undefined;
  /** certTtlSeconds is the requested certificate lifetime (0: the CA's default). */
  certTtlSeconds?: number;
  /** adminPort is the admin listener's port on `ip` (Istio's 15000). */
  adminPort: number;
  /** mtlsPort is where peer proxies accept mutual TLS in explicit (no iptables) mode (Istio's 15006). */
  mtlsPort: number;
  /**
   * interceptionMode is how traffic reaches the proxy: `NONE` (the default, explicit mode: apps dial 15001, peers
   * dial `mtlsPort`) or `REDIRECT` (transparent capture: iptables sends the pod's TCP to 15001 and 15006, the
   * original destination picks routes and inbound filter chains, and peers are dialled at their target port). In
   * `REDIRECT` mode the proxy must run as uid 1337 and needs the `original_dst` addon (see `capture/`).
   */
  interceptionMode?: 'NONE' | 'REDIRECT';
  log: Logger;
  accessLog: Logger;
  /** drainDurationMs is how long a drain waits for in-flight requests (Istio's terminationDrainDuration, 5 s). */
  drainDurationMs?: number;
  /** onQuit runs on admin `POST /quitquitquit`; by default the sidecar drains and stops itself. */
  onQuit?: () => void;
  /** nodeMetadata adds xDS Node metadata (a VM adds `AUTO_REGISTER_GROUP`); it cannot replace the keys set here. */
  nodeMetadata?: Record<string, string>;
  /**
   * initialCertificate is a certificate obtained earlier (the VM agent's persisted one): the first CSR is
   * authenticated with it (renewal) instead of the token.
   */
  initialCertificate?: WorkloadCertificate;
  /** onCertificate observes every certificate installed, the first included (the VM agent persists them). */
  onCertificate?: (cert: WorkloadCertificate) => void;
  /**
   * xdsProtocol picks the ADS variant: `sotw` (State of the World, the default) or `delta` (incremental:
   * `DeltaAggregatedResources`, only changed resources and explicit removals are sent).
   */
  xdsProtocol?: 'sotw' | 'delta';
}

/** DEFAULT_DRAIN_DURATION_MS is Istio's default `terminationDrainDuration` (5 s). */
export const DEFAULT_DRAIN_DURATION_MS = 5_000;

export { XDS_RECONNECT_BACKOFF_MAX_MS } from './proxy-wiring.js';

/**
 * istioNodeId builds Istio's sidecar node ID `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`.
 */
export function istioNodeId(ip: string, pod: string, namespace: string): string {
  return `sidecar~${ip}~${pod}.${namespace}~${namespace}.svc.cluster.local`;
}

/**
 * Sidecar is the fedmesh data-plane proxy for one workload: it obtains its SPIFFE certificate, fetches
 * Listeners, RouteConfigurations, Clusters, ClusterLoadAssignments and the trust bundle (Secret `ROOTCA`) over
 * one ADS stream to istiod, and serves them. Lifecycle: {@link Sidecar.start} then {@link Sidecar.stop}.
 */
export class Sidecar {
  readonly metrics = new ProxyMetrics();
  readonly clusters: ClusterManager;
  readonly listeners: ListenerManager;
  /** drain tracks in-flight requests and the drain state (SIGTERM, `/drain_listeners`). */
  readonly drain = new DrainController();
  readonly clusterStats: ClusterStats;
  private readonly certs: CertManager;
  private readonly adsCerts = new MutableCertificateProvider();
  private ads: AdsClient | DeltaAdsClient | undefined;
  private admin: AdminServer | undefined;
  private rds = new Map<string, RouteTable>();
  private trustBundlePem: string;
  private cert: WorkloadCertificate | undefined;
  private listenersReady = false;
  private clustersReady = false;

  /** constructor wires the parts; no I/O before {@link Sidecar.start}. */
  constructor(readonly opts: SidecarOptions) {
    this.trustBundlePem = opts.rootCertPem;
    const onHandshake: HandshakeObserver = (direction, result) => this.metrics.tlsHandshakes.inc({ direction, result });
    this.clusterStats = new ClusterStats(this.metrics.registry, () => this.clusters);
    const xlog = opts.log.child({ scope: 'outlier' });
    this.clusters = new ClusterManager({
      ...(opts.interceptionMode === 'REDIRECT' ? {} : { mtlsPort: opts.mtlsPort }),
      onHandshake,
      onEject: (cluster, host, type, ms) => {
        this.clusterStats.ejectionsEnforced.inc({ cluster_name: cluster });
        xlog.info({ cluster, host, type, durationMs: ms }, 'host ejected');
      },
      onUneject: (cluster, host) => xlog.info({ cluster, host }, 'host returned'),
    });
    this.certs = new CertManager({
      caAddress: opts.discoveryAddress,
      rootCertPem: opts.rootCertPem,
      trustBundle: () => this.trustBundlePem,
      token: () => opts.token,
      ttlSeconds: opts.certTtlSeconds ?? 0,
      nodeId: istioNodeId(opts.ip, opts.podName, opts.namespace),
      ...(opts.initialCertificate ? { initial: opts.initialCertificate } : {}),
      log: opts.log.child({ scope: 'cert' }),
    });
    const labels = opts.labels;
    const certOf = (): WorkloadCertificate | undefined => this.cert;
    const who = {
      app: labels.app ?? labels['app.kubernetes.io/name'] ?? 'unknown',
      version: labels.version ?? labels['app.kubernetes.io/version'] ?? 'unknown',
    };
    this.listeners = new ListenerManager({
      log: opts.log.child({ scope: 'listener' }),
      rds: (name) => this.rds.get(name),
      tls: () => this.tlsMaterial(),
      onHandshake,
      ...(opts.interceptionMode === 'REDIRECT' ? { originalDestination: redirectedDestination } : {}),
      handlerContext: proxyHandlerContext(this, opts, who, certOf),
    });
  }

  /** ready reports whether the proxy has its certificate, accepted LDS and CDS, and bound its listeners. */
  ready(): boolean {
    return this.cert !== undefined && this.listenersReady && this.clustersReady;
  }

  /** node returns the xDS Node the proxy presents (Istio's metadata keys). */
  node(): XdsNode {
    const o = this.opts;
    const locality = {
      region: o.labels['topology.kubernetes.io/region'] ?? '',
      zone: o.labels['topology.kubernetes.io/zone'] ?? '',
      sub_zone: o.labels['topology.istio.io/subzone'] ?? '',
    };
    return proxyNode(istioNodeId(o.ip, o.podName, o.namespace), o, {
      extra: { INTERCEPTION_MODE: o.interceptionMode ?? 'NONE' },
      ...(o.nodeMetadata ? { base: o.nodeMetadata } : {}),
      ...(locality.region || locality.zone || locality.sub_zone ? { locality } : {}),
    });
  }

  /**
   * start obtains the certificate, binds the admin listener and opens the ADS stream. Throws if the CA refuses, or
   * in `REDIRECT` mode when the `original_dst` addon is missing (a CaptureError).
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.opts.interceptionMode === 'REDIRECT') loadOriginalDst(); // fail now, not on the first connection
    this.certs.on('rotated', (c: WorkloadCertificate) => this.onCertificate(c));
    this.cert = await this.certs.start(signal);
    this.admin = new AdminServer(this, this.opts.log.child({ scope: 'admin' }));
    await this.admin.listen(this.opts.ip, this.opts.adminPort);
    this.updateAdsCredentials();
    const Client = this.opts.xdsProtocol === 'delta' ? DeltaAdsClient : AdsClient;
    const o = { address: this.opts.discoveryAddress, certs: this.adsCerts, node: this.node(), log: this.opts.log };
    this.ads = createAdsClient<AdsClient | DeltaAdsClient>(Client, o);
    this.ads.subscribe(SecretType, ['ROOTCA'], (secrets) => this.onSecrets(secrets));
    this.ads.subscribe(ClusterType, [], (clusters) => this.onClusters(clusters));
    this.ads.subscribe(ListenerType, [], (listeners) => this.onListeners(listeners));
    this.ads.start(signal);
  }

  /** stop closes the ADS stream, listeners, pools and the admin listener. */
  async stop(): Promise<void> {
    await stopProxy(this.certs, this.ads, this.listeners, this.clusters, this.admin);
  }

  /** certificate returns the workload certificate in use, if any. */
  certificate(): WorkloadCertificate | undefined {
    return this.cert;
  }

  /** certificateRenewals counts the certificates installed after the first (renewals and re-issues). */
  certificateRenewals(): number {
    return this.certs.renewals;
  }

  /**
   * renewCertificate obtains a new certificate now and hot-swaps it into listeners, pools and the ADS channel (open
   * connections keep the old one). Rejects when the CA refuses; a retry is then scheduled.
   */
  renewCertificate(reason = 'requested'): Promise<WorkloadCertificate> {
    return this.certs.renewNow(reason);
  }

  /**
   * drainListeners is Envoy's admin `POST /drain_listeners`: the listeners (inbound only when `inboundOnly`) stop
   * accepting connections, so new connections are refused, and responses ask clients to close their keep-alive
   * connections. In-flight requests continue.
   */
  drainListeners(inboundOnly = false): void {
    this.drain.begin();
    this.listeners.stopAccepting(inboundOnly ? (name) => name === 'virtualInbound' : undefined);
  }

  /**
   * shutdown is the SIGTERM path: drain every listener, wait up to `drainDurationMs` (default 5 s) for in-flight
   * requests to finish, then stop. Resolves true when nothing was cut off.
   */
  async shutdown(drainDurationMs = this.opts.drainDurationMs ?? DEFAULT_DRAIN_DURATION_MS): Promise<boolean> {
    this.drainListeners();
    const inflight = this.drain.inflightRequests();
    this.opts.log.info({ inflight, drainDurationMs }, 'draining');
    const clean = await this.drain.idle(drainDurationMs);
    if (!clean) this.opts.log.warn({ inflight: this.drain.inflightRequests() }, 'drain window over; closing');
    await this.stop();
    return clean;
  }

  /** quit is admin `POST /quitquitquit`: the `onQuit` option, else drain and stop. */
  quit(): void {
    if (this.opts.onQuit) return this.opts.onQuit();
    void this.shutdown();
  }

  /** adsState returns the xDS client's per-type state (for `/config_dump`). */
  adsState(): TypeState[] {
    return this.ads?.state() ?? [];
  }

  /** configDump returns the accepted resources by type URL, as decoded (no private keys). */
  configDump(): Record<string, unknown> {
    const ads = this.ads;
    const dump = (t: string): unknown => dumpResources(ads, t);
    return {
      node: this.node(),
      xds: this.adsState(),
      listeners: dump(TypeUrl.Listener),
      routes: dump(TypeUrl.RouteConfiguration),
      clusters: dump(TypeUrl.Cluster),
      endpoints: dump(TypeUrl.ClusterLoadAssignment),
      secrets: [
        {
          name: 'default',
          spiffeId: this.cert?.spiffeId,
          serialNumber: this.cert?.serialNumber,
          notAfter: this.cert?.notAfter.toISOString(),
        },
        { name: 'ROOTCA', trustBundle: this.trustBundlePem },
      ],
    };
  }

  private tlsMaterial(): TlsMaterial | undefined {
    return workloadTlsMaterial(this.cert, this.trustBundlePem);
  }

  private updateAdsCredentials(): void {
    const c = this.cert;
    if (c) this.adsCerts.update({ trustBundlePem: this.trustBundlePem, certChainPem: c.chainPem, keyPem: c.keyPem });
  }

  private onCertificate(c: WorkloadCertificate): void {
    this.cert = c;
    this.opts.onCertificate?.(c);
    this.updateAdsCredentials();
    const m = this.tlsMaterial();
    if (!m) return;
    this.clusters.setTls(m);
    this.listeners.refreshTls();
  }

  /**
   * onSecrets installs the trust bundle (SDS `ROOTCA`) into listeners, pools and the ADS channel. Rotation rule
   * (docs/adr/0004): when the bundle changed and the current certificate does not chain to its first (primary)
   * root, the proxy re-issues its certificate, since istiod lists the root it signs under first.
   */
  private onSecrets(secrets: ReadonlyMap<string, EnvoySecret>): void {
    const root = secrets.get('ROOTCA');
    if (!root) return;
    const bundle = root.validation_context.trusted_ca.inline_string;
    const changed = bundle !== this.trustBundlePem;
    this.trustBundlePem = bundle;
    this.updateAdsCredentials();
    const m = this.tlsMaterial();
    if (!m) return;
    this.clusters.setTls(m);
    this.listeners.refreshTls();
    const cert = this.cert;
    if (!changed || !cert) return;
    let onPrimary: boolean;
    try {
      onPrimary = chainEndsAtPrimary(cert, bundle);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'trust bundle unreadable; not re-issuing');
      return;
    }
    if (onPrimary) return;
    this.opts.log.info({ serial: cert.serialNumber }, 'certificate does not chain to the primary root; re-issuing');
    this.certs.renewNow('trust bundle primary root changed').catch(() => undefined); // retried inside renewNow
  }

  private onClusters(clusters: ReadonlyMap<string, EnvoyCluster>): void {
    const m = this.tlsMaterial();
    if (m) this.clusters.setTls(m);
    this.clusters.setClusters(clusters);
    this.clustersReady = true;
    subscribeEndpoints(this.ads, this.clusters);
  }

  private onListeners(listeners: ReadonlyMap<string, AcceptedListener>): void {
    this.ads?.subscribe(RouteConfigurationType, [...routeConfigNames(listeners.values())], (routes) => {
      this.rds = new Map(routes);
    });
    applyListeners(this.listeners.apply(listeners), this.opts.log, () => {
      this.listenersReady = true;
    });
  }
}
