import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AdsClient, AdsClientOptions, DeltaAdsClient, XdsNode } from '@fedmesh/xds';
import type { WorkloadCertificate } from './cert-manager.js';
import type { ClusterManager } from './cluster-manager.js';
import type { ClusterStats } from './cluster-stats.js';
import type { DrainController } from './drain.js';
import type { MutableCertificateProvider } from './grpc-certificates.js';
import type { HttpHandlerContext } from './http-handler.js';
import type { AcceptedListener } from './listener-manager.js';
import type { ProxyMetrics } from './metrics.js';
import type { TlsMaterial } from './secrets.js';
import { hcmOf, type EnvoyClusterLoadAssignment } from './xds/envoy-schemas.js';
import { ClusterLoadAssignmentType } from './xds/resource-types.js';

/** XDS_RECONNECT_BACKOFF_MAX_MS caps the gRPC channel's own reconnect back-off (its default, 120 s, is too slow). */
export const XDS_RECONNECT_BACKOFF_MAX_MS = 15_000;

/**
 * ISTIOD_SAN is the name a proxy verifies istiod's serving certificate against (Istio's
 * `istiod.istio-system.svc`), whatever address it dials.
 */
export const ISTIOD_SAN = 'istiod.istio-system.svc';

/** ProxyIdentity is what every fedmesh proxy (sidecar, ingress and east-west gateway) says of itself to istiod. */
export interface ProxyIdentity {
  /** ip is the proxy's address: its listeners and admin bind here. */
  ip: string;
  podName: string;
  namespace: string;
  serviceAccount: string;
  /** labels are the pod's labels (a Gateway's `selector`, e.g. `istio: eastwestgateway`, matches a gateway's). */
  labels: Record<string, string>;
  workloadName: string;
  clusterId: string;
}

/**
 * stopProxy stops a proxy, in this order: certificate renewal, the ADS stream, the listeners (their connections
 * close), the upstream pools and the admin listener (awaited).
 */
export async function stopProxy(
  certs: { stop(): void },
  ads: { close(): void } | undefined,
  listeners: { close(): void },
  clusters: { close(): void },
  admin: { close(): Promise<void> } | undefined,
): Promise<void> {
  certs.stop();
  ads?.close();
  listeners.close();
  clusters.close();
  await admin?.close();
}

/**
 * proxyNode builds a proxy's xDS Node: `id`, cluster `<workload>.<namespace>` and Istio's node metadata keys
 * (NAMESPACE, SERVICE_ACCOUNT, POD_NAME, WORKLOAD_NAME, LABELS, INSTANCE_IPS, CLUSTER_ID, ISTIO_VERSION). `base`
 * metadata comes first and cannot replace those keys; `extra` (NETWORK, INTERCEPTION_MODE, …) is added to them;
 * `locality` is set when given.
 */
export function proxyNode(
  id: string,
  o: ProxyIdentity,
  {
    extra,
    base,
    locality,
  }: { extra: Record<string, unknown>; base?: Record<string, unknown>; locality?: XdsNode['locality'] },
): XdsNode {
  return {
    id,
    cluster: `${o.workloadName}.${o.namespace}`,
    user_agent_name: 'fedmesh-proxy',
    ...(locality ? { locality } : {}),
    metadata: {
      ...base,
      NAMESPACE: o.namespace,
      SERVICE_ACCOUNT: o.serviceAccount,
      POD_NAME: o.podName,
      WORKLOAD_NAME: o.workloadName,
      LABELS: o.labels,
      INSTANCE_IPS: o.ip,
      CLUSTER_ID: o.clusterId,
      ...extra,
      ISTIO_VERSION: '1.24.0-fedmesh',
    },
  };
}

/**
 * adsChannelOptions are the gRPC channel options of a proxy's ADS stream: istiod's certificate is verified as
 * {@link ISTIOD_SAN}, and reconnects back off from 250 ms up to {@link XDS_RECONNECT_BACKOFF_MAX_MS}.
 */
export function adsChannelOptions(): grpc.ChannelOptions {
  return {
    'grpc.ssl_target_name_override': ISTIOD_SAN,
    'grpc.default_authority': ISTIOD_SAN,
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': XDS_RECONNECT_BACKOFF_MAX_MS,
  };
}

/**
 * createAdsClient opens nothing: it builds a proxy's ADS client (`Client`: SotW `AdsClient` or `DeltaAdsClient`)
 * to `address` whose mutual TLS comes from `certs`, a certificate provider, so that reconnects present the current
 * certificate and trust the current bundle.
 */
