import type { RetryPolicy } from './route-table.js';

/** AttemptFailure is how an upstream attempt failed without a response. */
export type AttemptFailure = 'connect-failure' | 'reset' | 'per-try-timeout' | 'timeout' | 'overflow';

/** AttemptOutcome is the result of one upstream attempt: response headers, or a failure. */
export type AttemptOutcome =
  | { kind: 'response'; status: number; headers: Readonly<Record<string, string | string[] | undefined>> }
  | { kind: 'failure'; failure: AttemptFailure; requestSent: boolean };

const GRPC_RETRY_ON: Record<string, string> = {
  '1': 'cancelled',
  '4': 'deadline-exceeded',
  '8': 'resource-exhausted',
  '13': 'internal',
  '14': 'unavailable',
};

/**
 * retriableOutcome applies Envoy's `retry_on` conditions (`x-envoy-retry-on` and `x-envoy-retry-grpc-on`) to one
 * attempt:
 * - `5xx`: any 5xx, and any reset, connect failure or per-try timeout; `gateway-error`: 502/503/504 and the same
 *   failures; `reset`: no response at all (reset, connect failure, per-try timeout); `connect-failure`: connect
 *   failures; `reset-before-request`: failures before the request was sent; `retriable-4xx`: 409;
 *   `retriable-status-codes`: the policy's codes; `envoy-ratelimited`: an `x-envoy-ratelimited` response;
 * - gRPC (`cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`): the
 *   `grpc-status` of a trailers-only response;
 * - circuit-breaker overflow and the route's global timeout are never retried.
 */
export function retriableOutcome(policy: RetryPolicy, o: AttemptOutcome): boolean {
  const on = policy.retryOn;
  if (o.kind === 'failure') {
    if (o.failure === 'overflow' || o.failure === 'timeout') return false;
    if (on.has('reset') || on.has('5xx') || on.has('gateway-error')) return true;
    if (on.has('connect-failure') && o.failure === 'connect-failure') return true;
    if (on.has('reset-before-request') && !o.requestSent) return true;
    return false;
  }
  const s = o.status;
  if (on.has('5xx') && s >= 500 && s <= 599) return true;
  if (on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
  if (on.has('retriable-4xx') && s === 409) return true;
  if (on.has('retriable-status-codes') && policy.retriableStatusCodes.has(s)) return true;
  if (on.has('envoy-ratelimited') && o.headers['x-envoy-ratelimited'] !== undefined) return true;
  const grpc = o.headers['grpc-status'];
  const cond = typeof grpc === 'string' ? GRPC_RETRY_ON[grpc.trim()] : undefined;
  return cond !== undefined && on.has(cond);
}

/**
 * retryBackoffMs is Envoy's fully jittered exponential back-off before retry `n` (1-based): a random delay in
 * `[0, (2^n − 1) × base)`, capped at `max` (defaults: base 25 ms, max 10 × base).
 */
export function retryBackoffMs(
  n: number,
  baseMs = 25,
  maxMs = baseMs * 10,
  random: () => number = Math.random,
): number {
  const ceiling = (2 ** Math.min(n, 30) - 1) * baseMs;
  return Math.min(Math.floor(random() * ceiling), maxMs);
}
