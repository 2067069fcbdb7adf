import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { RequestGuard } from '../http/request-guard.js';
import { createHttpHandler, type HttpHandlerContext } from '../http-handler.js';
import { chainAlpn, hcmCodec, type HcmCodec } from '../http2/chain-codecs.js';
import { serveHttpConnection } from '../http2/dispatch.js';
import type { DownstreamHttp2 } from '../http2/h2-server.js';
import { DEFAULT_LIMITS, type AcceptedListener, type ListenerLimits } from '../listener-manager.js';
import type { RouteTable } from '../route-table.js';
import { hcmOf, type EnvoyFilterChain } from '../xds/envoy-schemas.js';
import { matchFilterChain } from './gateway-schema.js';
import { downstreamSdsNames, type IngressSecret } from './ingress-schema.js';
import { peekClientHello } from './peek.js';
import {
  createChainServers,
  bindListener,
  buildFilterChains,
  chainHandlerContext,
  retireChains,
  stopListener,
  trackSocket,
  type ChainGuards,
} from '../listener-runtime.js';

/** IngressListenerDeps are what an ingress gateway's listeners need from the rest of the proxy. */
export interface IngressListenerDeps {
  log: Logger;
  limits?: ListenerLimits;
  /** handlerContext is the HTTP handler's context (clusters, metrics, access log, the gateway's own workload). */
  handlerContext: Omit<HttpHandlerContext, 'routes' | 'direction' | 'forwardClientCert' | 'peerOf'>;
  /** rds returns an accepted RouteConfiguration by name. */
  rds: (name: string) => RouteTable | undefined;
  /** secret returns an accepted SDS Secret by name (server certificates and client CAs). */
  secret: (name: string) => IngressSecret | undefined;
  /** onHandshake observes each downstream TLS handshake's outcome (`fedmesh_tls_handshakes_total`). */
  onHandshake?: (result: 'ok' | 'error') => void;
}

interface Chain {
  chain: EnvoyFilterChain;
  json: string;
  http: http.Server;
  h2: DownstreamHttp2;
  codec: HcmCodec;
  alpn: string[] | undefined;
  /**
   * tlsServer terminates TLS for a TLS chain (it never listens: connections are handed to it once the ClientHello
   * picked the chain); it enforces the client certificate of a MUTUAL chain (`requestCert`, `rejectUnauthorized`).
   */
  tlsServer?: tls.Server;
  /** hasCert: the chain's SDS certificate (and client CA) are installed. */
  hasCert: boolean;
}

interface Active {
  name: string;
  key: string;
  tls: boolean;
  server: net.Server;
  chains: Chain[];
  guards: Map<string, RequestGuard>;
  sockets: Set<net.Socket>;
}

/**
 * IngressListenerManager serves an ingress gateway's Listeners (Istio's gateway listeners `0.0.0.0_<port>`): a
 * plaintext listener hands every connection to its one HTTP connection manager; a TLS listener reads the
 * ClientHello (bounded in time and size), picks the filter chain by SNI as Envoy does (exact `server_names`, then
 * the longest `*.` wildcard, then a chain without names), and terminates TLS with that chain's SDS certificate;
 * a MUTUAL chain also requires a client certificate that chains to its SDS validation context. The HTTP connection
 * managers are the sidecar's: request guard (framing, path normalization, RBAC), routing, retries, fault
 * injection, metrics with `reporter=source` and the gateway's own labels, access logs, HTTP/2 and WebSocket.
 * `x-forwarded-proto` is set from the connection and the client address appended to `x-forwarded-for`
 * (Envoy's `use_remote_address`). A changed Listener at the same address swaps its chains in place; a removed one
 * stops accepting and its connections close.
 */
export class IngressListenerManager {
  private readonly active = new Map<string, Active>();
  private readonly limits: ListenerLimits;

  /** constructor stores dependencies; no I/O. */
  constructor(private readonly deps: IngressListenerDeps) {
    this.limits = deps.limits ?? DEFAULT_LIMITS;
  }

  /** names returns the bound listeners' names. */
  names(): string[] {
    return [...this.active.keys()];
  }

