import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import { isPkiError } from '@fedmesh/pki';
import type { ClusterManager, Endpoint, UpstreamCluster } from './cluster-manager.js';
import { blankLabels, type IstioLabels, type ProxyMetrics } from './metrics.js';
import type { HeaderMutation, RequestView, RouteEntry, RouteTable } from './route-table.js';

/** WorkloadInfo describes the proxy's own workload, for metric labels and access logs. */
export interface WorkloadInfo {
  name: string;
  namespace: string;
  app: string;
  version: string;
  principal: string;
  cluster: string;
}

/** PeerInfo is the verified identity of the downstream peer of an inbound mTLS connection. */
export interface PeerInfo {
  principal: string;
  certDer: Buffer;
}

/** HttpHandlerContext is what one HTTP connection manager needs to serve requests. */
export interface HttpHandlerContext {
  direction: 'inbound' | 'outbound';
  routes: () => RouteTable | undefined;
  clusters: ClusterManager;
  metrics: ProxyMetrics;
  accessLog: Logger;
  self: WorkloadInfo;
  /** forwardClientCert is the HCM's `forward_client_cert_details`; SANITIZE_SET sets XFCC from the peer. */
  forwardClientCert: 'SANITIZE' | 'SANITIZE_SET' | 'FORWARD_ONLY' | 'APPEND_FORWARD' | 'ALWAYS_FORWARD_ONLY';
  /** peerOf returns the verified peer of a request's connection (inbound mTLS), if any. */
  peerOf: (req: http.IncomingMessage) => PeerInfo | undefined;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'host',
]);

/** MAX_RETRY_BUFFER_BYTES bounds the request body kept for retries (Envoy's default buffer limit is 1 MiB). */
export const MAX_RETRY_BUFFER_BYTES = 1024 * 1024;

interface Attempt {
  res?: http.IncomingMessage;
  flag?: string;
  endpoint?: Endpoint;
}

function applyMutations(headers: Record<string, string | string[]>, add: HeaderMutation[], remove: string[]): void {
  for (const r of remove) delete headers[r];
  for (const m of add) {
    const cur = headers[m.key];
    if (m.overwrite || cur === undefined) headers[m.key] = m.value;
    else headers[m.key] = Array.isArray(cur) ? [...cur, m.value] : [cur, m.value];
  }
}

function pickCluster(action: Extract<RouteEntry['action'], { kind: 'route' }>): string {
  if (action.clusters.length === 1) return action.clusters[0]?.name ?? '';
  let n = Math.random() * action.totalWeight;
  for (const c of action.clusters) {
    n -= c.weight;
    if (n < 0) return c.name;
  }
  return action.clusters[action.clusters.length - 1]?.name ?? '';
}

function retriable(
  retry: RouteEntry['action'] & { kind: 'route' },
  status: number | undefined,
  flag: string | undefined,
): boolean {
  const on = retry.retry?.retryOn;
  if (!on || on.size === 0) return false;
  if (status === undefined) {
    if (flag === 'UF')
      return (
        on.has('connect-failure') ||
        on.has('reset') ||
        on.has('5xx') ||
        on.has('gateway-error') ||
        on.has('refused-stream')
      );
    if (flag === 'UC') return on.has('reset') || on.has('5xx');
    return false;
  }
  if (on.has('5xx') && status >= 500) return true;
  if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
  if (on.has('retriable-4xx') && status === 409) return true;
  if (on.has('retriable-status-codes') && retry.retry?.retriableStatusCodes.has(status)) return true;
  return false;
}

function xfcc(peer: PeerInfo, self: WorkloadInfo): string {
  return `By=${self.principal};URI=${peer.principal}`;
}

/**
 * createHttpHandler builds the request handler of one HTTP connection manager: route lookup (absolute-form and
 * Host-header requests), fault injection, direct responses and redirects, weighted cluster choice, host
 * selection, header mutations, retries per `retry_on`, the route timeout, then Istio metrics and a JSON access
 * log line per request. Local replies use Envoy's response flags (NR, NC, UH, UF, UT, URX, UC, FI).
 */
