/**
 * The logging seam. fedmesh code logs through this interface; the process entry point passes in a real
 * pino logger (which satisfies it structurally), and tests pass {@link noopLogger} or a recording fake.
 */

/**
 * LogFn is one level's logging method, called pino style: the structured context object first and the
 * message second (`log.info({ nodeId, typeUrl }, 'pushed')`), or the message alone. Put errors under `err`.
 */
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

/**
 * Logger is the subset of pino's `Logger` API fedmesh uses: `error`, `warn`, `info` and `debug` (each a
 * {@link LogFn}), and `child(bindings)`, which returns a logger that adds `bindings` (e.g.
 * `{ scope: 'xds.push' }`) to every line. A pino logger is assignable to it as is.
 */
export interface Logger {
  /** error logs a failure that needs attention. */
  error: LogFn;
  /** warn logs something unexpected that fedmesh worked around. */
  warn: LogFn;
  /** info logs a notable state change (a push, a connection, a startup step). */
  info: LogFn;
  /** debug logs detail for troubleshooting; off by default. */
  debug: LogFn;
  /** child returns a logger that adds `bindings` to every line it writes. */
  child(bindings: Record<string, unknown>): Logger;
}

const noop: LogFn = () => undefined;

/**
 * noopLogger is a {@link Logger} that discards everything; `child()` returns the same logger. Use it as the
 * default when a component's options omit `logger`.
 */
export const noopLogger: Logger = Object.freeze({
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  child: (): Logger => noopLogger,
});
