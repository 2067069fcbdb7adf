import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { isPkiError, PkiError, spiffeUri, verifySpiffePeer } from '@fedmesh/pki';
import { durationMs, type EnvoyCluster, type EnvoyClusterLoadAssignment } from './xds/envoy-schemas.js';
import type { HandshakeObserver } from './listener-manager.js';
import type { TlsMaterial } from './secrets.js';

/** Endpoint is one upstream host of a cluster, from its ClusterLoadAssignment. */
export interface Endpoint {
  address: string;
  port: number;
  priority: number;
  weight: number;
  healthy: boolean;
  locality: { region: string; zone: string; subZone: string };
  /** workload is Istio's endpoint metadata `istio.workload` split: name, namespace, app, version, cluster. */
  workload: { name: string; namespace: string; app: string; version: string; cluster: string } | undefined;
}

/** UpstreamCluster is a cluster ready for requests: endpoints, load balancer state and a connection pool. */
export interface UpstreamCluster {
  name: string;
  config: EnvoyCluster;
  endpoints: Endpoint[];
  /** mtls is the upstream TLS settings, or undefined for plaintext. */
  mtls: { sni: string; allowedSans: string[] } | undefined;
  connectTimeoutMs: number;
  agent: http.Agent;
  rr: number;
}

/** ClusterManagerOptions configure how upstream connections are made. */
export interface ClusterManagerOptions {
  /** mtlsPort, when set, is where a peer proxy accepts mutual TLS (explicit mode: 15006 on the peer's address). */
  mtlsPort?: number;
  /** maxSocketsPerCluster bounds the connection pool per cluster (default 256). */
  maxSocketsPerCluster?: number;
  /** onHandshake observes each upstream mTLS handshake's outcome (direction `outbound`). */
  onHandshake?: HandshakeObserver;
}

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
    for (const e of le.lb_endpoints ?? []) {
      const hs = e.health_status ?? 'UNKNOWN';
      out.push({
        address: e.endpoint.address.socket_address.address,
        port: e.endpoint.address.socket_address.port_value,
        priority: le.priority ?? 0,
        weight: e.load_balancing_weight?.value ?? 1,
        healthy: hs === 'HEALTHY' || hs === 'UNKNOWN',
        locality: {
          region: le.locality?.region ?? '',
          zone: le.locality?.zone ?? '',
          subZone: le.locality?.sub_zone ?? '',
        },
        workload: parseWorkload(e.metadata),
      });
    }
  }
  return out;
}

/**
 * ClusterManager holds the accepted Clusters and their endpoints, picks hosts (ROUND_ROBIN, RANDOM, or
 * LEAST_REQUEST approximated by round robin for now, over the lowest priority that has a healthy host), and
 * owns one keep-alive connection pool per cluster. mTLS pools present the proxy's SPIFFE certificate, trust
 * only the SDS trust bundle and accept only the peer URI SANs the cluster lists.
 */
export class ClusterManager {
  private clusters = new Map<string, UpstreamCluster>();
  private assignments = new Map<string, EnvoyClusterLoadAssignment>();
  private tls: TlsMaterial | undefined;

  /** constructor stores options; no I/O. */
  constructor(private readonly opts: ClusterManagerOptions = {}) {}

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
   * setClusters replaces the cluster set (CDS is SotW). Unchanged clusters keep their pools; removed ones have
   * their pools closed. Throws, changing nothing, if a cluster references an SDS secret other than `default`
   * and `ROOTCA`.
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
      const tlsCtx = config.transport_socket?.typed_config;
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
        connectTimeoutMs: config.connect_timeout ? durationMs(config.connect_timeout) : 10_000,
        agent: new http.Agent(),
        rr: 0,
      };
      cluster.agent = this.makeAgent(cluster);
      prev?.agent.destroy();
      next.set(name, cluster);
    }
    for (const [name, c] of this.clusters) if (!next.has(name)) c.agent.destroy();
    this.clusters = next;
    this.refreshEndpoints();
  }

  /** setAssignments replaces the ClusterLoadAssignments (by EDS service name) and refreshes every cluster's hosts. */
  setAssignments(assignments: ReadonlyMap<string, EnvoyClusterLoadAssignment>): void {
    this.assignments = new Map(assignments);
    this.refreshEndpoints();
  }

  /** setTls installs new certificate material; every mTLS pool is rebuilt (open sockets finish on the old pool). */
  setTls(tls: TlsMaterial): void {
    this.tls = tls;
    for (const c of this.clusters.values()) {
      if (!c.mtls) continue;
      const old = c.agent;
      c.agent = this.makeAgent(c);
      setTimeout(() => old.destroy(), 30_000).unref();
    }
  }

  /**
   * pickEndpoint chooses a host: among healthy hosts of the lowest priority that has one, by the cluster's
   * `lb_policy`; `exclude` skips hosts already tried (retries). Returns undefined when no host is healthy.
   */
  pickEndpoint(cluster: UpstreamCluster, exclude: ReadonlySet<Endpoint> = new Set()): Endpoint | undefined {
    const healthy = cluster.endpoints.filter((e) => e.healthy && !exclude.has(e));
    const pool = healthy.length > 0 ? healthy : cluster.endpoints.filter((e) => e.healthy);
    if (pool.length === 0) return undefined;
    const best = Math.min(...pool.map((e) => e.priority));
    const tier = pool.filter((e) => e.priority === best);
    if (cluster.config.lb_policy === 'RANDOM') return tier[Math.floor(Math.random() * tier.length)];
    cluster.rr = (cluster.rr + 1) % Number.MAX_SAFE_INTEGER;
    return tier[cluster.rr % tier.length];
  }

  /** upstreamTarget returns where to dial an endpoint: a peer proxy's mTLS port in explicit mode. */
  upstreamTarget(cluster: UpstreamCluster, ep: Endpoint): { host: string; port: number } {
    if (cluster.mtls && this.opts.mtlsPort !== undefined) return { host: ep.address, port: this.opts.mtlsPort };
    return { host: ep.address, port: ep.port };
  }

  /** close destroys every pool. */
  close(): void {
    for (const c of this.clusters.values()) c.agent.destroy();
  }

  private refreshEndpoints(): void {
    for (const c of this.clusters.values()) {
      const cla =
        c.config.type === 'STATIC'
          ? c.config.load_assignment
          : this.assignments.get(c.config.eds_cluster_config?.service_name ?? c.name);
      c.endpoints = endpointsFromAssignment(cla);
    }
  }

  private makeAgent(c: UpstreamCluster): http.Agent {
    const common = {
      keepAlive: true,
      keepAliveMsecs: 15_000,
      maxSockets: this.opts.maxSocketsPerCluster ?? 256,
      maxFreeSockets: 64,
      timeout: 60_000,
    };
    if (!c.mtls) return new http.Agent(common);
    const tls = this.tls;
    const allowed = c.mtls.allowedSans;
    return new ObservedAgent(this.opts.onHandshake, {
      ...common,
      ...(tls ? { cert: tls.certChainPem, key: tls.keyPem, ca: tls.trustBundlePem } : {}),
      servername: c.mtls.sni,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      checkServerIdentity: (_host: string, cert: PeerCertificate) => checkPeerSan(cert, allowed, tls?.trustDomain),
    });
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
