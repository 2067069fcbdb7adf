import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { deepFreeze, parseConfig } from './config.js';
import { InvalidConfigError } from './errors.js';
import { DurationSchema, PortNumberSchema } from './schemas/common.js';

const OptionsSchema = z.strictObject({
  port: PortNumberSchema.default(15010),
  debounce: z.strictObject({ quiet: DurationSchema.default('100ms'), max: DurationSchema.default('10s') }).prefault({}),
  clusters: z.array(z.string()).default([]),
});

describe('parseConfig', () => {
  it('returns the parsed options with defaults, frozen', () => {
    const opts = parseConfig(OptionsSchema, { clusters: ['east'] });
    assert.deepEqual(opts, { port: 15010, debounce: { quiet: '100ms', max: '10s' }, clusters: ['east'] });
    assert.ok(Object.isFrozen(opts) && Object.isFrozen(opts.debounce) && Object.isFrozen(opts.clusters));
  });

  it('throws InvalidConfigError listing every issue with its path', () => {
    assert.throws(
      () => parseConfig(OptionsSchema, { port: 0, debounce: { quiet: 'soon' }, extra: true }, 'istiod options'),
      (err: unknown) => {
        assert.ok(err instanceof InvalidConfigError);
        assert.deepEqual(err.issues, [
          { path: 'port', message: 'must be ≥ 1' },
          { path: 'debounce.quiet', message: 'must be a duration such as 10s, 1.5s or 100ms' },
          { path: 'extra', message: 'unknown field' },
        ]);
        assert.equal(
          err.message,
          'istiod options: port: must be ≥ 1; debounce.quiet: must be a duration such as 10s, 1.5s or 100ms; extra: unknown field',
        );
        return true;
      },
    );
  });

  it('deepFreeze leaves class instances alone', () => {
    const signal = new AbortController().signal;
    const frozen = deepFreeze({ signal, list: [{ a: 1 }] });
    assert.ok(Object.isFrozen(frozen.list[0]));
    assert.equal(Object.isFrozen(signal), false);
  });
});
