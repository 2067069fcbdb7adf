/**
 * The HTTP/2 connection pool of a cluster: per upstream host a few long-lived multiplexed sessions (mTLS with ALPN
 * `h2`, or h2c with prior knowledge), so requests between proxies share connections instead of paying a TLS
 * handshake each (docs/adr/0015). A host whose ALPN answer is `http/1.1` is remembered and served by the
 * cluster's HTTP/1.1 keep-alive pool instead.
 */
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { isPkiError } from '@fedmesh/pki';
import type { HandshakeObserver } from '../listener-manager.js';
import type { UpstreamProtocol } from './protocol.js';

/** UpstreamTls is what a TLS upstream connection presents and checks. */
export interface UpstreamTls {
  certChainPem: string;
  keyPem: string;
  trustBundlePem: string;
  sni: string;
  /** checkServerIdentity refuses a peer (returns an Error) after TLS verified its chain. */
  checkServerIdentity: (host: string, cert: tls.PeerCertificate) => Error | undefined;
}

/** H2PoolOptions configure one cluster's HTTP/2 pool. */
export interface H2PoolOptions {
  protocol: UpstreamProtocol;
  /** tls returns the current TLS settings (read at each connect), or undefined for a plaintext cluster. */
  tls: (() => UpstreamTls | undefined) | undefined;
  connectTimeoutMs: number;
  /** maxSessionsPerHost bounds the sessions to one host (and the cluster's `max_connections`). */
  maxSessionsPerHost: number;
  /** maxRequestsPerConnection retires a session after this many streams (0: no limit). */
  maxRequestsPerConnection: number;
  /** maxConnectionDurationMs retires a session this long after it opened (0: no limit). */
  maxConnectionDurationMs: number;
  /** idleTimeoutMs closes a session without streams for this long. */
  idleTimeoutMs: number;
  onHandshake?: HandshakeObserver | undefined;
  /** onSession observes each session opened (`h2`), and each host found to speak only HTTP/1.1 (`http1`). */
  onSession?: (kind: 'h2' | 'http1') => void;
}

/** DEFAULT_SESSIONS_PER_HOST is how many sessions a pool opens to one host before it multiplexes beyond their stream limits. */
export const DEFAULT_SESSIONS_PER_HOST = 2;

/** HTTP1_MEMORY_MS is how long a host that answered ALPN with `http/1.1` is served over HTTP/1.1 before it is asked again. */
export const HTTP1_MEMORY_MS = 10 * 60_000;

/** H2ConnectError is a failure to open a session: TCP connect, connect timeout, TLS, or the peer's identity refused. */
export class H2ConnectError extends Error {
  override readonly name = 'H2ConnectError';
  /** constructor keeps the underlying error's code (`ECONNREFUSED`, `FEDMESH_CONNECT_TIMEOUT`, a PKI reason, …). */
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * PooledSession is one upstream HTTP/2 session with its stream accounting: open streams, streams ever opened,
 * and whether it still takes new streams (not after GOAWAY, `max_requests_per_connection`,
 * `max_connection_duration`, or a certificate change).
 */
export class PooledSession {
  active = 0;
  total = 0;
  draining = false;
  /** principal is the peer's SPIFFE ID (mTLS), read once from its certificate. */
  readonly principal: string | undefined;
  /** localAddress is the connection's local `ip:port`. */
  readonly localAddress: string | undefined;
  /** secure is true over TLS (`:scheme` https), false for h2c. */
  readonly secure: boolean;
  private idle: NodeJS.Timeout | undefined;
  private readonly lifetime: NodeJS.Timeout | undefined;

  /** constructor takes a session opened by the pool and starts its idle and lifetime timers. */
  constructor(
    readonly session: http2.ClientHttp2Session,
    socket: net.Socket,
    private readonly opts: H2PoolOptions,
  ) {
    this.secure = socket instanceof tls.TLSSocket;
    const san = socket instanceof tls.TLSSocket ? (socket.getPeerCertificate(false)?.subjectaltname ?? '') : '';
    this.principal =
      san
        .split(', ')
        .find((s) => s.startsWith('URI:'))
        ?.slice(4) || undefined;
    this.localAddress = socket.localAddress ? `${socket.localAddress}:${socket.localPort ?? 0}` : undefined;
    session.on('goaway', () => (this.draining = true));
    session.once('close', () => {
      clearTimeout(this.idle);
      clearTimeout(this.lifetime);
    });
    if (opts.maxConnectionDurationMs > 0) {
      this.lifetime = setTimeout(() => this.retire(), opts.maxConnectionDurationMs);
      this.lifetime.unref();
    }
    this.armIdle();
  }

  /** usable reports whether the session takes new streams. */
  usable(): boolean {
    return !this.draining && !this.session.closed && !this.session.destroyed;
  }

  /** capacity is how many more streams the session takes before it reaches the peer's and the cluster's stream limit. */
  capacity(): number {
    const peer = this.session.remoteSettings.maxConcurrentStreams ?? Infinity;
    return Math.min(peer, this.opts.protocol.maxConcurrentStreams) - this.active;
  }

