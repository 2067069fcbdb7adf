import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { isPkiError, PkiError, spiffeUri, verifySpiffePeer } from '@fedmesh/pki';
import { CircuitBreaker, circuitBreakerLimits } from './circuit-breaker.js';
import {
  DEFAULT_MAGLEV_TABLE_SIZE,
  DEFAULT_MAX_RING_SIZE,
  DEFAULT_MIN_RING_SIZE,
  MaglevLoadBalancer,
  RingHashLoadBalancer,
} from './lb/consistent-hash.js';
import { selectHost, type SelectableHost, type SelectionPolicy } from './lb/host-selector.js';
import { DEFAULT_PANIC_THRESHOLD } from './lb/priority.js';
import { LeastRequestLoadBalancer, RandomLoadBalancer, RoundRobinLoadBalancer } from './lb/simple.js';
import { hostKey, type LoadBalancer } from './lb/types.js';
import type { HandshakeObserver } from './listener-manager.js';
import { OutlierDetector, outlierConfig, type EjectionType, type OutlierResult } from './outlier.js';
import type { TlsMaterial } from './secrets.js';
import { durationMs, type EnvoyCluster, type EnvoyClusterLoadAssignment } from './xds/envoy-schemas.js';
import { networkGatewayField } from './gateway/endpoint-metadata.js';
import { sidecarField } from './endpoint-tls-mode.js';
import { createClusterH2Pool } from './upstream/h2-cluster.js';
import type { H2ConnectionPool } from './upstream/h2-pool.js';

/** Endpoint is one upstream host of a cluster, from its ClusterLoadAssignment. */
export interface Endpoint extends SelectableHost {
  address: string;
  port: number;
  priority: number;
  weight: number;
  /** healthy is the EDS health status (HEALTHY or UNKNOWN); outlier ejection is tracked separately. */
  healthy: boolean;
  locality: { region: string; zone: string; subZone: string };
  /** workload is Istio's endpoint metadata `istio.workload` split: name, namespace, app, version, cluster. */
  workload: { name: string; namespace: string; app: string; version: string; cluster: string } | undefined;
  /** networkGateway, when set, is the network whose east-west gateway this endpoint is (docs/adr/0006). */
  networkGateway?: string;
  /** sidecar is set when the endpoint runs a sidecar (Istio's `tlsMode: istio`): dial its 15006 even in plaintext. */
  sidecar?: true;
}

/** UpstreamCluster is a cluster ready for requests: endpoints, load balancing, circuit breakers and a pool. */
export interface UpstreamCluster {
  name: string;
  config: EnvoyCluster;
  endpoints: Endpoint[];
  /** mtls is the upstream TLS settings, or undefined for plaintext. */
  mtls: { sni: string; allowedSans: string[] } | undefined;
  connectTimeoutMs: number;
  agent: http.Agent;
  /** selection is the host-selection policy: balancer (`lb_policy`), panic threshold, locality weighting. */
  selection: SelectionPolicy<Endpoint>;
  breaker: CircuitBreaker;
  /** outlier is the cluster's outlier detector, when `outlier_detection` is set. */
  outlier: OutlierDetector | undefined;
  /** active counts outstanding requests per host (`address:port`), for LEAST_REQUEST. */
  active: Map<string, number>;
  /** pool is the connection pool settings from `HttpProtocolOptions` (0: unlimited). */
  pool: { maxRequestsPerConnection: number; idleTimeoutMs: number; maxConnectionDurationMs: number };
  /** h2 is the multiplexed HTTP/2 pool when the cluster speaks HTTP/2 or negotiates it by ALPN (upstream/h2-cluster.ts). */
  h2?: H2ConnectionPool;
}

