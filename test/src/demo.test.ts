import assert from 'node:assert/strict';
import { test } from 'node:test';
import { binomialBounds, runDemo } from '@fedmesh/ctl';

test("the demo's claims hold: 90:10 within binomial bounds, every call under mTLS with sleep's SPIFFE ID, jason on v2", async () => {
  const r = await runDemo({ requests: 400 });
  assert.equal(r.failed, 0);
  const [lo, hi] = binomialBounds(400, 0.9);
  assert.ok((r.versions.v1 ?? 0) >= lo && (r.versions.v1 ?? 0) <= hi, JSON.stringify(r.versions));
  assert.equal((r.versions.v1 ?? 0) + (r.versions.v2 ?? 0), 400);
  assert.deepEqual(r.callers, { 'spiffe://cluster.local/ns/default/sa/sleep': 400 });
  assert.ok(r.mtls.everyCallHadSpiffeId);
  assert.ok(r.mtls.reviewsInboundMutualTls >= 400);
  assert.deepEqual(r.headerRouting.jason, { v2: 50 });
  assert.deepEqual(r.headerRouting.anonymous, { v1: 50 });
  assert.ok(r.ok);
});
