/**
 * The request guard is what an HTTP connection manager does to a request before routing: framing checks,
 * Envoy's path and host normalization, then the RBAC filters in `http_filters` order. It hands the handler
 * either a local reply or the normalized request, which is then both the request routed and the request
 * forwarded: nothing downstream of the guard sees the raw target again.
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { RbacFilter, plainIp, type RbacRequest } from '../filters/rbac.js';
import type { RequestView, RouteEntry } from '../route-table.js';
import type { EnvoyHttpConnectionManager } from '../xds/envoy-schemas.js';
import { RBAC_FILTER_NAME } from '../xds/rbac-schemas.js';
import { headerString } from '../access-log.js';
import { isHttp2Request } from '../http2/h2-server.js';
import { checkAuthority, http2Authority } from './authority.js';
import { checkRequestFraming } from './framing.js';
import {
  normalizeRequestPath,
  stripHostPort,
  stripTrailingHostDot,
  type PathNormalizationOptions,
} from './normalize.js';

/**
 * HcmSecurity is the compiled security part of one HttpConnectionManager: its path normalization options,
 * `strip_trailing_host_dot`, `strip_any_host_port`, and its RBAC filters in `http_filters` order.
 */
export interface HcmSecurity {
  normalization: PathNormalizationOptions;
  stripTrailingHostDot: boolean;
  /** stripAnyHostPort is `strip_any_host_port`: the authority loses its port before RBAC, routing and forwarding. */
  stripAnyHostPort: boolean;
  rbac: RbacFilter[];
}

/**
 * compileHcmSecurity compiles an HCM's normalization settings and RBAC filters. `where` prefixes error paths
 * (`filter_chains[0].filters[0].typed_config`). Throws with a field path when a filter does not compile (bad
 * regex or CIDR): the Listener is then NACKed.
 */
export function compileHcmSecurity(hcm: EnvoyHttpConnectionManager, where: string): HcmSecurity {
  const rbac: RbacFilter[] = [];
  hcm.http_filters.forEach((f, i) => {
    if (f.name === RBAC_FILTER_NAME)
      rbac.push(new RbacFilter(f.typed_config, `${where}.http_filters[${i}].typed_config`));
  });
  return {
    normalization: {
      normalizePath: hcm.normalize_path?.value === true,
      mergeSlashes: hcm.merge_slashes === true,
      escapedSlashes: hcm.path_with_escaped_slashes_action ?? 'IMPLEMENTATION_SPECIFIC_DEFAULT',
    },
    stripTrailingHostDot: hcm.strip_trailing_host_dot === true,
    stripAnyHostPort: hcm.strip_any_host_port === true,
    rbac,
  };
}

/** NO_SECURITY is the guard config of an HCM without normalization or RBAC (framing checks still apply). */
export const NO_SECURITY: HcmSecurity = {
  normalization: { normalizePath: false, mergeSlashes: false, escapedSlashes: 'IMPLEMENTATION_SPECIFIC_DEFAULT' },
  stripTrailingHostDot: false,
  stripAnyHostPort: false,
  rbac: [],
};

/** GuardReply is a local reply the guard asks for: status, body, Envoy response code details, extra headers. */
export interface GuardReply {
  status: number;
  body: string;
  details: string;
  headers: Record<string, string>;
}

/** GuardOutcome is either a local reply or the normalized request view to route and forward. */
export type GuardOutcome = { reply: GuardReply } | { view: RequestView };

/**
 * RequestGuardHook is what the HTTP handler calls before routing. `peer` is the verified mTLS peer of the
 * connection (undefined for plaintext); `routeOf` resolves the route a view would take.
 */
export interface RequestGuardHook {
  decodeHeaders(
    req: http.IncomingMessage,
    view: RequestView,
    peer: { principal: string } | undefined,
    routeOf: (v: RequestView) => RouteEntry | undefined,
  ): GuardOutcome;
}

/**
 * CHAIN_GONE is the hook of a connection whose filter chain a Listener update removed: its next request is
 * answered 503 with `connection: close`, so that it reconnects and meets the current chains and policies
 * (Envoy drains such connections) instead of being served under a configuration that no longer exists.
 */
