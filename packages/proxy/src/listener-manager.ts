import type http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { isPkiError, spiffeUri, verifySpiffePeer } from '@fedmesh/pki';
import { createHttpHandler, type HttpHandlerContext, type PeerInfo } from './http-handler.js';
import type { HcmSecurity, RequestGuard } from './http/request-guard.js';
import { inspectTransport } from './tls-inspector.js';
import type { RouteTable } from './route-table.js';
import type { TlsMaterial } from './secrets.js';
import type { SocketAddress } from './capture/original-dst.js';
import { destinationOf, restoreDestination, usesOriginalDst } from './capture/listener-destination.js';
import { findFilterChain, needsInspection, type FilterChainFacts } from './filter-chain-match.js';
import {
  hcmOf,
  tcpProxyOf,
  type EnvoyFilterChain,
  type EnvoyListener,
  type EnvoyTcpProxy,
} from './xds/envoy-schemas.js';
import { chainAlpn, hcmCodec } from './http2/chain-codecs.js';
import { selectAlpn, serveHttpConnection } from './http2/dispatch.js';
import { connectionSocket, type DownstreamHttp2 } from './http2/h2-server.js';
import { passthroughTls, serveTcpChain, type SidecarTcpDeps } from './tcp/sidecar-tcp.js';
import { networkRbacOf } from './filters/network-rbac.js';
import {
  createChainServers,
  bindListener,
  buildFilterChains,
  chainHandlerContext,
  retireChains,
  stopListener,
  trackSocket,
  type ChainGuardDeps,
  type ChainGuards,
} from './listener-runtime.js';

/** ListenerLimits are the explicit limits every listener applies (ms and bytes). */
export interface ListenerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  handshakeTimeoutMs: number;
  maxHeaderSizeBytes: number;
  maxHeadersCount: number;
  maxConnections: number;
}

/** DEFAULT_LIMITS follow Envoy's defaults where it has them (60 KiB of headers, 100 headers). */
export const DEFAULT_LIMITS: ListenerLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 15_000,
  handshakeTimeoutMs: 10_000,
  maxHeaderSizeBytes: 60 * 1024,
  maxHeadersCount: 100,
  maxConnections: 10_000,
};

/**
 * AcceptedListener is an accepted Listener with its inline route tables and its HCMs' security settings
 * (normalization, RBAC) compiled, by filter chain index.
 */
export interface AcceptedListener {
  config: EnvoyListener;
  inlineRoutes: Map<number, RouteTable>;
  security?: Map<number, HcmSecurity>;
}

interface ChainRuntime {
  chain: EnvoyFilterChain;
  /** json is the chain's config as JSON, to reuse an unchanged chain's server across Listener updates. */
  json: string;
  http: http.Server;
  /** h2 serves the chain's HTTP/2 connections (ALPN h2 or the h2c preface), `codec` is its HCM's `codec_type`. */
  h2: DownstreamHttp2;
  codec: 'AUTO' | 'HTTP1' | 'HTTP2';
  /** alpn is what the chain offers over TLS (DownstreamTlsContext `alpn_protocols`, narrowed by `codec_type`). */
  alpn: string[] | undefined;
  /** tcp is set for a `tcp_proxy` chain (TCP services, TLS passthrough): its settings and what it needs. */
  tcp?: { proxy: EnvoyTcpProxy; deps: SidecarTcpDeps };
}

/**
 * ListenerMode is how a listener accepts connections: `plain` HTTP, `tls` only, or `inspect` (a
 * `tls_inspector` listener filter: the first byte picks a TLS or a raw_buffer filter chain).
 */
type ListenerMode = 'plain' | 'tls' | 'inspect';

interface ActiveListener {
  name: string;
  key: string;
  server: net.Server;
  /** tlsServer terminates TLS for an `inspect` listener (it never listens itself). */
  tlsServer: tls.Server | undefined;
  mode: ListenerMode;
  chains: ChainRuntime[];
  /** guards are the chains' request guards by chain key; connections look theirs up at every request. */
  guards: Map<string, RequestGuard>;
  tls: boolean;
  sockets: Set<net.Socket>;
  /** halfOpen: the listener has tcp_proxy chains, whose connections pass a half-close on (allowHalfOpen). */
  halfOpen: boolean;
}

