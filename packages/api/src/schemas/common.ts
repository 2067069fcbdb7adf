/**
 * Building blocks shared by the Kubernetes and Istio schemas: names, labels, object metadata, integers with
 * ranges, durations, percentages, Istio's StringMatch, workload selectors and `exportTo`.
 */
import { z } from 'zod';
import { DURATION_PATTERN } from '../duration.js';
import { expectedMessage } from './issues.js';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * whenValid is the option fedmesh passes to every cross-field refinement: run it only when the value's own
 * fields validated, so that e.g. a typo'd field name is reported as `unknown field` and not also as the
 * missing field it was meant to be.
 */
export const whenValid: z.core.$ZodSuperRefineParams = { when: (payload) => payload.issues.length === 0 };

/**
 * typeError returns a schema-level zod error function that words only type errors (`required`,
 * `must be <expected>, got …`) and leaves range and format issues to `meshErrorMap`.
 */
function typeError(expected: string): (iss: z.core.$ZodRawIssue) => string | undefined {
  return (iss) => (iss.code === 'invalid_type' ? expectedMessage(expected, iss.input) : undefined);
}

/** requiredString returns a zod string schema whose type error reads `required` / `must be a string, got …`. */
export function requiredString(): z.ZodString {
  return z.string({ error: typeError('a string') });
}

/**
 * Dns1123LabelSchema is a Kubernetes DNS-1123 label (RFC 1123): 1–63 characters of `[a-z0-9-]`, starting and
 * ending with an alphanumeric. Namespaces and Service names are labels.
 */
export const Dns1123LabelSchema = requiredString().max(63).regex(DNS1123_LABEL, {
  error: "must be a lowercase RFC 1123 label (a-z, 0-9 and '-', starting and ending with a-z or 0-9)",
});

/**
 * Dns1123SubdomainSchema is a Kubernetes DNS-1123 subdomain: at most 253 characters, dot-separated
 * DNS-1123 labels. Most object names (`metadata.name`) are subdomains.
 */
export const Dns1123SubdomainSchema = requiredString().max(253).regex(DNS1123_SUBDOMAIN, {
  error: "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', starting and ending with a-z or 0-9)",
});

function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return 'label key prefix must be a lowercase RFC 1123 subdomain';
  }
  if (name.length > 63 || !LABEL_NAME.test(name)) {
    return "label key name must be at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with an alphanumeric";
  }
  return undefined;
}

/**
 * LabelsSchema is a Kubernetes label map: keys are `[prefix/]name` (prefix a DNS-1123 subdomain, name at most
 * 63 characters of `[A-Za-z0-9-_.]`), values are strings of at most 63 such characters (may be empty).
 */
export const LabelsSchema = z.record(
  requiredString().superRefine((key, ctx) => {
    const problem = labelKeyProblem(key);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  }, whenValid),
  requiredString().max(63).regex(LABEL_VALUE, {
    error: "must be at most 63 characters of a-z, A-Z, 0-9, '-', '_' and '.', starting and ending with an alphanumeric",
  }),
);

/** StringMapSchema is a map of string to string (annotations, Istio `sourceLabels`, header values). */
export const StringMapSchema = z.record(z.string(), requiredString());

/**
 * ObjectMetaSchema is the Kubernetes `metadata` of every resource: `name` (required, DNS-1123 subdomain),
 * `namespace` (DNS-1123 label, default `"default"`), `labels`, `annotations`; any other metadata field
 * (uid, resourceVersion, …) passes through unchecked.
 */
export const ObjectMetaSchema = z.looseObject({
  name: Dns1123SubdomainSchema,
  namespace: Dns1123LabelSchema.default('default'),
  labels: LabelsSchema.optional(),
  annotations: StringMapSchema.optional(),
});

/** ObjectMeta is the parsed `metadata` of a resource (see {@link ObjectMetaSchema}); `namespace` is always set. */
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

/**
 * integer returns a zod schema for an integer in `[min, max]`; its messages read `required`,
 * `must be an integer, got string "abc"`, `must be ≥ min` and `must be ≤ max`.
 */
export function integer(min: number, max: number): z.ZodInt {
  return z
    .int({ error: typeError('an integer') })
    .min(min)
    .max(max);
}

/** PortNumberSchema is a TCP/UDP port number, an integer in 1..65535. */
export const PortNumberSchema = integer(1, 65535);

