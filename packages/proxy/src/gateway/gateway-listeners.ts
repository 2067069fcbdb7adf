import net from 'node:net';
import type { Logger } from 'pino';
import { parseMtlsSni } from '@fedmesh/api/xds';
import type { ClusterManager } from '../cluster-manager.js';
import { durationMs } from '../xds/envoy-schemas.js';
import { runTcpProxy } from '../tcp/tcp-proxy.js';
import type { TcpLabels, TcpMetrics } from '../tcp/tcp-metrics.js';
import { DEFAULT_MAX_CLIENT_HELLO_BYTES } from './client-hello.js';
import { matchFilterChain, type EnvoyGatewayFilterChain, type EnvoyGatewayListener } from './gateway-schema.js';
import { peekClientHello } from './peek.js';
import { bindListener, stopListener, trackSocket } from '../listener-runtime.js';

/** GatewayLimits are the explicit limits of every gateway listener. */
export interface GatewayLimits {
  /** helloTimeoutMs bounds the wait for a whole ClientHello when the Listener sets no `listener_filters_timeout`. */
  helloTimeoutMs: number;
  /** maxHelloBytes bounds the ClientHello. */
  maxHelloBytes: number;
  /** maxConnections bounds concurrent connections per listener (more are refused by the kernel backlog). */
  maxConnections: number;
  /** defaultIdleTimeoutMs applies when a tcp_proxy sets no `idle_timeout` (Envoy's default, 1 h). */
  defaultIdleTimeoutMs: number;
}

/** DEFAULT_GATEWAY_LIMITS: Envoy's tls_inspector waits 15 s; we take 5 s. Envoy's tcp_proxy idles out after 1 h. */
export const DEFAULT_GATEWAY_LIMITS: GatewayLimits = {
  helloTimeoutMs: 5_000,
  maxHelloBytes: DEFAULT_MAX_CLIENT_HELLO_BYTES,
  maxConnections: 10_000,
  defaultIdleTimeoutMs: 3_600_000,
};

/** GatewayListenerDeps are what gateway listeners need from the rest of the proxy. */
export interface GatewayListenerDeps {
  log: Logger;
  clusters: ClusterManager;
  metrics: TcpMetrics;
  /** baseLabels returns the gateway's own labels (`source_*`, `reporter`) for each new connection. */
  baseLabels: () => TcpLabels;
  limits?: Partial<GatewayLimits>;
}

interface ActiveListener {
  name: string;
  key: string;
  config: EnvoyGatewayListener;
  server: net.Server;
  sockets: Set<net.Socket>;
}

/**
 * GatewayListenerManager serves the Listeners of a proxy in gateway (router) mode, Istio's east-west gateway
 * with TLS AUTO_PASSTHROUGH: for each connection it peeks the ClientHello (bounded size and time, nothing is
 * written to the client), picks the filter chain whose `server_names` match the SNI, and runs that chain's
 * `tcp_proxy` to the cluster of the same name. TLS is never terminated: the bytes reach the destination sidecar
 * unchanged, so the client's and the server's certificates are checked end to end by them, not here. A changed
 * Listener at the same address swaps its chains in place; a removed one stops accepting and its connections finish.
 */
export class GatewayListenerManager {
  private active = new Map<string, ActiveListener>();
  private readonly limits: GatewayLimits;
  private sessions = 0;

  /** constructor stores dependencies; no I/O. */
  constructor(private readonly deps: GatewayListenerDeps) {
    this.limits = { ...DEFAULT_GATEWAY_LIMITS, ...deps.limits };
  }

  /** names returns the names of the bound listeners. */
  names(): string[] {
    return [...this.active.keys()];
  }

  /** activeSessions is the number of proxied connections open now. */
  activeSessions(): number {
    return this.sessions;
  }

