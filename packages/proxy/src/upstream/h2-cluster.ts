import { checkPeerSan, DEFAULT_IDLE_TIMEOUT_MS, type UpstreamCluster } from '../cluster-manager.js';
import type { HandshakeObserver } from '../listener-manager.js';
import type { TlsMaterial } from '../secrets.js';
import { DEFAULT_SESSIONS_PER_HOST, H2ConnectionPool, type UpstreamTls } from './h2-pool.js';
import { upstreamProtocol } from './protocol.js';

/**
 * createClusterH2Pool returns the HTTP/2 pool of a cluster whose codec needs one: `explicit_http_config` with
 * `http2_protocol_options` (h2 over mTLS, or h2c with prior knowledge), or `auto_config` over mTLS (ALPN). A
 * plaintext `auto_config` cluster speaks HTTP/1.1, as Envoy's does, and HTTP/1.1 clusters have no pool
 * (undefined). mTLS sessions present the workload certificate current at connect time, trust the SDS bundle and
 * accept only the cluster's peer SANs (`checkPeerSan`), like the HTTP/1.1 pool. Sessions per host are bounded by
 * {@link DEFAULT_SESSIONS_PER_HOST} and the circuit breaker's `max_connections`; the connection pool settings
 * (`max_requests_per_connection`, `max_connection_duration`, `idle_timeout`) apply per session.
 */
export function createClusterH2Pool(
  cluster: UpstreamCluster,
  material: () => TlsMaterial | undefined,
  onHandshake: HandshakeObserver | undefined,
): H2ConnectionPool | undefined {
  const protocol = upstreamProtocol(cluster.config);
  if (protocol.codec === 'http1' || (protocol.codec === 'auto' && !cluster.mtls)) return undefined;
  const mtls = cluster.mtls;
  const tls = mtls
    ? (): UpstreamTls | undefined => {
        const m = material();
        if (!m) return undefined;
        return {
          certChainPem: m.certChainPem,
          keyPem: m.keyPem,
          trustBundlePem: m.trustBundlePem,
          sni: mtls.sni,
          checkServerIdentity: (_host, cert) => checkPeerSan(cert, mtls.allowedSans, m.trustDomain),
        };
      }
    : undefined;
  return new H2ConnectionPool({
    protocol,
    tls,
    connectTimeoutMs: cluster.connectTimeoutMs,
    maxSessionsPerHost: Math.max(1, Math.min(DEFAULT_SESSIONS_PER_HOST, cluster.breaker.limits.maxConnections)),
    maxRequestsPerConnection: cluster.pool.maxRequestsPerConnection,
    maxConnectionDurationMs: cluster.pool.maxConnectionDurationMs,
    idleTimeoutMs: cluster.pool.idleTimeoutMs > 0 ? cluster.pool.idleTimeoutMs : DEFAULT_IDLE_TIMEOUT_MS,
    onHandshake,
  });
}