/** ClusterManagerOptions configure how upstream connections are made. */
export interface ClusterManagerOptions {
  /** mtlsPort, when set, is where a peer proxy accepts mutual TLS (explicit mode: 15006 on the peer's address). */
  mtlsPort?: number;
  /** maxSocketsPerCluster caps a pool's sockets below `max_connections` (default: `max_connections`, at most 4096). */
  maxSocketsPerCluster?: number;
  /** onHandshake observes each upstream mTLS handshake's outcome (direction `outbound`). */
  onHandshake?: HandshakeObserver;
  /** onEject and onUneject observe outlier ejections (`cluster`, `address:port`). */
  onEject?: (cluster: string, host: string, type: EjectionType, durationMs: number) => void;
  onUneject?: (cluster: string, host: string) => void;
  /** random is the randomness of load balancing (tests inject it). */
  random?: () => number;
}

/** DEFAULT_IDLE_TIMEOUT_MS is how long an idle upstream connection is kept when the cluster sets no idle_timeout. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

function parseWorkload(metadata: unknown): Endpoint['workload'] {
  const fields = (metadata as { filter_metadata?: { istio?: { fields?: Record<string, { stringValue?: string }> } } })
    ?.filter_metadata?.istio?.fields;
  const w = fields?.workload?.stringValue;
  if (!w) return undefined;
  const [name = '', namespace = '', app = '', version = '', cluster = ''] = w.split(';');
  return { name, namespace, app, version, cluster };
}

/** endpointsFromAssignment flattens a ClusterLoadAssignment into {@link Endpoint}s. */
export function endpointsFromAssignment(cla: EnvoyClusterLoadAssignment | undefined): Endpoint[] {
  const out: Endpoint[] = [];
  for (const le of cla?.endpoints ?? []) {
    const locality = {
      region: le.locality?.region ?? '',
      zone: le.locality?.zone ?? '',
      subZone: le.locality?.sub_zone ?? '',
    };
    for (const e of le.lb_endpoints ?? []) {
      const hs = e.health_status ?? 'UNKNOWN';
      out.push({
        address: e.endpoint.address.socket_address.address,
        port: e.endpoint.address.socket_address.port_value,
        priority: le.priority ?? 0,
        weight: Math.max(1, e.load_balancing_weight?.value ?? 1),
        healthy: hs === 'HEALTHY' || hs === 'UNKNOWN',
        locality,
        localityKey: `${locality.region}/${locality.zone}/${locality.subZone}`,
        localityWeight: le.load_balancing_weight?.value ?? 1,
        workload: parseWorkload(e.metadata),
        ...networkGatewayField(e.metadata),
        ...sidecarField(e.metadata),
      });
    }
  }
  return out;
}

/**
 * createLoadBalancer builds the balancer of a cluster's `lb_policy`: ROUND_ROBIN (default), RANDOM,
 * LEAST_REQUEST (`least_request_lb_config.choice_count`, default 2), RING_HASH (`ring_hash_lb_config`) or MAGLEV
 * (`maglev_lb_config.table_size`).
 */
export function createLoadBalancer(c: EnvoyCluster): LoadBalancer<Endpoint> {
  switch (c.lb_policy ?? 'ROUND_ROBIN') {
    case 'RANDOM':
      return new RandomLoadBalancer();
    case 'LEAST_REQUEST':
      return new LeastRequestLoadBalancer(c.least_request_lb_config?.choice_count?.value ?? 2);
    case 'RING_HASH': {
      const r = c.ring_hash_lb_config;
      return new RingHashLoadBalancer(
        Number(r?.minimum_ring_size?.value ?? DEFAULT_MIN_RING_SIZE),
        Number(r?.maximum_ring_size?.value ?? DEFAULT_MAX_RING_SIZE),
      );
    }
    case 'MAGLEV':
      return new MaglevLoadBalancer(Number(c.maglev_lb_config?.table_size?.value ?? DEFAULT_MAGLEV_TABLE_SIZE));
    case 'ROUND_ROBIN':
    case 'CLUSTER_PROVIDED': // ORIGINAL_DST: the host comes from the connection (capture/original-dst-cluster.ts)
      return new RoundRobinLoadBalancer();
  }
}

/** PickOptions are the per-request inputs of {@link ClusterManager.pickEndpoint}. */
export interface PickOptions {
  /** hash is the request hash of the route's `hash_policy` (consistent hashing). */
  hash?: number | undefined;
  /** exclude lists hosts already tried, avoided when the retry policy has the `previous_hosts` predicate. */
  exclude?: ReadonlySet<string> | undefined;
  /** hostSelectionAttempts is the retry policy's `host_selection_retry_max_attempts`. */
  hostSelectionAttempts?: number | undefined;
}

