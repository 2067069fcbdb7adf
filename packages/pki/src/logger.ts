/**
 * PkiLogger is the logging shape `@fedmesh/pki` and the CA service accept: pino's object-first
 * `info/warn/error(obj, msg)`. A pino logger satisfies it. Key, token and CSR material is never passed to it.
 */
export interface PkiLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}
