import type { EnvoyCluster } from '../xds/envoy-schemas.js';

/**
 * UpstreamCodec is how a cluster speaks HTTP to its hosts, from `HttpProtocolOptions` (Envoy's
 * `upstream_protocol_options`): `http1` (`explicit_http_config.http_protocol_options`, or no options), `http2`
 * (`explicit_http_config.http2_protocol_options`: h2 over TLS, or h2c with prior knowledge in plaintext) or
 * `auto` (`auto_config`: over TLS, ALPN chooses h2 or http/1.1; in plaintext, HTTP/1.1).
 */
export type UpstreamCodec = 'http1' | 'http2' | 'auto';

/** UpstreamProtocol is a cluster's codec with its ALPN list and HTTP/2 settings. */
export interface UpstreamProtocol {
  codec: UpstreamCodec;
  /** alpn is what a TLS connection offers: the transport socket's `alpn_protocols`, with h2 (and http/1.1 for auto) ensured. */
  alpn: string[];
  /** maxConcurrentStreams caps the streams the proxy opens on one connection (`max_concurrent_streams`). */
  maxConcurrentStreams: number;
  /** initialStreamWindowSize and initialConnectionWindowSize are the receive windows (bytes) the proxy advertises. */
  initialStreamWindowSize: number;
  initialConnectionWindowSize: number;
}

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** UPSTREAM_H2_DEFAULTS: Envoy's stream limit (2^31 − 1, bounded by the peer's SETTINGS), 1 MiB and 16 MiB windows. */
export const UPSTREAM_H2_DEFAULTS = {
  maxConcurrentStreams: 2 ** 31 - 1,
  initialStreamWindowSize: 1024 * 1024,
  initialConnectionWindowSize: 16 * 1024 * 1024,
} as const;

/** upstreamProtocol reads a cluster's codec, ALPN and HTTP/2 settings from its config. */
export function upstreamProtocol(config: EnvoyCluster): UpstreamProtocol {
  const opts = config.typed_extension_protocol_options?.[HTTP_PROTOCOL_OPTIONS];
  const h2 = opts?.explicit_http_config?.http2_protocol_options ?? opts?.auto_config?.http2_protocol_options;
  const codec: UpstreamCodec = opts?.auto_config
    ? 'auto'
    : opts?.explicit_http_config?.http2_protocol_options
      ? 'http2'
      : 'http1';
  const alpn = [...(config.transport_socket?.typed_config.common_tls_context.alpn_protocols ?? [])];
  if (codec !== 'http1' && !alpn.includes('h2')) alpn.push('h2');
  if (codec === 'auto' && !alpn.includes('http/1.1')) alpn.push('http/1.1');
  return {
    codec,
    alpn: codec === 'http1' ? alpn.filter((p) => p !== 'h2') : alpn,
    maxConcurrentStreams: h2?.max_concurrent_streams?.value ?? UPSTREAM_H2_DEFAULTS.maxConcurrentStreams,
    initialStreamWindowSize: h2?.initial_stream_window_size?.value ?? UPSTREAM_H2_DEFAULTS.initialStreamWindowSize,
    initialConnectionWindowSize:
      h2?.initial_connection_window_size?.value ?? UPSTREAM_H2_DEFAULTS.initialConnectionWindowSize,
  };
}
