import net from 'node:net';
import { isOriginalDstCluster, originalDstEndpoint } from '../capture/original-dst-cluster.js';
import type { ClusterManager, Endpoint, UpstreamCluster } from '../cluster-manager.js';
import type { TcpLabels, TcpMetrics } from './tcp-metrics.js';

/**
 * TcpProxySettings are one `envoy.filters.network.tcp_proxy` filter's settings
 * (extensions.filters.network.tcp_proxy.v3.TcpProxy): the upstream cluster, `idle_timeout` (no bytes either way
 * for this long closes both sides; Envoy's default is 1 h) and `max_connect_attempts` (Envoy's default 1).
 */
export interface TcpProxySettings {
  cluster: string;
  idleTimeoutMs: number;
  maxConnectAttempts: number;
}

/** TcpSessionResult is how one proxied connection ended; `flag` is an Envoy response flag (`-` when none). */
export interface TcpSessionResult {
  /** flag: `-` ended normally, `NC` no such cluster, `UH` no healthy upstream, `UF` connect failed, `IDLE` idle timeout, `UC`/`DC` upstream/downstream reset. */
  flag: '-' | 'NC' | 'UH' | 'UF' | 'IDLE' | 'UC' | 'DC';
  upstream: string | undefined;
  receivedBytes: number;
  sentBytes: number;
  attempts: number;
}

/** TcpProxyDeps are what a TCP proxy session needs: hosts and pools, metrics, and its connection's labels. */
export interface TcpProxyDeps {
  clusters: ClusterManager;
  metrics: TcpMetrics;
  /** labels are the connection's metric labels; `destination_*` are filled in from the chosen endpoint. */
  labels: TcpLabels;
  /**
   * connect, when set, opens the upstream connection instead of a plain TCP connect (a sidecar originates mTLS to
   * a peer proxy, `tcp/sidecar-tcp.ts`); it resolves undefined on failure and must honour the cluster's connect
   * timeout and give up when `down` closes.
   */
  connect?: (
    cluster: UpstreamCluster,
    ep: Endpoint,
    target: { host: string; port: number },
    down: net.Socket,
  ) => Promise<net.Socket | undefined>;
}

/** METRICS_FLUSH_MS is how often a long connection's byte counts reach the counters (Istio reports TCP every 5 s). */
export const METRICS_FLUSH_MS = 5_000;

function connectOnce(host: string, port: number, timeoutMs: number, down: net.Socket): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const up = net.connect({ host, port, allowHalfOpen: true });
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      down.off('close', onDownClose);
      up.off('error', onError);
      if (ok) resolve(up);
      else {
        up.destroy();
        resolve(undefined);
      }
    };
    const onError = (): void => finish(false);
    const onDownClose = (): void => finish(false);
    const timer = setTimeout(() => finish(false), timeoutMs);
    up.once('connect', () => finish(true));
    up.once('error', onError);
    down.once('close', onDownClose);
  });
}

/**
 * runTcpProxy is Envoy's `tcp_proxy` for one accepted connection whose first bytes were already read (`initial`,
 * e.g. a peeked ClientHello): it picks a host of the cluster (up to `maxConnectAttempts` hosts, each bounded by
 * the cluster's connect timeout; an ORIGINAL_DST cluster's one host is the connection's original destination,
 * `UH` when it has none), writes `initial` to it, then pipes both ways with back-pressure and half-close
 * until both sides are done, an idle timeout, or a reset (which resets the other side). Bytes are counted into
 * Istio's TCP metrics, flushed every {@link METRICS_FLUSH_MS} and at close. Resolves when the session is over;
 * never rejects. The downstream socket is closed in every outcome.
 */
