import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { headerString, roundMs, type AccessLogEntry } from './access-log.js';
import type { ClusterManager } from './cluster-manager.js';
import type { ClusterStats } from './cluster-stats.js';
import type { DrainController } from './drain.js';
import { computeHash } from './hash-policy.js';
import { corsDecodeHeaders } from './filters/cors.js';
import { blankLabels, type IstioLabels, type ProxyMetrics } from './metrics.js';
import type { HeaderMutation, RequestView, RouteEntry, RouteTable, VirtualHostEntry } from './route-table.js';
import type { RequestGuardHook } from './http/request-guard.js';
import { forward, type ForwardResult } from './router.js';
import type { SocketAddress } from './capture/original-dst.js';
import { endpointOfDestination } from './capture/original-dst-cluster.js';
import { routeForDestination } from './capture/route-by-destination.js';
import { injectSpan, startSpan, type TraceContext } from './tracing.js';
import { grpcStatusOf, isGrpcRequest, relayResponse } from './http2/relay.js';
import { isHttp2Request, responseDelivered } from './http2/h2-server.js';

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
  /** destinationOf returns the original destination of a request's redirected connection (capture mode), if any. */
  destinationOf?: (req: http.IncomingMessage) => SocketAddress | undefined;
  /** stats receives Envoy's per-cluster resilience counters (retries, overflow, timeouts). */
  stats?: ClusterStats;
  /** drain tracks in-flight requests and asks clients to close connections while the proxy drains. */
  drain?: DrainController;
  /** samplingPercent is the chance that a trace this proxy starts is sampled (Istio's default 1%). */
  samplingPercent?: number;
  /** random drives fault injection, weighted clusters and mirroring (tests inject it). */
  random?: () => number;
  /**
   * guard runs before routing (`http/request-guard.ts`): framing checks, path normalization and RBAC. Its
   * normalized view is the one routed and forwarded; a local reply it returns is sent instead.
   */
  guard?: RequestGuardHook;
  /** corsFilter is true when the HCM lists `envoy.filters.http.cors`: routes' CORS policies apply only then. */
  corsFilter?: boolean;
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

/** MAX_RETRY_BUFFER_BYTES bounds the request body kept for retries and mirrors (Envoy's default buffer limit, 1 MiB). */
export const MAX_RETRY_BUFFER_BYTES = 1024 * 1024;

/** applyMutations applies header removals, then additions (`append_action`), to a header map. */
export function applyMutations(
  headers: Record<string, string | string[]>,
  add: readonly HeaderMutation[],
  remove: readonly string[],
): void {
  for (const r of remove) delete headers[r];
  for (const m of add) {
    const cur = headers[m.key];
    if (m.overwrite || cur === undefined) headers[m.key] = m.value;
    else headers[m.key] = Array.isArray(cur) ? [...cur, m.value] : [cur, m.value];
  }
}

function pickCluster(action: Extract<RouteEntry['action'], { kind: 'route' }>, random: () => number): string {
  if (action.clusters.length === 1) return action.clusters[0]?.name ?? '';
  let n = random() * action.totalWeight;
  for (const c of action.clusters) {
    n -= c.weight;
    if (n < 0) return c.name;
  }
  return action.clusters[action.clusters.length - 1]?.name ?? '';
}

/**
 * PEER_METADATA_HEADER carries the calling workload's identity attributes from the client proxy to the server
 * proxy (Istio's metadata exchange, `x-envoy-peer-metadata`), so that the destination reporter can label metrics
 * with `source_workload`, `source_app`, … Here it is base64 JSON `{name, namespace, app, version, cluster}` rather
 * than Istio's protobuf Struct: only fedmesh proxies read it. The server proxy trusts it only from an mTLS peer
 * whose SPIFFE ID is in the same namespace, and strips it before the app.
 */
export const PEER_METADATA_HEADER = 'x-envoy-peer-metadata';

const peerMetadataOf = new WeakMap<WorkloadInfo, string>();

