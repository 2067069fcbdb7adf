/**
 * The downstream HTTP/2 side of an HTTP connection manager: one `http2` server per filter chain that never
 * listens itself (the listener hands it connections, like the chain's HTTP/1 server), serving each stream through
 * the same request handler as HTTP/1 via Node's compatibility API. It enforces the listener's {@link Http2Limits}:
 * SETTINGS, header budget, per-stream idle timeout, a deadline for the first stream, session idle close, and
 * Envoy's premature-reset check against rapid-reset floods (CVE-2023-44487).
 */
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { Counter, type Registry } from 'prom-client';
import type { Http2Limits } from './limits.js';

/** HttpRequestHandler is an HTTP connection manager's request handler (HTTP/1 objects, or HTTP/2 compat ones). */
export type HttpRequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Http2FloodReason is why a downstream session was closed with GOAWAY ENHANCE_YOUR_CALM. */
export type Http2FloodReason = 'premature_resets' | 'reset_rate' | 'invalid_frames';

const sessionSockets = new WeakMap<http2.Http2Session, net.Socket>();

/**
 * connectionSocket returns the transport socket a request arrived on: `req.socket` for HTTP/1, and for an HTTP/2
 * request the TLS or TCP socket its session runs on (the compat `req.socket` is a per-stream proxy object, so
 * per-connection state such as the verified peer is keyed by the real socket).
 */
export function connectionSocket(req: http.IncomingMessage): net.Socket {
  if (req instanceof http.IncomingMessage) return req.socket;
  const compat = req as unknown as { stream?: http2.Http2Stream; socket: net.Socket };
  const session = compat.stream?.session;
  return (session ? sessionSockets.get(session) : undefined) ?? compat.socket;
}

/** isHttp2Request reports whether a request came over HTTP/2 (a compat `Http2ServerRequest`). */
export function isHttp2Request(req: http.IncomingMessage): boolean {
  return !(req instanceof http.IncomingMessage);
}

/**
 * responseDelivered reports, in a response's `'close'` handler, whether the downstream response was sent whole.
 * HTTP/1.1: `writableFinished`. HTTP/2: Node's `Http2ServerResponse` reports `writableFinished` true even after the
 * client reset the stream (RST_STREAM, RFC 9113 §6.4), so there the response must also have been ended and its
 * stream closed with NO_ERROR. A response not delivered means the downstream went away (Envoy's `DC`), and the
 * caller cancels the upstream request.
 */
export function responseDelivered(res: http.ServerResponse): boolean {
  const stream = (res as unknown as { stream?: http2.Http2Stream }).stream;
  if (stream === undefined) return res.writableFinished;
  return res.writableEnded && (stream.rstCode === undefined || stream.rstCode === http2.constants.NGHTTP2_NO_ERROR);
}

const floodCounters = new WeakMap<Registry, Counter<'envoy_http_conn_manager_prefix' | 'reason'>>();

/**
 * http2FloodCounter returns `fedmesh_http2_flood_goaways_total{envoy_http_conn_manager_prefix, reason}`, made once
 * per registry: downstream HTTP/2 sessions closed with GOAWAY ENHANCE_YOUR_CALM (Envoy counts the premature-reset
 * case as `downstream_rq_too_many_premature_resets`).
 */
export function http2FloodCounter(registry: Registry): Counter<'envoy_http_conn_manager_prefix' | 'reason'> {
  let c = floodCounters.get(registry);
  if (!c) {
    c = new Counter({
      name: 'fedmesh_http2_flood_goaways_total',
      help: 'Downstream HTTP/2 sessions closed with GOAWAY ENHANCE_YOUR_CALM, by reason',
      labelNames: ['envoy_http_conn_manager_prefix', 'reason'],
      registers: [registry],
    });
    floodCounters.set(registry, c);
  }
  return c;
}

/** DownstreamHttp2Deps are what a chain's HTTP/2 server needs besides its handler. */
export interface DownstreamHttp2Deps {
  limits: Http2Limits;
  /** firstStreamTimeoutMs closes a session that opens no stream this long after it starts (the listener's headers timeout). */
  firstStreamTimeoutMs: number;
  /** onFlood observes each session closed for a flood (metrics, logs). */
  onFlood?: (reason: Http2FloodReason, remote: string | undefined) => void;
  /** draining tells whether the proxy drains: sessions then get GOAWAY and finish their open streams. */
  draining?: () => boolean;
}

/**
 * ResetGuard is one session's premature-reset accounting: a stream the peer resets (RST_STREAM) before its
 * response is complete and within `prematureResetMinStreamLifetimeMs` of opening is premature. The session is
 * flooding when more than `maxPrematureResetsPerSecond` happen within one second, or when at least
 * `prematureResetTotalStreamCount` streams were opened and half or more of them were premature resets.
 */
export class ResetGuard {
  private streams = 0;
  private premature = 0;
  private windowStart = 0;
  private inWindow = 0;

  /** constructor stores the limits; `now` is the clock (tests inject it). */
  constructor(
    private readonly limits: Http2Limits,
    private readonly now: () => number = Date.now,
  ) {}

  /** opened counts a new stream. */
  opened(): void {
    this.streams++;
  }

