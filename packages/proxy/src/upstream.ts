import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { isPkiError } from '@fedmesh/pki';
import type { CancelSignal } from './circuit-breaker.js';
import type { ClusterManager, Endpoint, UpstreamCluster } from './cluster-manager.js';
import type { AttemptFailure, AttemptOutcome } from './retry.js';
import { sendH2Attempt } from './upstream/h2-attempt.js';
import type { UpstreamResponse } from './upstream/response.js';

/** UpstreamRequestSpec is what one upstream attempt sends. */
export interface UpstreamRequestSpec {
  method: string;
  path: string;
  authority: string;
  headers: Record<string, string | string[]>;
  /** body is the buffered request body, or a stream to pipe (single attempt, no retries or mirrors). */
  body: Buffer | Readable | undefined;
  /** onBodyData observes the size of each streamed body chunk. */
  onBodyData?: (bytes: number) => void;
}

/** AttemptResult is one attempt's outcome, with the response to forward when there is one. */
export interface AttemptResult {
  outcome: AttemptOutcome;
  res?: UpstreamResponse;
  /** upstreamPrincipal is the SPIFFE ID of the upstream peer proxy (mTLS clusters). */
  upstreamPrincipal?: string;
  /** upstreamLocalAddress is the local `ip:port` of the upstream connection. */
  upstreamLocalAddress?: string;
  /** failureReason is a short description of a failure (Envoy's `upstream_transport_failure_reason`). */
  failureReason?: string;
}

const principals = new WeakMap<object, string>();

function peerPrincipal(sock: unknown): string | undefined {
  if (!(sock instanceof TLSSocket)) return undefined;
  let p = principals.get(sock);
  if (p === undefined) {
    const san = sock.getPeerCertificate(false)?.subjectaltname ?? '';
    p =
      san
        .split(', ')
        .find((s) => s.startsWith('URI:'))
        ?.slice(4) ?? '';
    principals.set(sock, p);
  }
  return p || undefined;
}

function isConnectError(err: NodeJS.ErrnoException): boolean {
  return (
    err.code === 'ECONNREFUSED' ||
    err.code === 'EHOSTUNREACH' ||
    err.code === 'ENETUNREACH' ||
    err.code === 'ETIMEDOUT' ||
    err.code === 'FEDMESH_CONNECT_TIMEOUT' ||
    isPkiError(err) ||
    /certificate|SAN|SPIFFE|tls|ssl/i.test(err.message)
  );
}

/**
 * sendAttempt makes one upstream request to `ep` of `cluster` and resolves when response headers arrive or the
 * attempt fails: a connect failure (refused, unreachable, the cluster's `connect_timeout`, TLS or peer identity
 * refused), a reset after connecting, or `timeoutMs` elapsing first (`timeoutKind` says whether that is the
 * per-try or the route timeout). The host's active-request count covers the attempt until its response ends,
 * and the outlier detector hears the result (status, or local-origin event). `onEnd` runs once when the attempt
 * is over: on failure at once, else when the response ends or is destroyed. When `signal` aborts (the
 * downstream went away) the attempt is cancelled as a reset that the outlier detector does not hear about.
 * Clusters with an HTTP/2 pool (`cluster.h2`: explicit HTTP/2, or ALPN-negotiated) send over a multiplexed
 * session; a host that negotiated `http/1.1` and every other cluster use the HTTP/1.1 keep-alive pool.
 */
export function sendAttempt(
  manager: ClusterManager,
  cluster: UpstreamCluster,
  ep: Endpoint,
  spec: UpstreamRequestSpec,
  timeoutMs: number,
  timeoutKind: 'per-try-timeout' | 'timeout',
  onEnd: () => void,
  signal?: CancelSignal,
): Promise<AttemptResult> {
  const http1 = (): Promise<AttemptResult> =>
    sendHttp1Attempt(manager, cluster, ep, spec, timeoutMs, timeoutKind, onEnd, signal);
  // HTTP/2 and ALPN-negotiated clusters go through the multiplexed pool (upstream/h2-pool.ts).
  if (cluster.h2)
    return sendH2Attempt(manager, cluster, cluster.h2, ep, spec, timeoutMs, timeoutKind, onEnd, signal, http1);
  return http1();
}

