import type http from 'node:http';
import type { Readable } from 'node:stream';
import { Cancellation, type Admission, type CancelSignal } from './circuit-breaker.js';
import type { Endpoint, UpstreamCluster } from './cluster-manager.js';
import { isOriginalDstCluster } from './capture/original-dst-cluster.js';
import type { HttpHandlerContext } from './http-handler.js';
import { hostKey } from './lb/types.js';
import { sendMirrors } from './mirror.js';
import { retriableOutcome, retryBackoffMs, type AttemptOutcome } from './retry.js';
import type { RouteEntry, VirtualHostEntry } from './route-table.js';
import { sendAttempt, type AttemptResult } from './upstream.js';
import type { UpstreamResponse } from './upstream/response.js';

/** ForwardSpec is one routed request, ready to go upstream. */
export interface ForwardSpec {
  cluster: UpstreamCluster;
  action: Extract<RouteEntry['action'], { kind: 'route' }>;
  vh: VirtualHostEntry;
  method: string;
  path: string;
  authority: string;
  headers: Record<string, string | string[]>;
  /** body is the buffered request body (retries, mirrors) or the request stream itself. */
  body: Buffer | Readable;
  /** onBodyData counts streamed body bytes (the buffered body is counted by the caller). */
  onBodyData?: (bytes: number) => void;
  hash: number | undefined;
  random: () => number;
  /** elapsedMs returns the time since the downstream request started. */
  elapsedMs?: () => number;
  /** onEndpoint observes each host chosen (metric labels). */
  onEndpoint?: (ep: Endpoint) => void;
  /**
   * originalDst is the host of an `ORIGINAL_DST` cluster for this request: the original destination of its
   * redirected connection (capture mode). Without one such a cluster has no host (503 `UH`, as Envoy).
   */
  originalDst?: Endpoint | undefined;
}

/** LocalReply is a response the proxy makes itself. */
export interface LocalReply {
  status: number;
  body: string;
  details: string;
  headers?: Record<string, string>;
}

/** ForwardResult is the upstream response to relay (or the local reply to send) and what the access log needs. */
export interface ForwardResult {
  res?: UpstreamResponse;
  local?: LocalReply;
  flags: string[];
  attempts: number;
  cluster?: string;
  host?: string;
  upstreamPrincipal?: string;
  localAddress?: string;
  failureReason?: string;
  /** serviceTimeMs is the last attempt's time from request to response headers. */
  serviceTimeMs?: number;
  /** firstByteMs is when the response headers arrived, relative to the downstream request's start. */
  firstByteMs?: number;
  /** bodyDeadlineMs is the wall-clock time (ms) by which the response body must be complete (route timeout). */
  bodyDeadlineMs?: number;
  requestId?: string;
}

const RESET_BEFORE_HEADERS = 'upstream connect error or disconnect/reset before headers. reset reason: ';

function failureReply(o: Extract<AttemptOutcome, { kind: 'failure' }>): { flag: string; reply: LocalReply } {
  switch (o.failure) {
    case 'connect-failure':
      return {
        flag: 'UF',
        reply: {
          status: 503,
          body: `${RESET_BEFORE_HEADERS}connection failure`,
          details: 'upstream_reset_before_response_started{connection_failure}',
        },
      };
    case 'reset':
      return {
        flag: 'UC',
        reply: {
          status: 503,
          body: `${RESET_BEFORE_HEADERS}connection termination`,
          details: 'upstream_reset_before_response_started{connection_termination}',
        },
      };
    case 'per-try-timeout':
      return {
        flag: 'UT',
        reply: { status: 504, body: 'upstream request timeout', details: 'upstream_per_try_timeout' },
      };
    case 'timeout':
      return {
        flag: 'UT',
        reply: { status: 504, body: 'upstream request timeout', details: 'upstream_response_timeout' },
      };
    case 'overflow':
      return {
        flag: 'UO',
        reply: {
          status: 503,
          body: `${RESET_BEFORE_HEADERS}overflow`,
          details: 'upstream_reset_before_response_started{overflow}',
          headers: { 'x-envoy-overloaded': 'true' },
        },
      };
  }
}