  /** reset records a peer reset of a stream opened at `openedAt`; returns the flood reason when the session must close. */
  reset(openedAt: number): Http2FloodReason | undefined {
    const t = this.now();
    if (t - openedAt > this.limits.prematureResetMinStreamLifetimeMs) return undefined;
    this.premature++;
    if (t - this.windowStart >= 1_000) {
      this.windowStart = t;
      this.inWindow = 0;
    }
    if (++this.inWindow > this.limits.maxPrematureResetsPerSecond) return 'reset_rate';
    if (this.streams >= this.limits.prematureResetTotalStreamCount && this.premature * 2 >= this.streams)
      return 'premature_resets';
    return undefined;
  }
}

/** FLOOD_CLOSE_GRACE_MS is how long a flooding session has to read its GOAWAY before its socket is destroyed. */
export const FLOOD_CLOSE_GRACE_MS = 250;

/**
 * DownstreamHttp2 is a filter chain's HTTP/2 server. {@link DownstreamHttp2.accept} takes a connection that
 * negotiated `h2` by ALPN or sent the h2c preface. Every stream goes to the handler; sessions are bounded by the
 * limits above and closed gracefully on {@link DownstreamHttp2.close}.
 */
export class DownstreamHttp2 {
  readonly server: http2.Http2Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly flooded = new WeakSet<http2.ServerHttp2Session>();
  private pending: net.Socket | undefined;

  /** constructor builds the server (no I/O: it never listens). */
  constructor(
    handler: HttpRequestHandler,
    private readonly deps: DownstreamHttp2Deps,
  ) {
    const l = deps.limits;
    this.server = http2.createServer(
      {
        settings: {
          maxConcurrentStreams: l.maxConcurrentStreams,
          initialWindowSize: l.initialWindowSize,
          maxHeaderListSize: l.maxHeaderListSize,
          enablePush: false,
        },
        maxHeaderListPairs: l.maxHeaderListPairs,
        maxSessionMemory: l.maxSessionMemoryMb,
        maxSessionInvalidFrames: l.maxSessionInvalidFrames,
        maxSessionRejectedStreams: l.maxSessionRejectedStreams,
        maxOutstandingPings: l.maxOutstandingPings,
      },
      // The compat request and response implement what the handler uses of their HTTP/1 counterparts.
      (req, res) => {
        // A stream reset before its request body ended (by the peer, or by nghttp2 for a malformed request such as
        // a content-length that disagrees with the DATA frames) ends the compat request anyway, after 'aborted'
        // and 'close'; an aborted HTTP/1 request never ends. Destroying it keeps a truncated body from looking whole.
        req.once('aborted', () => {
          if (!req.readableEnded) req.destroy();
        });
        handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse);
      },
    );
    this.server.on('session', (s) => this.onSession(s));
    this.server.on('sessionError', (err: NodeJS.ErrnoException, s: http2.ServerHttp2Session) => {
      if (err.code === 'ERR_HTTP2_TOO_MANY_INVALID_FRAMES') this.flood(s, 'invalid_frames');
    });
  }

  /** accept starts an HTTP/2 session on a connection (its bytes may already be buffered after a preface peek). */
  accept(sock: net.Socket): void {
    this.pending = sock;
    try {
      this.server.emit('connection', sock);
    } finally {
      this.pending = undefined;
    }
  }

  /** sessionCount is the number of open sessions. */
  sessionCount(): number {
    return this.sessions.size;
  }

  /** close sends GOAWAY on every session; open streams finish, then the sessions close. */
  close(): void {
    for (const s of this.sessions) if (!s.closed) s.close();
    this.server.close();
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const sock = this.pending;
    if (sock) sessionSockets.set(session, sock);
    this.sessions.add(session);
    const l = this.deps.limits;
    const guard = new ResetGuard(l);
    let open = 0;
    let idle: NodeJS.Timeout | undefined = setTimeout(() => session.close(), this.deps.firstStreamTimeoutMs);
    idle.unref();
    session.once('close', () => {
      clearTimeout(idle);
      this.sessions.delete(session);
    });
    session.on('error', () => undefined); // reported through 'sessionError'; the session is destroyed either way
    session.once('remoteSettings', () => {
      try {
        session.setLocalWindowSize(l.connectionWindowSize);
      } catch {
        // the session closed before its settings were exchanged
      }
    });
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      clearTimeout(idle);
      idle = undefined;
      open++;
      guard.opened();
      const openedAt = Date.now();
      stream.setTimeout(l.streamIdleTimeoutMs, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      stream.once('aborted', () => {
        // Our own resets destroy the stream first; a peer's RST_STREAM aborts it while it is still alive.
        if (stream.destroyed) return;
        const reason = guard.reset(openedAt);
        if (reason) this.flood(session, reason);
      });
      stream.once('close', () => {
        if (--open > 0 || session.closed || session.destroyed) return;
        idle = setTimeout(() => session.close(), l.sessionIdleTimeoutMs);
        idle.unref();
      });
      if (this.deps.draining?.() && !session.closed) session.close();
    });
  }

  private flood(session: http2.ServerHttp2Session, reason: Http2FloodReason): void {
    if (session.destroyed || this.flooded.has(session)) return;
    this.flooded.add(session);
    this.deps.onFlood?.(reason, sessionSockets.get(session)?.remoteAddress);
    try {
      session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // already closing
    }
    setTimeout(() => session.destroy(), FLOOD_CLOSE_GRACE_MS).unref();
  }
}
