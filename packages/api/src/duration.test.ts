import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DURATION_PATTERN, parseDurationMs } from './duration.js';
import { MeshError } from './errors.js';

describe('parseDurationMs', () => {
  it('converts Istio duration strings to milliseconds', () => {
    assert.equal(parseDurationMs('10s'), 10_000);
    assert.equal(parseDurationMs('1.5s'), 1_500);
    assert.equal(parseDurationMs('100ms'), 100);
    assert.equal(parseDurationMs('1h30m'), 5_400_000);
    assert.equal(parseDurationMs('5m'), 300_000);
    assert.equal(parseDurationMs('250us'), 0.25);
    assert.equal(parseDurationMs('250µs'), 0.25);
    assert.equal(parseDurationMs('2000000ns'), 2);
    assert.equal(parseDurationMs('.5s'), 500);
    assert.equal(parseDurationMs('0'), 0);
    assert.equal(parseDurationMs('0s'), 0);
  });

  it('rejects anything else with FEDMESH_ERR_INVALID_CONFIG', () => {
    for (const bad of ['', '10', '-1s', '+1s', '10 s', '1d', 'ten seconds', '1.5', 's', '1s ']) {
      assert.equal(DURATION_PATTERN.test(bad), false, bad);
      assert.throws(
        () => parseDurationMs(bad),
        (err: unknown) => MeshError.isMeshError(err) && err.code === 'FEDMESH_ERR_INVALID_CONFIG',
        bad,
      );
    }
  });
});