/** peerMetadata is the header value announcing `self` (its fields other than the principal never change). */
function peerMetadata(self: WorkloadInfo): string {
  let v = peerMetadataOf.get(self);
  if (v === undefined) {
    const { name, namespace, app, version, cluster } = self;
    v = Buffer.from(JSON.stringify({ name, namespace, app, version, cluster })).toString('base64');
    peerMetadataOf.set(self, v);
  }
  return v;
}

/**
 * MemoTable is a bounded memo of a pure function of a string (peers, SNIs and clusters are few; it is cleared when
 * full rather than grown, so hostile values cannot grow it).
 */
class MemoTable<V> {
  private readonly map = new Map<string, V>();

  constructor(
    private readonly compute: (key: string) => V,
    private readonly max = 256,
  ) {}

  get(key: string): V {
    let v = this.map.get(key);
    if (v === undefined && !this.map.has(key)) {
      v = this.compute(key);
      if (this.map.size >= this.max) this.map.clear();
      this.map.set(key, v);
    }
    return v as V;
  }
}

type PeerMetadata = Readonly<Partial<Pick<WorkloadInfo, 'name' | 'namespace' | 'app' | 'version' | 'cluster'>>>;

const parsedPeerMetadata = new MemoTable<PeerMetadata>((v) => {
  try {
    const m = JSON.parse(Buffer.from(v, 'base64').toString('utf8')) as Record<string, unknown>;
    const out: Partial<WorkloadInfo> = {};
    for (const k of ['namespace', 'name', 'app', 'version', 'cluster'] as const) {
      const val = m[k];
      if (typeof val === 'string') out[k] = val;
    }
    return out;
  } catch {
    return {};
  }
});

function readPeerMetadata(v: string | string[] | undefined, peer: PeerInfo | undefined): PeerMetadata {
  if (!peer || typeof v !== 'string' || v.length > 4096) return {};
  const m = parsedPeerMetadata.get(v);
  const ns = m.namespace;
  if (!ns || !peer.principal.includes(`/ns/${ns}/`)) return {};
  return m;
}

/** ServiceNames are a service host and its first two labels (name, namespace), `unknown` when absent. */
interface ServiceNames {
  host: string;
  name: string;
  namespace: string;
}

function serviceNames(host: string): ServiceNames {
  const parts = host.split('.');
  return { host, name: parts[0] ?? 'unknown', namespace: parts[1] ?? 'unknown' };
}

/** serviceOfSni returns the service of an Istio mTLS SNI (`outbound_.<port>_.<subset>_.<host>`). */
const serviceOfSni = new MemoTable<ServiceNames | undefined>((sni) => {
  const m = /^outbound_\.\d+_\.[^_]*_\.(.+)$/.exec(sni);
  return m?.[1] ? serviceNames(m[1]) : undefined;
});

/** serviceOfCluster returns the service of an Istio cluster name (`outbound|<port>|<subset>|<host>`). */
const serviceOfCluster = new MemoTable<ServiceNames>((name) => serviceNames(name.split('|')[3] ?? ''));

/**
 * LabelTemplate is a handler's request labels before anything about the request is known: its own workload's
 * side filled in, for the principal it had when the template was made (it changes once, with the first
 * certificate).
 */
interface LabelTemplate {
  principal: string;
  labels: IstioLabels;
}

const templates = new WeakMap<HttpHandlerContext, LabelTemplate>();

function labelTemplate(ctx: HttpHandlerContext): IstioLabels {
  const self = ctx.self;
  const principal = self.principal;
  const t = templates.get(ctx);
  if (t?.principal === principal) return t.labels;
  const labels = blankLabels();
  if (ctx.direction === 'outbound') {
    labels.reporter = 'source';
    labels.source_workload = self.name;
    labels.source_workload_namespace = self.namespace;
    labels.source_principal = principal;
    labels.source_app = self.app;
    labels.source_version = self.version;
    labels.source_cluster = self.cluster;
  } else {
    labels.reporter = 'destination';
    labels.destination_workload = self.name;
    labels.destination_workload_namespace = self.namespace;
    labels.destination_principal = principal;
    labels.destination_app = self.app;
    labels.destination_version = self.version;
    labels.destination_cluster = self.cluster;
  }
  templates.set(ctx, { principal, labels });
  return labels;
}