  /** request opens a stream; the session's accounting follows it until it closes. */
  request(headers: http2.OutgoingHttpHeaders, options: http2.ClientSessionRequestOptions): http2.ClientHttp2Stream {
    clearTimeout(this.idle);
    const stream = this.session.request(headers, options);
    this.active++;
    this.total++;
    const max = this.opts.maxRequestsPerConnection;
    if (max > 0 && this.total >= max) this.draining = true;
    stream.once('close', () => {
      this.active--;
      if (this.active > 0) return;
      if (this.draining) this.close();
      else this.armIdle();
    });
    return stream;
  }

  /** retire stops new streams; the session closes (GOAWAY) once its open streams end. */
  retire(): void {
    this.draining = true;
    if (this.active === 0) this.close();
  }

  private close(): void {
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }

  private armIdle(): void {
    clearTimeout(this.idle);
    if (this.opts.idleTimeoutMs <= 0) return;
    this.idle = setTimeout(() => {
      if (this.active === 0) this.retire();
    }, this.opts.idleTimeoutMs);
    this.idle.unref();
  }
}

/** H2Lease is what {@link H2ConnectionPool.acquire} gives: a session (and whether it was just opened), or HTTP/1.1. */
export type H2Lease = { kind: 'h2'; session: PooledSession; fresh: boolean } | { kind: 'http1' };

class HostPool {
  sessions: PooledSession[] = [];
  connecting: Promise<PooledSession | 'http1'> | undefined;
  http1Until = 0;
}

/**
 * H2ConnectionPool keeps, per upstream `host:port`, up to `maxSessionsPerHost` sessions. A request takes the
 * least loaded session with stream capacity; when all are full and fewer than the maximum are open (or connecting)
 * it opens another; concurrent requests share one connection attempt. Past the maximum, streams go to the least
 * loaded session and wait there for the peer's concurrency (nghttp2 queues them). Sessions that receive GOAWAY,
 * reach `max_requests_per_connection` or `max_connection_duration` take no new streams and close when idle.
 */
export class H2ConnectionPool {
  private readonly hosts = new Map<string, HostPool>();
  private closed = false;

  /** constructor stores the options; no I/O. */
  constructor(private readonly opts: H2PoolOptions) {}

  /** protocol is the cluster's codec and HTTP/2 settings. */
  get protocol(): UpstreamProtocol {
    return this.opts.protocol;
  }

  /** sessionCount returns how many sessions are open (usable or draining), to one host or in all. */
  sessionCount(host?: string, port?: number): number {
    const pools = host === undefined ? [...this.hosts.values()] : [this.hosts.get(`${host}:${port ?? 0}`)];
    let n = 0;
    for (const p of pools) for (const s of p?.sessions ?? []) if (!s.session.destroyed) n++;
    return n;
  }

  /**
   * tryAcquire is {@link H2ConnectionPool.acquire} without waiting: a lease when a session (or the HTTP/1.1 memory)
   * can serve the request now, undefined when a connection must be opened first.
   */
  tryAcquire(host: string, port: number): H2Lease | undefined {
    if (this.closed) return undefined;
    const hp = this.hosts.get(`${host}:${port}`);
    if (!hp) return undefined;
    if (Date.now() < hp.http1Until) return { kind: 'http1' };
    let best: PooledSession | undefined;
    let any: PooledSession | undefined;
    let live = 0;
    for (const s of hp.sessions) {
      if (!s.usable()) continue;
      live++;
      if (!any || s.active < any.active) any = s;
      if (s.capacity() > 0 && (!best || s.active < best.active)) best = s;
    }
    if (best) return { kind: 'h2', session: best, fresh: false };
    if (any && live >= this.opts.maxSessionsPerHost) return { kind: 'h2', session: any, fresh: false };
    return undefined;
  }

  /**
   * acquire returns a session to `host:port` with room for a stream, opening one when needed, or `http1` when the
   * host answered ALPN with `http/1.1` lately. Rejects with {@link H2ConnectError} when a needed connection fails.
   */
  async acquire(host: string, port: number): Promise<H2Lease> {
    if (this.closed) throw new H2ConnectError('pool closed', 'FEDMESH_POOL_CLOSED');
    const key = `${host}:${port}`;
    let hp = this.hosts.get(key);
    if (!hp) this.hosts.set(key, (hp = new HostPool()));
    for (let round = 0; round < 3; round++) {
      if (Date.now() < hp.http1Until) return { kind: 'http1' };
      hp.sessions = hp.sessions.filter((s) => !s.session.destroyed && !s.session.closed);
      const live = hp.sessions.filter((s) => s.usable());
      const best = leastLoaded(live.filter((s) => s.capacity() > 0));
      if (best) return { kind: 'h2', session: best, fresh: false };
      if (live.length >= this.opts.maxSessionsPerHost) {
        const any = leastLoaded(live);
        if (any) return { kind: 'h2', session: any, fresh: false };
      }
      if (!hp.connecting) {
        const pool = hp;
        pool.connecting = this.connect(host, port).finally(() => (pool.connecting = undefined));
        const r = await pool.connecting;
        if (r === 'http1') return { kind: 'http1' };
        return { kind: 'h2', session: r, fresh: true };
      }
      const r = await hp.connecting; // another request's attempt: share its outcome
      if (r === 'http1') return { kind: 'http1' };
      if (r.usable() && r.capacity() > 0) return { kind: 'h2', session: r, fresh: false };
    }
    const any = leastLoaded(hp.sessions.filter((s) => s.usable()));
    if (any) return { kind: 'h2', session: any, fresh: false };
    throw new H2ConnectError(`no usable session to ${key}`, 'FEDMESH_NO_SESSION');
  }

