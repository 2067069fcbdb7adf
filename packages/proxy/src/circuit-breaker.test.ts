import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CircuitBreaker, circuitBreakerLimits, ENVOY_DEFAULT_LIMITS } from './circuit-breaker.js';
import type { EnvoyCluster } from './xds/envoy-schemas.js';

const limits = { maxConnections: 2, maxPendingRequests: 1, maxRequests: 10, maxRetries: 1 };

describe('CircuitBreaker', () => {
  it('admits up to max_connections, queues max_pending_requests, and overflows beyond', async () => {
    const cb = new CircuitBreaker(limits);
    const a = await cb.acquire();
    const b = await cb.acquire();
    assert.ok(a.ok && b.ok);
    const pending = cb.acquire();
    assert.equal(cb.pendingRequests(), 1);
    assert.deepEqual(await cb.acquire(), { ok: false, reason: 'overflow' });
    a.release();
    const c = await pending;
    assert.ok(c.ok);
    assert.equal(cb.activeRequests(), 2);
    assert.equal(cb.pendingRequests(), 0);
  });

  it('max_requests overflows at once even with free connections', async () => {
    const cb = new CircuitBreaker({ ...limits, maxConnections: 10, maxRequests: 1 });
    assert.ok((await cb.acquire()).ok);
    assert.deepEqual(await cb.acquire(), { ok: false, reason: 'overflow' });
  });

  it('a pending request whose signal aborts leaves the queue', async () => {
    const cb = new CircuitBreaker({ ...limits, maxConnections: 1 });
    const a = await cb.acquire();
    const ac = new AbortController();
    const p = cb.acquire(ac.signal);
    ac.abort();
    assert.deepEqual(await p, { ok: false, reason: 'aborted' });
    assert.equal(cb.pendingRequests(), 0);
    if (a.ok) a.release();
    assert.equal(cb.activeRequests(), 0);
  });

  it('max_retries bounds concurrent retries; a retry budget scales with active requests', async () => {
    const cb = new CircuitBreaker(limits);
    const r1 = cb.tryRetry();
    assert.ok(r1);
    assert.equal(cb.tryRetry(), undefined);
    r1();
    assert.ok(cb.tryRetry());
    const budget = new CircuitBreaker({
      ...limits,
      maxConnections: 100,
      maxRequests: 100,
      retryBudget: { budgetPercent: 50, minRetryConcurrency: 1 },
    });
    for (let i = 0; i < 6; i++) await budget.acquire();
    const got = [budget.tryRetry(), budget.tryRetry(), budget.tryRetry(), budget.tryRetry()];
    assert.deepEqual(got.map(Boolean), [true, true, true, false], '50% of 6 active = 3 retries');
  });

  it('reads DEFAULT thresholds with Envoy defaults for unset limits', () => {
    const c = {
      name: 'x',
      type: 'EDS',
      circuit_breakers: {
        thresholds: [
          { priority: 'HIGH', max_connections: { value: 7 } },
          { max_requests: { value: 9 }, retry_budget: {} },
        ],
      },
    } as unknown as EnvoyCluster;
    assert.deepEqual(circuitBreakerLimits(c), {
      ...ENVOY_DEFAULT_LIMITS,
      maxRequests: 9,
      retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 },
    });
  });
});