function xfcc(peer: PeerInfo, self: WorkloadInfo): string {
  return `By=${self.principal};URI=${peer.principal}`;
}

/**
 * Exchange is one downstream request and its response: what the access log and the metrics record about it.
 */
class Exchange {
  readonly start = process.hrtime.bigint();
  readonly startTime = new Date();
  readonly labels: IstioLabels;
  readonly flags = new Set<string>();
  readonly peer: PeerInfo | undefined;
  readonly random: () => number;
  view: RequestView;
  details = 'via_upstream';
  requestBytes = 0;
  responseBytes = 0;
  requestDoneMs: number | undefined;
  routeName: string | null = null;
  upstream: Partial<ForwardResult> = {};
  trace: TraceContext | undefined;
  finished = false;
  /** corsHeaders are set on the response by the CORS filter (an actual request from an allowed origin). */
  corsHeaders: Record<string, string> | undefined;

  constructor(
    readonly ctx: HttpHandlerContext,
    readonly req: http.IncomingMessage,
    readonly res: http.ServerResponse,
  ) {
    this.random = ctx.random ?? Math.random;
    this.peer = ctx.peerOf(req);
    this.labels = { ...labelTemplate(ctx) };
    this.view = {
      method: req.method ?? 'GET',
      authority: req.headers.host ?? headerString(req.headers[':authority']) ?? '',
      path: req.url ?? '/',
      scheme: 'http',
      headers: req.headers,
    };
    this.initLabels();
    // No 'data' listener here: it would start the stream flowing before the router pipes or buffers it. Bytes
    // are counted where the body is consumed.
    req.once('end', () => (this.requestDoneMs = this.elapsedMs()));
  }

  elapsedMs(): number {
    return Number(process.hrtime.bigint() - this.start) / 1e6;
  }

  /** initLabels fills in what the request itself tells (the rest comes from the handler's template). */
  private initLabels(): void {
    const { labels, ctx } = this;
    labels.request_protocol = isGrpcRequest(this.req.headers) ? 'grpc' : 'http';
    if (ctx.direction === 'outbound') return;
    const src = readPeerMetadata(this.req.headers[PEER_METADATA_HEADER], this.peer);
    const sni = (this.req.socket as TLSSocket).servername;
    const svc = typeof sni === 'string' ? serviceOfSni.get(sni) : undefined;
    if (src.name !== undefined) labels.source_workload = src.name;
    if (src.namespace !== undefined) labels.source_workload_namespace = src.namespace;
    if (src.app !== undefined) labels.source_app = src.app;
    if (src.version !== undefined) labels.source_version = src.version;
    if (src.cluster !== undefined) labels.source_cluster = src.cluster;
    if (svc) {
      labels.destination_service = svc.host;
      labels.destination_service_name = svc.name;
      labels.destination_service_namespace = svc.namespace;
    }
    labels.source_principal = this.peer?.principal ?? 'unknown';
    labels.connection_security_policy = this.peer ? 'mutual_tls' : 'none';
  }

  /** localReply answers with a proxy-generated response (Envoy's local reply) and records the exchange. */
  localReply(status: number, body: string, details: string, extra: Record<string, string> = {}): void {
    this.details = details;
    const { res, req } = this;
    if (!req.readableEnded && req.listenerCount('data') === 0) {
      req.on('data', (c: Buffer) => (this.requestBytes += c.length));
      req.resume();
    }
    if (!res.headersSent) {
      const headers: Record<string, string | number> = {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
        ...extra,
        ...this.corsHeaders,
      };
      if (isHttp2Request(req)) delete headers.connection; // connection-specific: HTTP/2 forbids it
      res.writeHead(status, headers);
      res.end(body);
      this.responseBytes = Buffer.byteLength(body);
    } else res.destroy();
    this.done(status);
  }