/**
 * ClusterManager holds the accepted Clusters and their endpoints and chooses hosts as Envoy does: priorities
 * with the overprovisioning factor and panic threshold, locality weights, then the cluster's balancer; hosts
 * ejected by outlier detection count as unhealthy. Each cluster has a circuit breaker (`circuit_breakers`) and
 * one keep-alive connection pool sized by `max_connections`, closing connections after
 * `max_requests_per_connection` requests or `max_connection_duration`. mTLS pools present the proxy's SPIFFE
 * certificate, trust only the SDS trust bundle and accept only the peer URI SANs the cluster lists.
 */
export class ClusterManager {
  private clusters = new Map<string, UpstreamCluster>();
  private assignments = new Map<string, EnvoyClusterLoadAssignment>();
  private tls: TlsMaterial | undefined;
  private readonly random: () => number;
  private readonly socketRequests = new WeakMap<object, { count: number; since: number }>();

  /** constructor stores options; no I/O. */
  constructor(private readonly opts: ClusterManagerOptions = {}) {
    this.random = opts.random ?? Math.random;
  }

  /** get returns a cluster by name. */
  get(name: string): UpstreamCluster | undefined {
    return this.clusters.get(name);
  }

  /** all returns every cluster. */
  all(): UpstreamCluster[] {
    return [...this.clusters.values()];
  }

  /** edsNames returns the EDS service names the current clusters need. */
  edsNames(): string[] {
    return [...this.clusters.values()]
      .filter((c) => c.config.type === 'EDS')
      .map((c) => c.config.eds_cluster_config?.service_name ?? c.name);
  }

  /**
   * setClusters replaces the cluster set (CDS is SotW). Unchanged clusters keep their pools, breakers and outlier
   * state; changed and removed ones have their pools closed (in-flight requests keep their own). Throws, changing
   * nothing, if a cluster references an SDS secret other than `default` and `ROOTCA`.
   */
  setClusters(configs: ReadonlyMap<string, EnvoyCluster>): void {
    for (const [name, c] of configs) {
      const ctx = c.transport_socket?.typed_config.common_tls_context;
      const certName = ctx?.tls_certificate_sds_secret_configs?.[0]?.name;
      if (certName !== undefined && certName !== 'default')
        throw new Error(
          `${name}: transport_socket tls_certificate_sds_secret_configs[0].name: unknown secret '${certName}'`,
        );
      const vName =
        ctx?.combined_validation_context?.validation_context_sds_secret_config.name ??
        ctx?.validation_context_sds_secret_config?.name;
      if (ctx && vName !== 'ROOTCA')
        throw new Error(`${name}: transport_socket: validation context must be SDS secret 'ROOTCA'`);
    }
    const next = new Map<string, UpstreamCluster>();
    for (const [name, config] of configs) {
      const prev = this.clusters.get(name);
      if (prev && JSON.stringify(prev.config) === JSON.stringify(config)) {
        next.set(name, prev);
        continue;
      }
      const cluster = this.build(name, config);
      if (prev) this.retire(prev);
      next.set(name, cluster);
    }
    for (const [name, c] of this.clusters) if (!next.has(name)) this.retire(c);
    this.clusters = next;
    this.refreshEndpoints();
  }

  /** setAssignments replaces the ClusterLoadAssignments (by EDS service name) and refreshes every cluster's hosts. */
  setAssignments(assignments: ReadonlyMap<string, EnvoyClusterLoadAssignment>): void {
    this.assignments = new Map(assignments);
    this.refreshEndpoints();
  }

