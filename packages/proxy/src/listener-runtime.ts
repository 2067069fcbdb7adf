import http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { HttpHandlerContext } from './http-handler.js';
import { CHAIN_GONE, NO_SECURITY, RequestGuard, type HcmSecurity } from './http/request-guard.js';
import { onClientError } from './http/client-error.js';
import { createChainHttp2 } from './http2/chain-codecs.js';
import type { DownstreamHttp2, HttpRequestHandler } from './http2/h2-server.js';
import { createUpgradeHandler } from './websocket/upgrade.js';
import { hcmOf, type EnvoyFilterChain, type EnvoyHttpConnectionManager } from './xds/envoy-schemas.js';
import type { AcceptedListener, ListenerLimits } from './listener-manager.js';
import type { RouteTable } from './route-table.js';
import { hasCorsFilter } from './filters/cors.js';

/**
 * ListenerRuntime is what the listener managers (sidecar, ingress gateway, east-west gateway) keep of one bound
 * Listener: its name, its `address:port` key, the listening server and the connections it accepted.
 */
export interface ListenerRuntime {
  name: string;
  key: string;
  server: net.Server;
  sockets: Set<net.Socket>;
}

/**
 * ChainServers are the servers of one HTTP filter chain: `http` (HTTP/1.1), `h2` (HTTP/2) and, for an ingress
 * TLS chain, the non-listening `tlsServer` that terminates its TLS. None of them listens: the listener hands
 * them connections.
 */
export interface ChainServers {
  http: http.Server;
  h2: DownstreamHttp2;
  tlsServer?: tls.Server;
}

/** BindOptions are how {@link bindListener} binds a Listener and what it logs (`fields` are added to the log line). */
export interface BindOptions {
  log: Logger;
  /** maxConnections bounds the listener's concurrent connections. */
  maxConnections: number;
  /** message is the info line logged once bound ("listener bound", "ingress listener bound", …). */
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * bindListener records `entry` in `active` under its name and binds its server to `at` (a Listener's
 * `socket_address`) with a backlog of 511 (Envoy's and Node's default) and `maxConnections`. Resolves once bound,
 * after which server errors are logged; when the bind fails the entry leaves `active` and the promise rejects with
 * `<name>: bind <key>: <reason>`.
 */
export function bindListener<T extends ListenerRuntime>(
  active: Map<string, T>,
  entry: T,
  at: { address: string; port_value: number },
  o: BindOptions,
): Promise<void> {
  const { name, key, server } = entry;
  server.maxConnections = o.maxConnections;
  active.set(name, entry);
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      active.delete(name);
      reject(new Error(`${name}: bind ${key}: ${err.message}`));
    };
    server.once('error', onError);
    server.listen({ host: at.address, port: at.port_value, backlog: 511 }, () => {
      server.off('error', onError);
      server.on('error', (err) => o.log.error({ listener: name, err }, 'listener error'));
      o.log.info({ listener: name, address: key, ...o.fields }, o.message);
      resolve();
    });
  });
}

/**
 * trackSocket records an accepted connection in `sockets` until it closes (so a removed Listener can destroy
 * it); a socket error destroys the connection.
 */
export function trackSocket(sockets: Set<net.Socket>, sock: net.Socket): void {
  sockets.add(sock);
  sock.on('close', () => sockets.delete(sock));
  sock.on('error', () => sock.destroy());
}

/** closeChain drains one filter chain: its servers stop, idle connections close and in-flight requests finish. */
export function closeChain(c: ChainServers): void {
  c.http.close();
  c.h2.close();
  c.tlsServer?.close();
}

/** retireChains drains every chain of `previous` that `current` no longer holds (changed or removed chains). */
export function retireChains(previous: readonly ChainServers[], current: readonly ChainServers[]): void {
  for (const c of previous) if (!current.includes(c)) closeChain(c);
}

/**
 * stopListener stops accepting on `l`, drains its `chains` and, with `destroy`, destroys its open connections.
 * The caller forgets the listener.
 */
export function stopListener(l: ListenerRuntime, chains: readonly ChainServers[], destroy: boolean): void {
  l.server.close();
  for (const c of chains) closeChain(c);
  if (destroy) for (const s of l.sockets) s.destroy();
}

/** ChainGuardDeps are what {@link createChainGuard} needs from the listener manager. */
export interface ChainGuardDeps {
  registry: Registry;
  log: Logger;
  maxHeadersCount: number;
}

/**
 * createChainGuard makes the request guard (path normalization, RBAC, header count) of filter chain `key` from its
 * compiled HCM security, counting under the HCM's `stat_prefix` and logging with scope `rbac`.
 */
export function createChainGuard(
  security: HcmSecurity,
  hcm: EnvoyHttpConnectionManager | undefined,
  key: string,
  deps: ChainGuardDeps,
): RequestGuard {
  return new RequestGuard(security, {
    statPrefix: hcm?.stat_prefix ?? '',
    registry: deps.registry,
    log: deps.log.child({ scope: 'rbac', chain: key }),
    maxHeadersCount: deps.maxHeadersCount,
  });
}

