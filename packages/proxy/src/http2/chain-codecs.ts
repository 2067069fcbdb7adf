import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { EnvoyFilterChain, EnvoyHttpConnectionManager } from '../xds/envoy-schemas.js';
import { DownstreamHttp2, http2FloodCounter, type HttpRequestHandler } from './h2-server.js';
import { http2LimitsFor } from './limits.js';

/** HcmCodec is an HTTP connection manager's `codec_type`: AUTO (ALPN, else the h2 preface), HTTP1 or HTTP2 only. */
export type HcmCodec = 'AUTO' | 'HTTP1' | 'HTTP2';

/** ChainCodecDeps are what a filter chain's HTTP/2 server needs from its listener. */
export interface ChainCodecDeps {
  /** headers are the listener's header limits, shared by both codecs. */
  headers: { maxHeaderSizeBytes: number; maxHeadersCount: number; headersTimeoutMs: number };
  registry: Registry;
  log: Logger;
  draining: () => boolean;
}

/**
 * createChainHttp2 builds the HTTP/2 server of one HTTP connection manager: the listener's header budget, the
 * HCM's `http2_protocol_options` (`max_concurrent_streams`, initial stream and connection windows), floods
 * counted in `fedmesh_http2_flood_goaways_total` under the HCM's `stat_prefix` and logged.
 */
export function createChainHttp2(
  hcm: EnvoyHttpConnectionManager | undefined,
  handler: HttpRequestHandler,
  deps: ChainCodecDeps,
): DownstreamHttp2 {
  const o = hcm?.http2_protocol_options;
  const limits = http2LimitsFor(deps.headers, {
    ...(o?.max_concurrent_streams?.value !== undefined ? { maxConcurrentStreams: o.max_concurrent_streams.value } : {}),
    ...(o?.initial_stream_window_size?.value !== undefined
      ? { initialWindowSize: o.initial_stream_window_size.value }
      : {}),
    ...(o?.initial_connection_window_size?.value !== undefined
      ? { connectionWindowSize: o.initial_connection_window_size.value }
      : {}),
  });
  const prefix = hcm?.stat_prefix ?? '';
  const counter = http2FloodCounter(deps.registry);
  return new DownstreamHttp2(handler, {
    limits,
    firstStreamTimeoutMs: deps.headers.headersTimeoutMs,
    draining: deps.draining,
    onFlood: (reason, remote) => {
      counter.inc({ envoy_http_conn_manager_prefix: prefix, reason });
      deps.log.warn({ stat_prefix: prefix, reason, remote }, 'HTTP/2 flood: GOAWAY ENHANCE_YOUR_CALM');
    },
  });
}

/** hcmCodec returns a chain's `codec_type` (AUTO when unset). */
export function hcmCodec(hcm: EnvoyHttpConnectionManager | undefined): HcmCodec {
  return hcm?.codec_type ?? 'AUTO';
}

/**
 * chainAlpn returns the application protocols a TLS filter chain offers: its DownstreamTlsContext
 * `alpn_protocols`, narrowed by its HCM's `codec_type` (HTTP1: `http/1.1`, HTTP2: `h2`).
 */
export function chainAlpn(chain: EnvoyFilterChain, hcm: EnvoyHttpConnectionManager | undefined): string[] | undefined {
  const codec = hcmCodec(hcm);
  if (codec === 'HTTP1') return ['http/1.1'];
  if (codec === 'HTTP2') return ['h2'];
  return chain.transport_socket?.typed_config.common_tls_context.alpn_protocols;
}
