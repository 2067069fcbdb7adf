import {
  durationMs,
  type EnvoyHashPolicy,
  type EnvoyRoute,
  type EnvoyRouteConfiguration,
  type EnvoyStringMatcher,
} from './xds/envoy-schemas.js';
import { compileCorsPolicy, type CorsPolicy } from './filters/cors.js';

/** RequestView is what route matching reads of a request: lower-case header names, path with query. */
export interface RequestView {
  method: string;
  /** authority is the Host / :authority header, as sent. */
  authority: string;
  /** path is the request target's path and query, e.g. `/reviews/1?x=y`. */
  path: string;
  scheme: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** HeaderMutation is one header to add, as `config.core.v3.HeaderValueOption` says. */
export interface HeaderMutation {
  key: string;
  value: string;
  /** overwrite replaces an existing value (OVERWRITE_IF_EXISTS_OR_ADD); otherwise the value is appended. */
  overwrite: boolean;
}

/** FaultPolicy is a route's `envoy.filters.http.fault` config, percentages as fractions 0..1. */
export interface FaultPolicy {
  delayMs?: number;
  delayFraction?: number;
  /** abortStatus is `abort.http_status`. */
  abortStatus?: number;
  /** abortGrpcStatus is `abort.grpc_status`: gRPC requests get a Trailers-Only reply with it (HTTP 200). */
  abortGrpcStatus?: number;
  abortFraction?: number;
}

/** RetryPolicy is a route's retry policy (Envoy `config.route.v3.RetryPolicy`). */
export interface RetryPolicy {
  retryOn: Set<string>;
  numRetries: number;
  perTryTimeoutMs: number;
  retriableStatusCodes: Set<number>;
  /** backoffBaseMs and backoffMaxMs are `retry_back_off` (Envoy's defaults: 25 ms and 10 × base). */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** previousHosts is the `envoy.retry_host_predicates.previous_hosts` predicate: retries avoid hosts already tried. */
  previousHosts: boolean;
  /** hostSelectionAttempts is `host_selection_retry_max_attempts`: host choices per attempt to satisfy the predicate. */
  hostSelectionAttempts: number;
}

/** MirrorPolicy is one `request_mirror_policies` entry: the shadow cluster and the fraction (0..1) mirrored. */
export interface MirrorPolicy {
  cluster: string;
  fraction: number;
  /** appendShadowSuffix appends `-shadow` to the mirrored request's host (unless `disable_shadow_host_suffix_append`). */
  appendShadowSuffix: boolean;
}

/** RouteEntry is one compiled route: a match function and what to do with a matching request. */
export interface RouteEntry {
  name: string;
  matches(req: RequestView, pathOnly: string, query: URLSearchParams): boolean;
  action:
    | {
        kind: 'route';
        clusters: { name: string; weight: number }[];
        totalWeight: number;
        timeoutMs: number;
        retry?: RetryPolicy;
        prefixRewrite?: { prefix: string; replacement: string };
        regexRewrite?: { pattern: RegExp; substitution: string };
        hostRewrite?: string;
        mirrors: MirrorPolicy[];
        hashPolicy?: EnvoyHashPolicy[];
      }
    | {
        kind: 'redirect';
        status: number;
        host?: string;
        path?: string;
        scheme?: string;
        port?: number;
        prefixRewrite?: { prefix: string; replacement: string };
        stripQuery: boolean;
      }
    | { kind: 'direct'; status: number; body: string };
  requestHeadersToAdd: HeaderMutation[];
  requestHeadersToRemove: string[];
  responseHeadersToAdd: HeaderMutation[];
  responseHeadersToRemove: string[];
  fault?: FaultPolicy;
  /** cors is the route's `envoy.filters.http.cors` policy (`filters/cors.ts`). */
  cors?: CorsPolicy;
}

/** VirtualHostEntry is one compiled virtual host. */
export interface VirtualHostEntry {
  name: string;
  routes: RouteEntry[];
  /** includeRequestAttemptCount sends `x-envoy-attempt-count` upstream (`include_request_attempt_count`). */
  includeRequestAttemptCount: boolean;
  /** includeAttemptCountInResponse returns `x-envoy-attempt-count` downstream (`include_attempt_count_in_response`). */
  includeAttemptCountInResponse: boolean;
}

/**
 * RouteTable is a compiled RouteConfiguration: virtual hosts looked up by domain as Envoy does (exact, then
 * suffix wildcard `*.foo`, then prefix wildcard `foo.*`, then `*`; longest wildcard wins), then the first
 * matching route in order.
 */
export class RouteTable {
  private readonly exact = new Map<string, VirtualHostEntry>();
  private readonly suffixes: { suffix: string; vh: VirtualHostEntry }[] = [];
  private readonly prefixes: { prefix: string; vh: VirtualHostEntry }[] = [];
  private catchAll: VirtualHostEntry | undefined;

