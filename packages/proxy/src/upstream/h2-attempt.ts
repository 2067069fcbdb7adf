import type http from 'node:http';
import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { CancelSignal } from '../circuit-breaker.js';
import type { ClusterManager, Endpoint, UpstreamCluster } from '../cluster-manager.js';
import type { AttemptFailure } from '../retry.js';
import type { AttemptResult, UpstreamRequestSpec } from '../upstream.js';
import { H2ConnectError, type H2ConnectionPool, type PooledSession } from './h2-pool.js';
import { H2UpstreamResponse } from './response.js';

/** CONNECTION_HEADERS are HTTP/1 connection-specific headers, which HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'host',
  'http2-settings',
]);

/** MAX_REFUSED_REPLAYS is how often a stream refused before the peer processed it (GOAWAY, REFUSED_STREAM) is replayed. */
export const MAX_REFUSED_REPLAYS = 2;

/**
 * h2RequestHeaders builds an HTTP/2 request header block: the pseudo-headers from the request line and
 * authority, then the headers without connection-specific ones; `te` only as `trailers`, which gRPC requests
 * always carry.
 */
export function h2RequestHeaders(spec: UpstreamRequestSpec, scheme: 'http' | 'https'): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = {
    ':method': spec.method,
    ':path': spec.path,
    ':authority': spec.authority,
    ':scheme': scheme,
  };
  for (const [k, v] of Object.entries(spec.headers)) {
    const n = k.toLowerCase();
    if (n.startsWith(':') || CONNECTION_HEADERS.has(n)) continue;
    if (n === 'te' && v !== 'trailers') continue;
    h[n] = v;
  }
  const ct = h['content-type'];
  if (typeof ct === 'string' && ct.startsWith('application/grpc')) h.te = 'trailers';
  return h;
}

/**
 * bodyless reports whether a streamed request body is known to be empty already: an HTTP/1 request fully parsed
 * with nothing buffered, or an HTTP/2 request whose HEADERS ended the stream.
 */
function bodyless(body: Readable): boolean {
  const h2 = (body as { stream?: http2.Http2Stream }).stream;
  if (h2 && typeof h2 === 'object' && 'endAfterHeaders' in h2) return h2.endAfterHeaders;
  return (body as Partial<http.IncomingMessage>).complete === true && body.readableLength === 0;
}

interface StreamOutcome {
  result?: AttemptResult;
  /** refused: the peer provably did not process the request (GOAWAY or REFUSED_STREAM); it may be replayed. */
  refused?: boolean;
}

/**
 * sendH2Attempt is `sendAttempt` (upstream.ts) over the cluster's HTTP/2 pool, with the same contract: it
 * resolves when response headers arrive or the attempt fails (connect failure, reset, `timeoutMs`), keeps the
 * host's active-request count until the response ends, reports to the outlier detector, runs `onEnd` once, and
 * cancels the stream (RST_STREAM CANCEL) when `signal` aborts. A stream the peer refused unprocessed (GOAWAY
 * race, REFUSED_STREAM) is replayed on another session when its body can be sent again. When the host answers
 * ALPN with `http/1.1`, `http1` (the HTTP/1.1 attempt) takes over.
 */
export async function sendH2Attempt(
  manager: ClusterManager,
  cluster: UpstreamCluster,
  pool: H2ConnectionPool,
  ep: Endpoint,
  spec: UpstreamRequestSpec,
  timeoutMs: number,
  timeoutKind: 'per-try-timeout' | 'timeout',
  onEnd: () => void,
  signal: CancelSignal | undefined,
  http1: () => Promise<AttemptResult>,
): Promise<AttemptResult> {
  const target = manager.upstreamTarget(cluster, ep);
  const deadline = Number.isFinite(timeoutMs) ? Date.now() + timeoutMs : Infinity;
  const failure = (f: AttemptFailure, reason: string, requestSent = false): AttemptResult => ({
    outcome: { kind: 'failure', failure: f, requestSent },
    failureReason: reason,
  });
  const endHost = manager.hostStarted(cluster, ep);
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    endHost();
    onEnd();
  };
  const fail = (r: AttemptResult): AttemptResult => {
    end();
    return r;
  };
  const body = spec.body;
  const replayable = (): boolean => body === undefined || Buffer.isBuffer(body) || bodyless(body);
  for (let replay = 0; ; replay++) {
    if (signal?.aborted) return fail(failure('reset', 'downstream_disconnect'));
    // Most requests find a session at once; only a connect is waited for (bounded by the deadline and `signal`).
    let lease = pool.tryAcquire(target.host, target.port);
    if (!lease)
      try {
        lease = await withDeadline(pool.acquire(target.host, target.port), deadline, signal);
      } catch (err) {
        if (err instanceof WaitEnded && err.why === 'deadline') {
          manager.reportOutlier(cluster, ep, { kind: 'local', event: 'timeout' });
          return fail(failure(timeoutKind, timeoutKind));
        }
        if (err instanceof WaitEnded) return fail(failure('reset', 'downstream_disconnect'));
        manager.reportOutlier(cluster, ep, { kind: 'local', event: 'connect-failure' });
        return fail(failure('connect-failure', err instanceof H2ConnectError ? err.code : String(err)));
      }
    if (lease.kind === 'http1') {
      endHost(); // the HTTP/1.1 attempt counts the host itself
      return http1();
    }
    if (lease.fresh) manager.reportOutlier(cluster, ep, { kind: 'local', event: 'connect-success' });
    const o = await runStream(lease.session, spec, deadline, timeoutKind, signal, end);
    if (o.refused && replay < MAX_REFUSED_REPLAYS && replayable()) continue;
    if (o.result) {
      const r = o.result;
      if (r.outcome.kind === 'response')
        manager.reportOutlier(cluster, ep, { kind: 'status', status: r.outcome.status });
      else if (r.outcome.failure === 'reset') manager.reportOutlier(cluster, ep, { kind: 'local', event: 'reset' });
      else if (r.outcome.failure === timeoutKind)
        manager.reportOutlier(cluster, ep, { kind: 'local', event: 'timeout' });
      if (r.outcome.kind === 'failure') end();
      return r;
    }
    return fail(failure('reset', 'refused_stream'));
  }
}