  /**
   * grpcLocalReply answers a gRPC request as Envoy's local reply does (`Grpc::Utility::sendLocalReply`): a
   * Trailers-Only response, HTTP 200 with `content-type: application/grpc`, `grpc-status` and `grpc-message`
   * (percent-encoded as the gRPC HTTP/2 protocol requires). To an HTTP/2 client the status goes in trailers after
   * a header block with only `content-type`, as relayResponse does for an upstream Trailers-Only response (Node's
   * compatibility API cannot end a stream with its header block); gRPC clients read both forms alike.
   */
  grpcLocalReply(grpcStatus: number, message: string, details: string): void {
    this.details = details;
    const { res, req } = this;
    if (!req.readableEnded && req.listenerCount('data') === 0) {
      req.on('data', (c: Buffer) => (this.requestBytes += c.length));
      req.resume();
    }
    this.labels.grpc_response_status = String(grpcStatus);
    const status = { 'grpc-status': String(grpcStatus), 'grpc-message': encodeURIComponent(message) };
    if (res.headersSent) res.destroy();
    else if (isHttp2Request(req)) {
      res.writeHead(200, { 'content-type': 'application/grpc', ...this.corsHeaders });
      res.addTrailers(status);
      res.end();
    } else {
      res.writeHead(200, { 'content-type': 'application/grpc', 'content-length': 0, ...status, ...this.corsHeaders });
      res.end();
    }
    this.done(200);
  }

