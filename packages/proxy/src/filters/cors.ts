/**
 * Envoy's CORS filter (`envoy.filters.http.cors`), with the semantics of Envoy's `CorsFilter`
 * (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/cors_filter, the Fetch standard's
 * CORS protocol). It acts only on requests whose route carries a `CorsPolicy` in `typed_per_filter_config`, when
 * the HTTP connection manager lists the filter, and only on requests with a non-empty `Origin`:
 * - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed origin is answered
 *   by the proxy with 200 and the `access-control-allow-*` headers, never reaching the app;
 * - a preflight from another origin is forwarded when `forward_not_matching_preflights` is true (the default),
 *   else answered with 200 without `access-control-allow-origin` (the browser then refuses the request);
 * - any other request from an allowed origin gets `access-control-allow-origin` (the origin itself),
 *   `-allow-credentials` and `-expose-headers` set on its response, whoever answers it; from another origin,
 *   the response is left as it is.
 */
import { CORS_FILTER_NAME, type EnvoyCorsPolicy } from '../xds/cors-schemas.js';
import { compileRbacStringMatcher } from './rbac.js';

/** CorsPolicy is a compiled per-route `extensions.filters.http.cors.v3.CorsPolicy`. */
export interface CorsPolicy {
  /** allowOrigin holds one predicate per `allow_origin_string_match` entry; an origin is allowed if any matches. */
  allowOrigin: readonly ((origin: string) => boolean)[];
  allowMethods: string;
  allowHeaders: string;
  exposeHeaders: string;
  maxAge: string;
  allowCredentials: boolean;
  allowPrivateNetworkAccess: boolean;
  /** forwardNotMatchingPreflights sends a preflight from a disallowed origin upstream (Envoy's default: true). */
  forwardNotMatchingPreflights: boolean;
  /** enabledFraction is `filter_enabled.default_value` as a fraction 0..1 (1 when unset). */
  enabledFraction: number;
}

function fraction(p: { numerator?: number | undefined; denominator?: string | undefined }): number {
  const d = p.denominator === 'MILLION' ? 1e6 : p.denominator === 'TEN_THOUSAND' ? 1e4 : 100;
  return Math.min(1, (p.numerator ?? 0) / d);
}

/**
 * compileCorsPolicy compiles a validated `CorsPolicy`; `where` prefixes error paths
 * (`virtual_hosts[0].routes[2].typed_per_filter_config.envoy.filters.http.cors`). Throws with a field path when
 * an origin regex does not compile, so that the RouteConfiguration is NACKed.
 */
export function compileCorsPolicy(c: EnvoyCorsPolicy, where: string): CorsPolicy {
  return {
    allowOrigin: (c.allow_origin_string_match ?? []).map((m, i) =>
      compileRbacStringMatcher(m, `${where}.allow_origin_string_match[${i}]`),
    ),
    allowMethods: c.allow_methods ?? '',
    allowHeaders: c.allow_headers ?? '',
    exposeHeaders: c.expose_headers ?? '',
    maxAge: c.max_age ?? '',
    allowCredentials: c.allow_credentials?.value === true,
    allowPrivateNetworkAccess: c.allow_private_network_access?.value === true,
    forwardNotMatchingPreflights: c.forward_not_matching_preflights?.value !== false,
    enabledFraction: c.filter_enabled ? fraction(c.filter_enabled.default_value) : 1,
  };
}

/**
 * CorsDecision is what the filter decided for a request: `preflight` holds the headers of the 200 the proxy
 * answers with itself; `response` holds the headers to set on the response to an actual request from an
 * allowed origin (whether it comes from upstream or is a local reply).
 */
export interface CorsDecision {
  preflight?: Record<string, string>;
  response?: Record<string, string>;
}

/** CorsRequest is what the filter reads of a request: its method and its lower-case headers. */
export interface CorsRequest {
  method: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

function header(req: CorsRequest, name: string): string {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : (v ?? '');
}

/**
 * isOriginAllowed is Envoy's check: an origin is allowed when an `allow_origin_string_match` entry matches it, or
 * matches the literal `*` (so `exact: "*"` or `regex: ".*"` allow any origin, which is then echoed back).
 */
export function isOriginAllowed(policy: CorsPolicy, origin: string): boolean {
  return policy.allowOrigin.some((m) => m('*') || m(origin));
}

/**
 * corsDecodeHeaders runs the CORS filter on a request's headers (Envoy's `CorsFilter::decodeHeaders`). `policy`
 * is the route's compiled policy (none: the filter does nothing); `random` (0..1) draws against
 * `filter_enabled`. Returns undefined when the filter leaves the request and its response alone.
 */
export function corsDecodeHeaders(
  policy: CorsPolicy | undefined,
  req: CorsRequest,
  random: () => number,
): CorsDecision | undefined {
  if (!policy) return undefined;
  if (policy.enabledFraction < 1 && !(random() < policy.enabledFraction)) return undefined;
  const origin = header(req, 'origin');
  if (origin === '') return undefined;
  const allowed = isOriginAllowed(policy, origin);
  const requestMethod = header(req, 'access-control-request-method');
  if (req.method !== 'OPTIONS' || requestMethod === '')
    return allowed ? { response: actualHeaders(policy, origin) } : undefined;
  if (!allowed && policy.forwardNotMatchingPreflights) return undefined;
  const out: Record<string, string> = {};
  if (allowed) out['access-control-allow-origin'] = origin;
  if (policy.allowCredentials) out['access-control-allow-credentials'] = 'true';
  if (policy.allowMethods !== '')
    out['access-control-allow-methods'] = policy.allowMethods === '*' ? requestMethod : policy.allowMethods;
  if (policy.allowHeaders !== '')
    out['access-control-allow-headers'] =
      policy.allowHeaders === '*' ? header(req, 'access-control-request-headers') : policy.allowHeaders;
  if (policy.maxAge !== '') out['access-control-max-age'] = policy.maxAge;
  if (policy.allowPrivateNetworkAccess && header(req, 'access-control-request-private-network') === 'true')
    out['access-control-allow-private-network'] = 'true';
  return { preflight: out };
}

/** actualHeaders are the headers set on the response to an actual request from an allowed origin (`encodeHeaders`). */
function actualHeaders(policy: CorsPolicy, origin: string): Record<string, string> {
  const out: Record<string, string> = { 'access-control-allow-origin': origin };
  if (policy.allowCredentials) out['access-control-allow-credentials'] = 'true';
  if (policy.exposeHeaders !== '') out['access-control-expose-headers'] = policy.exposeHeaders;
  return out;
}

/**
 * hasCorsFilter tells whether an HTTP connection manager lists `envoy.filters.http.cors` in its `http_filters`
 * (false for a chain without one): as in Envoy, routes' CORS policies take effect only then.
 */
export function hasCorsFilter(hcm: { http_filters: readonly { name: string }[] } | undefined): boolean {
  return hcm?.http_filters.some((f) => f.name === CORS_FILTER_NAME) === true;
}