function sleep(ms: number, signal: CancelSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * forward is Envoy's router filter for one request:
 * - mirrors fire first (`request_mirror_policies`, fire and forget, see `mirror.ts`);
 * - each attempt is admitted by the cluster's circuit breaker (overflow: 503, flag `UO`, `x-envoy-overloaded`;
 *   waiting as a pending request is bounded by the route timeout), goes to a host chosen by the cluster (hash,
 *   and hosts already tried excluded under the `previous_hosts` predicate; none: 503 `UH`), and carries
 *   `x-envoy-attempt-count` when the virtual host asks for it; an `ORIGINAL_DST` cluster's one host is
 *   `spec.originalDst`;
 * - the route `timeout` bounds the whole exchange and `per_try_timeout` each attempt (504 `UT`);
 * - a retriable outcome (`retry.ts`) is retried up to `num_retries` times after a jittered back-off, if the
 *   circuit breaker's `max_retries` or retry budget allows (else the outcome stands with flag `UO`); when
 *   retries run out on a retriable outcome the flag is `URX`;
 * - connect failures answer 503 `UF`, resets 503 `UC`.
 * The downstream going away cancels everything (flag `DC`).
 */
export async function forward(
  ctx: HttpHandlerContext,
  res: http.ServerResponse,
  spec: ForwardSpec,
): Promise<ForwardResult> {
  const { cluster, action } = spec;
  const stats = ctx.stats;
  const label = { cluster_name: cluster.name };
  const out: ForwardResult = { flags: [], attempts: 0, cluster: cluster.name };
  const gone = new Cancellation();
  // Before the response starts, an HTTP/2 downstream's RST_STREAM is not seen here (Node's Http2ServerResponse
  // reports writableFinished): the attempt completes and its response is dropped. Cancelling it would relay a
  // rapid-reset flood onto the shared upstream HTTP/2 session, which the peer sidecar then closes with GOAWAY for
  // every stream on it (test/src/protocols/http2.test.ts). Once the response has started, http-handler.ts cancels
  // the upstream on a reset (`responseDelivered`).
  const onClose = (): void => {
    if (!res.writableFinished) gone.abort();
  };
  res.once('close', onClose);
  const elapsed =
    spec.elapsedMs ??
    (
      (t0) => () =>
        Date.now() - t0
    )(Date.now());

  const deadline = action.timeoutMs > 0 ? Date.now() + action.timeoutMs : Infinity;
  if (action.mirrors.length > 0)
    sendMirrors(
      {
        clusters: ctx.clusters,
        random: spec.random,
        onError: (c, reason) => ctx.accessLog.debug({ cluster: c, reason }, 'mirror failed'),
      },
      action.mirrors,
      {
        method: spec.method,
        path: spec.path,
        authority: spec.authority,
        headers: spec.headers,
        body: Buffer.isBuffer(spec.body) ? spec.body : undefined,
      },
      action.timeoutMs,
      spec.hash,
    );

  const retry = action.retry;
  const maxAttempts = 1 + (retry?.numRetries ?? 0);
  const tried = retry?.previousHosts ? new Set<string>() : undefined;
  let retrySlot: (() => void) | undefined;
  let last: AttemptResult | undefined;
  try {
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (gone.aborted) return cancelled(out);
      // Most requests are admitted (or overflow) at once; only a pending request waits, bounded by the deadline.
      let admission = cluster.breaker.tryAcquire();
      let timedOut = false;
      if (!admission) {
        const w = await waitForAdmission(cluster.breaker.acquire.bind(cluster.breaker), gone, deadline);
        admission = w.admission;
        timedOut = w.timedOut;
      }
      if (!admission.ok) {
        retrySlot?.();
        if (gone.aborted) return cancelled(out);
        if (timedOut) {
          stats?.timeout.inc(label);
          return local(out, failureReply({ kind: 'failure', failure: 'timeout', requestSent: false }));
        }
        stats?.pendingOverflow.inc(label);
        return local(out, failureReply({ kind: 'failure', failure: 'overflow', requestSent: false }));
      }
      const ep = isOriginalDstCluster(cluster)
        ? spec.originalDst
        : ctx.clusters.pickEndpoint(cluster, {
            hash: spec.hash,
            exclude: tried,
            hostSelectionAttempts: retry?.previousHosts ? retry.hostSelectionAttempts : 1,
          });
      if (!ep) {
        admission.release();
        retrySlot?.();
        return local(out, {
          flag: 'UH',
          reply: { status: 503, body: 'no healthy upstream', details: 'no_healthy_upstream' },
        });
      }
      tried?.add(hostKey(ep));
      spec.onEndpoint?.(ep);
      out.attempts = attempt;
      out.host = `${ep.address}:${ep.port}`;
      if (spec.vh.includeRequestAttemptCount) spec.headers['x-envoy-attempt-count'] = String(attempt);
      const left = deadline - Date.now();
      const perTry = retry?.perTryTimeoutMs ?? 0;
      const perTryBinds = perTry > 0 && perTry < left;
      const attemptTimeout = perTryBinds ? perTry : left;
      const sentAt = Date.now();
      last = await sendAttempt(
        ctx.clusters,
        cluster,
        ep,
        spec, // an UpstreamRequestSpec: method, path, authority, headers, body, onBodyData
        attemptTimeout,
        perTryBinds ? 'per-try-timeout' : 'timeout',
        admission.release,
        gone,
      );
      retrySlot?.();
      retrySlot = undefined;
      if (gone.aborted) return cancelled(out);
      const o = last.outcome;
      if (o.kind === 'failure' && o.failure === 'per-try-timeout') stats?.perTryTimeout.inc(label);
      const canRetry = retry !== undefined && retriableOutcome(retry, o);
      if (canRetry && attempt < maxAttempts) {
        retrySlot = cluster.breaker.tryRetry();
        if (!retrySlot) {
          stats?.retryOverflow.inc(label);
          out.flags.push('UO');
          break;
        }
        stats?.retry.inc(label);
        last.res?.resume();
        const backoff = retryBackoffMs(attempt, retry.backoffBaseMs, retry.backoffMaxMs, spec.random);
        if (Date.now() + backoff >= deadline) {
          retrySlot();
          stats?.timeout.inc(label);
          return local(out, failureReply({ kind: 'failure', failure: 'timeout', requestSent: true }));
        }
        await sleep(backoff, gone);
        if (gone.aborted) return cancelled(out);
        continue;
      }
      if (canRetry) {
        stats?.retryLimitExceeded.inc(label);
        out.flags.push('URX');
      } else if (attempt > 1) stats?.retrySuccess.inc(label);
      if (o.kind === 'response') {
        out.serviceTimeMs = Date.now() - sentAt;
        out.firstByteMs = elapsed();
        const bodyLimit = perTry > 0 ? Math.min(deadline, sentAt + perTry) : deadline;
        if (Number.isFinite(bodyLimit)) out.bodyDeadlineMs = bodyLimit;
      }
      break;
    }
  } finally {
    retrySlot?.();
    res.off('close', onClose);
  }
  if (!last) return local(out, failureReply({ kind: 'failure', failure: 'reset', requestSent: false }));
  if (last.upstreamPrincipal) out.upstreamPrincipal = last.upstreamPrincipal;
  if (last.upstreamLocalAddress) out.localAddress = last.upstreamLocalAddress;
  if (last.failureReason) out.failureReason = last.failureReason;
  if (last.res) {
    out.res = last.res;
    return out;
  }
  const o = last.outcome;
  if (o.kind === 'failure') {
    if (o.failure === 'timeout' || o.failure === 'per-try-timeout') stats?.timeout.inc(label);
    return local(out, failureReply(o));
  }
  return out;
}