/** UInt32Schema is a protobuf `uint32` (or `UInt32Value`): an integer in 0..4294967295. */
export const UInt32Schema = integer(0, 4_294_967_295);

/** Int32Schema is a protobuf `int32`: an integer in -2147483648..2147483647. */
export const Int32Schema = integer(-2_147_483_648, 2_147_483_647);

/** NonNegativeInt32Schema is a protobuf `int32` that must not be negative: 0..2147483647. */
export const NonNegativeInt32Schema = integer(0, 2_147_483_647);

/** BooleanSchema is a YAML boolean (`true`/`false`); strings such as `"true"` are rejected. */
export const BooleanSchema = z.boolean({ error: typeError('a boolean') });

/**
 * DurationSchema is an Istio duration string such as `10s`, `1.5s`, `100ms` or `1h30m` (see
 * `DURATION_PATTERN`; convert with `parseDurationMs`).
 */
export const DurationSchema = requiredString().regex(DURATION_PATTERN, {
  error: 'must be a duration such as 10s, 1.5s or 100ms',
});

/** PercentValueSchema is a percentage as a number (fractions allowed) in 0..100. */
export const PercentValueSchema = z
  .number({ error: typeError('a number') })
  .min(0)
  .max(100);

/**
 * PercentSchema is Istio's `Percent` message: `{ value }` with `value` a number in 0..100
 * (https://istio.io/latest/docs/reference/config/networking/virtual-service/#Percent).
 */
export const PercentSchema = z.strictObject({ value: PercentValueSchema });

/** IanaSvcNameSchema is a named port (IANA_SVC_NAME): at most 15 characters of `[a-z0-9-]`, not starting or ending with `-`. */
export const IanaSvcNameSchema = requiredString()
  .max(15)
  .regex(IANA_SVC_NAME, { error: "must be a port name of a-z, 0-9 and '-' (IANA_SVC_NAME)" });

/**
 * regexProblem reports why `pattern` is not a usable RE2 regular expression (Envoy compiles Istio's regexes
 * with RE2), or undefined if it is fine. Approximation: RE2-only syntax (`(?P<name>…)`, inline flags such as
 * `(?i)`) is translated and the result compiled as a JavaScript RegExp; lookaround and backreferences, which
 * RE2 lacks, are rejected.
 */
export function regexProblem(pattern: string): string | undefined {
  if (/\(\?<?[=!]/.test(pattern)) return 'invalid regex: lookaround is not supported by RE2';
  if (/(^|[^\\])\\[1-9]/.test(pattern)) return 'invalid regex: backreferences are not supported by RE2';
  const translated = pattern
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?[imsU-]+\)/g, '')
    .replace(/\(\?[imsU-]+:/g, '(?:');
  try {
    new RegExp(translated);
    return undefined;
  } catch (err) {
    const detail =
      err instanceof Error ? err.message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '') : String(err);
    return `invalid regex: ${detail}`;
  }
}

/** RegexSchema is a non-empty regular expression in RE2 syntax that must compile (see {@link regexProblem}). */
export const RegexSchema = requiredString()
  .min(1)
  .superRefine((re, ctx) => {
    const problem = regexProblem(re);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  }, whenValid);

const StringMatchFields = {
  exact: requiredString().optional(),
  prefix: requiredString().min(1).optional(),
  regex: RegexSchema.optional(),
};

function countSet(m: {
  exact?: string | undefined;
  prefix?: string | undefined;
  regex?: string | undefined;
}): string[] {
  return (['exact', 'prefix', 'regex'] as const).filter((k) => m[k] !== undefined);
}

/**
 * StringMatchSchema is Istio's `StringMatch` as used for `uri`, `scheme`, `method`, `authority` and CORS
 * origins: exactly one of `exact`, `prefix` (non-empty) or `regex` (non-empty, RE2 syntax, must compile)
 * (https://istio.io/latest/docs/reference/config/networking/virtual-service/#StringMatch).
 */
export const StringMatchSchema = z.strictObject(StringMatchFields).superRefine((m, ctx) => {
  const set = countSet(m);
  if (set.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      message: `must set exactly one of exact, prefix, regex${set.length > 0 ? ` (got ${set.join(', ')})` : ''}`,
    });
  }
}, whenValid);

/** StringMatch is a parsed Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` is set. */
export type StringMatch = z.infer<typeof StringMatchSchema>;

