/**
 * Envoy's network RBAC filter (`envoy.filters.network.rbac`,
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/rbac_filter) in front of a
 * `tcp_proxy`: the connection's identity and addresses are matched against `config.rbac.v3.RBAC` with the same
 * engine as the HTTP filter (`filters/rbac.ts`), and a denied connection is closed before any upstream is dialled.
 *
 * Where fedmesh differs from Envoy (docs/adr/0017-network-rbac.md): Envoy evaluates on the first downstream byte
 * (ONE_TIME_ON_FIRST_BYTE) and, by default, lets tcp_proxy open the upstream connection before that
 * (envoyproxy/envoy#9023); fedmesh evaluates once, when the connection is accepted (after the TLS handshake and
 * the SPIFFE check), so a denied peer never reaches the app, not even a server-first one. Every input is known
 * then and none changes later (the proxy emits no dynamic metadata), so `CONTINUOUS` gives the same verdict.
 */
import { Counter, type Registry } from 'prom-client';
import { networkRbacConfigsOf, type EnvoyFilterChain } from '../xds/envoy-schemas.js';
import { RBAC_FILTER_TYPE, type EnvoyNetworkRbacConfig } from '../xds/rbac-schemas.js';
import { RbacFilter, type RbacRequest } from './rbac.js';

/**
 * RbacConnection is what network RBAC rules read of a connection: the verified peer's SPIFFE ID (undefined for
 * plaintext: `authenticated` never matches then), the downstream remote address (`direct_remote_ip`, `source_ip`,
 * and `remote_ip`: no PROXY protocol is accepted, so the original client is the direct one), the original
 * destination (`destination_ip`, `destination_port`) and the TLS SNI (`requested_server_name`).
 */
export interface RbacConnection {
  peerPrincipal: string | undefined;
  directRemoteIp: string;
  remoteIp: string;
  destinationIp: string;
  destinationPort: number;
  requestedServerName: string | undefined;
}

/** NetworkRbacShadowResult is one filter's shadow verdict, under Envoy's dynamic metadata names. */
export interface NetworkRbacShadowResult {
  stat_prefix: string;
  shadow_engine_result: 'allowed' | 'denied';
  shadow_effective_policy_id: string | null;
}

/**
 * NetworkRbacDecision is the verdict of a chain's network RBAC filters for one connection: `allowed`; for a
 * denial, Envoy's `CONNECTION_TERMINATION_DETAILS` (`rbac_access_denied_matched_policy[<policy>|none]`) and the
 * denying filter's stat prefix; `accessLogHint` when a LOG (Istio AUDIT) policy matched; the shadow verdicts.
 */
export interface NetworkRbacDecision {
  allowed: boolean;
  terminationDetails: string | undefined;
  deniedBy: string | undefined;
  accessLogHint: boolean;
  shadow: NetworkRbacShadowResult[];
}

/**
 * NetworkRbacFilter is one compiled `envoy.filters.network.rbac` filter: its `stat_prefix` and its enforced and
 * shadow rules, compiled by the HTTP filter's {@link RbacFilter} (the schema has already refused HTTP-only
 * matchers, so the request-only fields it could read are never consulted).
 */
export class NetworkRbacFilter {
  readonly statPrefix: string;
  readonly shadowStatPrefix: string;
  private readonly engine: RbacFilter;

  /** constructor compiles a validated config; throws with a field path under `where` on a bad regex or CIDR. */
  constructor(config: EnvoyNetworkRbacConfig, where: string) {
    this.statPrefix = config.stat_prefix;
    this.shadowStatPrefix = config.shadow_rules_stat_prefix ?? '';
    this.engine = new RbacFilter(
      {
        '@type': RBAC_FILTER_TYPE,
        rules: config.rules,
        shadow_rules: config.shadow_rules,
        shadow_rules_stat_prefix: config.shadow_rules_stat_prefix,
      },
      where,
    );
  }

  /** action is the enforced rules' action, undefined when the filter has shadow rules only. */
  get action(): 'ALLOW' | 'DENY' | 'LOG' | undefined {
    return this.engine.rules?.action;
  }

  /** evaluate runs the enforced and shadow rules against one connection. */
  evaluate(c: RbacConnection): ReturnType<RbacFilter['evaluate']> {
    const asRequest: RbacRequest = { ...c, method: '', path: '', authority: '', scheme: '', headers: {} };
    return this.engine.evaluate(asRequest);
  }
}

const compiled = new WeakMap<EnvoyFilterChain, readonly NetworkRbacFilter[]>();

/**
 * networkRbacOf compiles a filter chain's network RBAC filters, in chain order, once per decoded chain object
 * (the Listener decoder compiles them first, so a bad matcher NACKs there with `where` as the path prefix, e.g.
 * `filter_chains[2]`). Throws with a field path on a bad regex or CIDR.
 */