/** ChainServerOptions are a filter chain's listener-level settings for {@link createChainServers}. */
export interface ChainServerOptions {
  limits: ListenerLimits;
  /** direction is the access log's direction of parser errors. */
  direction: 'inbound' | 'outbound';
  /** key is the chain's name (or `#<index>`), for logs. */
  key: string;
  log: Logger;
  /** context is the listener manager's handler context (metrics registry, access log, drain), read lazily. */
  context: Pick<HttpHandlerContext, 'metrics' | 'accessLog' | 'drain'>;
}

/**
 * createChainServers builds an HTTP filter chain's HTTP/1.1 server (the listener's limits, WebSocket per the HCM's
 * `upgrade_configs`, parser errors answered and access-logged) and its HTTP/2 server, both serving `handler`.
 * The HTTP/1.1 server is told it is 'listening' without listening, which starts Node's connection checks
 * (`headersTimeout`, `requestTimeout`) on handed-over connections.
 */
export function createChainServers(
  hctx: HttpHandlerContext,
  hcm: EnvoyHttpConnectionManager | undefined,
  handler: HttpRequestHandler,
  o: ChainServerOptions,
): ChainServers {
  const { limits } = o;
  const server = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderSizeBytes,
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    handler,
  );
  server.maxHeadersCount = limits.maxHeadersCount;
  // WebSocket per `upgrade_configs`; other Upgrade requests are served as plain requests (websocket/upgrade.ts).
  server.on(
    'upgrade',
    createUpgradeHandler(hctx, {
      upgradeConfigs: hcm?.upgrade_configs,
      onRequest: handler,
      bodyTimeoutMs: limits.headersTimeoutMs,
    }),
  );
  server.on('clientError', (err: NodeJS.ErrnoException, sock: net.Socket) =>
    onClientError(err, sock, { accessLog: o.context.accessLog, direction: o.direction, chain: o.key }),
  );
  server.emit('listening');
  const h2 = createChainHttp2(hcm, handler, {
    headers: limits,
    registry: o.context.metrics.registry,
    log: o.log.child({ scope: 'http2', chain: o.key }),
    draining: () => o.context.drain?.draining ?? false,
  });
  return { http: server, h2 };
}

/** chainKey names filter chain `index` of a Listener: its `name`, else `#<index>`. */
export function chainKey(chain: EnvoyFilterChain, index: number): string {
  return chain.name ?? `#${index}`;
}

/** ChainGuards are a listener's request guards by chain key; connections look theirs up at every request. */
export interface ChainGuards {
  guards: Map<string, RequestGuard>;
}

/**
 * buildFilterChains makes the runtime of every filter chain of `l` with `make`, reusing a `previous` one whose
 * chain config (as JSON) is unchanged, and replaces `entry.guards` with a fresh request guard per chain (so a
 * policy change reaches open connections of reused chains too).
 */
export function buildFilterChains<C extends { json: string }>(
  l: AcceptedListener,
  entry: ChainGuards,
  previous: readonly C[],
  guardDeps: ChainGuardDeps,
  make: (chain: EnvoyFilterChain, index: number, key: string, json: string) => C,
): C[] {
  const guards = new Map<string, RequestGuard>();
  const chains = l.config.filter_chains.map((chain, i) => {
    const key = chainKey(chain, i);
    guards.set(key, createChainGuard(l.security?.get(i) ?? NO_SECURITY, hcmOf(chain), key, guardDeps));
    const json = JSON.stringify(chain);
    return previous.find((p) => p.json === json) ?? make(chain, i, key, json);
  });
  entry.guards = guards;
  return chains;
}

/** ChainContextOptions are what differs between listener kinds in {@link chainHandlerContext}. */
export interface ChainContextOptions {
  direction: HttpHandlerContext['direction'];
  rds: (name: string) => RouteTable | undefined;
  peerOf: HttpHandlerContext['peerOf'];
  destinationOf?: NonNullable<HttpHandlerContext['destinationOf']>;
}

/**
 * chainHandlerContext is the HTTP handler context of `chain`, filter chain `index` (key `key`) of `l`: routes from the
 * chain's inline RouteConfiguration, else its RDS one (looked up per request), the HCM's
 * `forward_client_cert_details` (default SANITIZE, as Envoy's), its CORS filter, and the chain's request guard
 * looked up per request in `entry.guards` (CHAIN_GONE once the chain is removed).
 */
export function chainHandlerContext(
  base: Omit<HttpHandlerContext, 'routes' | 'direction' | 'forwardClientCert' | 'peerOf'>,
  l: AcceptedListener,
  chain: EnvoyFilterChain,
  index: number,
  key: string,
  entry: ChainGuards,
  o: ChainContextOptions,
): HttpHandlerContext {
  const hcm = hcmOf(chain);
  const inline = l.inlineRoutes.get(index);
  const rdsName = hcm?.rds?.route_config_name;
  return {
    ...base,
    direction: o.direction,
    routes: () => inline ?? (rdsName ? o.rds(rdsName) : undefined),
    forwardClientCert: hcm?.forward_client_cert_details ?? 'SANITIZE',
    corsFilter: hasCorsFilter(hcm),
    peerOf: o.peerOf,
    ...(o.destinationOf ? { destinationOf: o.destinationOf } : {}),
    // Looked up per request: a policy update reaches connections opened before it.
    guard: { decodeHeaders: (...a) => (entry.guards.get(key) ?? CHAIN_GONE).decodeHeaders(...a) },
  };
}
