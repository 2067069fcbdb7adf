import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutlierDetector, outlierConfig } from './outlier.js';

function detector(over: Parameters<typeof outlierConfig>[0], hosts = ['a:1', 'b:1', 'c:1', 'd:1']) {
  let now = 0;
  const events: string[] = [];
  const d = new OutlierDetector(outlierConfig(over), {
    now: () => now,
    random: () => 0.5,
    onEject: (h, t, ms) => events.push(`eject ${h} ${t} ${ms}`),
    onUneject: (h) => events.push(`return ${h}`),
  });
  d.setHosts(hosts);
  return { d, events, advance: (ms: number) => (now += ms) };
}

const OD = {
  enforcing_success_rate: { value: 0 },
  consecutive_5xx: { value: 3 },
  interval: { seconds: 1 },
  base_ejection_time: { seconds: 10 },
  max_ejection_percent: { value: 100 },
};

describe('OutlierDetector (Envoy consecutive-error ejection)', () => {
  it('ejects at the consecutive 5xx threshold; a success in between resets the count', () => {
    const { d, events } = detector(OD);
    d.report('a:1', { kind: 'status', status: 500 });
    d.report('a:1', { kind: 'status', status: 500 });
    d.report('a:1', { kind: 'status', status: 200 });
    d.report('a:1', { kind: 'status', status: 500 });
    d.report('a:1', { kind: 'status', status: 503 });
    assert.equal(d.isEjected('a:1'), false);
    d.report('a:1', { kind: 'status', status: 502 });
    assert.equal(d.isEjected('a:1'), true);
    assert.deepEqual(events, ['eject a:1 CONSECUTIVE_5XX 10000']);
  });

  it('returns the host after base_ejection_time × ejections, at interval ticks', () => {
    const { d, advance } = detector(OD);
    const fail = (): void => {
      for (let i = 0; i < 3; i++) d.report('a:1', { kind: 'status', status: 500 });
    };
    fail();
    advance(9_000);
    d.sweep();
    assert.equal(d.isEjected('a:1'), true);
    advance(1_000);
    d.sweep();
    assert.equal(d.isEjected('a:1'), false, 'back after 10 s');
    fail();
    advance(10_000);
    d.sweep();
    assert.equal(d.isEjected('a:1'), true, 'second ejection lasts 2 × 10 s');
    advance(10_000);
    d.sweep();
    assert.equal(d.isEjected('a:1'), false);
    // Healthy intervals shrink the multiplier again.
    for (let i = 0; i < 3; i++) {
      advance(1_000);
      d.sweep();
    }
    fail();
    advance(10_000);
    d.sweep();
    assert.equal(d.isEjected('a:1'), false, 'multiplier decayed back to 1');
  });

  it('gateway errors eject only when enforced, and only 502/503/504 count', () => {
    const od = { ...OD, consecutive_5xx: { value: 100 }, consecutive_gateway_failure: { value: 2 } };
    const unenforced = detector(od);
    for (let i = 0; i < 3; i++) unenforced.d.report('a:1', { kind: 'status', status: 503 });
    assert.equal(unenforced.d.isEjected('a:1'), false, 'Envoy enforces gateway failures at 0% by default');
    const { d } = detector({ ...od, enforcing_consecutive_gateway_failure: { value: 100 } });
    d.report('a:1', { kind: 'status', status: 503 });
    d.report('a:1', { kind: 'status', status: 500 });
    d.report('a:1', { kind: 'status', status: 504 });
    assert.equal(d.isEjected('a:1'), false, '500 breaks the gateway-error run');
    d.report('a:1', { kind: 'status', status: 502 });
    assert.equal(d.isEjected('a:1'), true);
  });

  it('max_ejection_percent caps ejections, but one host may always be ejected', () => {
    const { d } = detector({ ...OD, max_ejection_percent: { value: 10 } });
    for (const h of ['a:1', 'b:1']) for (let i = 0; i < 3; i++) d.report(h, { kind: 'status', status: 500 });
    assert.equal(d.isEjected('a:1'), true);
    assert.equal(d.isEjected('b:1'), false);
    const half = detector({ ...OD, max_ejection_percent: { value: 50 } });
    for (const h of ['a:1', 'b:1', 'c:1'])
      for (let i = 0; i < 3; i++) half.d.report(h, { kind: 'status', status: 500 });
    assert.equal(half.d.ejectedCount(), 2);
  });

  it('local-origin failures count as 503/504 unless split, then as local-origin failures', () => {
    const { d } = detector(OD);
    for (let i = 0; i < 3; i++) d.report('a:1', { kind: 'local', event: 'connect-failure' });
    assert.equal(d.isEjected('a:1'), true);
    const split = detector({
      ...OD,
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: { value: 2 },
    });
    split.d.report('a:1', { kind: 'local', event: 'timeout' });
    split.d.report('a:1', { kind: 'local', event: 'connect-success' });
    split.d.report('a:1', { kind: 'local', event: 'timeout' });
    assert.equal(split.d.isEjected('a:1'), false);
    split.d.report('a:1', { kind: 'local', event: 'reset' });
    assert.equal(split.d.isEjected('a:1'), true);
  });

  it('forgets hosts that leave the cluster', () => {
    const { d } = detector(OD);
    for (let i = 0; i < 3; i++) d.report('a:1', { kind: 'status', status: 500 });
    d.setHosts(['b:1', 'c:1']);
    assert.equal(d.isEjected('a:1'), false);
    assert.equal(d.ejectedCount(), 0);
  });
});
