import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { TypeUrl } from '@fedmesh/api/xds';
import { AdsClient, type XdsNode } from '@fedmesh/xds';
import { CertManager, type WorkloadCertificate } from '../cert-manager.js';
import { ClusterManager } from '../cluster-manager.js';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { blankTcpLabels, TcpMetrics, type TcpLabels } from '../tcp/tcp-metrics.js';
import type { EnvoyCluster, EnvoySecret } from '../xds/envoy-schemas.js';
import { ClusterType, SecretType } from '../xds/resource-types.js';
import {
  applyListeners,
  ISTIOD_SAN,
  proxyNode,
  stopProxy,
  subscribeEndpoints,
  type ProxyIdentity,
} from '../proxy-wiring.js';
import { GatewayAdminServer } from './gateway-admin.js';
import { GatewayListenerManager, type GatewayLimits } from './gateway-listeners.js';
import { GatewayListenerType, type EnvoyGatewayListener } from './gateway-schema.js';

/** GatewayOptions describe a gateway proxy (Istio's `router` node) and where its control plane is. */
export interface GatewayOptions extends ProxyIdentity {
  /** network is the network the gateway fronts (`topology.istio.io/network`), sent as node metadata NETWORK. */
  network: string;
  /** discoveryAddress is istiod's `host:port` for ADS and the CA over TLS (15012). */
  discoveryAddress: string;
  /** rootCertPem is the mesh root, used to trust istiod until SDS delivers the trust bundle. */
  rootCertPem: string;
  /** token is the bootstrap credential for the certificate the gateway authenticates to istiod with. */
  token: string | undefined;
  /** adminPort is the admin listener's port on `ip` (Istio's 15000). */
  adminPort: number;
  limits?: Partial<GatewayLimits>;
  log: Logger;
}

/** routerNodeId builds Istio's gateway node ID `router~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`. */
export function routerNodeId(ip: string, pod: string, namespace: string): string {
  return `router~${ip}~${pod}.${namespace}~${namespace}.svc.cluster.local`;
}

/**
 * Gateway is the fedmesh proxy in gateway (router) mode, as Istio runs an east-west gateway: it fetches Listeners,
 * Clusters, ClusterLoadAssignments and the trust bundle from istiod over ADS as a `router~` node, and serves the
 * Listeners with {@link GatewayListenerManager} (SNI-routed `tcp_proxy`, TLS AUTO_PASSTHROUGH). Its certificate
 * only authenticates it to istiod; it never terminates the TLS it forwards. Lifecycle: {@link Gateway.start},
 * {@link Gateway.stop}.
 */
export class Gateway {
  /** registry holds Istio's TCP metrics and Node's process metrics (`/stats/prometheus`). */
  readonly registry = new Registry();
  readonly tcp = new TcpMetrics(this.registry);
  /** clusters has no mTLS port: a gateway dials each endpoint's own port (EDS carries the sidecar's 15006). */
  readonly clusters = new ClusterManager({});
  readonly listeners: GatewayListenerManager;
  private readonly certs: CertManager;
  private ads: AdsClient | undefined;
  private admin: GatewayAdminServer | undefined;
  private cert: WorkloadCertificate | undefined;
  private trustBundlePem: string;
  private listenersReady = false;
  private clustersReady = false;
  private signal: AbortSignal | undefined;

