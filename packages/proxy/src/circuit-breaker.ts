import type { EnvoyCluster } from './xds/envoy-schemas.js';

/**
 * CancelSignal is the part of an AbortSignal that waits and upstream attempts listen to: `aborted`, and one-shot
 * `abort` listeners. An AbortSignal is one; the router passes a lighter one per request ({@link Cancellation}),
 * since an AbortController per request (and `AbortSignal.any` per attempt) showed in proxy CPU profiles.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/**
 * Cancellation is a {@link CancelSignal} with its trigger: {@link Cancellation.abort} sets `aborted` and calls every
 * listener once, in the order added; listeners added after the abort are never called (check `aborted` first, as
 * with an AbortSignal).
 */
export class Cancellation implements CancelSignal {
  aborted = false;
  private listeners: (() => void)[] | undefined;

  /** addEventListener adds an abort listener (called at most once). */
  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.aborted) (this.listeners ??= []).push(listener);
  }

  /** removeEventListener removes a listener added before. */
  removeEventListener(_type: 'abort', listener: () => void): void {
    const ls = this.listeners;
    const i = ls ? ls.indexOf(listener) : -1;
    if (ls && i >= 0) ls.splice(i, 1);
  }

  /** abort marks the signal aborted and calls its listeners (idempotent). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const ls = this.listeners;
    this.listeners = undefined;
    if (ls) for (const l of ls) l();
  }
}

/** CircuitBreakerLimits are one cluster's `circuit_breakers.thresholds` for priority DEFAULT. */
export interface CircuitBreakerLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
  /** retryBudget replaces maxRetries when set: `budgetPercent` of active + pending requests, at least `minRetryConcurrency`. */
  retryBudget?: { budgetPercent: number; minRetryConcurrency: number };
}

/**
 * ENVOY_DEFAULT_LIMITS are Envoy's thresholds when a cluster sets none: 1024 connections, pending requests and
 * requests, 3 concurrent retries.
 */
export const ENVOY_DEFAULT_LIMITS: CircuitBreakerLimits = {
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
};

/**
 * circuitBreakerLimits reads a cluster's DEFAULT-priority thresholds (the proxy routes every request at
 * DEFAULT priority), each unset limit keeping Envoy's default; a `retry_budget` defaults to 20% and a minimum
 * concurrency of 3.
 */
export function circuitBreakerLimits(c: EnvoyCluster): CircuitBreakerLimits {
  const t = c.circuit_breakers?.thresholds?.find((x) => (x.priority ?? 'DEFAULT') === 'DEFAULT');
  const limits: CircuitBreakerLimits = {
    maxConnections: t?.max_connections?.value ?? ENVOY_DEFAULT_LIMITS.maxConnections,
    maxPendingRequests: t?.max_pending_requests?.value ?? ENVOY_DEFAULT_LIMITS.maxPendingRequests,
    maxRequests: t?.max_requests?.value ?? ENVOY_DEFAULT_LIMITS.maxRequests,
    maxRetries: t?.max_retries?.value ?? ENVOY_DEFAULT_LIMITS.maxRetries,
  };
  if (t?.retry_budget)
    limits.retryBudget = {
      budgetPercent: t.retry_budget.budget_percent?.value ?? 20,
      minRetryConcurrency: t.retry_budget.min_retry_concurrency?.value ?? 3,
    };
  return limits;
}

/** Admission is the outcome of {@link CircuitBreaker.acquire}. */
export type Admission = { ok: true; release: () => void } | { ok: false; reason: 'overflow' | 'aborted' };

interface Waiter {
  resolve: (a: Admission) => void;
  onAbort: () => void;
  signal: CancelSignal | undefined;
}

/**
 * CircuitBreaker enforces one cluster's limits the way Envoy's HTTP/1.1 connection pool does
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/circuit_breaking):
 * - a request that finds a free connection slot (fewer than `max_connections` requests in flight; HTTP/1.1
 *   carries one request per connection) is admitted unless `max_requests` are already active, which overflows;
 * - otherwise it waits as a pending request, unless `max_pending_requests` are already waiting, which overflows;
 *   a waiting request is admitted in arrival order as slots free, and leaves the queue if its signal aborts;
 * - a retry may start only while active retries stay under `max_retries`, or under the retry budget when one is
 *   set (`max(min_retry_concurrency, budget_percent × (active + pending))`); otherwise the retry overflows.
 * Overflow is the caller's 503 with response flag `UO`.
 */
export class CircuitBreaker {
  private active = 0;
  private retries = 0;
  private readonly queue: Waiter[] = [];

  /** constructor takes the limits; no timers, no I/O. */
  constructor(readonly limits: CircuitBreakerLimits) {}

  /** activeRequests returns the requests in flight (Envoy's `upstream_rq_active`). */
  activeRequests(): number {
    return this.active;
  }

  /** pendingRequests returns the requests waiting for a connection (Envoy's `upstream_rq_pending_active`). */
  pendingRequests(): number {
    return this.queue.length;
  }

  /** activeRetries returns the retries in flight (Envoy's `upstream_rq_retry` resource in use). */
  activeRetries(): number {
    return this.retries;
  }

  /**
   * acquire admits a request now, queues it as pending, or refuses it (`overflow`). A queued request resolves
   * `aborted` if `signal` aborts first. The returned `release` must be called exactly once when the upstream
   * request ends.
   */
  acquire(signal?: CancelSignal): Promise<Admission> {
    if (signal?.aborted) return Promise.resolve({ ok: false, reason: 'aborted' });
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w: Waiter = {
        resolve,
        signal,
        onAbort: () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          resolve({ ok: false, reason: 'aborted' });
        },
      };
      signal?.addEventListener('abort', w.onAbort, { once: true });
      this.queue.push(w);
    });
  }

  /**
   * tryAcquire is {@link CircuitBreaker.acquire} without waiting: the admission (or the overflow) when it is decided
   * now, undefined when the request would have to wait as a pending request (then call `acquire`).
   */
  tryAcquire(): Admission | undefined {
    if (this.active < this.limits.maxConnections && this.queue.length === 0) return this.admit();
    if (this.queue.length >= this.limits.maxPendingRequests) return { ok: false, reason: 'overflow' };
    return undefined;
  }

  /**
   * tryRetry takes a retry slot if the limit (or budget) allows; returns a release function to call when the
   * retried attempt's outcome is known, or undefined when the retry overflows.
   */
  tryRetry(): (() => void) | undefined {
    const b = this.limits.retryBudget;
    const max = b
      ? Math.max(b.minRetryConcurrency, Math.floor((b.budgetPercent / 100) * (this.active + this.queue.length)))
      : this.limits.maxRetries;
    if (this.retries >= max) return undefined;
    this.retries++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.retries--;
    };
  }

  private admit(): Admission {
    if (this.active >= this.limits.maxRequests) return { ok: false, reason: 'overflow' };
    this.active++;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.active--;
        this.drainQueue();
      },
    };
  }

  private drainQueue(): void {
    while (this.queue.length > 0 && this.active < this.limits.maxConnections) {
      const w = this.queue.shift();
      if (!w) break;
      w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve(this.admit());
    }
  }
}
