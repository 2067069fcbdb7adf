/**
 * Turning zod issues into fedmesh {@link ValidationIssue}s: a dotted field path and a short message in the
 * style of Kubernetes and Kuma (`spec.http[0].route[1].weight: must be ≤ 100`).
 */
import type { z } from 'zod';
import type { ValidationIssue } from '../errors.js';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * formatPath renders a field path as `spec.http[0].route[1].weight`: numbers become `[i]`, identifier-like
 * keys are joined with `.`, and other keys (label or header names such as `end-user` or
 * `app.kubernetes.io/name`) are quoted as `["end-user"]`. An empty path renders as `''`.
 */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && IDENTIFIER.test(key)) out += out === '' ? key : `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

/**
 * describeValue names a value's YAML type for a message, with short scalars quoted:
 * `string "abc"`, `number 1.5`, `boolean true`, `null`, `a list`, `a mapping`.
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  switch (typeof value) {
    case 'string':
      return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value)}`;
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`;
    case 'object':
      return 'a mapping';
    case 'undefined':
      return 'nothing';
    case 'symbol':
    case 'function':
      return typeof value;
  }
  return typeof value;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  tuple: 'a list',
};

/**
 * expectedMessage returns the message for a value of the wrong type: `required` when the value is missing,
 * otherwise `must be <expected>, got <describeValue(input)>` (e.g. `must be an integer, got string "abc"`).
 */
export function expectedMessage(expected: string, input: unknown): string {
  if (input === undefined) return 'required';
  return `must be ${expected}, got ${describeValue(input)}`;
}

function isIntegerSchema(inst: unknown): boolean {
  const def = (inst as { _zod?: { def?: { format?: unknown } } } | undefined)?._zod?.def;
  return def?.format === 'safeint' || def?.format === 'int32' || def?.format === 'uint32';
}

function sizeMessage(origin: string, bound: number | bigint, small: boolean, inclusive: boolean): string {
  const n = Number(bound);
  if (origin === 'string') {
    if (small && n === 1) return 'must not be empty';
    return small ? `must be at least ${n} characters` : `must be at most ${n} characters`;
  }
  if (origin === 'array' || origin === 'set') {
    if (small && n === 1) return 'must not be empty';
    return small ? `must have at least ${n} items` : `must have at most ${n} items`;
  }
  if (small) return inclusive ? `must be ≥ ${n}` : `must be > ${n}`;
  return inclusive ? `must be ≤ ${n}` : `must be < ${n}`;
}

/**
 * meshErrorMap is the zod error map fedmesh parses with: it words zod's built-in issues the way fedmesh
 * reports them (`required`, `must be an integer, got string "abc"`, `must be ≤ 100`,
 * `must be one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL, got "FOO"`). Messages set on a schema itself win.
 */
export const meshErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case 'invalid_type': {
      const expected = isIntegerSchema(issue.inst) ? 'an integer' : (EXPECTED[issue.expected] ?? issue.expected);
      return expectedMessage(expected, issue.input);
    }
    case 'too_big':
      return sizeMessage(issue.origin, issue.maximum, false, issue.inclusive !== false);
    case 'too_small':
      return sizeMessage(issue.origin, issue.minimum, true, issue.inclusive !== false);
    case 'invalid_value': {
      const values = issue.values.map((v) => String(v));
      const got = issue.input === undefined ? '' : `, got ${JSON.stringify(issue.input)}`;
      return values.length === 1
        ? `must be ${JSON.stringify(issue.values[0])}${got}`
        : `must be one of ${values.join(', ')}${got}`;
    }
    case 'invalid_format':
      return issue.format === 'regex' ? `must match ${String(issue.pattern)}` : `must be a valid ${issue.format}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'invalid_union':
      return 'does not match any allowed form';
    case 'invalid_key':
      return 'invalid key';
    case 'unrecognized_keys':
      return 'unknown field';
    case 'invalid_element':
    case 'custom':
      return undefined;
  }
};

/**
 * toValidationIssues flattens zod's issues into {@link ValidationIssue}s with dotted paths, prefixed by
 * `prefix` (e.g. `['items', 2]` for an item of a `kind: List`). An unknown field becomes one issue per
 * field, at the field's own path, with message `unknown field`; an invalid map key reports the key's own
 * problem, e.g. `spec.portLevelMtls["abc"]: invalid key: must be a port number`.
 */
export function toValidationIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PropertyKey[] = [],
): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...path, key]), message: 'unknown field' });
    } else if (issue.code === 'invalid_key' && issue.issues.length > 0) {
      for (const inner of issue.issues) out.push({ path: formatPath(path), message: `invalid key: ${inner.message}` });
    } else if (
      issue.code === 'invalid_union' &&
      issue.errors.length > 0 &&
      issue.message === 'does not match any allowed form'
    ) {
      out.push({ path: formatPath(path), message: unionMessage(issue.errors) });
    } else {
      out.push({ path: formatPath(path), message: issue.message });
    }
  }
  return out;
}

/** unionMessage combines the type expectations of a union's branches: `must be an integer or a string, got a list`. */
function unionMessage(branches: readonly (readonly z.core.$ZodIssue[])[]): string {
  const expected: string[] = [];
  let got = '';
  for (const branch of branches) {
    const first = branch[0];
    if (branch.length !== 1 || first?.code !== 'invalid_type' || first.path.length > 0)
      return 'does not match any allowed form';
    if (first.message === 'required') return 'required';
    const m = /^must be (.*), got (.*)$/.exec(first.message);
    if (m?.[1] === undefined || m[2] === undefined) return 'does not match any allowed form';
    expected.push(m[1]);
    got = m[2];
  }
  return `must be ${expected.join(' or ')}, got ${got}`;
}