export function networkRbacOf(chain: EnvoyFilterChain, where = 'filter_chain'): readonly NetworkRbacFilter[] {
  let filters = compiled.get(chain);
  if (!filters) {
    filters = networkRbacConfigsOf(chain).map(
      ({ index, config }) => new NetworkRbacFilter(config, `${where}.filters[${index}].typed_config`),
    );
    compiled.set(chain, filters);
  }
  return filters;
}

const COUNTERS = ['allowed', 'denied', 'logged', 'not_logged'] as const;
const SHADOW_COUNTERS = ['shadow_allowed', 'shadow_denied'] as const;

/**
 * NetworkRbacCounters are Envoy's network RBAC stats as Prometheus counters: Envoy's `<stat_prefix>rbac.<name>`
 * becomes `envoy_network_rbac_<name>{envoy_network_rbac_prefix="<stat_prefix>"}`, and the shadow counters
 * (`<stat_prefix>rbac.<shadow_rules_stat_prefix>shadow_*`) carry `shadow_rules_stat_prefix` as well.
 */
export interface NetworkRbacCounters {
  counts: Record<(typeof COUNTERS)[number], Counter<'envoy_network_rbac_prefix'>>;
  shadow: Record<(typeof SHADOW_COUNTERS)[number], Counter<'envoy_network_rbac_prefix' | 'shadow_rules_stat_prefix'>>;
}

const countersByRegistry = new WeakMap<Registry, NetworkRbacCounters>();

/** networkRbacCounters returns the network RBAC counters on `registry`, registered once per registry. */
export function networkRbacCounters(registry: Registry): NetworkRbacCounters {
  let c = countersByRegistry.get(registry);
  if (c) return c;
  const help = (k: string): string =>
    `Envoy <stat_prefix>rbac.${k}: connections the network RBAC filter counted as ${k}`;
  const counts = {} as NetworkRbacCounters['counts'];
  for (const k of COUNTERS)
    counts[k] = new Counter({
      name: `envoy_network_rbac_${k}`,
      help: help(k),
      labelNames: ['envoy_network_rbac_prefix'],
      registers: [registry],
    });
  const shadow = {} as NetworkRbacCounters['shadow'];
  for (const k of SHADOW_COUNTERS)
    shadow[k] = new Counter({
      name: `envoy_network_rbac_${k}`,
      help: help(k),
      labelNames: ['envoy_network_rbac_prefix', 'shadow_rules_stat_prefix'],
      registers: [registry],
    });
  c = { counts, shadow };
  countersByRegistry.set(registry, c);
  return c;
}

/**
 * enforceNetworkRbac runs a chain's network RBAC filters in order for one connection, as Envoy's filter chain
 * does: each filter counts its shadow verdict and its LOG matches, and the first enforced refusal ends the walk
 * (the connection is to be closed). Counts into {@link networkRbacCounters} on `registry`. Pure apart from the
 * counters; never throws.
 */
export function enforceNetworkRbac(
  filters: readonly NetworkRbacFilter[],
  conn: RbacConnection,
  registry: Registry,
): NetworkRbacDecision {
  const decision: NetworkRbacDecision = {
    allowed: true,
    terminationDetails: undefined,
    deniedBy: undefined,
    accessLogHint: false,
    shadow: [],
  };
  if (filters.length === 0) return decision;
  const c = networkRbacCounters(registry);
  for (const f of filters) {
    const v = f.evaluate(conn);
    const label = { envoy_network_rbac_prefix: f.statPrefix };
    if (v.shadow) {
      c.shadow[v.shadow.allowed ? 'shadow_allowed' : 'shadow_denied'].inc({
        ...label,
        shadow_rules_stat_prefix: f.shadowStatPrefix,
      });
      decision.shadow.push({
        stat_prefix: f.statPrefix,
        shadow_engine_result: v.shadow.allowed ? 'allowed' : 'denied',
        shadow_effective_policy_id: v.shadow.policyId ?? null,
      });
    }
    if (v.action === undefined) continue;
    if (v.action === 'LOG') {
      c.counts[v.logged ? 'logged' : 'not_logged'].inc(label);
      if (v.logged) decision.accessLogHint = true;
      continue;
    }
    if (!v.allowed) {
      c.counts.denied.inc(label);
      decision.allowed = false;
      decision.deniedBy = f.statPrefix;
      decision.terminationDetails = `rbac_access_denied_matched_policy[${v.policyId ?? 'none'}]`;
      return decision;
    }
    c.counts.allowed.inc(label);
  }
  return decision;
}