export async function runTcpProxy(
  down: net.Socket,
  initial: Buffer,
  settings: TcpProxySettings,
  deps: TcpProxyDeps,
): Promise<TcpSessionResult> {
  const { clusters, metrics, labels } = deps;
  const result: TcpSessionResult = { flag: '-', upstream: undefined, receivedBytes: 0, sentBytes: 0, attempts: 0 };
  const fail = (flag: TcpSessionResult['flag']): TcpSessionResult => {
    result.flag = flag;
    labels.response_flags = flag;
    metrics.opened.inc(labels);
    metrics.closed.inc(labels);
    down.destroy();
    return result;
  };
  const cluster = clusters.get(settings.cluster);
  if (!cluster) return fail('NC');
  const tried = new Set<Endpoint>();
  let up: net.Socket | undefined;
  let chosen: Endpoint | undefined;
  for (let i = 0; i < Math.max(1, settings.maxConnectAttempts) && !up; i++) {
    // An ORIGINAL_DST cluster (PassthroughCluster) has one host: where the downstream was going (capture mode).
    const ep = isOriginalDstCluster(cluster) ? originalDstEndpoint(down) : clusters.pickEndpoint(cluster, tried);
    if (!ep || tried.has(ep)) break;
    tried.add(ep);
    result.attempts++;
    const target = clusters.upstreamTarget(cluster, ep);
    up = deps.connect
      ? await deps.connect(cluster, ep, target, down)
      : await connectOnce(target.host, target.port, cluster.connectTimeoutMs, down);
    chosen = ep;
    result.upstream = `${target.host}:${target.port}`;
    if (down.destroyed) {
      up?.destroy();
      return fail('DC');
    }
  }
  if (!up || !chosen) return fail(result.attempts === 0 ? 'UH' : 'UF');
  if (chosen.workload) {
    labels.destination_workload = chosen.workload.name;
    labels.destination_workload_namespace = chosen.workload.namespace;
    labels.destination_app = chosen.workload.app;
    labels.destination_version = chosen.workload.version;
    labels.destination_cluster = chosen.workload.cluster;
  }
  metrics.opened.inc(labels);
  return pipeSession(down, up, initial, settings.idleTimeoutMs, metrics, labels, result);
}

function pipeSession(
  down: net.Socket,
  up: net.Socket,
  initial: Buffer,
  idleTimeoutMs: number,
  metrics: TcpMetrics,
  labels: TcpLabels,
  result: TcpSessionResult,
): Promise<TcpSessionResult> {
  return new Promise((resolve) => {
    let pendingIn = initial.length;
    let pendingOut = 0;
    let last = Date.now();
    let closed = 0;
    result.receivedBytes += initial.length;
    const flush = (): void => {
      if (pendingIn > 0) metrics.receivedBytes.inc(labels, pendingIn);
      if (pendingOut > 0) metrics.sentBytes.inc(labels, pendingOut);
      pendingIn = 0;
      pendingOut = 0;
    };
    const flusher = setInterval(flush, METRICS_FLUSH_MS);
    flusher.unref();
    const onIdle = (): void => {
      if (idleTimeoutMs <= 0) return; // Envoy: an idle_timeout of 0 disables it
      const quiet = Date.now() - last;
      if (quiet < idleTimeoutMs) {
        idle = setTimeout(onIdle, idleTimeoutMs - quiet);
        return;
      }
      result.flag = 'IDLE';
      down.destroy();
      up.destroy();
    };
    let idle = setTimeout(onIdle, Math.max(idleTimeoutMs, 0));
    const onClose = (): void => {
      if (++closed < 2) return;
      clearTimeout(idle);
      clearInterval(flusher);
      flush();
      labels.response_flags = result.flag;
      metrics.closed.inc(labels);
      resolve(result);
    };
    down.on('data', (c: Buffer) => {
      pendingIn += c.length;
      result.receivedBytes += c.length;
      last = Date.now();
    });
    up.on('data', (c: Buffer) => {
      pendingOut += c.length;
      result.sentBytes += c.length;
      last = Date.now();
    });
    // A reset on one side resets the other (Envoy closes both); a clean end is passed on by pipe() as a half-close.
    down.on('error', () => {
      if (result.flag === '-') result.flag = 'DC';
      up.destroy();
    });
    up.on('error', () => {
      if (result.flag === '-') result.flag = 'UC';
      down.destroy();
    });
    // A side closed before its end was passed on (reset, destroyed, timed out) takes the other side with it; after a
    // clean end, the other side finishes flushing and closes on its own.
    down.on('close', () => {
      if (!up.writableEnded) up.destroy();
      onClose();
    });
    up.on('close', () => {
      if (!down.writableEnded) down.destroy();
      onClose();
    });
    up.setNoDelay(true);
    down.setNoDelay(true);
    if (initial.length > 0) up.write(initial);
    down.pipe(up);
    up.pipe(down);
  });
}