export const CHAIN_GONE: RequestGuardHook = {
  decodeHeaders: () =>
    localReply(503, 'filter chain removed by a configuration update\n', 'filter_chain_not_found', {
      connection: 'close',
    }),
};

/** RequestGuardDeps are the guard's runtime dependencies. */
export interface RequestGuardDeps {
  /** statPrefix is the HCM's `stat_prefix`, the label of the RBAC counters. */
  statPrefix: string;
  /** registry receives Envoy's RBAC counters (`envoy_http_rbac_allowed`, …). */
  registry: Registry;
  /** log receives one line per AUDIT (LOG action) match and per shadow evaluation. */
  log: Logger;
  /** maxHeadersCount is the listener's header-line limit (431 above it). */
  maxHeadersCount: number;
}

const RBAC_COUNTERS = ['allowed', 'denied', 'shadow_allowed', 'shadow_denied', 'logged', 'not_logged'] as const;
type RbacCounter = (typeof RBAC_COUNTERS)[number];

const countersByRegistry = new WeakMap<Registry, Record<RbacCounter, Counter<'envoy_http_conn_manager_prefix'>>>();

/** rbacCounters returns Envoy's HTTP RBAC stats as Prometheus counters on `registry`, made once per registry. */
export function rbacCounters(registry: Registry): Record<RbacCounter, Counter<'envoy_http_conn_manager_prefix'>> {
  let c = countersByRegistry.get(registry);
  if (!c) {
    const made = {} as Record<RbacCounter, Counter<'envoy_http_conn_manager_prefix'>>;
    for (const k of RBAC_COUNTERS)
      made[k] = new Counter({
        name: `envoy_http_rbac_${k}`,
        help: `Envoy http.<stat_prefix>.rbac.${k}: requests the RBAC filter counted as ${k.replace('_', ' ')}`,
        labelNames: ['envoy_http_conn_manager_prefix'],
        registers: [registry],
      });
    c = made;
    countersByRegistry.set(registry, c);
  }
  return c;
}

const poisoned = new WeakSet<object>();

/** inboundPortOf returns `<port>` of a route to `inbound|<port>||…`, else undefined. */
function inboundPortOf(route: RouteEntry | undefined): number | undefined {
  if (route?.action.kind !== 'route') return undefined;
  const m = /^inbound\|(\d+)\|/.exec(route.action.clusters[0]?.name ?? '');
  return m ? Number(m[1]) : undefined;
}

function localReply(
  status: number,
  body: string,
  details: string,
  headers: Record<string, string> = {},
): { reply: GuardReply } {
  return { reply: { status, body, details, headers } };
}

/**
 * RequestGuard runs an HCM's pre-routing steps for each request (`decodeHeaders`):
 * 1. a connection that already had a framing error answers nothing more (its pipelined requests are dropped);
 * 2. framing ({@link checkRequestFraming}): 400/431 with `connection: close`;
 * 3. path normalization: 400 on refusal, 307 to the unescaped path for UNESCAPE_AND_REDIRECT;
 * 4. the authority ({@link http2Authority}, {@link checkAuthority}): an HTTP/2 request's is its `:authority`, and
 *    400 when its `host` header disagrees or the authority is not `host[:port]` (userinfo); then
 *    `strip_trailing_host_dot`, then `strip_any_host_port` (Envoy's order, `maybeNormalizeHost`);
 * 5. each RBAC filter in order: 403 `RBAC: access denied` with details
 *    `rbac_access_denied_matched_policy[<policy>|none]` when the enforced rules refuse.
 * The RBAC destination port is the original destination: in explicit mode, where every inbound connection
 * arrives on 15006, it is the port of the `inbound|<port>||` cluster the request routes to (docs/adr/0010).
 */
export class RequestGuard implements RequestGuardHook {
  private readonly counters: ReturnType<typeof rbacCounters> | undefined;

  /** constructor stores the compiled config and makes the RBAC counters when there are RBAC filters. */
  constructor(
    private readonly security: HcmSecurity,
    private readonly deps: RequestGuardDeps,
  ) {
    this.counters = security.rbac.length > 0 ? rbacCounters(deps.registry) : undefined;
  }

