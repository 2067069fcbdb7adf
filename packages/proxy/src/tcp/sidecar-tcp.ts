/**
 * `tcp_proxy` filter chains in a sidecar's listeners (TCP services and TLS passthrough), on top of the gateway's
 * `runTcpProxy`:
 * - outbound, a per-port listener (explicit mode) or `virtualOutbound` (capture mode, chains by original
 *   destination): a plain TCP chain proxies the connection to its cluster; TLS chains (behind a `tls_inspector`,
 *   without a `transport_socket`) are chosen by the ClientHello's SNI and passed through untouched, so the app's
 *   TLS session runs end to end to the destination; an ORIGINAL_DST cluster (PassthroughCluster) dials the
 *   connection's original destination;
 * - upstream, a cluster with mTLS (a peer sidecar) gets a TLS connection with the workload certificate, the
 *   cluster's SNI and ALPN, and the peer's SPIFFE ID checked against the cluster's SANs, like HTTP pools;
 * - inbound, a TLS chain that terminates the peer's mTLS (the listener already checked its SPIFFE ID) proxies the
 *   decrypted stream to the app;
 * - any chain's `envoy.filters.network.rbac` filters (AuthorizationPolicy on TCP, `filters/network-rbac.ts`) judge
 *   the connection before an upstream is dialled: a denied one is closed at once.
 * Each connection is counted in Istio's `istio_tcp_*` metrics and logged once when it ends.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { parseMtlsSni } from '@fedmesh/api/xds';
import { isPkiError } from '@fedmesh/pki';
import { destinationOf } from '../capture/listener-destination.js';
import { checkPeerSan, type ClusterManager, type Endpoint, type UpstreamCluster } from '../cluster-manager.js';
import {
  enforceNetworkRbac,
  networkRbacOf,
  type NetworkRbacDecision,
  type NetworkRbacFilter,
  type RbacConnection,
} from '../filters/network-rbac.js';
import { plainIp } from '../filters/rbac.js';
import { peekClientHello } from '../gateway/peek.js';
import type { WorkloadInfo } from '../http-handler.js';
import type { HandshakeObserver } from '../listener-manager.js';
import type { TlsMaterial } from '../secrets.js';
import { durationMs, tcpProxyOf, type EnvoyFilterChain, type EnvoyTcpProxy } from '../xds/envoy-schemas.js';
import { blankTcpLabels, TcpMetrics, type TcpLabels } from './tcp-metrics.js';
import { runTcpProxy } from './tcp-proxy.js';

/** DEFAULT_TCP_IDLE_TIMEOUT_MS is Envoy's tcp_proxy `idle_timeout` default (1 h). */
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;

/** DEFAULT_HELLO_TIMEOUT_MS bounds the wait for a whole ClientHello on a passthrough listener. */
export const DEFAULT_HELLO_TIMEOUT_MS = 5_000;

const metricsByRegistry = new WeakMap<Registry, TcpMetrics>();

/** tcpMetricsFor returns Istio's TCP metrics on a registry, registered once per registry. */
export function tcpMetricsFor(registry: Registry): TcpMetrics {
  let m = metricsByRegistry.get(registry);
  if (!m) metricsByRegistry.set(registry, (m = new TcpMetrics(registry)));
  return m;
}

/** SidecarTcpDeps are what a sidecar's tcp_proxy chains need from the proxy. */
export interface SidecarTcpDeps {
  clusters: ClusterManager;
  registry: Registry;
  /** tls returns the workload certificate and trust bundle (for mTLS to peer sidecars). */
  tls: () => TlsMaterial | undefined;
  onHandshake?: HandshakeObserver | undefined;
  self: WorkloadInfo;
  accessLog: Logger;
  direction: 'inbound' | 'outbound';
  /** networkRbac are the chain's compiled `envoy.filters.network.rbac` filters, in chain order ({@link networkRbacOf}). */
  networkRbac?: readonly NetworkRbacFilter[] | undefined;
}

/** ConnectionPeer is what is known of the downstream of an inbound connection: its verified SPIFFE ID and SNI. */
export interface ConnectionPeer {
  principal?: string | undefined;
  sni?: string | undefined;
}

