import pino, { type Logger } from 'pino';

/** REDACT_PATHS are the log fields never written: keys, tokens, CSRs, certificates' private parts. */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'keyPem',
  '*.keyPem',
  'privateKey',
  '*.privateKey',
  'csr',
  '*.csr',
  'authorization',
  '*.authorization',
];

/**
 * createLogger makes the process's one root pino logger: JSON lines to stdout (or `destination`), level from
 * `FEDMESH_LOG_LEVEL` (default `info`), secrets redacted, with `{component}` bound.
 */
export function createLogger(component: string, destination?: NodeJS.WritableStream): Logger {
  const opts = {
    level: process.env.FEDMESH_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { component, pid: process.pid },
  };
  return destination ? pino(opts, destination) : pino(opts);
}