  /** retire stops new streams on every open session (a certificate or trust bundle change); they close when idle. */
  retire(): void {
    for (const hp of this.hosts.values()) for (const s of hp.sessions) s.retire();
  }

  /** close destroys every session; later acquires fail. */
  close(): void {
    this.closed = true;
    for (const hp of this.hosts.values()) for (const s of hp.sessions) s.session.destroy();
    this.hosts.clear();
  }

  private async connect(host: string, port: number): Promise<PooledSession | 'http1'> {
    const t = this.opts.tls?.();
    if (this.opts.tls && !t) throw new H2ConnectError('no workload certificate yet', 'FEDMESH_NO_CERTIFICATE');
    const sock = t ? await this.connectTls(host, port, t) : await this.connectPlain(host, port);
    if (this.closed) {
      sock.destroy();
      throw new H2ConnectError('pool closed', 'FEDMESH_POOL_CLOSED');
    }
    if (sock instanceof tls.TLSSocket && this.opts.protocol.codec === 'auto' && sock.alpnProtocol !== 'h2') {
      // The peer chose HTTP/1.1: the cluster's keep-alive pool serves this host for a while.
      const hp = this.hosts.get(`${host}:${port}`);
      if (hp) hp.http1Until = Date.now() + HTTP1_MEMORY_MS;
      sock.end();
      this.opts.onSession?.('http1');
      return 'http1';
    }
    const p = this.opts.protocol;
    const session = http2.connect(`${t ? 'https' : 'http'}://${t?.sni || host}`, {
      createConnection: () => sock,
      settings: { enablePush: false, initialWindowSize: p.initialStreamWindowSize },
      maxSessionMemory: 10,
      maxOutstandingPings: 10,
    });
    session.on('error', () => undefined); // each stream reports its own failure; the session is then gone
    session.once('connect', () => {
      try {
        session.setLocalWindowSize(p.initialConnectionWindowSize);
      } catch {
        // closed meanwhile
      }
    });
    const pooled = new PooledSession(session, sock, this.opts);
    const hp = this.hosts.get(`${host}:${port}`);
    if (!hp || this.closed) {
      session.destroy();
      throw new H2ConnectError('pool closed', 'FEDMESH_POOL_CLOSED');
    }
    hp.sessions.push(pooled);
    this.opts.onSession?.('h2');
    return pooled;
  }

  private connectPlain(host: string, port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new H2ConnectError(`connect timeout after ${this.opts.connectTimeoutMs} ms`, 'FEDMESH_CONNECT_TIMEOUT'));
      }, this.opts.connectTimeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.off('error', onError);
        sock.setNoDelay(true);
        resolve(sock);
      });
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        reject(new H2ConnectError(err.message, err.code ?? 'ECONNRESET', { cause: err }));
      };
      sock.once('error', onError);
    });
  }

  private connectTls(host: string, port: number, t: UpstreamTls): Promise<tls.TLSSocket> {
    const observe = this.opts.onHandshake;
    return new Promise((resolve, reject) => {
      let tcpUp = false;
      const sock = tls.connect({
        host,
        port,
        ...(t.sni ? { servername: t.sni } : {}),
        cert: t.certChainPem,
        key: t.keyPem,
        ca: t.trustBundlePem,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ALPNProtocols: this.opts.protocol.alpn,
        checkServerIdentity: t.checkServerIdentity,
      });
      const timer = setTimeout(() => {
        sock.destroy();
        if (tcpUp) observe?.('outbound', 'error');
        reject(new H2ConnectError(`connect timeout after ${this.opts.connectTimeoutMs} ms`, 'FEDMESH_CONNECT_TIMEOUT'));
      }, this.opts.connectTimeoutMs);
      sock.once('connect', () => {
        tcpUp = true;
        sock.setNoDelay(true);
      });
      sock.once('secureConnect', () => {
        clearTimeout(timer);
        sock.off('error', onError);
        observe?.('outbound', 'ok');
        resolve(sock);
      });
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        if (isPkiError(err)) observe?.('outbound', 'peer_refused');
        else if (tcpUp) observe?.('outbound', 'error');
        const code = isPkiError(err) ? err.code : (err.code ?? 'ECONNRESET');
        reject(new H2ConnectError(err.message, code, { cause: err }));
      };
      sock.once('error', onError);
    });
  }
}

function leastLoaded(sessions: readonly PooledSession[]): PooledSession | undefined {
  let best: PooledSession | undefined;
  for (const s of sessions) if (!best || s.active < best.active) best = s;
  return best;
}