function sendHttp1Attempt(
  manager: ClusterManager,
  cluster: UpstreamCluster,
  ep: Endpoint,
  spec: UpstreamRequestSpec,
  timeoutMs: number,
  timeoutKind: 'per-try-timeout' | 'timeout',
  onEnd: () => void,
  signal?: CancelSignal,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const target = manager.upstreamTarget(cluster, ep);
    const mod = cluster.mtls ? https : http;
    const endHost = manager.hostStarted(cluster, ep);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      endHost();
      onEnd();
    };
    const ureq = mod.request({
      host: target.host,
      port: target.port,
      method: spec.method,
      path: spec.path,
      headers: { ...spec.headers, host: spec.authority },
      agent: cluster.agent,
      ...(cluster.mtls ? { servername: cluster.mtls.sni } : {}),
    });
    let settled = false;
    let requestSent = false;
    let connectTimer: NodeJS.Timeout | undefined;
    const settle = (r: AttemptResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(connectTimer);
      if (r.outcome.kind === 'failure') end();
      resolve(r);
    };
    const fail = (failure: AttemptFailure, reason: string): void => {
      if (settled) return;
      if (failure === 'connect-failure')
        manager.reportOutlier(cluster, ep, { kind: 'local', event: 'connect-failure' });
      else if (failure === 'reset') manager.reportOutlier(cluster, ep, { kind: 'local', event: 'reset' });
      else if (failure === 'per-try-timeout' || failure === 'timeout')
        manager.reportOutlier(cluster, ep, { kind: 'local', event: 'timeout' });
      settle({ outcome: { kind: 'failure', failure, requestSent }, failureReason: reason });
    };
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
          ureq.destroy();
          fail(timeoutKind, timeoutKind);
        }, timeoutMs)
      : undefined;
    ureq.on('socket', (sock) => {
      manager.countRequestOnSocket(sock);
      if (sock.connecting && cluster.connectTimeoutMs > 0) {
        connectTimer = setTimeout(() => {
          const err: NodeJS.ErrnoException = new Error(`connect timeout after ${cluster.connectTimeoutMs} ms`);
          err.code = 'FEDMESH_CONNECT_TIMEOUT';
          ureq.destroy(err);
        }, cluster.connectTimeoutMs);
        sock.once(cluster.mtls ? 'secureConnect' : 'connect', () => {
          clearTimeout(connectTimer);
          manager.reportOutlier(cluster, ep, { kind: 'local', event: 'connect-success' });
        });
      }
    });
    ureq.on('finish', () => (requestSent = true));
    const onAbort = (): void => {
      ureq.destroy();
      settle({ outcome: { kind: 'failure', failure: 'reset', requestSent }, failureReason: 'downstream_disconnect' });
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    ureq.once('close', () => signal?.removeEventListener('abort', onAbort));
    ureq.on('response', (res) => {
      manager.reportOutlier(cluster, ep, { kind: 'status', status: res.statusCode ?? 502 });
      res.once('end', end);
      res.once('close', end);
      res.once('error', end);
      const upstreamPrincipal = peerPrincipal(res.socket);
      const local = res.socket.localAddress;
      settle({
        outcome: { kind: 'response', status: res.statusCode ?? 502, headers: res.headers },
        res,
        ...(upstreamPrincipal ? { upstreamPrincipal } : {}),
        ...(local ? { upstreamLocalAddress: `${local}:${res.socket.localPort ?? 0}` } : {}),
      });
    });
    ureq.on('error', (err: NodeJS.ErrnoException) => {
      fail(isConnectError(err) ? 'connect-failure' : 'reset', err.code ?? err.message);
    });
    const body = spec.body;
    if (body === undefined) ureq.end();
    else if (Buffer.isBuffer(body)) ureq.end(body);
    else {
      const count = spec.onBodyData;
      if (count) body.on('data', (c: Buffer) => count(c.length));
      // A downstream body that closes before its end (the client went away, its HTTP/2 stream was reset for a
      // content-length that disagreed with its DATA) is never sent on as complete: the upstream request is
      // destroyed, so its connection cannot go back to the pool owing body bytes that the next request would pay.
      const onBodyClose = (): void => {
        if (body.readableEnded) return;
        ureq.destroy();
        fail('reset', 'downstream_disconnect');
      };
      if (body.destroyed) onBodyClose();
      else body.once('close', onBodyClose);
      body.pipe(ureq);
    }
  });
}