  /**
   * setTls installs certificate material. When it differs from the installed material (certificate chain, key,
   * trust bundle, trust domain or SPIFFE ID), every mTLS pool is rebuilt (open sockets finish on the old pool);
   * the same material again (a CDS or SDS push that did not rotate anything) keeps the pools and their keep-alive
   * and HTTP/2 connections. A cluster's own TLS settings (SNI, SANs, ALPN) are part of its config: a change there
   * rebuilds that cluster in {@link ClusterManager.setClusters}, as Envoy replaces a cluster whose config changed.
   */
  setTls(tls: TlsMaterial): void {
    const prev = this.tls;
    this.tls = tls;
    if (prev && sameTlsMaterial(prev, tls)) return;
    for (const c of this.clusters.values()) {
      if (!c.mtls) continue;
      const old = c.agent;
      c.agent = this.makeAgent(c);
      setTimeout(() => old.destroy(), 30_000).unref();
      c.h2?.retire(); // open sessions finish their streams; new ones present the new certificate
    }
  }

  /** isHealthy reports whether a host may take traffic: healthy in EDS and not ejected by outlier detection. */
  isHealthy(cluster: UpstreamCluster, ep: Endpoint): boolean {
    return ep.healthy && !(cluster.outlier?.isEjected(hostKey(ep)) ?? false);
  }

  /**
   * healthFlags renders a host's health as Envoy's admin `/clusters` does: `healthy`, or flags such as
   * `/failed_eds_health` and `/failed_outlier_check`.
   */
  healthFlags(cluster: UpstreamCluster, ep: Endpoint): string {
    let flags = '';
    if (!ep.healthy) flags += '/failed_eds_health';
    if (cluster.outlier?.isEjected(hostKey(ep))) flags += '/failed_outlier_check';
    return flags || 'healthy';
  }

  /**
   * pickEndpoint chooses a host (see {@link selectHost}); returns undefined when no host can take the request
   * (Envoy's `no_healthy_upstream`, response flag UH). A set of endpoints (the older form) means hosts to avoid.
   */
  pickEndpoint(cluster: UpstreamCluster, options: PickOptions | ReadonlySet<Endpoint> = {}): Endpoint | undefined {
    const opts: PickOptions =
      options instanceof Set
        ? { exclude: new Set([...(options as ReadonlySet<Endpoint>)].map(hostKey)) }
        : (options as PickOptions);
    const exclude = opts.exclude;
    return selectHost(
      cluster.endpoints,
      (e) => this.isHealthy(cluster, e),
      { ...cluster.selection, hostSelectionAttempts: opts.hostSelectionAttempts ?? 1 },
      {
        hash: opts.hash,
        excluded: exclude && exclude.size > 0 ? (e) => exclude.has(hostKey(e)) : undefined,
        active: (e) => cluster.active.get(hostKey(e)) ?? 0,
        random: this.random,
      },
    );
  }

