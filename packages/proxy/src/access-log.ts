import pino, { type Logger } from 'pino';

/**
 * AccessLogEntry is one JSON access log line, with the keys of Istio's default JSON access log format
 * (`meshConfig.accessLogEncoding: JSON`, Envoy command operators in brackets) plus the peer principals, the
 * trace and the attempt count. Durations are milliseconds; an unknown value is null.
 */
export interface AccessLogEntry {
  /** start_time is `%START_TIME%`, ISO 8601. */
  start_time: string;
  direction: 'inbound' | 'outbound';
  /** route_name is `%ROUTE_NAME%`. */
  route_name: string | null;
  method: string;
  /** path is `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`: the path as the client sent it. */
  path: string;
  /** protocol is `%PROTOCOL%`, e.g. `HTTP/1.1`. */
  protocol: string;
  response_code: number;
  /** response_flags is `%RESPONSE_FLAGS%`: `-`, or Envoy's short flags (`UO`, `URX`, `UT`, …) joined by commas. */
  response_flags: string;
  /** response_code_details is `%RESPONSE_CODE_DETAILS%` (`via_upstream`, `upstream_response_timeout`, …). */
  response_code_details: string;
  bytes_received: number;
  bytes_sent: number;
  /** duration is `%DURATION%`: first request byte to last response byte. */
  duration: number;
  /** request_duration is `%REQUEST_DURATION%`: until the request was fully received. */
  request_duration: number | null;
  /** response_duration is `%RESPONSE_DURATION%`: until the first upstream response byte. */
  response_duration: number | null;
  /** response_tx_duration is `%RESPONSE_TX_DURATION%`: first upstream byte to last downstream byte. */
  response_tx_duration: number | null;
  /** upstream_service_time is `x-envoy-upstream-service-time` (ms from upstream request to its headers). */
  upstream_service_time: number | null;
  x_forwarded_for: string | null;
  user_agent: string | null;
  request_id: string | null;
  authority: string;
  upstream_host: string | null;
  upstream_cluster: string | null;
  upstream_local_address: string | null;
  downstream_local_address: string | null;
  downstream_remote_address: string | null;
  requested_server_name: string | null;
  upstream_transport_failure_reason: string | null;
  /** downstream_peer_principal is the verified SPIFFE ID of the caller (inbound mTLS). */
  downstream_peer_principal: string | null;
  /** upstream_peer_principal is the verified SPIFFE ID of the upstream proxy (outbound mTLS). */
  upstream_peer_principal: string | null;
  /** attempts is the number of upstream attempts (`x-envoy-attempt-count` of the last one). */
  attempts: number;
  trace_id: string | null;
  span_id: string | null;
  parent_span_id: string | null;
}

/** roundMs rounds a duration to microseconds for the log. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** headerString returns a request header as one string (values joined by `,`), or null. */
export function headerString(v: string | string[] | undefined): string | null {
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(',') : v;
}

/** AccessLoggerOptions configure {@link createAccessLogger}. */
export interface AccessLoggerOptions {
  /** level is the pino level (`info` writes access lines; `warn` and above silence them). */
  level: string;
  /** base are the bindings written first on every line (e.g. `{component, pid, pod, scope: 'access'}`). */
  base: Record<string, unknown>;
  /** fd is the file descriptor written to (default 1, stdout). */
  fd?: number;
  /** minLength is how many bytes are buffered before a write is issued (default {@link ACCESS_LOG_MIN_LENGTH}). */
  minLength?: number;
  /** flushIntervalMs bounds how long a buffered line waits (default {@link ACCESS_LOG_FLUSH_MS}). */
  flushIntervalMs?: number;
  /** maxLength bounds the buffer; lines past it are dropped, never queued without limit (default 16 MiB). */
  maxLength?: number;
}

/** ACCESS_LOG_MIN_LENGTH is the default write batch of the access log (bytes): about eight lines. */
export const ACCESS_LOG_MIN_LENGTH = 8 * 1024;

/** ACCESS_LOG_FLUSH_MS is how long an access log line may wait in the buffer at low request rates. */
export const ACCESS_LOG_FLUSH_MS = 200;

/**
 * createAccessLogger makes the proxy's access logger: a pino logger of its own (one per process, beside the
 * diagnostic root logger) writing JSON lines to `fd` through an asynchronous, buffered destination
 * (`pino.destination` with `sync: false` and `minLength`), so a request costs no write(2) of its own: lines are
 * written in batches, at the latest every `flushIntervalMs`, and flushed synchronously at exit. A buffer past
 * `maxLength` (a stalled disk) drops lines rather than growing the heap. Unlike the diagnostic logger it has no
 * redaction: access lines carry no keys, tokens or CSRs (see {@link AccessLogEntry}), and redaction paths cost a
 * walk of every line. Lines keep the diagnostic logger's shape (`level`, `time`, the `base` bindings, then the
 * entry and `msg`).
 */
export function createAccessLogger(opts: AccessLoggerOptions): Logger {
  const dest = pino.destination({
    dest: opts.fd ?? 1,
    sync: false,
    minLength: opts.minLength ?? ACCESS_LOG_MIN_LENGTH,
    maxLength: opts.maxLength ?? 16 * 1024 * 1024,
  });
  // SonicBoom's flush() throws once the destination is destroyed, which happens at end() before 'close' clears
  // the timer: a tick in between must not become an uncaught exception.
  const destroyed = (): boolean => (dest as unknown as { destroyed?: boolean }).destroyed === true;
  const timer = setInterval(() => {
    if (!destroyed()) dest.flush();
  }, opts.flushIntervalMs ?? ACCESS_LOG_FLUSH_MS);
  timer.unref();
  dest.once('close', () => clearInterval(timer));
  const bindings = JSON.stringify(opts.base).slice(1, -1);
  const head = bindings === '' ? '' : `,${bindings}`;
  const logger: Logger = pino(
    {
      level: opts.level,
      base: opts.base,
      hooks: {
        // The access line itself is serialized by JSON.stringify in one call rather than by pino's per-key
        // loop: the same bytes (pino's order: level, time, bindings, the entry's keys, msg), fewer short-lived
        // strings. Every other call (errors, debug lines, an entry JSON cannot encode) goes through pino.
        logMethod(args, method, level) {
          const [entry, msg] = args as unknown[];
          if (
            this !== logger || // a child logger: its bindings are pino's to write
            level !== 30 ||
            msg !== ACCESS_MSG ||
            args.length !== 2 ||
            typeof entry !== 'object' ||
            entry === null
          )
            return method.apply(this, args);
          let body: string;
          try {
            body = JSON.stringify(entry).slice(1, -1);
          } catch {
            return method.apply(this, args);
          }
          dest.write(`{"level":30,"time":${Date.now()}${head}${body === '' ? '' : `,${body}`},"msg":"access"}\n`);
        },
      },
    },
    dest,
  );
  return logger;
}

/** ACCESS_MSG is the message of an access line: `accessLog.info(entry, ACCESS_MSG)`. */
export const ACCESS_MSG = 'access';