  /** constructor compiles a validated RouteConfiguration; throws with a field path on a duplicate domain or a bad regex. */
  constructor(readonly config: EnvoyRouteConfiguration) {
    (config.virtual_hosts ?? []).forEach((vh, i) => {
      const entry: VirtualHostEntry = {
        name: vh.name,
        routes: (vh.routes ?? []).map((r, j) => compileRoute(r, `virtual_hosts[${i}].routes[${j}]`)),
        includeRequestAttemptCount: vh.include_request_attempt_count === true,
        includeAttemptCountInResponse: vh.include_attempt_count_in_response === true,
      };
      vh.domains.forEach((d, k) => {
        const domain = d.toLowerCase();
        const where = `virtual_hosts[${i}].domains[${k}]`;
        if (domain === '*') {
          if (this.catchAll) throw new Error(`${where}: duplicate domain '*'`);
          this.catchAll = entry;
        } else if (domain.startsWith('*')) this.suffixes.push({ suffix: domain.slice(1), vh: entry });
        else if (domain.endsWith('*')) this.prefixes.push({ prefix: domain.slice(0, -1), vh: entry });
        else {
          if (this.exact.has(domain)) throw new Error(`${where}: duplicate domain '${domain}'`);
          this.exact.set(domain, entry);
        }
      });
    });
    this.suffixes.sort((a, b) => b.suffix.length - a.suffix.length);
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /**
   * virtualHost finds the virtual host for an authority (case-insensitive), or undefined. With `catchAll` false the
   * `*` virtual host is left out (capture mode tries the original destination before it).
   */
  virtualHost(authority: string, catchAll = true): VirtualHostEntry | undefined {
    const host = authority.toLowerCase();
    const hit = this.exact.get(host);
    if (hit) return hit;
    for (const s of this.suffixes) if (host.endsWith(s.suffix) && host.length > s.suffix.length) return s.vh;
    for (const p of this.prefixes) if (host.startsWith(p.prefix) && host.length > p.prefix.length) return p.vh;
    return catchAll ? this.catchAll : undefined;
  }

  /** route finds the first matching route for a request, or undefined (Envoy answers 404 with flag NR). */
  route(req: RequestView): { vh: VirtualHostEntry; route: RouteEntry } | undefined {
    const vh = this.virtualHost(req.authority);
    if (!vh) return undefined;
    const q = req.path.indexOf('?');
    const pathOnly = q >= 0 ? req.path.slice(0, q) : req.path;
    const query = new URLSearchParams(q >= 0 ? req.path.slice(q + 1) : '');
    for (const r of vh.routes) if (r.matches(req, pathOnly, query)) return { vh, route: r };
    return undefined;
  }
}

function compileRegex(pattern: string, where: string, flags = ''): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, flags);
  } catch (err) {
    throw new Error(`${where}: invalid regex: ${(err as Error).message}`);
  }
}

/** compileStringMatcher turns an Envoy StringMatcher into a predicate (RE2 regexes run as JS regexes, anchored). */
export function compileStringMatcher(m: EnvoyStringMatcher, where: string): (v: string) => boolean {
  const ic = m.ignore_case === true;
  const norm = (s: string): string => (ic ? s.toLowerCase() : s);
  if (m.exact !== undefined) {
    const e = norm(m.exact);
    return (v) => norm(v) === e;
  }
  if (m.prefix !== undefined) {
    const p = norm(m.prefix);
    return (v) => norm(v).startsWith(p);
  }
  if (m.suffix !== undefined) {
    const s = norm(m.suffix);
    return (v) => norm(v).endsWith(s);
  }
  if (m.contains !== undefined) {
    const c = norm(m.contains);
    return (v) => norm(v).includes(c);
  }
  const re = compileRegex(m.safe_regex?.regex ?? '', `${where}.safe_regex.regex`, ic ? 'i' : '');
  return (v) => re.test(v);
}

function headerValue(req: RequestView, name: string): string | undefined {
  switch (name) {
    case ':method':
      return req.method;
    case ':authority':
      return req.authority;
    case ':path':
      return req.path;
    case ':scheme':
      return req.scheme;
    default: {
      const v = req.headers[name.toLowerCase()];
      return Array.isArray(v) ? v.join(',') : v;
    }
  }
}