  /** hostStarted counts an outstanding request on a host; call the returned function once when it ends. */
  hostStarted(cluster: UpstreamCluster, ep: Endpoint): () => void {
    const k = hostKey(ep);
    cluster.active.set(k, (cluster.active.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (cluster.active.get(k) ?? 1) - 1;
      if (n <= 0) cluster.active.delete(k);
      else cluster.active.set(k, n);
    };
  }

  /** reportOutlier passes an attempt's result to the cluster's outlier detector, if it has one. */
  reportOutlier(cluster: UpstreamCluster, ep: Endpoint, result: OutlierResult): void {
    cluster.outlier?.report(hostKey(ep), result);
  }

  /** countRequestOnSocket counts a request on a pooled socket, for `max_requests_per_connection`. */
  countRequestOnSocket(sock: object): void {
    const s = this.socketRequests.get(sock);
    if (s) s.count++;
    else this.socketRequests.set(sock, { count: 1, since: Date.now() });
  }

  /**
   * upstreamTarget returns where to dial an endpoint: in explicit mode, a peer proxy's inbound port (15006) for an
   * mTLS cluster and for a sidecar endpoint reached in plaintext (docs/adr/0010), except another network's
   * east-west gateway (`networkGateway`), dialled at its own port with the same SNI (docs/adr/0006).
   */
  upstreamTarget(cluster: UpstreamCluster, ep: Endpoint): { host: string; port: number } {
    if ((cluster.mtls || ep.sidecar) && this.opts.mtlsPort !== undefined && ep.networkGateway === undefined)
      return { host: ep.address, port: this.opts.mtlsPort };
    return { host: ep.address, port: ep.port };
  }

  /** close destroys every pool and stops outlier detection. */
  close(): void {
    for (const c of this.clusters.values()) this.retire(c);
  }

  private build(name: string, config: EnvoyCluster): UpstreamCluster {
    const tlsCtx = config.transport_socket?.typed_config;
    const common =
      config.typed_extension_protocol_options?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
        ?.common_http_protocol_options;
    const lbPolicy = config.lb_policy ?? 'ROUND_ROBIN';
    const outlier = config.outlier_detection
      ? new OutlierDetector(outlierConfig(config.outlier_detection), {
          random: this.random,
          onEject: (host, type, ms) => this.opts.onEject?.(name, host, type, ms),
          onUneject: (host) => this.opts.onUneject?.(name, host),
        })
      : undefined;
    outlier?.start();
    const cluster: UpstreamCluster = {
      name,
      config,
      endpoints: [],
      mtls: tlsCtx
        ? {
            sni: tlsCtx.sni ?? '',
            allowedSans: (
              tlsCtx.common_tls_context.combined_validation_context?.default_validation_context
                .match_typed_subject_alt_names ?? []
            )
              .filter((m) => m.san_type === 'URI' && m.matcher.exact !== undefined)
              .map((m) => m.matcher.exact ?? ''),
          }
        : undefined,
      connectTimeoutMs: config.connect_timeout ? durationMs(config.connect_timeout) : 5_000,
      agent: new http.Agent(),
      selection: {
        lb: createLoadBalancer(config),
        panicThreshold: config.common_lb_config?.healthy_panic_threshold?.value ?? DEFAULT_PANIC_THRESHOLD,
        localityWeighted: config.common_lb_config?.locality_weighted_lb_config !== undefined,
        hashBased: lbPolicy === 'RING_HASH' || lbPolicy === 'MAGLEV',
        hostSelectionAttempts: 1,
      },
      breaker: new CircuitBreaker(circuitBreakerLimits(config)),
      outlier,
      active: new Map(),
      pool: {
        maxRequestsPerConnection: common?.max_requests_per_connection?.value ?? 0,
        idleTimeoutMs: common?.idle_timeout ? durationMs(common.idle_timeout) : DEFAULT_IDLE_TIMEOUT_MS,
        maxConnectionDurationMs: common?.max_connection_duration ? durationMs(common.max_connection_duration) : 0,
      },
    };
    cluster.agent = this.makeAgent(cluster);
    const h2 = createClusterH2Pool(cluster, () => this.tls, this.opts.onHandshake);
    if (h2) cluster.h2 = h2;
    return cluster;
  }

  private retire(c: UpstreamCluster): void {
    c.outlier?.stop();
    c.agent.destroy();
    c.h2?.close();
  }

  private refreshEndpoints(): void {
    for (const c of this.clusters.values()) {
      const cla =
        c.config.type === 'STATIC'
          ? c.config.load_assignment
          : this.assignments.get(c.config.eds_cluster_config?.service_name ?? c.name);
      c.endpoints = endpointsFromAssignment(cla);
      c.outlier?.setHosts(c.endpoints.map(hostKey));
    }
  }

  private makeAgent(c: UpstreamCluster): http.Agent {
    const limit = c.breaker.limits.maxConnections;
    const sockets = Math.max(1, Math.min(limit, this.opts.maxSocketsPerCluster ?? 4096));
    const common = {
      keepAlive: true,
      keepAliveMsecs: 15_000,
      maxSockets: sockets,
      maxTotalSockets: sockets,
      maxFreeSockets: Math.min(sockets, 64),
      timeout: c.pool.idleTimeoutMs > 0 ? c.pool.idleTimeoutMs : DEFAULT_IDLE_TIMEOUT_MS,
    };
    let agent: http.Agent;
    if (!c.mtls) agent = new http.Agent(common);
    else {
      const tls = this.tls;
      const allowed = c.mtls.allowedSans;
      agent = new ObservedAgent(this.opts.onHandshake, {
        ...common,
        ...(tls ? { cert: tls.certChainPem, key: tls.keyPem, ca: tls.trustBundlePem } : {}),
        servername: c.mtls.sni,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        checkServerIdentity: (_host: string, cert: PeerCertificate) => checkPeerSan(cert, allowed, tls?.trustDomain),
      });
    }
    const { maxRequestsPerConnection, maxConnectionDurationMs } = c.pool;
    if (maxRequestsPerConnection > 0 || maxConnectionDurationMs > 0) {
      const keep = agent.keepSocketAlive.bind(agent);
      // Node's documented hook: returning false closes the socket instead of pooling it.
      agent.keepSocketAlive = (socket) => {
        const s = this.socketRequests.get(socket);
        if (s && maxRequestsPerConnection > 0 && s.count >= maxRequestsPerConnection) return false;
        if (s && maxConnectionDurationMs > 0 && Date.now() - s.since >= maxConnectionDurationMs) return false;
        return keep(socket);
      };
    }
    return agent;
  }
}

/**
 * ObservedAgent is an https.Agent that reports each new connection's handshake outcome: `ok` on secureConnect,
 * `peer_refused` when `checkServerIdentity` refused the peer (a PkiError), `error` when TLS failed after the TCP
 * connection was made. A TCP connect failure is not a handshake and is not reported.
 */
class ObservedAgent extends https.Agent {
  constructor(
    private readonly observe: HandshakeObserver | undefined,
    options: https.AgentOptions,
  ) {
    super(options);
  }

  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const sock = super.createConnection(options, callback);
    const observe = this.observe;
    if (observe && sock instanceof TLSSocket) {
      let state: 'connecting' | 'handshaking' | 'secured' = 'connecting';
      sock.once('connect', () => (state = 'handshaking'));
      sock.once('secureConnect', () => {
        state = 'secured';
        observe('outbound', 'ok');
      });
      sock.once('error', (err) => {
        if (isPkiError(err)) observe('outbound', 'peer_refused');
        else if (state === 'handshaking') observe('outbound', 'error');
      });
    }
    return sock;
  }
}