function labelsFor(deps: SidecarTcpDeps, cluster: string, peer: ConnectionPeer): TcpLabels {
  const l = blankTcpLabels();
  const self = deps.self;
  if (deps.direction === 'outbound') {
    const host = cluster.split('|')[3] ?? cluster;
    Object.assign(l, {
      reporter: 'source',
      source_workload: self.name,
      source_workload_namespace: self.namespace,
      source_principal: self.principal,
      source_app: self.app,
      source_version: self.version,
      source_cluster: self.cluster,
      destination_service: host,
      destination_service_name: host.split('.')[0] ?? 'unknown',
      destination_service_namespace: host.split('.')[1] ?? 'unknown',
    });
    return l;
  }
  const svc = peer.sni ? parseMtlsSni(peer.sni)?.host : undefined;
  Object.assign(l, {
    reporter: 'destination',
    destination_workload: self.name,
    destination_workload_namespace: self.namespace,
    destination_principal: self.principal,
    destination_app: self.app,
    destination_version: self.version,
    destination_cluster: self.cluster,
    source_principal: peer.principal ?? 'unknown',
    connection_security_policy: peer.principal ? 'mutual_tls' : 'none',
    ...(svc
      ? {
          destination_service: svc,
          destination_service_name: svc.split('.')[0] ?? 'unknown',
          destination_service_namespace: svc.split('.')[1] ?? 'unknown',
        }
      : {}),
  });
  return l;
}

/**
 * connectUpstream opens a tcp_proxy's upstream connection: plain TCP, or for an mTLS cluster TLS with the workload
 * certificate, the cluster's SNI and ALPN and `checkPeerSan`. Resolves undefined on failure, on the cluster's
 * connect timeout (TCP and handshake together), or when the downstream closes first.
 */
export function connectUpstream(
  deps: Pick<SidecarTcpDeps, 'tls' | 'onHandshake'>,
  cluster: UpstreamCluster,
  target: { host: string; port: number },
  down: net.Socket,
): Promise<net.Socket | undefined> {
  const mtls = cluster.mtls;
  const material = mtls ? deps.tls() : undefined;
  if (mtls && !material) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    let tcpUp = false;
    const alpn = cluster.config.transport_socket?.typed_config.common_tls_context.alpn_protocols;
    const up: net.Socket =
      mtls && material
        ? tls.connect({
            host: target.host,
            port: target.port,
            ...(mtls.sni ? { servername: mtls.sni } : {}),
            cert: material.certChainPem,
            key: material.keyPem,
            ca: material.trustBundlePem,
            minVersion: 'TLSv1.2',
            rejectUnauthorized: true,
            // Node passes allowHalfOpen on to the TLSSocket; its typings do not list it.
            ...({ allowHalfOpen: true } as tls.ConnectionOptions),
            ...(alpn && alpn.length > 0 ? { ALPNProtocols: alpn } : {}),
            checkServerIdentity: (_h, cert) => checkPeerSan(cert, mtls.allowedSans, material.trustDomain),
          })
        : net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      down.off('close', onDownClose);
      up.off('error', onError);
      if (ok) resolve(up);
      else {
        up.destroy();
        resolve(undefined);
      }
    };
    const onError = (err: Error): void => {
      if (mtls && isPkiError(err)) deps.onHandshake?.('outbound', 'peer_refused');
      else if (mtls && tcpUp) deps.onHandshake?.('outbound', 'error');
      finish(false);
    };
    const onDownClose = (): void => finish(false);
    const timer = setTimeout(() => {
      if (mtls && tcpUp) deps.onHandshake?.('outbound', 'error');
      finish(false);
    }, cluster.connectTimeoutMs);
    up.once('connect', () => {
      tcpUp = true;
      if (!mtls) finish(true);
    });
    if (mtls)
      up.once('secureConnect', () => {
        deps.onHandshake?.('outbound', 'ok');
        finish(true);
      });
    up.once('error', onError);
    down.once('close', onDownClose);
  });
}

/**
 * rbacConnectionOf is what network RBAC reads of an accepted connection. The destination is the original one: the
 * restored destination in capture mode, else (explicit mode, where every inbound connection arrives on 15006) the
 * port of the `inbound|<port>||` cluster the chain forwards to, as the HTTP filter does (docs/adr/0010), else the
 * listener's own address.
 */
export function rbacConnectionOf(sock: net.Socket, cluster: string, peer: ConnectionPeer): RbacConnection {
  const restored = destinationOf(sock);
  const inbound = /^inbound\|(\d+)\|/.exec(cluster);
  const remote = plainIp(sock.remoteAddress ?? '');
  return {
    peerPrincipal: peer.principal,
    directRemoteIp: remote,
    remoteIp: remote,
    destinationIp: plainIp(restored?.address ?? sock.localAddress ?? ''),
    destinationPort: restored?.port ?? (inbound ? Number(inbound[1]) : (sock.localPort ?? 0)),
    requestedServerName: peer.sni,
  };
}

function rbacLogFields(d: NetworkRbacDecision | undefined): Record<string, unknown> {
  if (!d) return {};
  return {
    ...(d.terminationDetails ? { connection_termination_details: d.terminationDetails } : {}),
    ...(d.accessLogHint ? { access_log_hint: true } : {}),
    ...(d.shadow.length > 0 ? { rbac_shadow: d.shadow } : {}),
  };
}

