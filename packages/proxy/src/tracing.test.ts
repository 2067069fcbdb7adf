import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { computeHash } from './hash-policy.js';
import { shadowAuthority } from './mirror.js';
import { retriableOutcome, retryBackoffMs } from './retry.js';
import type { RetryPolicy } from './route-table.js';
import { injectSpan, startSpan } from './tracing.js';

describe('trace propagation', () => {
  it('continues a W3C trace with a new child span', () => {
    const t = startSpan({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    assert.equal(t.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(t.parentSpanId, 'b7ad6b7169203331');
    assert.match(t.spanId, /^[0-9a-f]{16}$/);
    assert.notEqual(t.spanId, 'b7ad6b7169203331');
    assert.equal(t.sampled, true);
    const h: Record<string, string | string[]> = { b3: 'x' };
    injectSpan(h, t);
    assert.equal(h.traceparent, `00-0af7651916cd43dd8448eb211c80319c-${t.spanId}-01`);
    assert.equal(h['x-b3-traceid'], t.traceId);
    assert.equal(h['x-b3-spanid'], t.spanId);
    assert.equal(h['x-b3-parentspanid'], 'b7ad6b7169203331');
    assert.equal(h['x-b3-sampled'], '1');
    assert.equal(h.b3, undefined);
  });

  it('continues a 64-bit B3 trace and keeps its sampling decision', () => {
    const t = startSpan(
      { 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '0' },
      100,
    );
    assert.equal(t.traceId, '0000000000000000463ac35c9f6413ad');
    assert.equal(t.b3TraceId, '463ac35c9f6413ad');
    assert.equal(t.sampled, false);
    const single = startSpan({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90' });
    assert.equal(single.parentSpanId, 'e457b5a2e4d86bd1');
    assert.equal(single.sampled, true);
  });

  it('starts a trace when none (or an invalid one) arrives, sampled at the configured rate', () => {
    for (const headers of [
      {},
      { traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' },
      { traceparent: 'garbage' },
    ]) {
      const t = startSpan(headers, 0);
      assert.equal(t.started, true);
      assert.match(t.traceId, /^[0-9a-f]{32}$/);
      assert.equal(t.parentSpanId, undefined);
      assert.equal(t.sampled, false);
    }
    assert.equal(startSpan({}, 100).sampled, true);
  });
});

describe('hash policies', () => {
  const base = { headers: {}, query: new URLSearchParams(), sourceIp: '127.0.0.1' };
  it('hashes a header, a cookie, the source IP or a query parameter; absent keys give no hash', () => {
    const h = computeHash([{ header: { header_name: 'x-user' } }], { ...base, headers: { 'x-user': 'alice' } });
    assert.equal(
      h.hash,
      computeHash([{ header: { header_name: 'x-user' } }], { ...base, headers: { 'x-user': 'alice' } }).hash,
    );
    assert.notEqual(
      h.hash,
      computeHash([{ header: { header_name: 'x-user' } }], { ...base, headers: { 'x-user': 'bob' } }).hash,
    );
    assert.equal(computeHash([{ header: { header_name: 'x-user' } }], base).hash, undefined);
    const c = computeHash([{ cookie: { name: 'u' } }], { ...base, headers: { cookie: 'a=1; u="alice"' } });
    assert.equal(
      c.hash,
      computeHash([{ query_parameter: { name: 'q' } }], { ...base, query: new URLSearchParams('q=alice') }).hash,
    );
    assert.ok(computeHash([{ connection_properties: { source_ip: true } }], base).hash !== undefined);
  });

  it('a cookie policy with a ttl generates the cookie and asks to set it', () => {
    const r = computeHash([{ cookie: { name: 'sticky', ttl: { seconds: 60 }, path: '/' } }], base);
    assert.ok(r.hash !== undefined);
    const m = /^sticky="([0-9a-f]{16})"; Max-Age=60; Path=\/; HttpOnly$/.exec(r.setCookie ?? '');
    assert.ok(m, r.setCookie);
    const again = computeHash([{ cookie: { name: 'sticky', ttl: { seconds: 60 } } }], {
      ...base,
      headers: { cookie: `sticky="${m[1]}"` },
    });
    assert.equal(again.hash, r.hash);
    assert.equal(again.setCookie, undefined);
  });
});

describe('retry conditions and back-off', () => {
  const policy = (on: string, codes: number[] = []): RetryPolicy => ({
    retryOn: new Set(on.split(',')),
    numRetries: 2,
    perTryTimeoutMs: 0,
    retriableStatusCodes: new Set(codes),
    backoffBaseMs: 25,
    backoffMaxMs: 250,
    previousHosts: true,
    hostSelectionAttempts: 5,
  });
  const status = (s: number, headers = {}) => ({ kind: 'response' as const, status: s, headers });
  const failure = (
    f: 'connect-failure' | 'reset' | 'per-try-timeout' | 'timeout' | 'overflow',
    requestSent = true,
  ) => ({ kind: 'failure' as const, failure: f, requestSent });

  it('applies Envoy retry_on semantics', () => {
    assert.equal(retriableOutcome(policy('5xx'), status(500)), true);
    assert.equal(retriableOutcome(policy('5xx'), status(404)), false);
    assert.equal(retriableOutcome(policy('gateway-error'), status(500)), false);
    assert.equal(retriableOutcome(policy('gateway-error'), status(504)), true);
    assert.equal(retriableOutcome(policy('retriable-4xx'), status(409)), true);
    assert.equal(retriableOutcome(policy('retriable-status-codes', [418]), status(418)), true);
    assert.equal(retriableOutcome(policy('connect-failure'), failure('connect-failure')), true);
    assert.equal(retriableOutcome(policy('connect-failure'), failure('reset')), false);
    assert.equal(retriableOutcome(policy('reset'), failure('per-try-timeout')), true);
    assert.equal(retriableOutcome(policy('reset-before-request'), failure('reset', false)), true);
    assert.equal(retriableOutcome(policy('5xx'), failure('overflow')), false);
    assert.equal(retriableOutcome(policy('5xx'), failure('timeout')), false);
    assert.equal(retriableOutcome(policy('unavailable'), status(200, { 'grpc-status': '14' })), true);
    assert.equal(retriableOutcome(policy('cancelled'), status(200, { 'grpc-status': '14' })), false);
  });

  it('backs off with full jitter under (2^n − 1) × base, capped', () => {
    assert.equal(
      retryBackoffMs(1, 25, 250, () => 0.999),
      24,
    );
    assert.equal(
      retryBackoffMs(2, 25, 250, () => 0.999),
      74,
    );
    assert.equal(
      retryBackoffMs(5, 25, 250, () => 0.999),
      250,
    );
    assert.equal(
      retryBackoffMs(3, 25, 250, () => 0),
      0,
    );
  });

  it('appends -shadow to the mirrored host before the port', () => {
    assert.equal(shadowAuthority('reviews:9080'), 'reviews-shadow:9080');
    assert.equal(shadowAuthority('reviews.default.svc.cluster.local'), 'reviews.default.svc.cluster.local-shadow');
    assert.equal(shadowAuthority('[::1]:80'), '[::1]-shadow:80');
  });
});
