/**
 * Validating a package's own configuration (options objects, bootstrap files) with a zod schema, the same
 * way resources are validated: once, at startup, with field paths in the error, and frozen afterwards.
 */
import type { z } from 'zod';
import { InvalidConfigError } from './errors.js';
import { meshErrorMap, toValidationIssues } from './schemas/issues.js';

/** DeepReadonly makes every property of `T`, at every depth, readonly (what {@link parseConfig} returns). */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly (infer E)[]
    ? readonly DeepReadonly<E>[]
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

/**
 * deepFreeze freezes `value` and every plain object and array reachable from it, in place, and returns it.
 * Class instances other than plain objects and arrays (AbortSignal, Buffer, loggers) are left alone.
 */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    const proto: unknown = Object.getPrototypeOf(value);
    if (Array.isArray(value) || proto === Object.prototype || proto === null) {
      Object.freeze(value);
      for (const child of Object.values(value)) deepFreeze(child);
    }
  }
  return value as DeepReadonly<T>;
}

/**
 * parseConfig validates `input` against `schema` with fedmesh's messages (see `meshErrorMap`) and returns
 * the parsed value, deep-frozen. On failure it throws an {@link InvalidConfigError} (code
 * `FEDMESH_ERR_INVALID_CONFIG`) listing every issue with its field path, prefixed by `subject` (e.g.
 * `istiod options`) in the message. Use it for options and bootstrap files; resources go through
 * `validateResource`.
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  input: unknown,
  subject?: string,
): DeepReadonly<z.output<S>> {
  const result = schema.safeParse(input, { error: meshErrorMap });
  if (!result.success) throw new InvalidConfigError(toValidationIssues(result.error.issues), subject);
  return deepFreeze(result.data);
}