  /** done records metrics and one access log line, once. */
  done(status: number): void {
    if (this.finished) return;
    this.finished = true;
    const ms = this.elapsedMs();
    const flags = this.flags.size > 0 ? [...this.flags].join(',') : '-';
    this.labels.response_code = String(status);
    this.labels.response_flags = flags;
    this.ctx.metrics.record(this.labels, ms, this.requestBytes, this.responseBytes);
    const { req, view, upstream, trace } = this;
    const sock = req.socket as TLSSocket;
    const firstByte = upstream.firstByteMs;
    const entry: AccessLogEntry = {
      start_time: this.startTime.toISOString(),
      direction: this.ctx.direction,
      route_name: this.routeName,
      method: view.method,
      path: view.path,
      protocol: req.httpVersion === '2.0' ? 'HTTP/2' : `HTTP/${req.httpVersion}`, // Envoy's %PROTOCOL%
      response_code: status,
      response_flags: flags,
      response_code_details: this.details,
      bytes_received: this.requestBytes,
      bytes_sent: this.responseBytes,
      duration: roundMs(ms),
      request_duration: this.requestDoneMs !== undefined ? roundMs(this.requestDoneMs) : null,
      response_duration: firstByte !== undefined ? roundMs(firstByte) : null,
      response_tx_duration: firstByte !== undefined ? roundMs(ms - firstByte) : null,
      upstream_service_time: upstream.serviceTimeMs !== undefined ? Math.round(upstream.serviceTimeMs) : null,
      x_forwarded_for: headerString(req.headers['x-forwarded-for']),
      user_agent: headerString(req.headers['user-agent']),
      request_id: headerString(req.headers['x-request-id']) ?? upstream.requestId ?? null,
      authority: view.authority,
      upstream_host: upstream.host ?? null,
      upstream_cluster: upstream.cluster ?? null,
      upstream_local_address: upstream.localAddress ?? null,
      downstream_local_address: sock.localAddress ? `${sock.localAddress}:${sock.localPort ?? 0}` : null,
      downstream_remote_address: sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort ?? 0}` : null,
      requested_server_name: typeof sock.servername === 'string' ? sock.servername : null,
      upstream_transport_failure_reason: upstream.failureReason ?? null,
      downstream_peer_principal: this.peer?.principal ?? null,
      upstream_peer_principal: upstream.upstreamPrincipal ?? null,
      attempts: upstream.attempts ?? 0,
      trace_id: trace?.traceId ?? null,
      span_id: trace?.spanId ?? null,
      parent_span_id: trace?.parentSpanId ?? null,
    };
    this.ctx.accessLog.info(entry, 'access');
  }
}

/**
 * createHttpHandler builds the request handler of one HTTP connection manager: route lookup (absolute-form and
 * Host-header requests), a trace span per hop (W3C `traceparent` and B3), fault injection (delay, then abort,
 * each by percentage), direct responses and redirects, weighted cluster choice, header mutations, then the
 * router (`router.ts`: consistent-hash keys, circuit breakers, retries, timeouts, mirroring), Istio metrics and a
 * JSON access log line per request. Local replies use Envoy's response flags (NR, NC, UH, UF, UC, UT, UO, URX,
 * DI, FI, DC).
 */
export function createHttpHandler(
  ctx: HttpHandlerContext,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    ctx.drain?.track(res);
    const x = new Exchange(ctx, req, res);
    const path = x.view.path;
    if (/^https?:\/\//i.test(path)) {
      try {
        const u = new URL(path);
        x.view = { ...x.view, authority: u.host, path: `${u.pathname}${u.search}`, scheme: u.protocol.slice(0, -1) };
      } catch {
        x.flags.add('DPE');
        return x.localReply(400, 'bad request target\n', 'http1.invalid_url');
      }
    }
    if (ctx.guard) {
      const g = ctx.guard.decodeHeaders(req, x.view, x.peer, (v) => ctx.routes()?.route(v)?.route);
      if ('reply' in g) return x.localReply(g.reply.status, g.reply.body, g.reply.details, g.reply.headers);
      x.view = g.view;
    }
    const dst = ctx.destinationOf?.(req);
    const hit = routeForDestination(ctx.routes(), x.view, dst);
    if (!hit) {
      x.flags.add('NR');
      return x.localReply(404, 'no route\n', 'route_not_found');
    }
    x.routeName = hit.route.name || null;
    serve(x, hit.vh, hit.route, dst).catch((err: unknown) => {
      ctx.accessLog.error({ err }, 'request failed');
      x.localReply(500, 'internal error\n', 'internal_error');
    });
  };
}

async function serve(
  x: Exchange,
  vh: VirtualHostEntry,
  route: RouteEntry,
  dst: SocketAddress | undefined,
): Promise<void> {
  const { ctx, req, view } = x;
  x.trace = startSpan(req.headers, ctx.samplingPercent, x.random);
  const fault = route.fault;
  if (fault?.delayMs !== undefined && x.random() < (fault.delayFraction ?? 1)) {
    x.flags.add('DI');
    await new Promise((r) => setTimeout(r, fault.delayMs));
  }
  const abortsWith = fault?.abortStatus ?? fault?.abortGrpcStatus;
  if (abortsWith !== undefined && x.random() < (fault?.abortFraction ?? 1)) {
    x.flags.add('FI');
    // Envoy's fault filter: a grpc_status abort is a local reply with HTTP 200 and that gRPC status.
    if (fault?.abortStatus === undefined && isGrpcRequest(req.headers))
      return x.grpcLocalReply(abortsWith, 'fault filter abort', 'fault_filter_abort');
    return x.localReply(fault?.abortStatus ?? 200, 'fault filter abort', 'fault_filter_abort');
  }
  const cors = ctx.corsFilter ? corsDecodeHeaders(route.cors, view, x.random) : undefined;
  if (cors?.preflight) return x.localReply(200, '', 'cors_response', cors.preflight);
  x.corsHeaders = cors?.response;
  const action = route.action;
  if (action.kind === 'direct') return x.localReply(action.status, action.body, 'direct_response');
  if (action.kind === 'redirect') {
    let p = action.path ?? view.path;
    if (action.prefixRewrite)
      p = action.prefixRewrite.replacement + view.path.slice(action.prefixRewrite.prefix.length);
    if (action.stripQuery) p = p.split('?')[0] ?? p;
    const host = (action.host ?? view.authority.split(':')[0] ?? '') + (action.port ? `:${action.port}` : '');
    return x.localReply(action.status, '', 'direct_response', {
      location: `${action.scheme ?? view.scheme}://${host}${p}`,
    });
  }
  const clusterName = pickCluster(action, x.random);
  x.upstream.cluster = clusterName;
  const cluster = ctx.clusters.get(clusterName);
  if (!cluster) {
    x.flags.add('NC');
    return x.localReply(503, 'no cluster\n', 'cluster_not_found');
  }

  const headers: Record<string, string | string[]> = {};
  // HTTP/2 pseudo-headers are not forwarded; `te` is, only as `trailers` (gRPC), as Envoy does.
  const reqHeaders = req.headers;
  for (const k in reqHeaders) {
    const v = reqHeaders[k];
    if (v !== undefined && k.charCodeAt(0) !== 58 /* : */ && (!HOP_BY_HOP.has(k) || (k === 'te' && v === 'trailers')))
      headers[k] = v;
  }
  let upstreamPath = view.path;
  if (action.prefixRewrite)
    upstreamPath = action.prefixRewrite.replacement + view.path.slice(action.prefixRewrite.prefix.length) || '/';
  if (action.regexRewrite) {
    const q = upstreamPath.indexOf('?');
    const [p, query] = q >= 0 ? [upstreamPath.slice(0, q), upstreamPath.slice(q)] : [upstreamPath, ''];
    upstreamPath = p.replace(action.regexRewrite.pattern, action.regexRewrite.substitution) + query;
  }
  headers['x-request-id'] ??= randomUUID();
  const requestId = headerString(headers['x-request-id']);
  if (requestId !== null) x.upstream.requestId = requestId;
  headers['x-forwarded-proto'] ??= view.scheme;
  if (ctx.direction === 'inbound') {
    if (ctx.forwardClientCert === 'SANITIZE' || ctx.forwardClientCert === 'SANITIZE_SET')
      delete headers['x-forwarded-client-cert'];
    if (ctx.forwardClientCert === 'SANITIZE_SET' && x.peer) headers['x-forwarded-client-cert'] = xfcc(x.peer, ctx.self);
  }
  if (ctx.direction === 'outbound') headers[PEER_METADATA_HEADER] = peerMetadata(ctx.self);
  else delete headers[PEER_METADATA_HEADER];
  applyMutations(headers, route.requestHeadersToAdd, route.requestHeadersToRemove);
  injectSpan(headers, x.trace);
  if (ctx.direction === 'outbound') {
    const svc = serviceOfCluster.get(clusterName);
    const labels = x.labels;
    labels.destination_service = svc.host;
    labels.destination_service_name = svc.name;
    labels.destination_service_namespace = svc.namespace;
    labels.connection_security_policy = cluster.mtls ? 'unknown' : 'none';
  }
  let hash: number | undefined;
  let setCookie: string | undefined;
  if (action.hashPolicy && action.hashPolicy.length > 0) {
    const q = view.path.indexOf('?');
    ({ hash, setCookie } = computeHash(action.hashPolicy, {
      headers: req.headers,
      query: new URLSearchParams(q >= 0 ? view.path.slice(q + 1) : ''),
      sourceIp: req.socket.remoteAddress ?? '',
    }));
  }

  // Retries and mirrors resend the body: buffer it, bounded.
  let body: Buffer | undefined;
  if ((action.retry?.numRetries ?? 0) > 0 || action.mirrors.length > 0) {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      x.requestBytes = size;
      if (size > MAX_RETRY_BUFFER_BYTES) {
        x.flags.add('DPE');
        return x.localReply(413, 'payload too large\n', 'request_payload_too_large');
      }
      chunks.push(c as Buffer);
    }
    body = Buffer.concat(chunks);
  }

  const result = await forward(ctx, x.res, {
    cluster,
    action,
    vh,
    method: view.method,
    path: upstreamPath,
    authority: action.hostRewrite ?? view.authority,
    headers,
    body: body ?? req,
    onBodyData: (n) => (x.requestBytes += n),
    hash,
    random: x.random,
    elapsedMs: () => x.elapsedMs(),
    originalDst: endpointOfDestination(dst),
    onEndpoint: (ep) => {
      const w = ep.workload;
      if (ctx.direction !== 'outbound' || !w) return;
      const labels = x.labels;
      labels.destination_workload = w.name;
      labels.destination_workload_namespace = w.namespace;
      labels.destination_app = w.app;
      labels.destination_version = w.version;
      labels.destination_cluster = w.cluster;
    },
  });
  x.upstream = { ...x.upstream, ...result };
  for (const f of result.flags) x.flags.add(f);
  if (result.res === undefined) {
    const r = result.local ?? { status: 503, body: 'no response\n', details: 'upstream_reset_before_response_started' };
    return x.localReply(r.status, r.body, r.details, r.headers);
  }
  respond(x, route, vh, result, setCookie);
}