  /** constructor wires the parts; no I/O before {@link Gateway.start}. */
  constructor(readonly opts: GatewayOptions) {
    this.trustBundlePem = opts.rootCertPem;
    collectDefaultMetrics({ register: this.registry });
    this.certs = new CertManager({
      caAddress: opts.discoveryAddress,
      rootCertPem: opts.rootCertPem,
      token: () => opts.token,
      log: opts.log.child({ scope: 'cert' }),
    });
    this.listeners = new GatewayListenerManager({
      log: opts.log.child({ scope: 'listener' }),
      clusters: this.clusters,
      metrics: this.tcp,
      baseLabels: () => this.baseLabels(),
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
  }

  /** ready reports whether the gateway has its certificate, accepted LDS and CDS, and bound its listeners. */
  ready(): boolean {
    return this.cert !== undefined && this.listenersReady && this.clustersReady;
  }

  /** node returns the xDS Node the gateway presents (Istio's metadata keys, type `router`). */
  node(): XdsNode {
    const o = this.opts;
    return proxyNode(routerNodeId(o.ip, o.podName, o.namespace), o, { extra: { NETWORK: o.network } });
  }

  /** start obtains the certificate, binds the admin listener and opens the ADS stream. Throws if the CA refuses. */
  async start(signal?: AbortSignal): Promise<void> {
    this.signal = signal;
    this.certs.on('rotated', (c: WorkloadCertificate) => {
      this.cert = c;
      this.connectAds(); // ADS reconnects with the new certificate
    });
    this.cert = await this.certs.start(signal);
    this.admin = new GatewayAdminServer(this, this.opts.log.child({ scope: 'admin' }));
    await this.admin.listen(this.opts.ip, this.opts.adminPort);
    this.connectAds();
  }

  /** stop closes the ADS stream, listeners (resetting their connections) and the admin listener. */
  async stop(): Promise<void> {
    await stopProxy(this.certs, this.ads, this.listeners, this.clusters, this.admin);
  }

  /** configDump returns the accepted resources by type (no private keys). */
  configDump(): Record<string, unknown> {
    const ads = this.ads;
    const dump = (t: string): unknown => [...(ads?.resources<unknown>(t) ?? new Map()).entries()];
    return {
      node: this.node(),
      xds: this.ads?.state() ?? [],
      listeners: dump(TypeUrl.Listener),
      clusters: dump(TypeUrl.Cluster),
      endpoints: dump(TypeUrl.ClusterLoadAssignment),
      secrets: [
        { name: 'default', spiffeId: this.cert?.spiffeId, notAfter: this.cert?.notAfter.toISOString() },
        { name: 'ROOTCA', trustBundle: this.trustBundlePem },
      ],
    };
  }

  private baseLabels(): TcpLabels {
    const l = blankTcpLabels();
    const o = this.opts;
    l.reporter = 'source';
    l.source_workload = o.workloadName;
    l.source_workload_namespace = o.namespace;
    l.source_principal = this.cert?.spiffeId ?? 'unknown';
    l.source_app = o.labels.app ?? o.labels.istio ?? 'unknown';
    l.source_version = o.labels.version ?? 'unknown';
    l.source_cluster = o.clusterId;
    return l;
  }

  private connectAds(): void {
    const c = this.cert;
    if (!c) return;
    this.ads?.close();
    const ads = new AdsClient({
      address: this.opts.discoveryAddress,
      credentials: grpc.credentials.createSsl(
        Buffer.from(this.trustBundlePem),
        Buffer.from(c.keyPem),
        Buffer.from(c.chainPem),
      ),
      channelOptions: { 'grpc.ssl_target_name_override': ISTIOD_SAN, 'grpc.default_authority': ISTIOD_SAN },
      node: this.node(),
      log: this.opts.log.child({ scope: 'xds' }),
    });
    this.ads = ads;
    ads.subscribe(SecretType, ['ROOTCA'], (secrets) => this.onSecrets(secrets));
    ads.subscribe(ClusterType, [], (clusters) => this.onClusters(ads, clusters));
    ads.subscribe(GatewayListenerType, [], (listeners) => this.onListeners(listeners));
    ads.start(this.signal);
  }

  private onSecrets(secrets: ReadonlyMap<string, EnvoySecret>): void {
    const root = secrets.get('ROOTCA');
    if (root) this.trustBundlePem = root.validation_context.trusted_ca.inline_string;
  }

  private onClusters(ads: AdsClient, clusters: ReadonlyMap<string, EnvoyCluster>): void {
    for (const [name, c] of clusters)
      if (c.transport_socket) throw new Error(`${name}: transport_socket: a gateway cluster passes TLS through`);
    this.clusters.setClusters(clusters);
    this.clustersReady = true;
    subscribeEndpoints(ads, this.clusters);
  }

  private onListeners(listeners: ReadonlyMap<string, EnvoyGatewayListener>): void {
    applyListeners(this.listeners.apply(listeners), this.opts.log, () => {
      this.listenersReady = true;
    });
  }
}
