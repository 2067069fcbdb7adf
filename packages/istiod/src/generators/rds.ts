import { TypeUrl, outboundClusterName } from '@fedmesh/api/xds';
import {
  parseDurationMs,
  type HTTPFaultInjection,
  type HTTPMatchRequest,
  type HTTPRoute,
  type HeaderMatch,
  type Headers,
} from '@fedmesh/api';
import { namespaceOf, type VirtualServiceObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import { isHttpProtocol, type MeshService, type ServicePort } from '../model/service.js';
import { gatewayKey, type PushContext } from '../push-context.js';
import { effectivePolicy } from './cds.js';
import { durationToProto, matchesLabels, percentToFraction, toResource, type GeneratedResource } from './common.js';
import { PASSTHROUGH_CLUSTER } from './capture-outbound.js';
import { CORS_FILTER_NAME, corsPolicyConfig } from './cors.js';
import { effectiveHttpRoutes } from './delegate.js';
import { hashPolicy } from './traffic-policy.js';

/** OUTBOUND_ROUTE_NAME is the RouteConfiguration the explicit outbound listener (15001) uses. */
export const OUTBOUND_ROUTE_NAME = 'outbound';

/** FAULT_FILTER_NAME is the HTTP fault filter's name, the key of a route's fault override in `typed_per_filter_config`. */
export const FAULT_FILTER_NAME = 'envoy.filters.http.fault';

const FAULT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

/**
 * ISTIO_DEFAULT_RETRY is the retry policy Istio puts on every route without `retries` (2 attempts on connect
 * failure, refused stream, unavailable, cancelled, and 503).
 */
export const ISTIO_DEFAULT_RETRY = {
  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  num_retries: { value: 2 },
  retriable_status_codes: [503],
  retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
  host_selection_retry_max_attempts: '5',
};

/**
 * domainsFor lists a virtual host's domains as Istio does for a sidecar: the FQDN and its shorter forms
 * (`reviews.default.svc`, `reviews.default`, and `reviews` within the same namespace) and its virtual IPs
 * (`10.96.0.12`, reached through transparent capture), each with `:<port>`; port-less forms only for the service's
 * HTTP-default port (80, else its only HTTP port).
 */
export function domainsFor(svc: MeshService, port: ServicePort, proxyNs: string, domainSuffix: string): string[] {
  const names = [svc.hostname];
  const short = svc.hostname.endsWith(`.svc.${domainSuffix}`)
    ? svc.hostname.slice(0, -`.${domainSuffix}`.length)
    : undefined;
  if (short) {
    names.push(short, `${svc.name}.${svc.namespace}`);
    if (svc.namespace === proxyNs) names.push(svc.name);
  }
  for (const vip of svc.addresses ?? []) names.push(vip.includes(':') ? `[${vip}]` : vip);
  const httpPorts = svc.ports.filter((p) => isHttpProtocol(p.protocol));
  const portless = port.port === 80 || (httpPorts.length === 1 && !svc.ports.some((p) => p.port === 80));
  const out: string[] = [];
  for (const n of names) {
    if (portless) out.push(n);
    out.push(`${n}:${port.port}`);
  }
  return out;
}

function stringMatcher(m: HeaderMatch): object | undefined {
  if (m.exact !== undefined) return { exact: m.exact };
  if (m.prefix !== undefined) return { prefix: m.prefix };
  if (m.regex !== undefined) return { safe_regex: { regex: m.regex } };
  return undefined;
}

function headerMatcher(name: string, m: HeaderMatch, invert = false): object {
  const sm = stringMatcher(m);
  const h: Record<string, unknown> = { name: name.toLowerCase() };
  if (sm) h.string_match = sm;
  else h.present_match = true;
  if (invert) h.invert_match = true;
  return h;
}

/**
 * routeMatch translates an Istio `HTTPMatchRequest` into Envoy's `RouteMatch` (Istio's `TranslateRouteMatch`):
 * `uri` exact → `path`, prefix → `prefix`, regex → `safe_regex` (none: prefix `/`), `ignoreUriCase`, `headers`
 * and inverted `withoutHeaders`, `method`/`authority`/`scheme` as pseudo-header matchers, and `queryParams`.
 */
export function routeMatch(m: HTTPMatchRequest | undefined): object {
  const out: Record<string, unknown> = {};
  const uri = m?.uri;
  if (uri?.exact !== undefined) out.path = uri.exact;
  else if (uri?.prefix !== undefined) out.prefix = uri.prefix;
  else if (uri?.regex !== undefined) out.safe_regex = { regex: uri.regex };
  else out.prefix = '/';
  if (m?.ignoreUriCase) out.case_sensitive = { value: false };
  const headers: object[] = [];
  for (const [k, v] of Object.entries(m?.headers ?? {})) headers.push(headerMatcher(k, v));
  for (const [k, v] of Object.entries(m?.withoutHeaders ?? {})) headers.push(headerMatcher(k, v, true));
  if (m?.method) headers.push(headerMatcher(':method', m.method));
  if (m?.authority) headers.push(headerMatcher(':authority', m.authority));
  if (m?.scheme) headers.push(headerMatcher(':scheme', m.scheme));
  if (headers.length > 0) out.headers = headers;
  const qp = Object.entries(m?.queryParams ?? {}).map(([k, v]) => {
    const sm = stringMatcher(v);
    return sm ? { name: k, string_match: sm } : { name: k, present_match: true };
  });
  if (qp.length > 0) out.query_parameters = qp;
  return out;
}

function headerOps(h: Headers['request'] | undefined): { add: object[]; remove: string[] } {
  const add: object[] = [];
  for (const [k, v] of Object.entries(h?.set ?? {}))
    add.push({ header: { key: k, value: v }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });
  for (const [k, v] of Object.entries(h?.add ?? {}))
    add.push({ header: { key: k, value: v }, append_action: 'APPEND_IF_EXISTS_OR_ADD' });
  return { add, remove: h?.remove ?? [] };
}

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY',
  302: 'FOUND',
  303: 'SEE_OTHER',
  307: 'TEMPORARY_REDIRECT',
  308: 'PERMANENT_REDIRECT',
};