/**
 * checkPeerSan is the `checkServerIdentity` of mTLS pools, called by Node after TLS verified the chain against the
 * trust bundle. The peer's leaf must pass pki's `verifySpiffePeer` as a server X509-SVID (exactly one
 * `spiffe://<td>/ns/<ns>/sa/<sa>` URI SAN, not a CA, serverAuth when an extendedKeyUsage is present, within its
 * validity) in the trust domains of `allowed` (or `trustDomain` when the cluster lists no SANs), and its SPIFFE ID
 * must be one of `allowed` when the cluster lists any (Envoy's `match_typed_subject_alt_names`). Returns a PkiError
 * (`PEER_*`) to refuse, undefined to accept.
 */
export function checkPeerSan(
  cert: PeerCertificate,
  allowed: readonly string[],
  trustDomain: string | undefined,
): Error | undefined {
  const domains =
    allowed.length > 0
      ? [...new Set(allowed.map((s) => /^spiffe:\/\/([^/]+)\//.exec(s)?.[1] ?? ''))]
      : trustDomain !== undefined
        ? [trustDomain]
        : [];
  try {
    const id = spiffeUri(verifySpiffePeer(cert, { trustDomains: domains, peerRole: 'server' }));
    if (allowed.length > 0 && !allowed.includes(id))
      return new PkiError('PEER_UNEXPECTED_IDENTITY', `peer SPIFFE ID ${id} is not in the cluster's SANs`);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new PkiError('PEER_MALFORMED', 'peer certificate refused');
  }
}

/** sameTlsMaterial says whether two {@link TlsMaterial}s would make the same upstream TLS connections. */
function sameTlsMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return (
    a.certChainPem === b.certChainPem &&
    a.keyPem === b.keyPem &&
    a.trustBundlePem === b.trustBundlePem &&
    a.trustDomain === b.trustDomain &&
    a.spiffeId === b.spiffeId
  );
}