function listenerMode(l: EnvoyListener): ListenerMode {
  if (l.listener_filters?.some((f) => f.name === 'envoy.filters.listener.tls_inspector')) return 'inspect';
  return l.filter_chains.some((c) => c.transport_socket) ? 'tls' : 'plain';
}

/** ListenerManagerDeps are what listeners need from the rest of the proxy. */
export interface ListenerManagerDeps {
  log: Logger;
  limits?: ListenerLimits;
  handlerContext: Omit<HttpHandlerContext, 'routes' | 'direction' | 'forwardClientCert' | 'peerOf'>;
  rds: (name: string) => RouteTable | undefined;
  tls: () => TlsMaterial | undefined;
  /** onHandshake observes each inbound mTLS handshake's outcome (for `fedmesh_tls_handshakes_total`). */
  onHandshake?: HandshakeObserver;
  /**
   * originalDestination, set in capture mode, is the `original_dst` listener filter's lookup (`SO_ORIGINAL_DST`):
   * for a listener that has that filter, the redirected destination picks the filter chain by `destination_port`
   * and, outbound, the route (`capture/route-by-destination.ts`).
   */
  originalDestination?: (sock: net.Socket) => SocketAddress | undefined;
}

/**
 * HandshakeObserver receives the outcome of one mTLS handshake: `ok`; `error` (the TLS handshake failed: bad chain,
 * expired, untrusted root, timeout, peer aborted); `peer_refused` (TLS succeeded but the peer is not an acceptable
 * X509-SVID, checked by `verifySpiffePeer`). `inbound` is a listener accepting a peer, `outbound` a pool dialling one.
 */
export type HandshakeObserver = (direction: 'inbound' | 'outbound', result: 'ok' | 'error' | 'peer_refused') => void;

const peers = new WeakMap<net.Socket, PeerInfo>();

function chainMatches(
  chain: EnvoyFilterChain,
  sni: string | undefined,
  transport: 'tls' | 'raw_buffer',
  anySni = false,
): boolean {
  const m = chain.filter_chain_match;
  if (!m) return true;
  if (m.transport_protocol !== undefined && m.transport_protocol !== transport) return false;
  if (!anySni && m.server_names && m.server_names.length > 0) {
    if (!sni) return false;
    const s = sni.toLowerCase();
    return m.server_names.some((n) => (n.startsWith('*.') ? s.endsWith(n.slice(1)) : s === n.toLowerCase()));
  }
  return true;
}

/**
 * ListenerManager binds one server per Listener. A listener whose filter chains carry a DownstreamTlsContext is a
 * TLS server that requires a client certificate verified by TLS against the trust bundle and accepted by pki's
 * `verifySpiffePeer` as a client X509-SVID of the trust domain (one `spiffe://<td>/ns/<ns>/sa/<sa>` URI SAN, not a
 * CA, clientAuth when an extendedKeyUsage is present, within its validity). Every connection's filter chain is
 * chosen as Envoy chooses it (`filter-chain-match.ts`: destination port, destination IP, SNI, transport protocol;
 * the destination is the original one behind `original_dst`), and a connection no chain matches is closed. Other
 * listeners are plaintext HTTP. A changed Listener at the same address is swapped in place; a removed one stops
 * accepting and its connections close once idle.
 */
export class ListenerManager {
  private active = new Map<string, ActiveListener>();
  private readonly limits: ListenerLimits;
  private readonly originalDst = new Map<string, boolean>();

  /** constructor stores dependencies; no I/O. */
  constructor(private readonly deps: ListenerManagerDeps) {
    this.limits = deps.limits ?? DEFAULT_LIMITS;
  }

  /** names returns the names of the bound listeners. */
  names(): string[] {
    return [...this.active.keys()];
  }

  /**
   * apply makes the bound listeners match `listeners`. Resolves when every new listener is bound; rejects if a
   * bind fails (that listener is then absent).
   */
  async apply(listeners: ReadonlyMap<string, AcceptedListener>): Promise<void> {
    const binds: Promise<void>[] = [];
    for (const [name, l] of listeners) {
      const key = `${l.config.address.socket_address.address}:${l.config.address.socket_address.port_value}`;
      this.originalDst.set(name, usesOriginalDst(l.config));
      const cur = this.active.get(name);
      if (cur && cur.key === key && cur.mode === listenerMode(l.config)) {
        const old = cur.chains;
        cur.chains = this.buildChains(l, cur, old);
        cur.tls = l.config.filter_chains.some((c) => c.transport_socket);
        // A changed or removed chain drains: idle connections close, in-flight requests finish.
        retireChains(old, cur.chains);
        continue;
      }
      if (cur) this.stop(cur);
      binds.push(this.bind(name, key, l));
    }
    for (const [name, cur] of this.active) if (!listeners.has(name)) this.stop(cur);
    await Promise.all(binds);
  }