/**
 * destinationCluster names the cluster of a route destination, `outbound|<port>|<subset>|<host>`, choosing the port
 * as Istio does: the destination's port, else the service's only port, else the virtual host's port.
 */
export function destinationCluster(
  push: PushContext,
  vsNs: string,
  dest: { host: string; subset?: string | undefined; port?: { number?: number | undefined } | undefined },
  vhostPort: number,
): string {
  const host = push.resolveHost(dest.host, vsNs);
  const svc = push.service(host);
  let port = dest.port?.number;
  if (port === undefined) port = svc && svc.ports.length === 1 ? svc.ports[0]?.port : vhostPort;
  return outboundClusterName(port ?? vhostPort, dest.subset ?? '', host);
}

/**
 * destinationHashPolicy returns the route `hash_policy` for a destination: the consistent hash of the effective
 * DestinationRule policy (subset over port over top level) that the proxy uses for that host (Istio's
 * `hashForHTTPDestination`).
 */
function destinationHashPolicy(
  push: PushContext,
  proxyNs: string,
  vsNs: string,
  dest: { host: string; subset?: string | undefined; port?: { number?: number | undefined } | undefined },
  vhostPort: number,
): object[] | undefined {
  const host = push.resolveHost(dest.host, vsNs);
  const dr = push.destinationRuleFor(host, proxyNs);
  if (!dr) return undefined;
  const svc = push.service(host);
  const port = dest.port?.number ?? (svc && svc.ports.length === 1 ? svc.ports[0]?.port : vhostPort) ?? vhostPort;
  const subsetPolicy = dest.subset ? dr.spec.subsets?.find((s) => s.name === dest.subset)?.trafficPolicy : undefined;
  return hashPolicy(effectivePolicy(dr.spec.trafficPolicy, subsetPolicy, port));
}

/** GRPC_STATUS_CODES maps gRPC status names (Istio's `abort.grpcStatus`) to their numbers (grpc/doc/statuscodes.md). */
const GRPC_STATUS_CODES: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/**
 * grpcStatusCode is the number of an Istio `abort.grpcStatus`, given by name (`UNAVAILABLE`, any case) or number
 * (`"14"`), as Istio's `translateFault` reads it; undefined for anything that is not a gRPC status (0..16).
 */