  /**
   * decodeHeaders checks and normalizes one request. `peer` is the verified mTLS peer of the connection
   * (undefined for plaintext); `routeOf` resolves the route a view would take (for the destination port).
   */
  decodeHeaders(
    req: http.IncomingMessage,
    view: RequestView,
    peer: { principal: string } | undefined,
    routeOf: (v: RequestView) => RouteEntry | undefined,
  ): GuardOutcome {
    const sock = req.socket as net.Socket | undefined;
    if (sock && poisoned.has(sock)) {
      sock.destroy();
      return localReply(400, 'Bad Request\n', 'http1.codec_error', { connection: 'close' });
    }
    const framing = checkRequestFraming(req, { maxHeadersCount: this.deps.maxHeadersCount });
    if (framing) {
      if (sock) poisoned.add(sock);
      req.pause();
      return localReply(framing.status, `${framing.reason}\n`, framing.details, { connection: 'close' });
    }
    const norm = normalizeRequestPath(view.path, this.security.normalization);
    if (!norm.ok) return localReply(400, `Bad Request: ${norm.reason}\n`, norm.details);
    if (norm.redirect) return localReply(307, '', 'path_normalization_redirect', { location: norm.path });
    const named = isHttp2Request(req)
      ? http2Authority(
          headerString(req.headers[':authority']) ?? undefined,
          headerString(req.headers.host) ?? undefined,
        )
      : { ok: true as const, authority: view.authority };
    const valid = named.ok ? checkAuthority(named.authority) : named;
    if (!valid.ok) return localReply(400, `Bad Request: ${valid.reason}\n`, valid.details);
    const dotless = this.security.stripTrailingHostDot ? stripTrailingHostDot(valid.authority) : valid.authority;
    const authority = this.security.stripAnyHostPort ? stripHostPort(dotless) : dotless;
    const next: RequestView = { ...view, path: norm.path, authority };
    if (this.security.rbac.length === 0) return { view: next };
    const denied = this.authorize(req, next, peer, routeOf);
    return denied ?? { view: next };
  }

  private authorize(
    req: http.IncomingMessage,
    view: RequestView,
    peer: { principal: string } | undefined,
    routeOf: (v: RequestView) => RouteEntry | undefined,
  ): { reply: GuardReply } | undefined {
    const sock = req.socket as net.Socket | undefined;
    const remote = plainIp(sock?.remoteAddress ?? '');
    const needsPort = this.security.rbac.some((f) => f.usesDestinationPort);
    const rbacReq: RbacRequest = {
      method: view.method,
      path: view.path,
      authority: view.authority,
      scheme: view.scheme,
      headers: view.headers,
      peerPrincipal: peer?.principal,
      directRemoteIp: remote,
      remoteIp: remote,
      destinationIp: plainIp(sock?.localAddress ?? ''),
      destinationPort: (needsPort ? inboundPortOf(routeOf(view)) : undefined) ?? sock?.localPort ?? 0,
      requestedServerName: (sock as { servername?: unknown } | undefined)?.servername as string | undefined,
    };
    const label = { envoy_http_conn_manager_prefix: this.deps.statPrefix };
    for (const f of this.security.rbac) {
      const v = f.evaluate(rbacReq);
      const c = this.counters;
      if (v.shadow) {
        c?.[v.shadow.allowed ? 'shadow_allowed' : 'shadow_denied'].inc(label);
        this.deps.log.info(
          {
            shadow_engine_result: v.shadow.allowed ? 'allowed' : 'denied',
            shadow_effective_policy_id: v.shadow.policyId ?? null,
            method: view.method,
            path: view.path,
            downstream_peer_principal: peer?.principal ?? null,
          },
          'rbac shadow',
        );
      }
      if (v.action === 'LOG') {
        c?.[v.logged ? 'logged' : 'not_logged'].inc(label);
        if (v.logged)
          this.deps.log.info(
            {
              access_log_hint: true,
              policy: v.policyId ?? null,
              method: view.method,
              path: view.path,
              authority: view.authority,
              downstream_peer_principal: peer?.principal ?? null,
            },
            'rbac audit',
          );
        continue;
      }
      if (v.action === undefined) continue;
      if (!v.allowed) {
        c?.denied.inc(label);
        return localReply(403, 'RBAC: access denied', `rbac_access_denied_matched_policy[${v.policyId ?? 'none'}]`);
      }
      c?.allowed.inc(label);
    }
    return undefined;
  }
}