export function createAdsClient<C extends AdsClient | DeltaAdsClient>(
  Client: new (o: AdsClientOptions) => C,
  o: { address: string; certs: MutableCertificateProvider; node: XdsNode; log: Logger },
): C {
  return new Client({
    address: o.address,
    credentials: grpc.experimental.createCertificateProviderChannelCredentials(o.certs, o.certs),
    channelOptions: adsChannelOptions(),
    node: o.node,
    log: o.log.child({ scope: 'xds' }),
  });
}

/**
 * workloadTlsMaterial is the mTLS material of a proxy holding `cert` and trusting `trustBundlePem`: the trust
 * domain is the SPIFFE ID's authority (`cluster.local` when it has none). Undefined before the first certificate.
 */
export function workloadTlsMaterial(
  cert: WorkloadCertificate | undefined,
  trustBundlePem: string,
): TlsMaterial | undefined {
  if (!cert) return undefined;
  const trustDomain = /^spiffe:\/\/([^/]+)\//.exec(cert.spiffeId)?.[1] ?? 'cluster.local';
  return {
    certChainPem: cert.chainPem,
    keyPem: cert.keyPem,
    trustBundlePem,
    trustDomain,
    spiffeId: cert.spiffeId,
  };
}

/**
 * subscribeEndpoints follows a CDS update as Envoy does: EDS is (re)subscribed to the `eds_cluster_config` service
 * names of the accepted clusters, each update handed to the cluster manager.
 */
export function subscribeEndpoints(ads: AdsClient | DeltaAdsClient | undefined, clusters: ClusterManager): void {
  ads?.subscribe(
    ClusterLoadAssignmentType,
    clusters.edsNames(),
    (cla: ReadonlyMap<string, EnvoyClusterLoadAssignment>) => clusters.setAssignments(cla),
  );
}

/** routeConfigNames are the RouteConfiguration names the HTTP connection managers of `listeners` ask RDS for. */
export function routeConfigNames(listeners: Iterable<AcceptedListener>): Set<string> {
  const names = new Set<string>();
  for (const l of listeners)
    for (const fc of l.config.filter_chains) {
      const rds = hcmOf(fc)?.rds?.route_config_name;
      if (rds) names.add(rds);
    }
  return names;
}

/**
 * applyListeners waits for a listener manager's `apply` and runs `onBound` once every listener is bound; a bind
 * failure is logged ('listener bind failed'), never thrown (the other listeners keep serving).
 */
export function applyListeners(apply: Promise<void>, log: Logger, onBound: () => void): void {
  apply.then(onBound).catch((err: unknown) => log.error({ err: (err as Error).message }, 'listener bind failed'));
}

/**
 * dumpResources lists the accepted resources of type URL `typeUrl` for `/config_dump`: `{ name, resource }` with
 * the decoded config (what a decoder returned as `config`, else the value itself).
 */
export function dumpResources(ads: AdsClient | DeltaAdsClient | undefined, typeUrl: string): unknown {
  const m = ads?.resources<unknown>(typeUrl) ?? new Map<string, unknown>();
  return [...m.entries()].map(([name, v]) => ({ name, resource: (v as { config?: unknown }).config ?? v }));
}

/** ProxyParts are the parts of an HTTP proxy (sidecar or ingress gateway) its HTTP handlers share. */
export interface ProxyParts {
  clusters: ClusterManager;
  clusterStats: ClusterStats;
  drain: DrainController;
  metrics: ProxyMetrics;
}

/**
 * proxyHandlerContext is the listener-independent part of an HTTP proxy's handler context: its parts, access log
 * and its own workload (`app`, `version` as the caller derives them from its labels; `principal` is the SPIFFE ID
 * of the certificate `certOf` returns at the time, for metric labels and XFCC `By=`).
 */
export function proxyHandlerContext(
  parts: ProxyParts,
  o: { workloadName: string; namespace: string; clusterId: string; accessLog: Logger },
  who: { app: string; version: string },
  certOf: () => WorkloadCertificate | undefined,
): Omit<HttpHandlerContext, 'routes' | 'direction' | 'forwardClientCert' | 'peerOf'> {
  return {
    clusters: parts.clusters,
    stats: parts.clusterStats,
    drain: parts.drain,
    metrics: parts.metrics,
    accessLog: o.accessLog,
    self: {
      name: o.workloadName,
      namespace: o.namespace,
      app: who.app,
      version: who.version,
      get principal(): string {
        return certOf()?.spiffeId ?? '';
      },
      cluster: o.clusterId,
    },
  };
}