export function grpcStatusCode(status: string): number | undefined {
  const code = GRPC_STATUS_CODES[status.toUpperCase()] ?? (/^\d+$/.test(status) ? Number(status) : NaN);
  return Number.isInteger(code) && code >= 0 && code <= 16 ? code : undefined;
}

/**
 * FaultConfig is the per-route `HTTPFault` override {@link faultConfig} makes, and which parts of the Istio fault
 * it could not express (so the caller can warn or translate them its own way).
 */
export interface FaultConfig {
  config: Record<string, unknown>;
  /** delayLeftOut is true for a delay that is not a `fixedDelay` (`exponentialDelay`). */
  delayLeftOut: boolean;
  /** abortLeftOut is true for an `http2Error` abort, or a `grpcStatus` that names no gRPC status. */
  abortLeftOut: boolean;
}

/**
 * faultConfig translates an Istio `HTTPFaultInjection` into Envoy's `HTTPFault` (`@type` set, Istio's
 * `translateFault`): a `fixedDelay` as `delay.fixed_delay`, an `httpStatus` abort as `abort.http_status`, a
 * `grpcStatus` abort (by name or number) as `abort.grpc_status` (Envoy's `FaultAbort.grpc_status`, also read by
 * gRPC's fault filter, gRFC A33), each with its percentage as a `FractionalPercent`. Other delays and aborts are
 * left out and flagged.
 */
export function faultConfig(fault: HTTPFaultInjection): FaultConfig {
  const config: Record<string, unknown> = { '@type': FAULT_TYPE };
  const dl = fault.delay;
  if (dl?.fixedDelay)
    config.delay = {
      fixed_delay: durationToProto(parseDurationMs(dl.fixedDelay)),
      percentage: percentToFraction(dl.percentage?.value ?? dl.percent),
    };
  const ab = fault.abort;
  const grpcStatus = ab?.grpcStatus !== undefined ? grpcStatusCode(ab.grpcStatus) : undefined;
  if (ab?.httpStatus !== undefined)
    config.abort = { http_status: ab.httpStatus, percentage: percentToFraction(ab.percentage?.value) };
  else if (grpcStatus !== undefined)
    config.abort = { grpc_status: grpcStatus, percentage: percentToFraction(ab?.percentage?.value) };
  return {
    config,
    delayLeftOut: dl !== undefined && !dl.fixedDelay,
    abortLeftOut: ab !== undefined && config.abort === undefined,
  };
}

