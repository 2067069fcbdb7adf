/**
 * Durations as Istio's CRDs write them: Go `time.ParseDuration` strings such as `10s`, `1.5s`, `100ms` or
 * `1h30m` (Istio's CRD schemas check them with CEL's `duration()`, which takes the same syntax).
 */
import { ErrorCode, MeshError } from './errors.js';

const UNIT_MS = {
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000_001,
} as const;

/**
 * DURATION_PATTERN matches a non-negative duration: `0`, or one or more `<number><unit>` terms where the
 * number is decimal (`1`, `1.5`, `.5`) and the unit one of `h`, `m`, `s`, `ms`, `us`, `µs`, `ns`
 * (e.g. `10s`, `1.5s`, `100ms`, `1h30m`). Signs are not allowed.
 */
export const DURATION_PATTERN = /^(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|ns|h|m|s))+)$/;

const TERM = /(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)/g;

/**
 * parseDurationMs converts a duration string matching {@link DURATION_PATTERN} (e.g. `10s`, `1.5s`,
 * `100ms`, `1h30m`) to milliseconds as a number, possibly fractional (`250us` → `0.25`). Throws a
 * {@link MeshError} with code `FEDMESH_ERR_INVALID_CONFIG` for anything else, including negative durations.
 */
export function parseDurationMs(s: string): number {
  if (!DURATION_PATTERN.test(s)) {
    throw new MeshError(
      ErrorCode.INVALID_CONFIG,
      `invalid duration ${JSON.stringify(s)}: expected a number and unit such as 10s, 1.5s, 100ms or 1h30m`,
    );
  }
  let ms = 0;
  for (const [, value, unit] of s.matchAll(TERM)) {
    ms += Number(value) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return ms;
}
