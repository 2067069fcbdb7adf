/**
 * Zod schemas of Envoy's CORS filter (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/cors_filter):
 * the `envoy.filters.http.cors` entry of `http_filters` (`extensions.filters.http.cors.v3.Cors`, which has no
 * fields) and the per-route `typed_per_filter_config["envoy.filters.http.cors"]`
 * (`extensions.filters.http.cors.v3.CorsPolicy`). Objects are strict: `shadow_enabled` and a `filter_enabled`
 * `runtime_key` (the proxy has no runtime layer) make the resource NACK with their field path.
 *
 * The schemas are built by {@link createCorsSchemas} from the caller's StringMatcher and FractionalPercent
 * schemas, so that this file imports nothing from `envoy-schemas.ts` (which imports this one).
 */
import { z } from 'zod';

/** CORS_FILTER_NAME is the name of Envoy's CORS filter in `http_filters` and in `typed_per_filter_config`. */
export const CORS_FILTER_NAME = 'envoy.filters.http.cors';

const CORS_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
const CORS_POLICY_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';

/** CorsStringMatcher is `type.matcher.v3.StringMatcher` as decoded (exactly one match kind set). */
export interface CorsStringMatcher {
  exact?: string | undefined;
  prefix?: string | undefined;
  suffix?: string | undefined;
  contains?: string | undefined;
  safe_regex?: { regex: string; google_re2?: Record<string, never> | undefined } | undefined;
  ignore_case?: boolean | undefined;
}

/** CorsFractionalPercent is `type.v3.FractionalPercent` as decoded. */
export interface CorsFractionalPercent {
  numerator?: number | undefined;
  denominator?: 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION' | undefined;
}

/**
 * EnvoyCorsPolicy is a decoded `extensions.filters.http.cors.v3.CorsPolicy`: the allowed origins, the
 * `access-control-*` header values (comma-separated strings as Envoy sends them), wrapped booleans, and the
 * percentage of requests the filter is enabled for.
 */
export interface EnvoyCorsPolicy {
  '@type': typeof CORS_POLICY_TYPE;
  allow_origin_string_match?: CorsStringMatcher[] | undefined;
  allow_methods?: string | undefined;
  allow_headers?: string | undefined;
  expose_headers?: string | undefined;
  max_age?: string | undefined;
  allow_credentials?: { value?: boolean | undefined } | undefined;
  filter_enabled?: { default_value: CorsFractionalPercent } | undefined;
  allow_private_network_access?: { value?: boolean | undefined } | undefined;
  forward_not_matching_preflights?: { value?: boolean | undefined } | undefined;
}

/**
 * createCorsSchemas builds the CORS schemas over the caller's StringMatcher and FractionalPercent schemas.
 * Returns `{ filter, policy }`: the `http_filters` entry and the per-route {@link EnvoyCorsPolicy}. `max_age`
 * must be a whole number of seconds (Envoy copies it into `access-control-max-age` as is, and the Fetch
 * standard reads only digits there).
 */
export function createCorsSchemas(
  stringMatcher: z.ZodType<CorsStringMatcher>,
  fractionalPercent: z.ZodType<CorsFractionalPercent>,
) {
  const wrappedBool = z.strictObject({ value: z.boolean().optional() });
  const policy: z.ZodType<EnvoyCorsPolicy> = z.strictObject({
    '@type': z.literal(CORS_POLICY_TYPE),
    allow_origin_string_match: z.array(stringMatcher).optional(),
    allow_methods: z.string().optional(),
    allow_headers: z.string().optional(),
    expose_headers: z.string().optional(),
    max_age: z.string().regex(/^\d*$/, 'must be a whole number of seconds').optional(),
    allow_credentials: wrappedBool.optional(),
    filter_enabled: z.strictObject({ default_value: fractionalPercent }).optional(),
    allow_private_network_access: wrappedBool.optional(),
    forward_not_matching_preflights: wrappedBool.optional(),
  });
  const filter = z.strictObject({
    name: z.literal(CORS_FILTER_NAME),
    typed_config: z.strictObject({ '@type': z.literal(CORS_TYPE) }),
  });
  return { filter, policy };
}

/**
 * checkCorsFilterOrder enforces the order the proxy runs HTTP filters in: RBAC (with the request guard), then
 * fault, then CORS, then the router. An `http_filters` list that puts the CORS filter before an RBAC or fault
 * filter, or lists it twice, would run differently here than in Envoy, so it is refused rather than reordered.
 */
export function checkCorsFilterOrder(filters: readonly { name: string }[], ctx: z.core.$RefinementCtx): void {
  const at = filters.map((f, i) => (f.name === CORS_FILTER_NAME ? i : -1)).filter((i) => i >= 0);
  if (at.length > 1)
    ctx.addIssue({ code: 'custom', path: [at[1] ?? 0, 'name'], message: 'the CORS filter may appear only once' });
  const cors = at[0];
  if (cors === undefined) return;
  filters.forEach((f, i) => {
    if (i > cors && (f.name === 'envoy.filters.http.rbac' || f.name === 'envoy.filters.http.fault'))
      ctx.addIssue({
        code: 'custom',
        path: [cors, 'name'],
        message: `the CORS filter must come after ${f.name} (the proxy runs RBAC, fault, CORS, then the router)`,
      });
  });
}
