/**
 * HTTP/1.1 Upgrade (WebSocket) for an HTTP connection manager whose `upgrade_configs` enable it, as Envoy's
 * router does: the upgrade request goes through the same guard (framing, normalization, RBAC) and route table as
 * any request, to a host of the routed cluster over its HTTP/1.1 pool (mTLS between sidecars); the upstream's
 * `101 Switching Protocols` is relayed and both connections are then piped byte for byte until either side ends.
 * Another answer from upstream is relayed as a normal response. Upgrade requests of a type the HCM does not
 * enable (`Upgrade: h2c` from `curl --http2`) are served as plain HTTP/1.1 requests without the upgrade.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { headerString, roundMs, type AccessLogEntry } from '../access-log.js';
import type { Endpoint, UpstreamCluster } from '../cluster-manager.js';
import { endpointOfDestination, isOriginalDstCluster } from '../capture/original-dst-cluster.js';
import { routeForDestination } from '../capture/route-by-destination.js';
import { applyMutations, PEER_METADATA_HEADER, type HttpHandlerContext } from '../http-handler.js';
import { blankLabels, type IstioLabels } from '../metrics.js';
import type { RequestView, RouteEntry } from '../route-table.js';
import { injectSpan, startSpan } from '../tracing.js';

/** UpgradeConfig is one HCM `upgrade_configs` entry. */
export interface UpgradeConfig {
  upgrade_type: string;
  enabled?: { value?: boolean | undefined } | undefined;
}

/** TUNNEL_IDLE_TIMEOUT_MS closes an upgraded connection with no bytes either way for this long (Envoy's stream idle timeout, 5 min). */
export const TUNNEL_IDLE_TIMEOUT_MS = 300_000;

/** UPGRADE_BODY_LIMIT bounds the body of an upgrade request served without the upgrade. */
export const UPGRADE_BODY_LIMIT = 1024 * 1024;

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

/** UpgradeHandler is an http.Server 'upgrade' listener. */
export type UpgradeHandler = (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => void;

/** enabledUpgrades returns the upgrade types (lower case) an HCM's `upgrade_configs` enable. */
export function enabledUpgrades(configs: readonly UpgradeConfig[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const c of configs ?? []) if (c.enabled?.value !== false) out.add(c.upgrade_type.toLowerCase());
  return out;
}

/** rawResponse writes an HTTP/1.1 response on a socket taken over from the HTTP server, and closes it. */
export function rawResponse(
  socket: net.Socket,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  if (socket.destroyed) return;
  const lines = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`];
  const all: Record<string, string> = {
    'content-type': 'text/plain',
    'content-length': String(Buffer.byteLength(body)),
    ...headers,
    connection: 'close',
  };
  for (const [k, v] of Object.entries(all)) lines.push(`${k}: ${v}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/**
 * serveWithoutUpgrade hands an upgrade request of a type the HCM does not enable back to the request handler as a
 * plain request on a connection that closes after it (the HTTP server gave up the socket). A body is read by its
 * Content-Length (bounded); a chunked one is refused with 400.
 */
function serveWithoutUpgrade(
  req: http.IncomingMessage,
  socket: net.Socket,
  head: Buffer,
  onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  timeoutMs: number,
): void {
  const cl = Number(req.headers['content-length'] ?? 0);
  if (req.headers['transfer-encoding'] !== undefined || !Number.isSafeInteger(cl) || cl < 0 || cl > UPGRADE_BODY_LIMIT)
    return rawResponse(socket, 400, 'upgrade request body not supported\n');
  let body = head;
  const deliver = (): void => {
    socket.off('data', onData);
    clearTimeout(timer);
    if (body.length > 0) req.push(body.subarray(0, cl));
    req.push(null);
    delete req.headers.upgrade;
    const res = new http.ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket);
    res.once('finish', () => {
      res.detachSocket(socket);
      socket.destroySoon();
    });
    onRequest(req, res);
  };
  const onData = (c: Buffer): void => {
    body = Buffer.concat([body, c]);
    if (body.length >= cl) deliver();
  };
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  if (body.length >= cl) return deliver();
  socket.on('data', onData);
}

function pickCluster(action: Extract<RouteEntry['action'], { kind: 'route' }>, random: () => number): string {
  let n = random() * action.totalWeight;
  for (const c of action.clusters) {
    n -= c.weight;
    if (n < 0) return c.name;
  }
  return action.clusters[action.clusters.length - 1]?.name ?? '';
}

/** UpgradeHandlerOptions are an HCM's upgrade settings and its plain request handler (for types it does not enable). */
export interface UpgradeHandlerOptions {
  upgradeConfigs: readonly UpgradeConfig[] | undefined;
  onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** bodyTimeoutMs bounds reading the body of an upgrade request served without the upgrade. */
  bodyTimeoutMs: number;
}

/**
 * createUpgradeHandler builds the 'upgrade' listener of one HTTP connection manager (see the module comment).
 * Each tunnel is one request in `istio_requests_total` (response code 101) and one access log line, written when
 * the tunnel closes; its bytes are `bytes_received`/`bytes_sent`.
 */
export function createUpgradeHandler(ctx: HttpHandlerContext, opts: UpgradeHandlerOptions): UpgradeHandler {
  const enabled = enabledUpgrades(opts.upgradeConfigs);
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const type = String(req.headers.upgrade ?? '').toLowerCase();
    if (!enabled.has(type)) return serveWithoutUpgrade(req, socket, head, opts.onRequest, opts.bodyTimeoutMs);
    void tunnel(ctx, req, socket, head).catch((err: unknown) => {
      ctx.accessLog.error({ err }, 'upgrade failed');
      rawResponse(socket, 500, 'internal error\n');
    });
  };
}

