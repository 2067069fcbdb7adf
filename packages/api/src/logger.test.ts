import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { noopLogger, type Logger } from './logger.js';

/** A recording fake with pino's call shapes, as tests of other packages may use. */
function recordingLogger(lines: unknown[][], bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (objOrMsg: object | string, msg?: string): void => {
      lines.push(
        typeof objOrMsg === 'string' ? [level, bindings, objOrMsg] : [level, { ...bindings, ...objOrMsg }, msg],
      );
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}

describe('Logger', () => {
  it('noopLogger accepts both call shapes and returns itself from child()', () => {
    noopLogger.info({ nodeId: 'a' }, 'pushed');
    noopLogger.error('failed');
    noopLogger.warn({ err: new Error('x') });
    noopLogger.debug('detail');
    assert.equal(noopLogger.child({ scope: 'xds.push' }), noopLogger);
    assert.ok(Object.isFrozen(noopLogger));
  });

  it('is implementable with child scopes, object first', () => {
    const lines: unknown[][] = [];
    const log = recordingLogger(lines).child({ scope: 'xds.push' });
    log.info({ typeUrl: 'cds' }, 'pushed');
    log.warn('slow');
    assert.deepEqual(lines, [
      ['info', { scope: 'xds.push', typeUrl: 'cds' }, 'pushed'],
      ['warn', { scope: 'xds.push' }, 'slow'],
    ]);
  });
});