/**
 * HeaderMatchSchema is Istio's `StringMatch` as a value of `headers`, `queryParams` and `withoutHeaders`:
 * at most one of `exact`, `prefix`, `regex`; an empty match (`{}`) means "the header/parameter is present".
 */
export const HeaderMatchSchema = z.strictObject(StringMatchFields).superRefine((m, ctx) => {
  const set = countSet(m);
  if (set.length > 1) {
    ctx.addIssue({ code: 'custom', message: `must set at most one of exact, prefix, regex (got ${set.join(', ')})` });
  }
}, whenValid);

/** HeaderMatch is a parsed header/query-parameter match: at most one of `exact`, `prefix`, `regex` (none = presence). */
export type HeaderMatch = z.infer<typeof HeaderMatchSchema>;

/**
 * WorkloadSelectorSchema is Istio's `WorkloadSelector`: `{ matchLabels }`, selecting the workloads whose
 * labels include all of them (https://istio.io/latest/docs/reference/config/type/workload-selector/).
 */
export const WorkloadSelectorSchema = z.strictObject({ matchLabels: StringMapSchema.optional() });

/**
 * ExportToSchema is Istio's `exportTo`: a list of namespaces the config is visible in, where `.` is the
 * resource's own namespace, `*` all namespaces and `~` none. Each value is `.`, `*`, `~` or a DNS-1123 label.
 */
export const ExportToSchema = z.array(
  requiredString().regex(/^([.*~]|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, {
    error: "must be '.', '*', '~' or a namespace name",
  }),
);

/**
 * HostSchema is a host name as Istio's `hosts` and `host` fields take it: a DNS name (short or fully
 * qualified), `*`, a `*.`-prefixed wildcard, or an IP address; no scheme, path, port or whitespace.
 */
export const HostSchema = requiredString().regex(/^(\*|(\*\.)?[^\s/*:]+|[0-9a-fA-F:.]+)$/, {
  error: "must be a host name, '*' or '*.suffix' (no scheme, port or path)",
});

/**
 * PROTOCOLS lists the port protocols Istio recognises (matched case-insensitively): HTTP, HTTPS, HTTP2,
 * GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL, HTTP_PROXY, HBONE.
 */
export const PROTOCOLS = [
  'HTTP',
  'HTTPS',
  'HTTP2',
  'GRPC',
  'GRPC-WEB',
  'TCP',
  'TLS',
  'UDP',
  'MONGO',
  'REDIS',
  'MYSQL',
  'HTTP_PROXY',
  'HBONE',
] as const;

/** Protocol is one of {@link PROTOCOLS}, in its canonical uppercase spelling. */
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * parseProtocol returns the canonical spelling of an Istio port protocol (`tls` → `TLS`,
 * `grpc-web` → `GRPC-WEB`), or undefined when `s` is not one of {@link PROTOCOLS}.
 */
export function parseProtocol(s: string): Protocol | undefined {
  const upper = s.toUpperCase();
  return PROTOCOLS.find((p) => p === upper);
}

/**
 * ProtocolSchema is an Istio port protocol string. It is checked case-insensitively against
 * {@link PROTOCOLS} (Istio's samples write `tls` as well as `TLS`) and kept as written; canonicalise with
 * {@link parseProtocol}.
 */
export const ProtocolSchema = requiredString().superRefine((p, ctx) => {
  if (parseProtocol(p) === undefined) {
    ctx.addIssue({ code: 'custom', message: `must be one of ${PROTOCOLS.join(', ')}, got ${JSON.stringify(p)}` });
  }
}, whenValid);

/**
 * PortSelectorSchema is Istio's `PortSelector`: `{ number }`, a port number in 1..65535.
 */
export const PortSelectorSchema = z.strictObject({ number: PortNumberSchema.optional() });

/**
 * checkOneOf adds an issue to `ctx` when more than one of `keys` is set on `value` (a protobuf `oneof`), worded
 * `only one of a, b, c may be set (got a, b)`. With `required`, none set is an issue too.
 */
export function checkOneOf(
  value: Record<string, unknown>,
  keys: readonly string[],
  ctx: z.core.$RefinementCtx,
  required = false,
): void {
  const set = keys.filter((k) => value[k] !== undefined);
  if (set.length > 1) {
    ctx.addIssue({ code: 'custom', message: `only one of ${keys.join(', ')} may be set (got ${set.join(', ')})` });
  } else if (required && set.length === 0) {
    ctx.addIssue({ code: 'custom', message: `one of ${keys.join(', ')} must be set` });
  }
}
