import type { Logger } from 'pino';
import { TypeUrl } from '@fedmesh/api/xds';
import { AdsClient, type XdsNode } from '@fedmesh/xds';
import { CertManager, type WorkloadCertificate } from '../cert-manager.js';
import { ClusterManager } from '../cluster-manager.js';
import { ClusterStats } from '../cluster-stats.js';
import { DrainController } from '../drain.js';
import { MutableCertificateProvider } from '../grpc-certificates.js';
import type { AcceptedListener } from '../listener-manager.js';
import { ProxyMetrics } from '../metrics.js';
import type { RouteTable } from '../route-table.js';
import type { TlsMaterial } from '../secrets.js';
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
} from '../proxy-wiring.js';
import type { EnvoyCluster } from '../xds/envoy-schemas.js';
import { ClusterType, RouteConfigurationType } from '../xds/resource-types.js';
import { routerNodeId, type GatewayOptions } from './gateway.js';
import { GatewayAdminServer } from './gateway-admin.js';
import { IngressListenerManager } from './ingress-listeners.js';
import {
  IngressListenerType,
  IngressSecretType,
  ROOTCA_SECRET,
  downstreamSdsNames,
  type IngressSecret,
} from './ingress-schema.js';

/** GATEWAY_MODE_METADATA is the Node metadata key that tells istiod a gateway's mode (docs/adr/0018). */
export const GATEWAY_MODE_METADATA = 'FEDMESH_GATEWAY_MODE';

/** IngressGatewayOptions describe an ingress gateway proxy: a gateway's options plus its HTTP access log. */
export interface IngressGatewayOptions extends Omit<GatewayOptions, 'limits'> {
  accessLog: Logger;
  /**
   * mtlsPort is where sidecars accept mutual TLS in explicit mode (Istio's 15006): the gateway dials a sidecar
   * endpoint there, as a sidecar does.
   */
  mtlsPort: number;
}

/**
 * IngressGateway is the fedmesh proxy as an Istio ingress gateway (`router` node, gateway mode `ingress`): it
 * obtains its SPIFFE certificate, fetches Listeners, RouteConfigurations, Clusters, ClusterLoadAssignments and
 * Secrets (the `ROOTCA` trust bundle and the `kubernetes://<credentialName>` server certificates its listeners
 * name) over ADS, and serves the Listeners with {@link IngressListenerManager}: the sidecar's HTTP connection
 * manager behind plain or TLS-terminating listeners, and mTLS to sidecars upstream with its own identity. A
 * Listener whose SDS secrets have not arrived waits (Envoy's listener warming) while the previous version keeps
 * serving. Lifecycle: {@link IngressGateway.start}, {@link IngressGateway.shutdown} or {@link IngressGateway.stop}.
 */
export class IngressGateway {
  readonly metrics = new ProxyMetrics();
  readonly clusters: ClusterManager;
  readonly listeners: IngressListenerManager;
  readonly drain = new DrainController();
  readonly clusterStats: ClusterStats;
  private readonly certs: CertManager;
  private readonly adsCerts = new MutableCertificateProvider();
  private ads: AdsClient | undefined;
  private admin: GatewayAdminServer | undefined;
  private rds = new Map<string, RouteTable>();
  private secrets = new Map<string, IngressSecret>();
  /** wanted are the accepted Listeners; applied are those bound (warm, or the previous version of a warming one). */
  private wanted = new Map<string, AcceptedListener>();
  private applied = new Map<string, AcceptedListener>();
  private trustBundlePem: string;
  private cert: WorkloadCertificate | undefined;
  private listenersReady = false;
  private clustersReady = false;

  /** constructor wires the parts; no I/O before {@link IngressGateway.start}. */
  constructor(readonly opts: IngressGatewayOptions) {
    this.trustBundlePem = opts.rootCertPem;
    const onHandshake = (direction: 'inbound' | 'outbound', result: string): void =>
      this.metrics.tlsHandshakes.inc({ direction, result });
    this.clusters = new ClusterManager({ mtlsPort: opts.mtlsPort, onHandshake });
    this.clusterStats = new ClusterStats(this.metrics.registry, () => this.clusters);
    this.certs = new CertManager({
      caAddress: opts.discoveryAddress,
      rootCertPem: opts.rootCertPem,
      trustBundle: () => this.trustBundlePem,
      token: () => opts.token,
      nodeId: routerNodeId(opts.ip, opts.podName, opts.namespace),
      log: opts.log.child({ scope: 'cert' }),
    });
    const certOf = (): WorkloadCertificate | undefined => this.cert;
    const labels = opts.labels;
    const who = { app: labels.app ?? labels.istio ?? 'unknown', version: labels.version ?? 'unknown' };
    this.listeners = new IngressListenerManager({
      log: opts.log.child({ scope: 'listener' }),
      rds: (name) => this.rds.get(name),
      secret: (name) => this.secrets.get(name),
      onHandshake: (result) => onHandshake('inbound', result),
      handlerContext: proxyHandlerContext(this, opts, who, certOf),
    });
  }

  /** registry is the Prometheus registry `/stats/prometheus` serves (Istio's request metrics, cluster stats). */
  get registry(): ProxyMetrics['registry'] {
    return this.metrics.registry;
  }

  /** ready reports whether the gateway has its certificate, accepted LDS and CDS, and bound its listeners. */
  ready(): boolean {
    return this.cert !== undefined && this.listenersReady && this.clustersReady && !this.drain.draining;
  }

  /** certificate returns the workload certificate in use, if any. */
  certificate(): WorkloadCertificate | undefined {
    return this.cert;
  }

