/**
 * The explicit limits of every HTTP/2 connection the proxy accepts (downstream, h2 over TLS or h2c) and opens
 * (upstream pools). Node's own protections (`maxSessionInvalidFrames`, `maxSessionRejectedStreams`, nghttp2's
 * built-in stream-reset rate limit) stay on with explicit values; on top of them the server applies Envoy's
 * premature-reset check (CVE-2023-44487, "rapid reset"), see `h2-server.ts`.
 */

/** Http2Limits are the settings and flood thresholds of one HTTP/2 listener or pool. */
export interface Http2Limits {
  /** maxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS advertised to the peer. */
  maxConcurrentStreams: number;
  /** initialWindowSize is SETTINGS_INITIAL_WINDOW_SIZE, each stream's flow-control window (bytes). */
  initialWindowSize: number;
  /** connectionWindowSize is the whole connection's receive window (bytes), raised with WINDOW_UPDATE. */
  connectionWindowSize: number;
  /** maxHeaderListSize is SETTINGS_MAX_HEADER_LIST_SIZE (bytes, uncompressed, as nghttp2 counts them). */
  maxHeaderListSize: number;
  /** maxHeaderListPairs bounds the header fields of one block, pseudo-headers included. */
  maxHeaderListPairs: number;
  /** maxSessionMemoryMb bounds nghttp2's memory per session; past it new streams are refused. */
  maxSessionMemoryMb: number;
  /** maxSessionInvalidFrames: more invalid frames than this closes the session (Node's option). */
  maxSessionInvalidFrames: number;
  /** maxSessionRejectedStreams: more streams refused (over the concurrency limit) than this closes the session. */
  maxSessionRejectedStreams: number;
  /** maxOutstandingPings bounds the PINGs sent and not yet acknowledged (Node's option). */
  maxOutstandingPings: number;
  /** streamIdleTimeoutMs resets a stream with no frames either way for this long (Envoy's `stream_idle_timeout`, 5 min). */
  streamIdleTimeoutMs: number;
  /** sessionIdleTimeoutMs closes (GOAWAY) a downstream session with no open stream for this long. */
  sessionIdleTimeoutMs: number;
  /**
   * prematureResetMinStreamLifetimeMs: a stream the peer resets before its response is complete and within this
   * time of opening counts as a premature reset (Envoy's `premature_reset_min_stream_lifetime_seconds`, 1 s).
   */
  prematureResetMinStreamLifetimeMs: number;
  /**
   * prematureResetTotalStreamCount: once a session has opened this many streams, it is closed with GOAWAY
   * (ENHANCE_YOUR_CALM) when at least half of them were premature resets (Envoy's
   * `premature_reset_total_stream_count`, 500).
   */
  prematureResetTotalStreamCount: number;
  /** maxPrematureResetsPerSecond: more premature resets than this within one second closes the session at once. */
  maxPrematureResetsPerSecond: number;
}

/**
 * DEFAULT_HTTP2_LIMITS: 256 concurrent streams per connection; 1 MiB stream and 16 MiB connection windows (Envoy's
 * defaults are 256 MiB, its edge guidance 64 KiB / 1 MiB); headers as the HTTP/1 listener allows (60 KiB, 100
 * fields plus the 4 request pseudo-headers); Node's 10 MB of session memory; 100 invalid frames and 100 refused
 * streams; a stream idle for 5 minutes is reset and a session without streams for 5 minutes is closed; Envoy's
 * premature-reset rule with 200 streams instead of 500, plus at most 100 premature resets per second. The
 * thresholds sit below nghttp2's own reset limit (a burst of 1,000, then 33/s), so the proxy acts first.
 */
export const DEFAULT_HTTP2_LIMITS: Http2Limits = {
  maxConcurrentStreams: 256,
  initialWindowSize: 1024 * 1024,
  connectionWindowSize: 16 * 1024 * 1024,
  maxHeaderListSize: 60 * 1024,
  maxHeaderListPairs: 104,
  maxSessionMemoryMb: 10,
  maxSessionInvalidFrames: 100,
  maxSessionRejectedStreams: 100,
  maxOutstandingPings: 10,
  streamIdleTimeoutMs: 300_000,
  sessionIdleTimeoutMs: 300_000,
  prematureResetMinStreamLifetimeMs: 1_000,
  prematureResetTotalStreamCount: 200,
  maxPrematureResetsPerSecond: 100,
};

/**
 * http2LimitsFor derives the HTTP/2 limits of a listener from its HTTP/1 header limits (the same header budget
 * either way) and any overrides.
 */
export function http2LimitsFor(
  headers: { maxHeaderSizeBytes: number; maxHeadersCount: number },
  overrides: Partial<Http2Limits> = {},
): Http2Limits {
  return {
    ...DEFAULT_HTTP2_LIMITS,
    maxHeaderListSize: headers.maxHeaderSizeBytes,
    maxHeaderListPairs: headers.maxHeadersCount + 4,
    ...overrides,
  };
}
