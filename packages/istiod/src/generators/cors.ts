import { parseDurationMs, type StringMatch } from '@fedmesh/api';
import type { HTTPRoute } from '@fedmesh/api';

/** CORS_FILTER_NAME is Envoy's CORS filter, the key of a route's CORS policy in `typed_per_filter_config`. */
export const CORS_FILTER_NAME = 'envoy.filters.http.cors';

const CORS_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
const CORS_POLICY_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';

/**
 * CORS_FILTER is the `http_filters` entry (`envoy.extensions.filters.http.cors.v3.Cors`, which has no fields) that
 * makes routes' CORS policies take effect. Istio puts it after the fault filter and before the router on every
 * HTTP connection manager that serves VirtualService routes (`xdsfilters.Fault, xdsfilters.Cors`).
 */
export const CORS_FILTER = { name: CORS_FILTER_NAME, typed_config: { '@type': CORS_TYPE } };

type CorsPolicy = NonNullable<HTTPRoute['corsPolicy']>;

/** originMatcher is Istio's `ConvertToEnvoyMatch`: a StringMatch as an Envoy `type.matcher.v3.StringMatcher`. */
function originMatcher(m: StringMatch): object {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  return { safe_regex: { regex: m.regex ?? '' } };
}

/**
 * corsPolicyConfig translates an Istio `CorsPolicy` into the per-route `envoy.extensions.filters.http.cors.v3.CorsPolicy`
 * (`@type` set), as Istio's `TranslateCORSPolicy` does:
 * - `allowOrigins` (StringMatch exact/prefix/regex) → `allow_origin_string_match`; the deprecated `allowOrigin`
 *   strings are exact matches, used only when `allowOrigins` is absent;
 * - `allowMethods`, `allowHeaders`, `exposeHeaders` → comma-joined strings;
 * - `maxAge` (duration) → whole seconds as a string (`24h` → `"86400"`);
 * - `allowCredentials` → `allow_credentials` when set;
 * - `unmatchedPreflights: IGNORE` → `forward_not_matching_preflights: false`, otherwise (FORWARD, UNSPECIFIED,
 *   unset) `true`, Envoy's behaviour before 1.30;
 * - `filter_enabled` 100% (the filter enforces the policy on every request).
 */
export function corsPolicyConfig(cors: CorsPolicy): Record<string, unknown> {
  const out: Record<string, unknown> = { '@type': CORS_POLICY_TYPE };
  const origins =
    cors.allowOrigins !== undefined
      ? cors.allowOrigins.map(originMatcher)
      : (cors.allowOrigin ?? []).map((o) => ({ exact: o }));
  if (origins.length > 0) out.allow_origin_string_match = origins;
  if (cors.allowMethods && cors.allowMethods.length > 0) out.allow_methods = cors.allowMethods.join(',');
  if (cors.allowHeaders && cors.allowHeaders.length > 0) out.allow_headers = cors.allowHeaders.join(',');
  if (cors.exposeHeaders && cors.exposeHeaders.length > 0) out.expose_headers = cors.exposeHeaders.join(',');
  if (cors.maxAge !== undefined) out.max_age = String(Math.floor(parseDurationMs(cors.maxAge) / 1000));
  if (cors.allowCredentials !== undefined) out.allow_credentials = { value: cors.allowCredentials };
  out.filter_enabled = { default_value: { numerator: 100, denominator: 'HUNDRED' } };
  out.forward_not_matching_preflights = { value: cors.unmatchedPreflights !== 'IGNORE' };
  return out;
}
