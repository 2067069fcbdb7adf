import { TypeUrl, outboundClusterName } from '@fedmesh/api/xds';
import { parseDurationMs, type HTTPMatchRequest, type HTTPRoute } from '@fedmesh/api';
import { namespaceOf, type VirtualServiceObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { MeshService, ServicePort } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { durationToProto, toResource, type GeneratedResource } from './common.js';
import { effectiveHttpRoutes } from './delegate.js';
import { FAULT_FILTER_NAME, appliedMatches, destinationCluster, faultConfig, routeMatch } from './rds.js';

/**
 * PROXYLESS_DEFAULT_RETRY is Istio's default route retry policy as gRPC reads it: gRPC keeps only the gRPC
 * status names of `retry_on` (here `unavailable` and `cancelled`) and retries each call up to 2 more times
 * (gRFC A44). Routes without `retries` get it, as Istio gives every route `DefaultRouteRetryPolicy`.
 */
export const PROXYLESS_DEFAULT_RETRY = {
  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  num_retries: { value: 2 },
};

/** proxylessRouteName is the name of a proxyless Listener and of its RouteConfiguration: `<host>:<port>`. */
export function proxylessRouteName(hostname: string, port: number): string {
  return `${hostname}:${port}`;
}

/** unsupportedMatch names the match conditions gRPC cannot evaluate (it has no method, scheme or query). */
function unsupportedMatch(m: HTTPMatchRequest | undefined): string | undefined {
  if (!m) return undefined;
  if (m.method) return 'method';
  if (m.scheme) return 'scheme';
  if (m.authority) return 'authority';
  if (m.queryParams && Object.keys(m.queryParams).length > 0) return 'queryParams';
  return undefined;
}

function retryPolicy(r: HTTPRoute): object | undefined {
  if (!r.retries) return PROXYLESS_DEFAULT_RETRY;
  const attempts = r.retries.attempts ?? 0;
  if (attempts === 0) return undefined;
  const rp: Record<string, unknown> = {
    retry_on: r.retries.retryOn ?? PROXYLESS_DEFAULT_RETRY.retry_on,
    num_retries: { value: attempts },
  };
  if (r.retries.backoff) rp.retry_back_off = { base_interval: durationToProto(parseDurationMs(r.retries.backoff)) };
  return rp;
}

/**
 * proxylessFault is {@link faultConfig} as gRPC's fault filter reads it (gRFC A33: `http_status` or `grpc_status`
 * aborts, fixed delays), with warnings for what is left out. Returns undefined when nothing of the fault is left.
 */
function proxylessFault(r: HTTPRoute, where: string, warnings: string[]): object | undefined {
  if (!r.fault) return undefined;
  const { config: f, delayLeftOut, abortLeftOut } = faultConfig(r.fault);
  if (delayLeftOut) warnings.push(`${where}: only fixedDelay faults are supported for proxyless gRPC; delay ignored`);
  const ab = r.fault.abort;
  if (abortLeftOut && ab) {
    if (ab.grpcStatus !== undefined)
      warnings.push(`${where}: unknown grpcStatus ${JSON.stringify(ab.grpcStatus)}; abort ignored`);
    else warnings.push(`${where}: http2Error aborts are not supported for proxyless gRPC; abort ignored`);
  }
  return f.delay || f.abort ? f : undefined;
}

function translateRoute(
  push: PushContext,
  vs: VirtualServiceObject,
  r: HTTPRoute,
  m: HTTPMatchRequest | undefined,
  port: number,
  idx: string,
  warnings: string[],
): object | undefined {
  const ns = namespaceOf(vs);
  const where = `${vs.metadata.name}.${ns} http[${idx}]`;
  if (r.redirect || r.directResponse) {
    warnings.push(`${where}: redirect and directResponse are not supported by proxyless gRPC; route left out`);
    return undefined;
  }
  const bad = unsupportedMatch(m);
  if (bad) {
    warnings.push(`${where}: gRPC cannot match on ${bad}; route left out`);
    return undefined;
  }
  if (r.rewrite || r.mirror || r.mirrors || r.headers || r.corsPolicy)
    warnings.push(`${where}: rewrite, mirror, headers and corsPolicy are not supported by proxyless gRPC; ignored`);
  const dests = (r.route ?? []).filter((d) => r.route?.length === 1 || (d.weight ?? 0) > 0);
  const action: Record<string, unknown> = {};
  if (dests.length === 1 && dests[0]) action.cluster = destinationCluster(push, ns, dests[0].destination, port);
  else
    action.weighted_clusters = {
      clusters: dests.map((d) => ({
        name: destinationCluster(push, ns, d.destination, port),
        weight: { value: d.weight ?? 0 },
      })),
    };
  if (r.timeout) {
    // gRPC reads the route timeout from max_stream_duration (gRFC A31), not from `timeout`.
    const d = durationToProto(parseDurationMs(r.timeout));
    action.max_stream_duration = { max_stream_duration: d, grpc_timeout_header_max: d };
  }
  const rp = retryPolicy(r);
  if (rp) action.retry_policy = rp;
  // The sidecar's RouteMatch: `m` has no method, scheme, authority or query here (unsupportedMatch left those out).
  const route: Record<string, unknown> = { name: r.name ?? `${vs.metadata.name}.${ns}.${idx}`, match: routeMatch(m) };
  route.route = action;
  const fault = proxylessFault(r, where, warnings);
  if (fault) route.typed_per_filter_config = { [FAULT_FILTER_NAME]: fault };
  return route;
}

/**
 * proxylessRoutes translates a VirtualService's `http` routes for one service port, for a proxyless gRPC client
 * (gRFC A28 routing, A31 timeouts, A33 fault injection, A44 retries): `uri` exact/prefix/regex and header
 * matches (`withoutHeaders` inverted), one cluster or weighted clusters, `timeout` as `max_stream_duration`,
 * `retries` as a gRPC retry policy (Istio's default when unset, none for `attempts: 0`), `fault` as the fault
 * filter's per-route override. A `delegate` route is replaced by the delegate's routes merged under it, as for
 * sidecars (`effectiveHttpRoutes`, delegate.ts). Routes gRPC would refuse (redirect, direct response, or matching
 * on method, scheme, authority or query) are left out with a warning rather than NACKed by every client.
 */
export function proxylessRoutes(
  push: PushContext,
  vs: VirtualServiceObject,
  proxy: ProxyModel,
  port: number,
  warnings: string[],
): object[] {
  const out: object[] = [];
  for (const { route: r, index } of effectiveHttpRoutes(push, vs, warnings))
    for (const { match, idx } of appliedMatches(r, index, proxy, port, namespaceOf(vs), 'mesh')) {
      const route = translateRoute(push, vs, r, match, port, idx, warnings);
      if (route) out.push(route);
    }
  return out;
}

function routeConfiguration(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  warnings: string[],
): object {
  const name = proxylessRouteName(svc.hostname, port.port);
  const vs = push.virtualServiceFor(svc.hostname, proxy.namespace);
  const routes = vs
    ? proxylessRoutes(push, vs, proxy, port.port, warnings)
    : [
        {
          name: 'default',
          match: { prefix: '/' },
          route: { cluster: outboundClusterName(port.port, '', svc.hostname), retry_policy: PROXYLESS_DEFAULT_RETRY },
        },
      ];
  return {
    name,
    virtual_hosts: [{ name, domains: [svc.hostname, name], routes }],
  };
}

/**
 * generateProxylessRoutes is the RDS generator for proxyless gRPC clients (Istio's `grpcgen`): one
 * RouteConfiguration per visible service port, named `<host>:<port>` like its Listener, with one virtual host
 * whose domains are the host with and without the port (the authority gRPC sends for `xds:///<host>:<port>`).
 * Pure: push and proxy in, resources out; problems are appended to `warnings`.
 */
export function generateProxylessRoutes(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const svc of push.servicesFor(proxy.namespace))
    for (const port of svc.ports) {
      const rc = routeConfiguration(push, proxy, svc, port, warnings);
      out.push(toResource(TypeUrl.RouteConfiguration, proxylessRouteName(svc.hostname, port.port), rc));
    }
  return out;
}
