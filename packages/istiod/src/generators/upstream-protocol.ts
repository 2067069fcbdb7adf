/**
 * How a cluster speaks to its hosts, by service port protocol and DestinationRule `connectionPool.http`
 * (docs/adr/0015). Between sidecars (mTLS) HTTP ports negotiate HTTP/2 by ALPN, so a client proxy multiplexes its
 * requests to a peer over one or two connections; a peer that answers `http/1.1` is still served.
 */
import type { TrafficPolicy } from '@fedmesh/api';
import { isHttpProtocol, type ServicePort } from '../model/service.js';

/** HTTP_PROTOCOL_OPTIONS is the key of Envoy's `HttpProtocolOptions` in `typed_extension_protocol_options`. */
export const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/**
 * ALPN_IN_MESH_HTTP is what a client proxy offers a peer for an HTTP port, Istio's in-mesh list with HTTP/2
 * (`istio-peer-exchange`, `istio`, `h2`) and `http/1.1` for peers without HTTP/2.
 */
export const ALPN_IN_MESH_HTTP: readonly string[] = ['istio-peer-exchange', 'istio', 'h2', 'http/1.1'];

/** ALPN_IN_MESH_TCP is what a client proxy offers a peer for a TCP or TLS port (Istio's `istio-peer-exchange`, `istio`). */
export const ALPN_IN_MESH_TCP: readonly string[] = ['istio-peer-exchange', 'istio'];

/** ALPN_INBOUND_HTTP is what a sidecar's inbound HTTP chains accept, in order of preference. */
export const ALPN_INBOUND_HTTP: readonly string[] = ['h2', 'http/1.1'];

/** WEBSOCKET_UPGRADE is the HCM `upgrade_configs` entry Istio puts on every sidecar HTTP connection manager. */
export const WEBSOCKET_UPGRADE = { upgrade_type: 'websocket' } as const;

/** UpstreamCodec is the cluster's codec: HTTP/1.1, HTTP/2, or ALPN's choice between them (mTLS only). */
export type UpstreamCodec = 'http1' | 'http2' | 'auto';

type Policy = Omit<TrafficPolicy, 'portLevelSettings'>;

/**
 * upstreamCodec chooses a cluster's codec: HTTP/2 for `http2`/`grpc` ports and for `h2UpgradePolicy: UPGRADE`;
 * HTTP/1.1 for `DO_NOT_UPGRADE`; otherwise ALPN between h2 and http/1.1 over mTLS, and HTTP/1.1 in plaintext
 * (an app's own HTTP/1.1 port, where Istio's default also stays).
 */
export function upstreamCodec(protocol: ServicePort['protocol'], mtls: boolean, policy: Policy): UpstreamCodec {
  const upgrade = policy.connectionPool?.http?.h2UpgradePolicy;
  if (protocol === 'HTTP2' || protocol === 'GRPC') return 'http2';
  if (upgrade === 'DO_NOT_UPGRADE') return 'http1';
  if (upgrade === 'UPGRADE') return 'http2';
  return mtls ? 'auto' : 'http1';
}

function http2Options(policy: Policy): Record<string, unknown> {
  const max = policy.connectionPool?.http?.maxConcurrentStreams;
  return max !== undefined && max > 0 ? { max_concurrent_streams: { value: max } } : {};
}

/**
 * applyUpstreamProtocol sets, on an outbound or inbound cluster (a plain object) for one service port, the
 * `HttpProtocolOptions` codec (`explicit_http_config` or `auto_config`, keeping any `common_http_protocol_options`
 * already there) and, on an mTLS cluster, the ALPN its transport socket offers. `maxConcurrentStreams` becomes
 * `http2_protocol_options.max_concurrent_streams`. TCP and TLS ports get the TCP ALPN and no HTTP options. An
 * HTTP/1.1 cluster without other pool options gets none (Envoy's default codec is HTTP/1.1).
 */
export function applyUpstreamProtocol(
  cluster: Record<string, unknown>,
  protocol: ServicePort['protocol'],
  policy: Policy,
): void {
  const ts = cluster.transport_socket as
    { typed_config?: { common_tls_context?: Record<string, unknown> } } | undefined;
  const tlsCtx = ts?.typed_config?.common_tls_context;
  if (!isHttpProtocol(protocol)) {
    if (tlsCtx) tlsCtx.alpn_protocols = [...ALPN_IN_MESH_TCP];
    return;
  }
  const codec = upstreamCodec(protocol, tlsCtx !== undefined, policy);
  if (tlsCtx) tlsCtx.alpn_protocols = codec === 'http1' ? ['istio', 'http/1.1'] : [...ALPN_IN_MESH_HTTP];
  const all = (cluster.typed_extension_protocol_options ?? {}) as Record<string, Record<string, unknown>>;
  const existing = all[HTTP_PROTOCOL_OPTIONS];
  if (codec === 'http1' && !existing) return;
  const opts: Record<string, unknown> = {
    '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`,
    ...(existing?.common_http_protocol_options
      ? { common_http_protocol_options: existing.common_http_protocol_options }
      : {}),
  };
  if (codec === 'http1') opts.explicit_http_config = { http_protocol_options: {} };
  else if (codec === 'http2') opts.explicit_http_config = { http2_protocol_options: http2Options(policy) };
  else opts.auto_config = { http_protocol_options: {}, http2_protocol_options: http2Options(policy) };
  cluster.typed_extension_protocol_options = { ...all, [HTTP_PROTOCOL_OPTIONS]: opts };
}

/**
 * inboundCodecProtocol is the protocol an inbound cluster speaks to the app on a target port: HTTP/2 (h2c) when
 * any service port reaching it is `http2` or `grpc`, else the first one's.
 */
export function inboundCodecProtocol(protocols: readonly ServicePort['protocol'][]): ServicePort['protocol'] {
  return protocols.find((p) => p === 'HTTP2' || p === 'GRPC') ?? protocols[0] ?? 'TCP';
}