/** Waiting for a session ended: the attempt's deadline passed, or the downstream went away. */
class WaitEnded extends Error {
  constructor(readonly why: 'deadline' | 'aborted') {
    super(why);
  }
}

function withDeadline<T>(p: Promise<T>, deadline: number, signal: CancelSignal | undefined): Promise<T> {
  if (!Number.isFinite(deadline) && !signal) return p;
  return new Promise<T>((resolve, reject) => {
    const timer = Number.isFinite(deadline)
      ? setTimeout(() => reject(new WaitEnded('deadline')), Math.max(0, deadline - Date.now()))
      : undefined;
    const onAbort = (): void => reject(new WaitEnded('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
  });
}

function runStream(
  session: PooledSession,
  spec: UpstreamRequestSpec,
  deadline: number,
  timeoutKind: 'per-try-timeout' | 'timeout',
  signal: CancelSignal | undefined,
  end: () => void,
): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const body = spec.body;
    const empty = body === undefined || (Buffer.isBuffer(body) ? body.length === 0 : bodyless(body));
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(h2RequestHeaders(spec, session.secure ? 'https' : 'http'), { endStream: empty });
    } catch {
      return resolve({ refused: true }); // the session closed under us (GOAWAY): nothing was sent
    }
    let settled = false;
    let requestSent = empty;
    const settle = (o: StreamOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const failed = (f: AttemptFailure, reason: string): void =>
      settle({ result: { outcome: { kind: 'failure', failure: f, requestSent }, failureReason: reason } });
    const timer = Number.isFinite(deadline)
      ? setTimeout(
          () => {
            stream.close(http2.constants.NGHTTP2_CANCEL);
            failed(timeoutKind, timeoutKind);
          },
          Math.max(0, deadline - Date.now()),
        )
      : undefined;
    const onAbort = (): void => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      failed('reset', 'downstream_disconnect');
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    stream.once('finish', () => (requestSent = true));
    stream.once('response', (headers, flags) => {
      const res = new H2UpstreamResponse(stream, headers, (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0);
      res.once('end', end);
      res.once('close', end);
      res.once('error', end);
      settle({
        result: {
          outcome: { kind: 'response', status: res.statusCode, headers: res.headers },
          res,
          ...(session.principal ? { upstreamPrincipal: session.principal } : {}),
          ...(session.localAddress ? { upstreamLocalAddress: session.localAddress } : {}),
        },
      });
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) return settle({ refused: true });
      failed('reset', err.code ?? err.message);
    });
    stream.once('close', () => {
      if (settled) return;
      if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) return settle({ refused: true });
      failed('reset', `stream closed (code ${stream.rstCode ?? 'none'})`);
    });
    if (empty) {
      if (body && !Buffer.isBuffer(body)) body.resume(); // let the (empty) downstream body end
      return;
    }
    if (Buffer.isBuffer(body)) stream.end(body);
    else if (body) {
      const count = spec.onBodyData;
      if (count) body.on('data', (c: Buffer) => count(c.length));
      // A downstream body that closes before its end is cancelled upstream, never ended as if it were whole.
      const onBodyClose = (): void => {
        if (!body.readableEnded) onAbort();
      };
      if (body.destroyed) onBodyClose();
      else body.once('close', onBodyClose);
      body.pipe(stream);
    }
  });
}