  /**
   * refreshTls installs the current SDS secrets into every TLS chain: new connections use them, open ones keep
   * theirs. A chain whose secrets are missing refuses connections until they arrive.
   */
  refreshTls(): void {
    for (const l of this.active.values())
      for (const c of l.chains) {
        if (!c.tlsServer) continue;
        const opts = this.secureOptions(c.chain);
        c.hasCert = opts !== undefined;
        if (opts) c.tlsServer.setSecureContext(opts);
      }
  }

  /**
   * apply makes the bound listeners match `listeners` (each already checked by `IngressListenerType`). Resolves
   * when every new listener is bound; rejects if a bind fails (that listener is then absent).
   */
  async apply(listeners: ReadonlyMap<string, AcceptedListener>): Promise<void> {
    const binds: Promise<void>[] = [];
    for (const [name, l] of listeners) {
      const { address, port_value } = l.config.address.socket_address;
      const key = `${address}:${port_value}`;
      const isTls = l.config.filter_chains.some((c) => c.transport_socket);
      const cur = this.active.get(name);
      if (cur && cur.key === key && cur.tls === isTls) {
        const old = cur.chains;
        cur.chains = this.buildChains(l, cur, old);
        retireChains(old, cur.chains);
        continue;
      }
      if (cur) this.stop(cur, true);
      binds.push(this.bind(name, key, isTls, l));
    }
    for (const [name, cur] of this.active) if (!listeners.has(name)) this.stop(cur, true);
    this.refreshTls();
    await Promise.all(binds);
  }

  /** stopAccepting closes every listening socket (drain): new connections are refused, open ones continue. */
  stopAccepting(): void {
    for (const l of this.active.values()) l.server.close();
  }

  /** close stops every listener and destroys its connections. */
  close(): void {
    for (const l of [...this.active.values()]) this.stop(l, true);
  }

  /** secureOptions are a TLS chain's certificate, key and (MUTUAL) client CA from SDS, or undefined if missing. */
  private secureOptions(chain: EnvoyFilterChain): tls.SecureContextOptions | undefined {
    const n = downstreamSdsNames(chain);
    const cert = n.certificate ? this.deps.secret(n.certificate) : undefined;
    if (cert?.kind !== 'tls') return undefined;
    const ca = n.validation ? this.deps.secret(n.validation) : undefined;
    if (n.validation && ca?.kind !== 'ca') return undefined;
    return {
      cert: cert.certChainPem,
      key: cert.keyPem,
      ...(ca?.kind === 'ca' ? { ca: ca.caPem } : {}),
      minVersion: 'TLSv1.2',
    };
  }

  private buildChains(l: AcceptedListener, entry: ChainGuards, previous: readonly Chain[] = []): Chain[] {
    const guardDeps = {
      registry: this.deps.handlerContext.metrics.registry,
      log: this.deps.log,
      maxHeadersCount: this.limits.maxHeadersCount,
    };
    return buildFilterChains(l, entry, previous, guardDeps, (chain, i, key, json) =>
      this.makeChain(l, chain, i, key, json, entry),
    );
  }