  /** refreshTls installs new certificate material into every TLS listener (existing connections keep theirs). */
  refreshTls(): void {
    const m = this.deps.tls();
    if (!m) return;
    for (const l of this.active.values()) {
      if (l.tlsServer) l.tlsServer.setSecureContext(this.secureOptions(m));
      else if (l.server instanceof tls.Server) l.server.setSecureContext(this.secureOptions(m));
    }
  }

  /**
   * stopAccepting closes the listening sockets (drain), of every listener or of those `which` selects by name;
   * new connections are refused and open connections continue.
   */
  stopAccepting(which?: (name: string) => boolean): void {
    for (const l of this.active.values()) if (!which || which(l.name)) l.server.close();
  }

  /** close stops every listener and destroys its connections. */
  close(): void {
    for (const l of this.active.values()) this.stop(l, true);
    this.active.clear();
  }

  private secureOptions(m: TlsMaterial): tls.SecureContextOptions {
    return { cert: m.certChainPem, key: m.keyPem, ca: m.trustBundlePem, minVersion: 'TLSv1.2' };
  }

  /**
   * buildChains makes one HTTP server per filter chain (reusing a `previous` one whose chain is unchanged) and
   * refreshes `entry.guards`. The servers never listen: the listener hands them connections. Emitting
   * 'listening' starts Node's connection tracking, without which `headersTimeout` and `requestTimeout` are never
   * enforced on handed-over connections.
   */
  private buildChains(l: AcceptedListener, entry: ChainGuards, previous: readonly ChainRuntime[] = []): ChainRuntime[] {
    return buildFilterChains(l, entry, previous, this.guardDeps(), (chain, i, key, json) => {
      const hcm = hcmOf(chain);
      const direction = l.config.traffic_direction === 'INBOUND' ? 'inbound' : 'outbound';
      const hctx = chainHandlerContext(this.deps.handlerContext, l, chain, i, key, entry, {
        direction,
        rds: this.deps.rds,
        peerOf: (req) => peers.get(connectionSocket(req)),
        destinationOf: (req) => destinationOf(connectionSocket(req)),
      });
      const servers = createChainServers(hctx, hcm, createHttpHandler(hctx), {
        limits: this.limits,
        direction,
        key,
        log: this.deps.log,
        context: this.deps.handlerContext,
      });
      const runtime: ChainRuntime = {
        chain,
        json,
        ...servers,
        codec: hcmCodec(hcm),
        alpn: chainAlpn(chain, hcm),
      };
      const tcp = tcpProxyOf(chain);
      if (tcp) runtime.tcp = { proxy: tcp, deps: { ...this.tcpDeps(direction), networkRbac: networkRbacOf(chain) } };
      return runtime;
    });
  }

  private bind(name: string, key: string, l: AcceptedListener): Promise<void> {
    const isTls = l.config.filter_chains.some((c) => c.transport_socket);
    const mode = listenerMode(l.config);
    const entry: ActiveListener = {
      name,
      key,
      server: net.createServer(),
      halfOpen: l.config.filter_chains.some((c) => tcpProxyOf(c) !== undefined),
      tlsServer: undefined,
      mode,
      chains: [],
      guards: new Map(),
      tls: isTls,
      sockets: new Set(),
    };
    entry.chains = this.buildChains(l, entry);
    const material = this.deps.tls();
    if (mode === 'inspect') {
      if (isTls && !material) return Promise.reject(new Error(`${name}: no certificate yet for a TLS listener`));
      entry.tlsServer = this.makeTlsServer(entry, material);
      entry.server = net.createServer({ allowHalfOpen: entry.halfOpen }, (sock) =>
        this.onInspectedConnection(entry, sock),
      );
    } else if (isTls) {
      if (!material) return Promise.reject(new Error(`${name}: no certificate yet for a TLS listener`));
      entry.server = this.makeTlsServer(entry, material);
    } else {
      entry.server = net.createServer({ allowHalfOpen: entry.halfOpen }, (sock) => this.onPlainConnection(entry, sock));
    }
    const bindOpts = { log: this.deps.log, maxConnections: this.limits.maxConnections, message: 'listener bound' };
    return bindListener(this.active, entry, l.config.address.socket_address, bindOpts);
  }