function fraction(p: { numerator?: number | undefined; denominator?: string | undefined } | undefined): number {
  if (!p) return 1;
  const d = p.denominator === 'MILLION' ? 1e6 : p.denominator === 'TEN_THOUSAND' ? 1e4 : 100;
  return Math.min(1, (p.numerator ?? 0) / d);
}

function mutations(list: EnvoyRoute['request_headers_to_add']): HeaderMutation[] {
  return (list ?? []).map((h) => ({
    key: h.header.key.toLowerCase(),
    value: h.header.value ?? '',
    overwrite: h.append_action === 'OVERWRITE_IF_EXISTS_OR_ADD' || h.append_action === 'OVERWRITE_IF_EXISTS',
  }));
}

const REDIRECT_CODES: Record<string, number> = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
};

function compileMatch(r: EnvoyRoute, where: string): RouteEntry['matches'] {
  const m = r.match;
  const caseSensitive = m.case_sensitive?.value !== false;
  let pathMatch: (p: string) => boolean;
  if (m.path !== undefined) {
    const want = caseSensitive ? m.path : m.path.toLowerCase();
    pathMatch = (p) => (caseSensitive ? p : p.toLowerCase()) === want;
  } else if (m.prefix !== undefined) {
    const want = caseSensitive ? m.prefix : m.prefix.toLowerCase();
    pathMatch = (p) => (caseSensitive ? p : p.toLowerCase()).startsWith(want);
  } else {
    const re = compileRegex(m.safe_regex?.regex ?? '', `${where}.match.safe_regex.regex`, caseSensitive ? '' : 'i');
    pathMatch = (p) => re.test(p);
  }
  const headers = (m.headers ?? []).map((h, i) => {
    const test = h.string_match
      ? compileStringMatcher(h.string_match, `${where}.match.headers[${i}].string_match`)
      : undefined;
    return (req: RequestView): boolean => {
      const v = headerValue(req, h.name) ?? (h.treat_missing_header_as_empty ? '' : undefined);
      let ok: boolean;
      if (h.present_match !== undefined) ok = (v !== undefined) === h.present_match;
      else ok = v !== undefined && (test ? test(v) : true);
      return h.invert_match ? !ok : ok;
    };
  });
  const queries = (m.query_parameters ?? []).map((qp, i) => {
    const test = qp.string_match
      ? compileStringMatcher(qp.string_match, `${where}.match.query_parameters[${i}].string_match`)
      : undefined;
    return (q: URLSearchParams): boolean => {
      const v = q.get(qp.name);
      if (qp.present_match !== undefined) return (v !== null) === qp.present_match;
      return v !== null && (test ? test(v) : true);
    };
  });
  return (req, pathOnly, query) =>
    pathMatch(pathOnly) && headers.every((h) => h(req)) && queries.every((q) => q(query));
}

