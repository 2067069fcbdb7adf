import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { isPkiError, spiffeUri, verifySpiffePeer } from '@fedmesh/pki';
import { createHttpHandler, type HttpHandlerContext, type PeerInfo } from './http-handler.js';
import type { RouteTable } from './route-table.js';
import type { TlsMaterial } from './secrets.js';
import type { EnvoyFilterChain, EnvoyListener } from './xds/envoy-schemas.js';

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

/** AcceptedListener is an accepted Listener with its inline route tables compiled (by filter chain index). */
export interface AcceptedListener {
  config: EnvoyListener;
  inlineRoutes: Map<number, RouteTable>;
}

interface ChainRuntime {
  chain: EnvoyFilterChain;
  http: http.Server;
}

interface ActiveListener {
  name: string;
  key: string;
  server: net.Server;
  chains: ChainRuntime[];
  tls: boolean;
  sockets: Set<net.Socket>;
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
}

/**
 * HandshakeObserver receives the outcome of one mTLS handshake: `ok`; `error` (the TLS handshake failed: bad chain,
 * expired, untrusted root, timeout, peer aborted); `peer_refused` (TLS succeeded but the peer is not an acceptable
 * X509-SVID, checked by `verifySpiffePeer`). `inbound` is a listener accepting a peer, `outbound` a pool dialling one.
 */
export type HandshakeObserver = (direction: 'inbound' | 'outbound', result: 'ok' | 'error' | 'peer_refused') => void;

const peers = new WeakMap<net.Socket, PeerInfo>();

function chainMatches(chain: EnvoyFilterChain, sni: string | undefined, transport: 'tls' | 'raw_buffer'): boolean {
  const m = chain.filter_chain_match;
  if (!m) return true;
  if (m.transport_protocol !== undefined && m.transport_protocol !== transport) return false;
  if (m.server_names && m.server_names.length > 0) {
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
 * CA, clientAuth when an extendedKeyUsage is present, within its validity); its filter chain is chosen by SNI (`filter_chain_match.server_names`), and a connection no chain
 * matches is closed. Other listeners are plaintext HTTP. A changed Listener at the same address is swapped in
 * place; a removed one stops accepting and its connections close once idle.
 */
export class ListenerManager {
  private active = new Map<string, ActiveListener>();
  private readonly limits: ListenerLimits;

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
      const cur = this.active.get(name);
      if (cur && cur.key === key) {
        cur.chains = this.buildChains(l);
        cur.tls = l.config.filter_chains.some((c) => c.transport_socket);
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
      if (l.server instanceof tls.Server) l.server.setSecureContext(this.secureOptions(m));
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

  private buildChains(l: AcceptedListener): ChainRuntime[] {
    return l.config.filter_chains.map((chain, i) => {
      const hcm = chain.filters[0]?.typed_config;
      const inline = l.inlineRoutes.get(i);
      const rdsName = hcm?.rds?.route_config_name;
      const direction = l.config.traffic_direction === 'INBOUND' ? 'inbound' : 'outbound';
      const handler = createHttpHandler({
        ...this.deps.handlerContext,
        direction,
        routes: () => inline ?? (rdsName ? this.deps.rds(rdsName) : undefined),
        forwardClientCert: hcm?.forward_client_cert_details ?? 'SANITIZE',
        peerOf: (req) => peers.get(req.socket),
      });
      const server = http.createServer(
        {
          maxHeaderSize: this.limits.maxHeaderSizeBytes,
          requestTimeout: this.limits.requestTimeoutMs,
          headersTimeout: this.limits.headersTimeoutMs,
          keepAliveTimeout: this.limits.keepAliveTimeoutMs,
        },
        handler,
      );
      server.maxHeadersCount = this.limits.maxHeadersCount;
      return { chain, http: server };
    });
  }

  private bind(name: string, key: string, l: AcceptedListener): Promise<void> {
    const isTls = l.config.filter_chains.some((c) => c.transport_socket);
    const entry: ActiveListener = {
      name,
      key,
      server: net.createServer(),
      chains: this.buildChains(l),
      tls: isTls,
      sockets: new Set(),
    };
    const material = this.deps.tls();
    if (isTls) {
      if (!material) return Promise.reject(new Error(`${name}: no certificate yet for a TLS listener`));
      const server = tls.createServer({
        ...this.secureOptions(material),
        requestCert: true,
        rejectUnauthorized: true,
        handshakeTimeout: this.limits.handshakeTimeoutMs,
      });
      server.on('secureConnection', (sock: tls.TLSSocket) => this.onTlsConnection(entry, sock));
      server.on('tlsClientError', (err: Error, sock: tls.TLSSocket) => {
        this.deps.log.warn({ listener: name, remote: sock.remoteAddress, err: err.message }, 'TLS handshake refused');
        this.deps.onHandshake?.('inbound', 'error');
        sock.destroy();
      });
      entry.server = server;
    } else {
      entry.server = net.createServer((sock) => this.onPlainConnection(entry, sock));
    }
    entry.server.maxConnections = this.limits.maxConnections;
    this.active.set(name, entry);
    const { address, port_value } = l.config.address.socket_address;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.active.delete(name);
        reject(new Error(`${name}: bind ${key}: ${err.message}`));
      };
      entry.server.once('error', onError);
      entry.server.listen({ host: address, port: port_value, backlog: 511 }, () => {
        entry.server.off('error', onError);
        entry.server.on('error', (err) => this.deps.log.error({ listener: name, err }, 'listener error'));
        this.deps.log.info({ listener: name, address: key }, 'listener bound');
        resolve();
      });
    });
  }

  private track(entry: ActiveListener, sock: net.Socket): void {
    entry.sockets.add(sock);
    sock.on('close', () => entry.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
  }

  private onPlainConnection(entry: ActiveListener, sock: net.Socket): void {
    this.track(entry, sock);
    const chain = entry.chains.find((c) => chainMatches(c.chain, undefined, 'raw_buffer'));
    if (!chain) return void sock.destroy();
    chain.http.emit('connection', sock);
  }

  private onTlsConnection(entry: ActiveListener, sock: tls.TLSSocket): void {
    this.track(entry, sock);
    const cert = sock.getPeerCertificate(false);
    const material = this.deps.tls();
    const sni = (sock as tls.TLSSocket & { servername?: string | false }).servername || undefined;
    const chain = entry.chains.find((c) => chainMatches(c.chain, sni, 'tls'));
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
    chain.http.emit('connection', sock);
  }

  private stop(l: ActiveListener, destroy = false): void {
    l.server.close();
    for (const c of l.chains) c.http.closeIdleConnections();
    if (destroy) for (const s of l.sockets) s.destroy();
    this.active.delete(l.name);
  }
}