function respond(
  x: Exchange,
  route: RouteEntry,
  vh: VirtualHostEntry,
  result: ForwardResult,
  setCookie: string | undefined,
): void {
  const ures = result.res;
  if (!ures) return;
  const { res } = x;
  if (x.upstream.upstreamPrincipal && x.ctx.direction === 'outbound')
    x.labels.destination_principal = x.upstream.upstreamPrincipal;
  const out: Record<string, string | string[]> = {};
  const upstreamHeaders = ures.headers;
  for (const k in upstreamHeaders) {
    const v = upstreamHeaders[k];
    if (v !== undefined && !HOP_BY_HOP.has(k) && k.charCodeAt(0) !== 58 /* : */) out[k] = v;
  }
  applyMutations(out, route.responseHeadersToAdd, route.responseHeadersToRemove);
  if (x.corsHeaders) Object.assign(out, x.corsHeaders);
  if (result.serviceTimeMs !== undefined)
    out['x-envoy-upstream-service-time'] = String(Math.round(result.serviceTimeMs));
  if (vh.includeAttemptCountInResponse) out['x-envoy-attempt-count'] = String(result.attempts);
  if (setCookie) {
    const cur = out['set-cookie'];
    out['set-cookie'] = cur === undefined ? [setCookie] : [...(Array.isArray(cur) ? cur : [cur]), setCookie];
  }
  const status = ures.statusCode ?? 502;
  // Body, then trailers (gRPC status), then the end (http2/relay.ts).
  relayResponse(res, status, out, ures, (n) => (x.responseBytes += n));
  // The route timeout (and per-try timeout) cover the response body too (Envoy's `timeout` spans until the
  // upstream response is complete): past it the stream is reset.
  const bodyTimer =
    result.bodyDeadlineMs !== undefined && Number.isFinite(result.bodyDeadlineMs)
      ? setTimeout(
          () => {
            x.flags.add('UT');
            x.details = 'upstream_response_timeout';
            ures.destroy();
            res.destroy();
            x.done(status);
          },
          Math.max(0, result.bodyDeadlineMs - Date.now()),
        )
      : undefined;
  ures.on('end', () => {
    clearTimeout(bodyTimer);
    x.labels.grpc_response_status = grpcStatusOf(ures) ?? '';
    x.done(status);
  });
  ures.on('error', () => {
    clearTimeout(bodyTimer);
    x.flags.add('UC');
    x.details = 'upstream_reset_after_response_started';
    res.destroy();
    x.done(status);
  });
  res.on('close', () => {
    if (!responseDelivered(res)) {
      clearTimeout(bodyTimer);
      x.flags.add('DC');
      ures.destroy();
      x.done(status);
    }
  });
}