  /** guardDeps are what each chain's request guard takes from this manager. */
  private guardDeps(): ChainGuardDeps {
    return {
      registry: this.deps.handlerContext.metrics.registry,
      log: this.deps.log,
      maxHeadersCount: this.limits.maxHeadersCount,
    };
  }

  private makeTlsServer(entry: ActiveListener, material: TlsMaterial | undefined): tls.Server {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- Node calls ALPNCallback with the TLSSocket as `this`
    const self = this;
    const server = tls.createServer({
      ...(material ? this.secureOptions(material) : {}),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: this.limits.handshakeTimeoutMs,
      allowHalfOpen: entry.halfOpen, // tcp_proxy chains pass half-closes on
      // ALPN per filter chain (as chosen by destination and SNI): h2 or http/1.1 as it offers them (http2/dispatch.ts).
      ALPNCallback: function (this: tls.TLSSocket, { servername, protocols }) {
        // Node passes `servername: false` when the ClientHello has no SNI.
        const sni = typeof servername === 'string' && servername !== '' ? servername : undefined;
        return selectAlpn(findFilterChain(entry.chains, self.facts(entry, this, 'tls', sni))?.alpn, protocols);
      },
    });
    server.on('secureConnection', (sock: tls.TLSSocket) => this.onTlsConnection(entry, sock));
    server.on('tlsClientError', (err: Error, sock: tls.TLSSocket) => {
      this.deps.log.warn(
        { listener: entry.name, remote: sock.remoteAddress, err: err.message },
        'TLS handshake refused',
      );
      this.deps.onHandshake?.('inbound', 'error');
      sock.destroy();
    });
    return server;
  }

  /**
   * onInspectedConnection is Envoy's `tls_inspector`: the first byte (0x16, a TLS handshake record) selects
   * the TLS chains, anything else the raw_buffer chains. A client that sends nothing within the handshake
   * timeout is dropped; a connection no chain accepts is closed.
   */
  private onInspectedConnection(entry: ActiveListener, sock: net.Socket): void {
    this.track(entry, sock);
    const dst = this.restore(entry, sock); // original_dst runs before tls_inspector, as Istio orders them
    const where = { destinationPort: dst?.port ?? sock.localPort, destinationIp: dst?.address ?? sock.localAddress };
    // Chains this destination reaches that ignore SNI and transport need no first byte (server-first protocols).
    if (!needsInspection(entry.chains, where)) return this.serveRawBuffer(entry, sock);
    void inspectTransport(sock, this.limits.handshakeTimeoutMs).then((transport) => {
      if (transport === undefined) return void sock.destroy();
      if (transport === 'tls') {
        // No chain terminates TLS: tcp_proxy chains pass it through, chosen by destination and the ClientHello's SNI.
        if (!entry.tls)
          return passthroughTls(
            (sni) => findFilterChain(entry.chains, this.facts(entry, sock, 'tls', sni)),
            sock,
            this.passthroughDeps(entry),
            (reason, sni) =>
              this.deps.log.warn(
                { listener: entry.name, remote: sock.remoteAddress, reason, sni },
                'TLS passthrough refused',
              ),
          );
        if (!entry.tlsServer || !entry.chains.some((c) => chainMatches(c.chain, undefined, 'tls', true)))
          return void sock.destroy();
        entry.tlsServer.emit('connection', sock);
        return;
      }
      this.serveRawBuffer(entry, sock);
    });
  }

  /** serveRawBuffer serves a plaintext connection of an inspecting listener with its chain, or closes it. */
  private serveRawBuffer(entry: ActiveListener, sock: net.Socket): void {
    const chain = findFilterChain(entry.chains, this.facts(entry, sock, 'raw_buffer'));
    if (!chain) {
      this.deps.log.warn(
        { listener: entry.name, remote: sock.remoteAddress },
        'no plaintext filter chain; connection closed',
      );
      return void sock.destroy();
    }
    if (chain.tcp) return serveTcpChain(chain.tcp.proxy, sock, Buffer.alloc(0), chain.tcp.deps);
    serveHttpConnection(chain, sock, this.limits.headersTimeoutMs);
  }