function translateRoute(
  push: PushContext,
  proxy: ProxyModel,
  vs: VirtualServiceObject,
  r: HTTPRoute,
  m: HTTPMatchRequest | undefined,
  port: number,
  idx: string,
  warnings: string[],
): object {
  const ns = namespaceOf(vs);
  const route: Record<string, unknown> = { name: r.name ?? `${vs.metadata.name}.${ns}.${idx}`, match: routeMatch(m) };
  const req = headerOps(r.headers?.request);
  const resp = headerOps(r.headers?.response);
  if (r.redirect) {
    const d = r.redirect;
    const red: Record<string, unknown> = {
      response_code: REDIRECT_CODES[d.redirectCode ?? 301] ?? 'MOVED_PERMANENTLY',
    };
    if (d.uri !== undefined) red.path_redirect = d.uri;
    if (d.authority !== undefined) red.host_redirect = d.authority;
    if (d.scheme !== undefined) red.scheme_redirect = d.scheme;
    if (d.port !== undefined) red.port_redirect = d.port;
    route.redirect = red;
  } else if (r.directResponse) {
    const d = r.directResponse;
    route.direct_response = {
      status: d.status,
      ...(d.body?.string !== undefined ? { body: { inline_string: d.body.string } } : {}),
    };
  } else {
    const dests = r.route ?? [];
    const action: Record<string, unknown> = {};
    if (dests.length === 1) {
      const d0 = dests[0];
      if (d0) {
        action.cluster = destinationCluster(push, ns, d0.destination, port);
        const dh = headerOps(d0.headers?.request);
        req.add.push(...dh.add);
        req.remove.push(...dh.remove);
        const dr = headerOps(d0.headers?.response);
        resp.add.push(...dr.add);
        resp.remove.push(...dr.remove);
      }
    } else {
      if (dests.some((d) => d.headers))
        warnings.push(
          `${vs.metadata.name}.${ns} http[${idx}]: per-destination headers with several destinations are not yet supported; ignored`,
        );
      action.weighted_clusters = {
        clusters: dests
          .filter((d) => (d.weight ?? 0) > 0)
          .map((d) => ({ name: destinationCluster(push, ns, d.destination, port), weight: { value: d.weight ?? 0 } })),
      };
    }
    const hashes = dests.map((d) =>
      JSON.stringify(destinationHashPolicy(push, proxy.namespace, ns, d.destination, port) ?? null),
    );
    const firstHash = dests[0]
      ? destinationHashPolicy(push, proxy.namespace, ns, dests[0].destination, port)
      : undefined;
    if (firstHash) action.hash_policy = firstHash;
    if (new Set(hashes).size > 1)
      warnings.push(
        `${vs.metadata.name}.${ns} http[${idx}]: destinations have different consistent hash policies; using the first destination's`,
      );
    action.timeout = durationToProto(r.timeout ? parseDurationMs(r.timeout) : 0);
    if (r.retries) {
      if ((r.retries.attempts ?? 0) > 0) {
        const rp: Record<string, unknown> = {
          retry_on: r.retries.retryOn ?? ISTIO_DEFAULT_RETRY.retry_on,
          num_retries: { value: r.retries.attempts },
        };
        if (r.retries.retryIgnorePreviousHosts !== false) {
          rp.retry_host_predicate = ISTIO_DEFAULT_RETRY.retry_host_predicate;
          rp.host_selection_retry_max_attempts = '5';
        }
        if (r.retries.backoff)
          rp.retry_back_off = { base_interval: durationToProto(parseDurationMs(r.retries.backoff)) };
        if (r.retries.retryRemoteLocalities)
          warnings.push(
            `${vs.metadata.name}.${ns} http[${idx}]: retries.retryRemoteLocalities is not supported; ignored`,
          );
        const codes = (r.retries.retryOn ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter((s) => /^\d{3}$/.test(s))
          .map(Number);
        if (codes.length > 0) {
          rp.retry_on = String(rp.retry_on)
            .split(',')
            .filter((s) => !/^\d{3}$/.test(s.trim()))
            .concat('retriable-status-codes')
            .join(',');
          rp.retriable_status_codes = codes;
        } else if (r.retries.retryOn === undefined)
          rp.retriable_status_codes = ISTIO_DEFAULT_RETRY.retriable_status_codes;
        if (r.retries.perTryTimeout) rp.per_try_timeout = durationToProto(parseDurationMs(r.retries.perTryTimeout));
        action.retry_policy = rp;
      }
    } else action.retry_policy = ISTIO_DEFAULT_RETRY;
    if (r.rewrite?.uri !== undefined) action.prefix_rewrite = r.rewrite.uri;
    if (r.rewrite?.uriRegexRewrite)
      action.regex_rewrite = {
        pattern: { regex: r.rewrite.uriRegexRewrite.match },
        substitution: r.rewrite.uriRegexRewrite.rewrite,
      };
    if (r.rewrite?.authority !== undefined) action.host_rewrite_literal = r.rewrite.authority;
    const mirrors = [
      ...(r.mirror
        ? [
            {
              destination: r.mirror,
              percentage:
                r.mirrorPercentage ?? (r.mirrorPercent !== undefined ? { value: r.mirrorPercent } : undefined),
            },
          ]
        : []),
      ...(r.mirrors ?? []),
    ];
    if (mirrors.length > 0)
      action.request_mirror_policies = mirrors.map((mi) => ({
        cluster: destinationCluster(push, ns, mi.destination, port),
        runtime_fraction: { default_value: percentToFraction(mi.percentage?.value) },
      }));
    route.route = action;
  }
  const perFilter: Record<string, object> = {};
  if (r.fault) {
    const fault = faultConfig(r.fault);
    if (fault.delayLeftOut || fault.abortLeftOut)
      warnings.push(
        `${vs.metadata.name}.${ns} http[${idx}]: only fixedDelay delays and httpStatus or grpcStatus (0..16) aborts are supported`,
      );
    perFilter[FAULT_FILTER_NAME] = fault.config;
  }
  if (r.corsPolicy) perFilter[CORS_FILTER_NAME] = corsPolicyConfig(r.corsPolicy);
  if (Object.keys(perFilter).length > 0) route.typed_per_filter_config = perFilter;
  if (req.add.length > 0) route.request_headers_to_add = req.add;
  if (req.remove.length > 0) route.request_headers_to_remove = req.remove;
  if (resp.add.length > 0) route.response_headers_to_add = resp.add;
  if (resp.remove.length > 0) route.response_headers_to_remove = resp.remove;
  return route;
}

function matchApplies(m: HTTPMatchRequest, proxy: ProxyModel, port: number, vsNs: string, gateway: string): boolean {
  if (m.port !== undefined && m.port !== port) return false;
  if (m.sourceLabels && !matchesLabels(m.sourceLabels, proxy.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== proxy.namespace) return false;
  if (m.gateways && m.gateways.length > 0 && !m.gateways.some((g) => gatewayKey(g, vsNs) === gateway)) return false;
  return true;
}

/** AppliedMatch is one `match` of an `http` route that applies, with its index (`<i>`, or `<i>.<j>` of several). */
export interface AppliedMatch {
  match: HTTPMatchRequest | undefined;
  idx: string;
}

/**
 * appliedMatches lists the matches of the VirtualService's `http[i]` route `r` that apply to `proxy` on `port`, in
 * order (a route without `match` has one, undefined): a match that names another port, other source labels or
 * source namespace, or `gateways` none of which is `gateway` (short names resolved in `vsNs`) is skipped. Each
 * becomes its own Envoy route, as in Istio's `BuildHTTPRoutesForVirtualService`. `i` is the route's index, or
 * for a route merged from a delegate `<i>.<k>` (see `delegate.ts`).
 */
export function appliedMatches(
  r: HTTPRoute,
  i: number | string,
  proxy: ProxyModel,
  port: number,
  vsNs: string,
  gateway: string,
): AppliedMatch[] {
  const matches = r.match && r.match.length > 0 ? r.match : [undefined];
  const out: AppliedMatch[] = [];
  matches.forEach((m, j) => {
    if (m && !matchApplies(m, proxy, port, vsNs, gateway)) return;
    out.push({ match: m, idx: matches.length > 1 ? `${i}.${j}` : String(i) });
  });
  return out;
}

/**
 * virtualServiceRoutes translates a VirtualService's `http` routes for one service port as seen by one proxy
 * (Istio's `BuildHTTPRoutesForVirtualService`): each `match` becomes its own Envoy route in order; matches that
 * name another port, other source labels or namespace, or `gateways` other than `gateway` are skipped for this
 * proxy. A `delegate` route is replaced by the delegate VirtualService's routes merged under it (`delegate.ts`).
 * `gateway` is `mesh` for sidecars, or the `<namespace>/<name>` of the Gateway an ingress route serves.
 */
export function virtualServiceRoutes(
  push: PushContext,
  vs: VirtualServiceObject,
  proxy: ProxyModel,
  port: number,
  warnings: string[],
  gateway = 'mesh',
): object[] {
  const out: object[] = [];
  for (const { route: r, index } of effectiveHttpRoutes(push, vs, warnings))
    for (const { match, idx } of appliedMatches(r, index, proxy, port, namespaceOf(vs), gateway))
      out.push(translateRoute(push, proxy, vs, r, match, port, idx, warnings));
  return out;
}

function defaultRouteAction(push: PushContext, proxy: ProxyModel, svc: MeshService, port: number): object {
  const hash = destinationHashPolicy(push, proxy.namespace, svc.namespace, { host: svc.hostname }, port);
  return {
    cluster: outboundClusterName(port, '', svc.hostname),
    ...(hash ? { hash_policy: hash } : {}),
    timeout: durationToProto(0),
    retry_policy: ISTIO_DEFAULT_RETRY,
  };
}

/** ALLOW_ANY_ROUTE_NAME is Istio's name of the catch-all virtual host and route to `PassthroughCluster`. */
export const ALLOW_ANY_ROUTE_NAME = 'allow_any';
/** BLOCK_ALL_ROUTE_NAME is Istio's name of the catch-all virtual host and route answering 502 (REGISTRY_ONLY). */
export const BLOCK_ALL_ROUTE_NAME = 'block_all';

/**
 * catchAllVirtualHost is the last virtual host of a capture-mode sidecar's outbound RouteConfiguration, for HTTP
 * requests to hosts the mesh does not know (Istio's `buildCatchAllVirtualHost`, pilot/pkg/networking/core/
 * httproute.go): under `outboundTrafficPolicy` ALLOW_ANY (the default) `allow_any`, domains `*`, one route
 * `allow_any` to `PassthroughCluster` (ORIGINAL_DST: the destination the app dialled) without timeout; under
 * REGISTRY_ONLY `block_all`, one route `block_all` with a direct response 502. Explicit-mode sidecars get none: a
 * request that names no known host has no original destination to pass through to, and stays a 404 `NR`.
 */
export function catchAllVirtualHost(policy: PushContext['mesh']['outboundTrafficPolicy']): object {
  if (policy === 'REGISTRY_ONLY')
    return {
      name: BLOCK_ALL_ROUTE_NAME,
      domains: ['*'],
      routes: [{ name: BLOCK_ALL_ROUTE_NAME, match: { prefix: '/' }, direct_response: { status: 502 } }],
      include_request_attempt_count: true,
    };
  return {
    name: ALLOW_ANY_ROUTE_NAME,
    domains: ['*'],
    routes: [
      {
        name: ALLOW_ANY_ROUTE_NAME,
        match: { prefix: '/' },
        route: { cluster: PASSTHROUGH_CLUSTER, timeout: durationToProto(0) },
      },
    ],
    include_request_attempt_count: true,
  };
}

/**
 * generateRoutes is the RDS generator: the `outbound` RouteConfiguration with one virtual host per visible HTTP
 * service port (`<host>:<port>`, with `include_request_attempt_count` as Istio sets it), routes from the
 * VirtualService bound to that host, or else one default route to `outbound|<port>||<host>` with Istio's default
 * retry policy and no timeout. Routes carry the `hash_policy` of their destination's consistent hash, if any.
 * A capture-mode sidecar (`INTERCEPTION_MODE: REDIRECT`) also gets {@link catchAllVirtualHost}, last.
 */
export function generateRoutes(push: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
  const virtualHosts: object[] = [];
  const seen = new Set<string>();
  for (const svc of push.servicesFor(proxy.namespace)) {
    const vs = push.virtualServiceFor(svc.hostname, proxy.namespace);
    for (const port of svc.ports) {
      if (!isHttpProtocol(port.protocol)) continue;
      const domains = domainsFor(svc, port, proxy.namespace, push.mesh.domainSuffix).filter((d) => !seen.has(d));
      domains.forEach((d) => seen.add(d));
      if (domains.length === 0) continue;
      const routes = vs
        ? virtualServiceRoutes(push, vs, proxy, port.port, warnings)
        : [
            {
              name: 'default',
              match: { prefix: '/' },
              route: defaultRouteAction(push, proxy, svc, port.port),
            },
          ];
      virtualHosts.push({ name: `${svc.hostname}:${port.port}`, domains, routes, include_request_attempt_count: true });
    }
  }
  if (proxy.type === 'sidecar' && proxy.interceptionMode === 'REDIRECT')
    virtualHosts.push(catchAllVirtualHost(push.mesh.outboundTrafficPolicy));
  return [
    toResource(TypeUrl.RouteConfiguration, OUTBOUND_ROUTE_NAME, {
      name: OUTBOUND_ROUTE_NAME,
      virtual_hosts: virtualHosts,
      validate_clusters: { value: false },
    }),
  ];
}