interface TunnelRecord {
  start: bigint;
  startTime: Date;
  labels: IstioLabels;
  flags: string[];
  details: string;
  cluster?: string;
  host?: string;
  received: number;
  sent: number;
}

function initLabels(ctx: HttpHandlerContext, peer: string | undefined): IstioLabels {
  const l = blankLabels();
  const self = ctx.self;
  l.reporter = ctx.direction === 'outbound' ? 'source' : 'destination';
  l.request_protocol = 'http';
  if (ctx.direction === 'outbound')
    Object.assign(l, {
      source_workload: self.name,
      source_workload_namespace: self.namespace,
      source_principal: self.principal,
      source_app: self.app,
      source_version: self.version,
      source_cluster: self.cluster,
    });
  else
    Object.assign(l, {
      destination_workload: self.name,
      destination_workload_namespace: self.namespace,
      destination_principal: self.principal,
      destination_app: self.app,
      destination_version: self.version,
      destination_cluster: self.cluster,
      source_principal: peer ?? 'unknown',
      connection_security_policy: peer ? 'mutual_tls' : 'none',
    });
  return l;
}

function finish(
  ctx: HttpHandlerContext,
  req: http.IncomingMessage,
  view: RequestView,
  rec: TunnelRecord,
  status: number,
): void {
  const ms = Number(process.hrtime.bigint() - rec.start) / 1e6;
  const flags = rec.flags.length > 0 ? rec.flags.join(',') : '-';
  rec.labels.response_code = String(status);
  rec.labels.response_flags = flags;
  ctx.metrics.record(rec.labels, ms, rec.received, rec.sent);
  const sock = req.socket as net.Socket & { servername?: unknown };
  const entry: AccessLogEntry = {
    start_time: rec.startTime.toISOString(),
    direction: ctx.direction,
    route_name: null,
    method: view.method,
    path: view.path,
    protocol: `HTTP/${req.httpVersion}`,
    response_code: status,
    response_flags: flags,
    response_code_details: rec.details,
    bytes_received: rec.received,
    bytes_sent: rec.sent,
    duration: roundMs(ms),
    request_duration: null,
    response_duration: null,
    response_tx_duration: null,
    upstream_service_time: null,
    x_forwarded_for: headerString(req.headers['x-forwarded-for']),
    user_agent: headerString(req.headers['user-agent']),
    request_id: headerString(req.headers['x-request-id']),
    authority: view.authority,
    upstream_host: rec.host ?? null,
    upstream_cluster: rec.cluster ?? null,
    upstream_local_address: null,
    downstream_local_address: sock.localAddress ? `${sock.localAddress}:${sock.localPort ?? 0}` : null,
    downstream_remote_address: sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort ?? 0}` : null,
    requested_server_name: typeof sock.servername === 'string' ? sock.servername : null,
    upstream_transport_failure_reason: null,
    downstream_peer_principal: ctx.peerOf(req)?.principal ?? null,
    upstream_peer_principal: null,
    attempts: rec.host ? 1 : 0,
    trace_id: null,
    span_id: null,
    parent_span_id: null,
  };
  ctx.accessLog.info(entry, 'access');
}

async function tunnel(
  ctx: HttpHandlerContext,
  req: http.IncomingMessage,
  socket: net.Socket,
  head: Buffer,
): Promise<void> {
  const peer = ctx.peerOf(req);
  const rec: TunnelRecord = {
    start: process.hrtime.bigint(),
    startTime: new Date(),
    labels: initLabels(ctx, peer?.principal),
    flags: [],
    details: 'via_upstream',
    received: head.length,
    sent: 0,
  };
  let view: RequestView = {
    method: req.method ?? 'GET',
    authority: req.headers.host ?? '',
    path: req.url ?? '/',
    scheme: 'http',
    headers: req.headers,
  };
  const reply = (
    status: number,
    body: string,
    details: string,
    flag?: string,
    headers?: Record<string, string>,
  ): void => {
    rec.details = details;
    if (flag) rec.flags.push(flag);
    rawResponse(socket, status, body, headers);
    finish(ctx, req, view, rec, status);
  };
  const routes = ctx.routes();
  if (ctx.guard) {
    const g = ctx.guard.decodeHeaders(req, view, peer, (v) => routes?.route(v)?.route);
    if ('reply' in g) return reply(g.reply.status, g.reply.body, g.reply.details, undefined, g.reply.headers);
    view = g.view;
  }
  const dst = ctx.destinationOf?.(req);
  const hit = routeForDestination(routes, view, dst);
  if (!hit) return reply(404, 'no route\n', 'route_not_found', 'NR');
  const action = hit.route.action;
  if (action.kind !== 'route') return reply(403, 'upgrade not routed to a cluster\n', 'upgrade_failed');
  const clusterName = pickCluster(action, ctx.random ?? Math.random);
  rec.cluster = clusterName;
  const cluster = ctx.clusters.get(clusterName);
  if (!cluster) return reply(503, 'no cluster\n', 'cluster_not_found', 'NC');
  const admission = await cluster.breaker.acquire();
  if (!admission.ok) return reply(503, 'overflow\n', 'upstream_reset_before_response_started{overflow}', 'UO');
  const ep = isOriginalDstCluster(cluster) ? endpointOfDestination(dst) : ctx.clusters.pickEndpoint(cluster);
  if (!ep) {
    admission.release();
    return reply(503, 'no healthy upstream', 'no_healthy_upstream', 'UH');
  }
  rec.host = `${ep.address}:${ep.port}`;
  if (ctx.direction === 'outbound') {
    const svc = clusterName.split('|')[3] ?? '';
    Object.assign(rec.labels, {
      destination_service: svc,
      destination_service_name: svc.split('.')[0] ?? 'unknown',
      destination_service_namespace: svc.split('.')[1] ?? 'unknown',
      connection_security_policy: cluster.mtls ? 'mutual_tls' : 'none',
      ...(ep.workload
        ? {
            destination_workload: ep.workload.name,
            destination_workload_namespace: ep.workload.namespace,
            destination_app: ep.workload.app,
            destination_version: ep.workload.version,
            destination_cluster: ep.workload.cluster,
          }
        : {}),
    });
  }
  const headers = upstreamHeaders(ctx, req, view, hit.route, peer);
  const endHost = ctx.clusters.hostStarted(cluster, ep);
  const done = (): void => {
    endHost();
    admission.release();
  };
  dial(ctx, cluster, ep, req, view, hit.route, headers, socket, head, rec, done, action.timeoutMs);
}

function upstreamHeaders(
  ctx: HttpHandlerContext,
  req: http.IncomingMessage,
  view: RequestView,
  route: RouteEntry,
  peer: { principal: string } | undefined,
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  headers['x-request-id'] ??= randomUUID();
  headers['x-forwarded-proto'] ??= view.scheme;
  if (ctx.direction === 'inbound') {
    if (ctx.forwardClientCert === 'SANITIZE' || ctx.forwardClientCert === 'SANITIZE_SET')
      delete headers['x-forwarded-client-cert'];
    if (ctx.forwardClientCert === 'SANITIZE_SET' && peer)
      headers['x-forwarded-client-cert'] = `By=${ctx.self.principal};URI=${peer.principal}`;
    delete headers[PEER_METADATA_HEADER];
  }
  applyMutations(headers, route.requestHeadersToAdd, route.requestHeadersToRemove);
  injectSpan(headers, startSpan(req.headers, ctx.samplingPercent, ctx.random ?? Math.random));
  headers.connection = 'Upgrade';
  headers.upgrade = String(req.headers.upgrade);
  return headers;
}

function dial(
  ctx: HttpHandlerContext,
  cluster: UpstreamCluster,
  ep: Endpoint,
  req: http.IncomingMessage,
  view: RequestView,
  route: RouteEntry,
  headers: Record<string, string | string[]>,
  down: net.Socket,
  head: Buffer,
  rec: TunnelRecord,
  done: () => void,
  routeTimeoutMs: number,
): void {
  const target = ctx.clusters.upstreamTarget(cluster, ep);
  const action = route.action.kind === 'route' ? route.action : undefined;
  const ureq = (cluster.mtls ? https : http).request({
    host: target.host,
    port: target.port,
    method: view.method,
    path: view.path,
    headers: { ...headers, host: action?.hostRewrite ?? view.authority },
    agent: cluster.agent,
    ...(cluster.mtls ? { servername: cluster.mtls.sni } : {}),
  });
  let settled = false;
  const limit = cluster.connectTimeoutMs + (routeTimeoutMs > 0 ? routeTimeoutMs : 15_000);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ureq.destroy();
  }, limit);
  const fail = (status: number, body: string, details: string, flag: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    done();
    rec.details = details;
    rec.flags.push(flag);
    rawResponse(down, status, body);
    finish(ctx, req, view, rec, status);
  };
  down.once('close', () => {
    if (!settled) {
      ureq.destroy();
      fail(499, '', 'downstream_remote_disconnect', 'DC');
    }
  });
  ureq.on('error', (err: NodeJS.ErrnoException) => {
    if (timedOut) return fail(504, 'upstream request timeout', 'upstream_response_timeout', 'UT');
    const reason = err.code ?? err.message;
    fail(
      503,
      `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`,
      'upstream_reset_before_response_started',
      'UF',
    );
  });
  ureq.on('response', (ures) => {
    // Not upgraded: relay the answer as a normal response, then close.
    if (settled) return void ures.destroy();
    settled = true;
    clearTimeout(timer);
    const status = ures.statusCode ?? 502;
    const lines = [`HTTP/1.1 ${status} ${ures.statusMessage ?? ''}`];
    for (let i = 0; i < ures.rawHeaders.length; i += 2) {
      const k = ures.rawHeaders[i] ?? '';
      if (HOP_BY_HOP.has(k.toLowerCase())) continue; // the body is delimited by the close
      lines.push(`${k}: ${ures.rawHeaders[i + 1] ?? ''}`);
    }
    lines.push('connection: close');
    down.write(`${lines.join('\r\n')}\r\n\r\n`);
    ures.on('data', (c: Buffer) => (rec.sent += c.length));
    ures.pipe(down);
    ures.once('close', () => {
      done();
      finish(ctx, req, view, rec, status);
    });
  });
  ureq.on('upgrade', (ures, up, uhead) => {
    if (settled) return void up.destroy();
    settled = true;
    clearTimeout(timer);
    const lines = [`HTTP/1.1 ${ures.statusCode ?? 101} ${ures.statusMessage ?? 'Switching Protocols'}`];
    for (let i = 0; i < ures.rawHeaders.length; i += 2)
      lines.push(`${ures.rawHeaders[i] ?? ''}: ${ures.rawHeaders[i + 1] ?? ''}`);
    down.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (uhead.length > 0) down.write(uhead);
    if (head.length > 0) up.write(head);
    rec.sent += uhead.length;
    pipeTunnel(down, up, rec, () => {
      done();
      finish(ctx, req, view, rec, ures.statusCode ?? 101);
    });
  });
  ureq.end();
}

/** pipeTunnel pipes an upgraded connection both ways with back-pressure; a reset or idle timeout closes both. */
function pipeTunnel(down: net.Socket, up: net.Socket, rec: TunnelRecord, onClose: () => void): void {
  let closed = 0;
  let last = Date.now();
  const idle = setInterval(
    () => {
      if (Date.now() - last < TUNNEL_IDLE_TIMEOUT_MS) return;
      rec.flags.push('SI');
      down.destroy();
      up.destroy();
    },
    Math.min(TUNNEL_IDLE_TIMEOUT_MS, 30_000),
  );
  idle.unref();
  const onEnd = (): void => {
    if (++closed < 2) return;
    clearInterval(idle);
    onClose();
  };
  down.on('data', (c: Buffer) => {
    rec.received += c.length;
    last = Date.now();
  });
  up.on('data', (c: Buffer) => {
    rec.sent += c.length;
    last = Date.now();
  });
  down.on('error', () => up.destroy());
  up.on('error', () => down.destroy());
  down.once('close', () => {
    if (!up.writableEnded) up.destroy();
    onEnd();
  });
  up.once('close', () => {
    if (!down.writableEnded) down.destroy();
    onEnd();
  });
  down.pipe(up);
  up.pipe(down);
}