  /** node returns the xDS Node: Istio's gateway metadata, type `router`, and `FEDMESH_GATEWAY_MODE: ingress`. */
  node(): XdsNode {
    const o = this.opts;
    return proxyNode(routerNodeId(o.ip, o.podName, o.namespace), o, {
      extra: { NETWORK: o.network, [GATEWAY_MODE_METADATA]: 'ingress' },
    });
  }

  /** start obtains the certificate, binds the admin listener and opens the ADS stream. Throws if the CA refuses. */
  async start(signal?: AbortSignal): Promise<void> {
    this.certs.on('rotated', (c: WorkloadCertificate) => this.onCertificate(c));
    this.cert = await this.certs.start(signal);
    this.admin = new GatewayAdminServer(this, this.opts.log.child({ scope: 'admin' }));
    await this.admin.listen(this.opts.ip, this.opts.adminPort);
    this.installTls();
    const o = { address: this.opts.discoveryAddress, certs: this.adsCerts, node: this.node(), log: this.opts.log };
    const ads = createAdsClient(AdsClient, o);
    this.ads = ads;
    ads.subscribe(IngressSecretType, [ROOTCA_SECRET], (s) => this.onSecrets(s));
    ads.subscribe(ClusterType, [], (c) => this.onClusters(c));
    ads.subscribe(IngressListenerType, [], (l) => this.onListeners(l));
    ads.start(signal);
  }

  /** stop closes the ADS stream, listeners, pools and the admin listener. */
  async stop(): Promise<void> {
    await stopProxy(this.certs, this.ads, this.listeners, this.clusters, this.admin);
  }

  /**
   * shutdown is the SIGTERM path: stop accepting, wait up to `drainDurationMs` for in-flight requests, then stop.
   * Resolves true when nothing was cut off.
   */
  async shutdown(drainDurationMs: number): Promise<boolean> {
    this.drain.begin();
    this.listeners.stopAccepting();
    const clean = await this.drain.idle(drainDurationMs);
    await this.stop();
    return clean;
  }

  /** configDump returns the accepted resources by type; secrets show their names and kinds, never key material. */
  configDump(): Record<string, unknown> {
    const ads = this.ads;
    const dump = (t: string): unknown => dumpResources(ads, t);
    return {
      node: this.node(),
      xds: ads?.state() ?? [],
      listeners: dump(TypeUrl.Listener),
      routes: dump(TypeUrl.RouteConfiguration),
      clusters: dump(TypeUrl.Cluster),
      endpoints: dump(TypeUrl.ClusterLoadAssignment),
      secrets: [
        { name: 'default', spiffeId: this.cert?.spiffeId, notAfter: this.cert?.notAfter.toISOString() },
        ...[...this.secrets.values()].map((s) => ({ name: s.name, kind: s.kind })),
      ],
    };
  }

  private tlsMaterial(): TlsMaterial | undefined {
    return workloadTlsMaterial(this.cert, this.trustBundlePem);
  }

  /** installTls hands the workload certificate and trust bundle to the upstream pools and the ADS channel. */
  private installTls(): void {
    const m = this.tlsMaterial();
    if (!m) return;
    this.adsCerts.update({ trustBundlePem: m.trustBundlePem, certChainPem: m.certChainPem, keyPem: m.keyPem });
    this.clusters.setTls(m);
  }

  private onCertificate(c: WorkloadCertificate): void {
    this.cert = c;
    this.installTls();
  }

  private onSecrets(secrets: ReadonlyMap<string, IngressSecret>): void {
    const root = secrets.get(ROOTCA_SECRET);
    if (root?.kind === 'ca' && root.caPem !== this.trustBundlePem) {
      this.trustBundlePem = root.caPem;
      this.installTls();
    }
    this.secrets = new Map(secrets);
    this.applyListeners();
  }

  private onClusters(clusters: ReadonlyMap<string, EnvoyCluster>): void {
    this.installTls();
    this.clusters.setClusters(clusters);
    this.clustersReady = true;
    subscribeEndpoints(this.ads, this.clusters);
  }

  private onListeners(listeners: ReadonlyMap<string, AcceptedListener>): void {
    const routes = routeConfigNames(listeners.values());
    const sds = new Set<string>([ROOTCA_SECRET]);
    for (const l of listeners.values())
      for (const fc of l.config.filter_chains) {
        const n = downstreamSdsNames(fc);
        if (n.certificate) sds.add(n.certificate);
        if (n.validation) sds.add(n.validation);
      }
    this.ads?.subscribe(RouteConfigurationType, [...routes], (r) => {
      this.rds = new Map(r);
    });
    this.ads?.subscribe(IngressSecretType, [...sds], (s) => this.onSecrets(s));
    this.wanted = new Map(listeners);
    this.applyListeners();
  }

  /**
   * applyListeners binds the wanted listeners whose SDS secrets are all present (warm); a listener still waiting
   * for a secret keeps its previous version, if any, and is applied when the secret arrives.
   */
  private applyListeners(): void {
    const current = new Map<string, AcceptedListener>();
    const waiting: string[] = [];
    for (const [name, l] of this.wanted) {
      const warm = l.config.filter_chains.every((fc) => {
        const n = downstreamSdsNames(fc);
        return (!n.certificate || this.secrets.has(n.certificate)) && (!n.validation || this.secrets.has(n.validation));
      });
      if (warm) current.set(name, l);
      else waiting.push(name);
    }
    for (const name of waiting) {
      const prev = this.applied.get(name);
      if (prev) current.set(name, prev);
    }
    if (waiting.length > 0) this.opts.log.info({ listeners: waiting }, 'listeners warming: waiting for SDS secrets');
    this.applied = current;
    applyListeners(this.listeners.apply(current), this.opts.log, () => {
      if (waiting.length === 0) this.listenersReady = true;
    });
  }
}