  /**
   * facts are what filter chain matching knows of a connection: the restored original destination (restored once
   * per socket) or the listener's own address, the SNI and the transport protocol.
   */
  private facts(
    entry: ActiveListener,
    sock: net.Socket,
    transportProtocol: 'tls' | 'raw_buffer',
    serverName?: string,
  ): FilterChainFacts {
    const dst = destinationOf(sock) ?? this.restore(entry, sock);
    return {
      destinationPort: dst?.port ?? sock.localPort,
      destinationIp: dst?.address ?? sock.localAddress,
      serverName,
      transportProtocol,
    };
  }

  private restore(entry: ActiveListener, sock: net.Socket): SocketAddress | undefined {
    if (!this.originalDst.get(entry.name)) return undefined;
    return restoreDestination(sock, this.deps.originalDestination, (err) =>
      this.deps.log.warn({ listener: entry.name, err }, 'original destination unavailable'),
    );
  }

  private track(entry: ActiveListener, sock: net.Socket): void {
    trackSocket(entry.sockets, sock);
  }

  private onPlainConnection(entry: ActiveListener, sock: net.Socket): void {
    this.track(entry, sock);
    const chain = findFilterChain(entry.chains, this.facts(entry, sock, 'raw_buffer'));
    if (!chain) return void sock.destroy();
    if (chain.tcp) return serveTcpChain(chain.tcp.proxy, sock, Buffer.alloc(0), chain.tcp.deps);
    serveHttpConnection(chain, sock, this.limits.headersTimeoutMs);
  }

  private onTlsConnection(entry: ActiveListener, sock: tls.TLSSocket): void {
    this.track(entry, sock);
    const cert = sock.getPeerCertificate(false);
    const material = this.deps.tls();
    const sni = (sock as tls.TLSSocket & { servername?: string | false }).servername || undefined;
    const chain = findFilterChain(entry.chains, this.facts(entry, sock, 'tls', sni));
    if (!chain) {
      this.deps.log.warn(
        { listener: entry.name, sni, remote: sock.remoteAddress },
        'no filter chain matches; connection closed',
      );
      return void sock.destroy();
    }
    if (!cert?.raw) {
      this.deps.onHandshake?.('inbound', 'peer_refused');
      return void sock.destroy();
    }
    // TLS verified the chain against the trust bundle; the leaf must also be a client X509-SVID of our trust domain.
    let uri: string;
    try {
      uri = spiffeUri(
        verifySpiffePeer(cert, { trustDomains: material ? [material.trustDomain] : [], peerRole: 'client' }),
      );
    } catch (err) {
      const reason = isPkiError(err) ? err.reason : 'PEER_MALFORMED';
      this.deps.log.warn({ listener: entry.name, remote: sock.remoteAddress, reason }, 'peer refused');
      this.deps.onHandshake?.('inbound', 'peer_refused');
      return void sock.destroy();
    }
    this.deps.onHandshake?.('inbound', 'ok');
    peers.set(sock, { principal: uri, certDer: cert.raw });
    if (chain.tcp)
      return serveTcpChain(chain.tcp.proxy, sock, Buffer.alloc(0), chain.tcp.deps, { principal: uri, sni });
    serveHttpConnection(chain, sock, this.limits.headersTimeoutMs);
  }

  private tcpDeps(direction: 'inbound' | 'outbound'): SidecarTcpDeps {
    const c = this.deps.handlerContext;
    return {
      clusters: c.clusters,
      registry: c.metrics.registry,
      tls: this.deps.tls,
      onHandshake: this.deps.onHandshake,
      self: c.self,
      accessLog: c.accessLog,
      direction,
    };
  }

  private passthroughDeps(entry: ActiveListener): SidecarTcpDeps {
    return entry.chains.find((c) => c.tcp)?.tcp?.deps ?? this.tcpDeps('outbound');
  }

  private stop(l: ActiveListener, destroy = false): void {
    stopListener(l, l.chains, destroy);
    this.active.delete(l.name);
  }
}