export function createHttpHandler(
  ctx: HttpHandlerContext,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const start = process.hrtime.bigint();
    const startTime = new Date();
    let requestBytes = 0;
    let responseBytes = 0;
    const labels: IstioLabels = blankLabels();
    labels.reporter = ctx.direction === 'outbound' ? 'source' : 'destination';
    labels.request_protocol = 'http';
    const peer = ctx.peerOf(req);
    const self = ctx.self;
    if (ctx.direction === 'outbound') {
      Object.assign(labels, {
        source_workload: self.name,
        source_workload_namespace: self.namespace,
        source_principal: self.principal,
        source_app: self.app,
        source_version: self.version,
        source_cluster: self.cluster,
      });
    } else {
      Object.assign(labels, {
        destination_workload: self.name,
        destination_workload_namespace: self.namespace,
        destination_principal: self.principal,
        destination_app: self.app,
        destination_version: self.version,
        destination_cluster: self.cluster,
        source_principal: peer?.principal ?? 'unknown',
        connection_security_policy: peer ? 'mutual_tls' : 'none',
      });
    }
    let upstreamCluster = '';
    let upstreamHost = '';
    let flag = '-';

    // Request target: absolute-form (proxy request) or origin-form with a Host header.
    let authority = req.headers.host ?? '';
    let path = req.url ?? '/';
    let scheme = 'http';
    if (/^https?:\/\//i.test(path)) {
      try {
        const u = new URL(path);
        authority = u.host;
        path = `${u.pathname}${u.search}`;
        scheme = u.protocol.slice(0, -1);
      } catch {
        flag = 'DPE';
        return finish(400, 'bad request target\n');
      }
    }
    const view: RequestView = { method: req.method ?? 'GET', authority, path, scheme, headers: req.headers };
    req.on('data', (c: Buffer) => (requestBytes += c.length));

    function finish(status: number, body: string, extra: Record<string, string> = {}): void {
      if (!res.headersSent) {
        res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...extra });
        res.end(body);
      } else res.destroy();
      responseBytes = Buffer.byteLength(body);
      done(status);
    }

    function done(status: number): void {
      labels.response_code = String(status);
      labels.response_flags = flag;
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      ctx.metrics.record(labels, ms, requestBytes, responseBytes);
      ctx.accessLog.info(
        {
          start_time: startTime.toISOString(),
          direction: ctx.direction,
          method: view.method,
          path: view.path,
          authority: view.authority,
          protocol: `HTTP/${req.httpVersion}`,
          response_code: status,
          response_flags: flag,
          duration_ms: Math.round(ms * 1000) / 1000,
          bytes_received: requestBytes,
          bytes_sent: responseBytes,
          upstream_cluster: upstreamCluster,
          upstream_host: upstreamHost,
          downstream_peer_principal: peer?.principal ?? null,
          request_id: req.headers['x-request-id'] ?? null,
        },
        'access',
      );
    }

    const table = ctx.routes();
    const hit = table?.route(view);
    if (!hit) {
      flag = 'NR';
      return finish(404, 'no route\n');
    }
    const route = hit.route;
    void serve(route);

    async function serve(route: RouteEntry): Promise<void> {
      if (route.fault?.delayMs !== undefined && Math.random() < (route.fault.delayFraction ?? 1)) {
        flag = 'DI';
        await new Promise((r) => setTimeout(r, route.fault?.delayMs));
      }
      if (route.fault?.abortStatus !== undefined && Math.random() < (route.fault.abortFraction ?? 1)) {
        flag = 'FI';
        return finish(route.fault.abortStatus, 'fault filter abort');
      }
      const action = route.action;
      if (action.kind === 'direct') return finish(action.status, action.body);
      if (action.kind === 'redirect') {
        let p = action.path ?? view.path;
        if (action.prefixRewrite)
          p = action.prefixRewrite.replacement + view.path.slice(action.prefixRewrite.prefix.length);
        if (action.stripQuery) p = p.split('?')[0] ?? p;
        const host = (action.host ?? view.authority.split(':')[0] ?? '') + (action.port ? `:${action.port}` : '');
        return finish(action.status, '', { location: `${action.scheme ?? view.scheme}://${host}${p}` });
      }
      const clusterName = pickCluster(action);
      upstreamCluster = clusterName;
      const cluster = ctx.clusters.get(clusterName);
      if (!cluster) {
        flag = 'NC';
        return finish(503, 'no cluster\n');
      }

      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      let upstreamPath = view.path;
      let upstreamAuthority = view.authority;
      if (action.prefixRewrite)
        upstreamPath = action.prefixRewrite.replacement + view.path.slice(action.prefixRewrite.prefix.length) || '/';
      if (action.regexRewrite) {
        const [p, q] = [
          upstreamPath.split('?')[0] ?? '',
          upstreamPath.includes('?') ? upstreamPath.slice(upstreamPath.indexOf('?')) : '',
        ];
        upstreamPath = p.replace(action.regexRewrite.pattern, action.regexRewrite.substitution) + q;
      }
      if (action.hostRewrite !== undefined) upstreamAuthority = action.hostRewrite;
      headers['x-request-id'] ??= randomUUID();
      headers['x-forwarded-proto'] ??= view.scheme;
      if (ctx.direction === 'inbound') {
        if (ctx.forwardClientCert === 'SANITIZE' || ctx.forwardClientCert === 'SANITIZE_SET')
          delete headers['x-forwarded-client-cert'];
        if (ctx.forwardClientCert === 'SANITIZE_SET' && peer) headers['x-forwarded-client-cert'] = xfcc(peer, ctx.self);
      }
      applyMutations(headers, route.requestHeadersToAdd, route.requestHeadersToRemove);
      const dest = cluster.endpoints.find((e) => e.workload)?.workload;
      if (ctx.direction === 'outbound') {
        const parts = clusterName.split('|');
        const svcHost = parts[3] ?? '';
        Object.assign(labels, {
          destination_service: svcHost,
          destination_service_name: svcHost.split('.')[0] ?? 'unknown',
          destination_service_namespace: svcHost.split('.')[1] ?? 'unknown',
          connection_security_policy: cluster.mtls ? 'unknown' : 'none',
        });
      }

      // Buffer the body (bounded) so that a retry can resend it.
      const canRetry = (action.retry?.numRetries ?? 0) > 0;
      let body: Buffer | undefined;
      if (canRetry) {
        const chunks: Buffer[] = [];
        let size = 0;
        let tooBig = false;
        for await (const c of req) {
          size += (c as Buffer).length;
          if (size > MAX_RETRY_BUFFER_BYTES) {
            tooBig = true;
            break;
          }
          chunks.push(c as Buffer);
        }
        if (tooBig) {
          flag = 'DPE';
          return finish(413, 'payload too large\n');
        }
        body = Buffer.concat(chunks);
      }

      const deadline = action.timeoutMs > 0 ? Date.now() + action.timeoutMs : Infinity;
      const tried = new Set<Endpoint>();
      const maxAttempts = 1 + (action.retry?.numRetries ?? 0);
      let last: Attempt = {};
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        const ep = ctx.clusters.pickEndpoint(cluster, tried);
        if (!ep) {
          flag = 'UH';
          return finish(503, 'no healthy upstream\n');
        }
        tried.add(ep);
        if (ep.workload && ctx.direction === 'outbound') {
          Object.assign(labels, {
            destination_workload: ep.workload.name,
            destination_workload_namespace: ep.workload.namespace,
            destination_app: ep.workload.app,
            destination_version: ep.workload.version,
            destination_cluster: ep.workload.cluster,
          });
        } else if (dest && ctx.direction === 'outbound') labels.destination_workload = dest.name;
        const remaining = deadline - Date.now();
        const perTry = action.retry?.perTryTimeoutMs ?? 0;
        const timeout = Math.min(remaining, perTry > 0 ? perTry : Infinity);
        if (timeout <= 0) {
          flag = 'UT';
          return finish(504, 'upstream request timeout\n');
        }
        last = await sendOnce(cluster, ep, headers, upstreamPath, upstreamAuthority, body, timeout);
        upstreamHost = `${ep.address}:${ep.port}`;
        const status = last.res?.statusCode;
        const more = attempt < maxAttempts && retriable(action, status, last.flag);
        if (!more) break;
        last.res?.resume();
        if (attempt + 1 === maxAttempts) flag = 'URX';
      }
      if (!last.res) {
        flag = last.flag === 'UT' ? 'UT' : flag === 'URX' ? 'URX' : (last.flag ?? 'UF');
        const status = flag === 'UT' ? 504 : 503;
        return finish(
          status,
          flag === 'UT' ? 'upstream request timeout\n' : 'upstream connect error or disconnect/reset before headers\n',
        );
      }
      if (flag === 'URX' && !retriable(action, last.res.statusCode, undefined)) flag = '-';
      const ures = last.res;
      if (ctx.direction === 'outbound' && cluster.mtls) labels.connection_security_policy = 'unknown';
      const outHeaders: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ures.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) outHeaders[k] = v;
      applyMutations(outHeaders, route.responseHeadersToAdd, route.responseHeadersToRemove);
      res.writeHead(ures.statusCode ?? 502, outHeaders);
      ures.on('data', (c: Buffer) => (responseBytes += c.length));
      ures.pipe(res);
      ures.on('end', () => done(ures.statusCode ?? 502));
      ures.on('error', () => {
        flag = 'UC';
        res.destroy();
        done(ures.statusCode ?? 502);
      });
    }

    function sendOnce(
      cluster: UpstreamCluster,
      ep: Endpoint,
      headers: Record<string, string | string[]>,
      upstreamPath: string,
      upstreamAuthority: string,
      body: Buffer | undefined,
      timeoutMs: number,
    ): Promise<Attempt> {
      return new Promise((resolve) => {
        const target = ctx.clusters.upstreamTarget(cluster, ep);
        const mod = cluster.mtls ? https : http;
        const ureq = mod.request({
          host: target.host,
          port: target.port,
          method: view.method,
          path: upstreamPath,
          headers: { ...headers, host: upstreamAuthority },
          agent: cluster.agent,
          ...(cluster.mtls ? { servername: cluster.mtls.sni } : {}),
        });
        let settled = false;
        const settle = (a: Attempt): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(a);
        };
        const timer = Number.isFinite(timeoutMs)
          ? setTimeout(() => {
              ureq.destroy();
              settle({ flag: 'UT', endpoint: ep });
            }, timeoutMs)
          : undefined;
        ureq.on('response', (r) => settle({ res: r, endpoint: ep }));
        ureq.on('error', (err: NodeJS.ErrnoException) => {
          const connect =
            err.code === 'ECONNREFUSED' ||
            err.code === 'EHOSTUNREACH' ||
            err.code === 'ETIMEDOUT' ||
            isPkiError(err) ||
            /certificate|SAN|SPIFFE|tls|ssl/i.test(err.message);
          settle({ flag: connect ? 'UF' : 'UC', endpoint: ep });
        });
        if (body !== undefined) ureq.end(body);
        else req.pipe(ureq);
      });
    }
  };
}