  private makeChain(
    l: AcceptedListener,
    chain: EnvoyFilterChain,
    i: number,
    key: string,
    json: string,
    entry: ChainGuards,
  ): Chain {
    const hcm = hcmOf(chain);
    // a gateway reports as the source (Istio's gateway metrics: reporter=source)
    const hctx = chainHandlerContext(this.deps.handlerContext, l, chain, i, key, entry, {
      direction: 'outbound',
      rds: this.deps.rds,
      peerOf: () => undefined,
    });
    const inner = createHttpHandler(hctx);
    const secure = chain.transport_socket !== undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      edgeHeaders(req, secure);
      inner(req, res);
    };
    const servers = createChainServers(hctx, hcm, handler, {
      limits: this.limits,
      direction: 'outbound',
      key,
      log: this.deps.log,
      context: this.deps.handlerContext,
    });
    const c: Chain = {
      chain,
      json,
      ...servers,
      codec: hcmCodec(hcm),
      alpn: chainAlpn(chain, hcm),
      hasCert: false,
    };
    if (chain.transport_socket) c.tlsServer = this.makeTlsServer(c, key);
    return c;
  }

  private makeTlsServer(c: Chain, key: string): tls.Server {
    const mutual = c.chain.transport_socket?.typed_config.require_client_certificate?.value === true;
    const opts = this.secureOptions(c.chain);
    c.hasCert = opts !== undefined;
    const server = tls.createServer({
      ...opts,
      requestCert: mutual,
      rejectUnauthorized: mutual,
      handshakeTimeout: this.limits.handshakeTimeoutMs,
      ALPNProtocols: c.alpn && c.alpn.length > 0 ? c.alpn : ['h2', 'http/1.1'],
    });
    server.on('secureConnection', (t: tls.TLSSocket) => {
      this.deps.onHandshake?.('ok');
      serveHttpConnection(c, t, this.limits.headersTimeoutMs);
    });
    server.on('tlsClientError', (err: Error, t: tls.TLSSocket) => {
      this.deps.log.warn({ chain: key, remote: t.remoteAddress, err: err.message }, 'TLS handshake refused');
      this.deps.onHandshake?.('error');
      t.destroy();
    });
    return server;
  }

  private bind(name: string, key: string, isTls: boolean, l: AcceptedListener): Promise<void> {
    const entry: Active = {
      name,
      key,
      tls: isTls,
      server: net.createServer(),
      chains: [],
      guards: new Map(),
      sockets: new Set(),
    };
    entry.chains = this.buildChains(l, entry);
    entry.server = net.createServer((sock) => {
      trackSocket(entry.sockets, sock);
      if (entry.tls) void this.onTlsConnection(entry, sock);
      else this.onPlainConnection(entry, sock);
    });
    const bindOpts = {
      log: this.deps.log,
      maxConnections: this.limits.maxConnections,
      message: 'ingress listener bound',
      fields: { tls: isTls },
    };
    return bindListener(this.active, entry, l.config.address.socket_address, bindOpts);
  }

  private onPlainConnection(entry: Active, sock: net.Socket): void {
    const chain = entry.chains.find((c) => !c.chain.transport_socket);
    if (!chain) return void sock.destroy();
    serveHttpConnection(chain, sock, this.limits.headersTimeoutMs);
  }

  private async onTlsConnection(entry: Active, sock: net.Socket): Promise<void> {
    const hello = await peekClientHello(sock, { timeoutMs: this.limits.handshakeTimeoutMs });
    if (!hello.ok) {
      this.deps.log.warn({ listener: entry.name, remote: sock.remoteAddress, reason: hello.reason }, 'not TLS');
      this.deps.onHandshake?.('error');
      return void sock.destroy();
    }
    sock.unshift(hello.buffered);
    const picked = matchFilterChain(
      entry.chains.map((c) => c.chain),
      hello.serverName,
    );
    const chain = entry.chains.find((c) => c.chain === picked);
    if (!chain?.tlsServer || !chain.hasCert) {
      this.deps.log.warn(
        { listener: entry.name, remote: sock.remoteAddress, sni: hello.serverName },
        chain ? 'no certificate for the filter chain; connection closed' : 'no filter chain matches; connection closed',
      );
      this.deps.onHandshake?.('error');
      return void sock.destroy();
    }
    chain.tlsServer.emit('connection', sock);
  }

  private stop(l: Active, destroy: boolean): void {
    stopListener(l, l.chains, destroy);
    this.active.delete(l.name);
  }
}

/**
 * edgeHeaders sets what an edge proxy owns (Envoy with `use_remote_address`): `x-forwarded-proto` from the
 * downstream connection (a client's value is replaced) and the client address appended to `x-forwarded-for`.
 */
function edgeHeaders(req: http.IncomingMessage, secure: boolean): void {
  req.headers['x-forwarded-proto'] = secure ? 'https' : 'http';
  const ip = req.socket.remoteAddress;
  if (!ip) return;
  const prior = req.headers['x-forwarded-for'];
  req.headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${ip}` : ip;
}