/**
 * waitForAdmission waits as a pending request of the circuit breaker until admitted, the downstream goes away
 * (`gone`) or the route deadline passes (`timedOut`).
 */
async function waitForAdmission(
  acquire: (signal: CancelSignal) => Promise<Admission>,
  gone: Cancellation,
  deadline: number,
): Promise<{ admission: Admission; timedOut: boolean }> {
  const wait = new Cancellation();
  const onGone = (): void => wait.abort();
  gone.addEventListener('abort', onGone);
  let timedOut = false;
  const remaining = deadline - Date.now();
  const timer = Number.isFinite(remaining)
    ? setTimeout(
        () => {
          timedOut = true;
          wait.abort();
        },
        Math.max(0, remaining),
      )
    : undefined;
  try {
    const admission = await acquire(wait);
    return { admission, timedOut: timedOut && !gone.aborted };
  } finally {
    clearTimeout(timer);
    gone.removeEventListener('abort', onGone);
  }
}

function local(out: ForwardResult, r: { flag: string; reply: LocalReply }): ForwardResult {
  out.flags.unshift(r.flag);
  out.local = r.reply;
  return out;
}

function cancelled(out: ForwardResult): ForwardResult {
  out.flags.push('DC');
  out.local = { status: 499, body: '', details: 'downstream_remote_disconnect' };
  return out;
}