/**
 * serveTcpChain runs one tcp_proxy chain for an accepted connection (after the listener's TLS termination and
 * peer check, for an inbound mTLS chain): `initial` holds bytes already read (a peeked ClientHello). The chain's
 * network RBAC filters (`deps.networkRbac`) run first: a denied connection is closed before any upstream is
 * dialled, counted (`envoy_network_rbac_denied`, `istio_tcp_connections_opened_total` and `…_closed_total`; Envoy
 * has no response flag for an RBAC close, so `response_flags` stays `-`) and access-logged with
 * `connection_termination_details: rbac_access_denied_matched_policy[<policy>]`. Never rejects.
 */
export function serveTcpChain(
  tcp: EnvoyTcpProxy,
  sock: net.Socket,
  initial: Buffer,
  deps: SidecarTcpDeps,
  peer: ConnectionPeer = {},
): void {
  const labels = labelsFor(deps, tcp.cluster, peer);
  const start = Date.now();
  const metrics = tcpMetricsFor(deps.registry);
  const rbac =
    deps.networkRbac && deps.networkRbac.length > 0
      ? enforceNetworkRbac(deps.networkRbac, rbacConnectionOf(sock, tcp.cluster, peer), deps.registry)
      : undefined;
  const logLine = (r: { upstream: string | undefined; flag: string; receivedBytes: number; sentBytes: number }): void =>
    deps.accessLog.info(
      {
        start_time: new Date(start).toISOString(),
        direction: deps.direction,
        protocol: 'tcp',
        upstream_cluster: tcp.cluster,
        upstream_host: r.upstream ?? null,
        response_flags: r.flag,
        bytes_received: r.receivedBytes,
        bytes_sent: r.sentBytes,
        duration: Date.now() - start,
        downstream_remote_address: sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort ?? 0}` : null,
        downstream_peer_principal: peer.principal ?? null,
        requested_server_name: peer.sni ?? null,
        ...rbacLogFields(rbac),
      },
      'access',
    );
  if (rbac && !rbac.allowed) {
    metrics.opened.inc(labels);
    metrics.closed.inc(labels);
    sock.destroy();
    logLine({ upstream: undefined, flag: '-', receivedBytes: initial.length, sentBytes: 0 });
    return;
  }
  const idle = tcp.idle_timeout !== undefined ? durationMs(tcp.idle_timeout) : DEFAULT_TCP_IDLE_TIMEOUT_MS;
  sock.setNoDelay(true);
  void runTcpProxy(
    sock,
    initial,
    { cluster: tcp.cluster, idleTimeoutMs: idle, maxConnectAttempts: tcp.max_connect_attempts?.value ?? 1 },
    {
      clusters: deps.clusters,
      metrics,
      labels,
      connect: (cluster: UpstreamCluster, _ep: Endpoint, target, down) => connectUpstream(deps, cluster, target, down),
    },
  ).then(logLine);
}

/**
 * passthroughTls serves a TLS connection on a listener whose chains pass TLS through: it peeks the ClientHello
 * (bounded in size and time, nothing written to the client), asks `select` for the chain of its SNI (the listener's
 * Envoy filter chain match, `filter-chain-match.ts`, with the connection's destination and `transport_protocol`
 * tls) and proxies the connection, ClientHello first, when that chain is a tcp_proxy. A connection without a whole
 * ClientHello, or whose chain is missing or not a tcp_proxy, is closed (`onRefused` says why).
 */
export function passthroughTls<T extends { chain: EnvoyFilterChain }>(
  select: (serverName: string | undefined) => T | undefined,
  sock: net.Socket,
  deps: SidecarTcpDeps,
  onRefused: (reason: string, sni: string | undefined) => void,
  helloTimeoutMs = DEFAULT_HELLO_TIMEOUT_MS,
): void {
  void peekClientHello(sock, { timeoutMs: helloTimeoutMs }).then((hello) => {
    if (!hello.ok) {
      onRefused(hello.reason, undefined);
      return void sock.destroy();
    }
    const chain = select(hello.serverName);
    const tcp = chain ? tcpProxyOf(chain.chain) : undefined;
    if (!chain || !tcp) {
      onRefused('no_filter_chain', hello.serverName);
      return void sock.destroy();
    }
    // The chosen chain's own network RBAC filters (deps are the listener's, shared by its passthrough chains).
    const chainDeps = { ...deps, networkRbac: networkRbacOf(chain.chain) };
    serveTcpChain(tcp, sock, hello.buffered, chainDeps, { sni: hello.serverName });
  });
}