  /** apply makes the bound listeners match `listeners`; rejects if a new one cannot bind (it is then absent). */
  async apply(listeners: ReadonlyMap<string, EnvoyGatewayListener>): Promise<void> {
    const binds: Promise<void>[] = [];
    for (const [name, config] of listeners) {
      const key = `${config.address.socket_address.address}:${config.address.socket_address.port_value}`;
      const cur = this.active.get(name);
      if (cur && cur.key === key) {
        cur.config = config;
        continue;
      }
      if (cur) this.stop(cur, false);
      binds.push(this.bind(name, key, config));
    }
    for (const [name, cur] of this.active) if (!listeners.has(name)) this.stop(cur, false);
    await Promise.all(binds);
  }

  /** close stops every listener and resets its connections. */
  close(): void {
    for (const l of [...this.active.values()]) this.stop(l, true);
  }

  private bind(name: string, key: string, config: EnvoyGatewayListener): Promise<void> {
    const entry: ActiveListener = {
      name,
      key,
      config,
      server: net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => this.onConnection(entry, sock)),
      sockets: new Set(),
    };
    const bindOpts = {
      log: this.deps.log,
      maxConnections: this.limits.maxConnections,
      message: 'gateway listener bound',
    };
    return bindListener(this.active, entry, config.address.socket_address, bindOpts);
  }

  private onConnection(entry: ActiveListener, sock: net.Socket): void {
    trackSocket(entry.sockets, sock);
    void this.serve(entry, sock);
  }

  private async serve(entry: ActiveListener, sock: net.Socket): Promise<void> {
    const timeout = entry.config.listener_filters_timeout
      ? durationMs(entry.config.listener_filters_timeout)
      : this.limits.helloTimeoutMs;
    const hello = await peekClientHello(sock, {
      timeoutMs: timeout > 0 ? timeout : this.limits.helloTimeoutMs,
      maxHelloBytes: this.limits.maxHelloBytes,
    });
    if (!hello.ok) {
      this.deps.metrics.rejected.inc({ listener: entry.name, reason: hello.reason });
      this.deps.log.debug({ listener: entry.name, remote: sock.remoteAddress, reason: hello.reason }, 'refused');
      return void sock.destroy();
    }
    // The chains in force now (an update may have swapped them while the ClientHello was arriving).
    const chain: EnvoyGatewayFilterChain | undefined = matchFilterChain(entry.config.filter_chains, hello.serverName);
    const tcp = chain?.filters[0]?.typed_config;
    if (!tcp) {
      this.deps.metrics.rejected.inc({ listener: entry.name, reason: 'no_filter_chain' });
      this.deps.log.warn(
        { listener: entry.name, sni: hello.serverName, remote: sock.remoteAddress },
        'no filter chain matches; connection closed',
      );
      return void sock.destroy();
    }
    const labels = this.deps.baseLabels();
    const dest = hello.serverName ? parseMtlsSni(hello.serverName) : undefined;
    if (dest) {
      labels.destination_service = dest.host;
      const [svcName, svcNs] = dest.host.split('.');
      labels.destination_service_name = svcName ?? 'unknown';
      labels.destination_service_namespace = svcNs ?? 'unknown';
    }
    this.sessions++;
    try {
      const r = await runTcpProxy(
        sock,
        hello.buffered,
        {
          cluster: tcp.cluster,
          idleTimeoutMs: tcp.idle_timeout ? durationMs(tcp.idle_timeout) : this.limits.defaultIdleTimeoutMs,
          maxConnectAttempts: tcp.max_connect_attempts?.value ?? 1,
        },
        { clusters: this.deps.clusters, metrics: this.deps.metrics, labels },
      );
      this.deps.log.debug(
        { listener: entry.name, sni: hello.serverName, cluster: tcp.cluster, ...r },
        'tcp session finished',
      );
    } finally {
      this.sessions--;
    }
  }

  private stop(l: ActiveListener, destroy: boolean): void {
    stopListener(l, [], destroy);
    this.active.delete(l.name);
  }
}