function compileAction(r: EnvoyRoute, where: string): RouteEntry['action'] {
  const set = [r.route, r.redirect, r.direct_response].filter((x) => x !== undefined).length;
  if (set !== 1) throw new Error(`${where}: exactly one of route, redirect, direct_response must be set`);
  const prefix = r.match.prefix;
  if (r.route) {
    const a = r.route;
    const clusters = a.cluster
      ? [{ name: a.cluster, weight: 1 }]
      : (a.weighted_clusters?.clusters ?? []).map((c) => ({ name: c.name, weight: c.weight.value ?? 0 }));
    const totalWeight = clusters.reduce((s, c) => s + c.weight, 0);
    if (totalWeight <= 0) throw new Error(`${where}.route.weighted_clusters: total weight must be > 0`);
    const action: Extract<RouteEntry['action'], { kind: 'route' }> = {
      kind: 'route',
      clusters,
      totalWeight,
      timeoutMs: a.timeout ? durationMs(a.timeout) : 15_000,
      mirrors: (a.request_mirror_policies ?? []).map((p) => ({
        cluster: p.cluster,
        fraction: fraction(p.runtime_fraction?.default_value),
        appendShadowSuffix: p.disable_shadow_host_suffix_append !== true,
      })),
    };
    if (a.hash_policy && a.hash_policy.length > 0) action.hashPolicy = a.hash_policy;
    if (a.retry_policy) {
      const rp = a.retry_policy;
      action.retry = {
        retryOn: new Set(
          (rp.retry_on ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        ),
        numRetries: rp.num_retries?.value ?? 1,
        perTryTimeoutMs: durationMs(rp.per_try_timeout),
        retriableStatusCodes: new Set(rp.retriable_status_codes ?? []),
        backoffBaseMs: rp.retry_back_off ? durationMs(rp.retry_back_off.base_interval) : 25,
        backoffMaxMs: 0,
        previousHosts: (rp.retry_host_predicate ?? []).length > 0,
        hostSelectionAttempts: Math.max(1, Math.min(100, Number(rp.host_selection_retry_max_attempts ?? 1))),
      };
      const base = action.retry.backoffBaseMs;
      if (base <= 0) throw new Error(`${where}.route.retry_policy.retry_back_off.base_interval: must be > 0`);
      action.retry.backoffMaxMs = rp.retry_back_off?.max_interval
        ? durationMs(rp.retry_back_off.max_interval)
        : base * 10;
      if (action.retry.backoffMaxMs < base)
        throw new Error(`${where}.route.retry_policy.retry_back_off.max_interval: must be ≥ base_interval`);
    }
    if (a.prefix_rewrite !== undefined) {
      if (prefix === undefined) throw new Error(`${where}.route.prefix_rewrite: needs a prefix match`);
      action.prefixRewrite = { prefix, replacement: a.prefix_rewrite };
    }
    if (a.regex_rewrite) {
      action.regexRewrite = {
        pattern: new RegExp(
          compileRegex(a.regex_rewrite.pattern.regex, `${where}.route.regex_rewrite`).source.slice(1, -1),
          'g',
        ),
        substitution: a.regex_rewrite.substitution.replace(/\\(\d)/g, '$$$1'),
      };
    }
    if (a.host_rewrite_literal !== undefined) action.hostRewrite = a.host_rewrite_literal;
    return action;
  }
  if (r.redirect) {
    const d = r.redirect;
    const action: Extract<RouteEntry['action'], { kind: 'redirect' }> = {
      kind: 'redirect',
      status: REDIRECT_CODES[d.response_code ?? 'MOVED_PERMANENTLY'] ?? 301,
      stripQuery: d.strip_query === true,
    };
    if (d.host_redirect !== undefined) action.host = d.host_redirect;
    if (d.path_redirect !== undefined) action.path = d.path_redirect;
    if (d.scheme_redirect !== undefined) action.scheme = d.scheme_redirect;
    if (d.https_redirect) action.scheme = 'https';
    if (d.port_redirect !== undefined) action.port = d.port_redirect;
    if (d.prefix_rewrite !== undefined) {
      if (prefix === undefined) throw new Error(`${where}.redirect.prefix_rewrite: needs a prefix match`);
      action.prefixRewrite = { prefix, replacement: d.prefix_rewrite };
    }
    return action;
  }
  const dr = r.direct_response;
  return { kind: 'direct', status: dr?.status ?? 200, body: dr?.body?.inline_string ?? '' };
}

function compileRoute(r: EnvoyRoute, where: string): RouteEntry {
  const entry: RouteEntry = {
    name: r.name ?? '',
    matches: compileMatch(r, where),
    action: compileAction(r, where),
    requestHeadersToAdd: mutations(r.request_headers_to_add),
    requestHeadersToRemove: (r.request_headers_to_remove ?? []).map((h) => h.toLowerCase()),
    responseHeadersToAdd: mutations(r.response_headers_to_add),
    responseHeadersToRemove: (r.response_headers_to_remove ?? []).map((h) => h.toLowerCase()),
  };
  const f = r.typed_per_filter_config?.['envoy.filters.http.fault'];
  if (f) {
    const fault: FaultPolicy = {};
    if (f.delay) {
      fault.delayMs = durationMs(f.delay.fixed_delay);
      fault.delayFraction = fraction(f.delay.percentage);
    }
    if (f.abort) {
      // FaultAbort's error_type is a oneof; header_abort is not implemented.
      const at = `${where}.typed_per_filter_config.envoy.filters.http.fault.abort`;
      const { http_status: http, grpc_status: grpc } = f.abort;
      if (http !== undefined && grpc !== undefined)
        throw new Error(`${at}: http_status and grpc_status are one of error_type; set only one`);
      if (http !== undefined) fault.abortStatus = http;
      else if (grpc !== undefined) fault.abortGrpcStatus = grpc;
      else throw new Error(`${at}: http_status or grpc_status is required`);
      fault.abortFraction = fraction(f.abort.percentage);
    }
    entry.fault = fault;
  }
  const cors = r.typed_per_filter_config?.['envoy.filters.http.cors'];
  if (cors) entry.cors = compileCorsPolicy(cors, `${where}.typed_per_filter_config.envoy.filters.http.cors`);
  return entry;
}
