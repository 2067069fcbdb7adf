/**
 * AuthorizationPolicy (security.istio.io) → Envoy's HTTP RBAC filters, following Istio's authz builder
 * (pilot/pkg/security/authz/builder and model, https://istio.io/latest/docs/reference/config/security/authorization-policy/):
 * one `envoy.filters.http.rbac` filter per action, in Istio's order AUDIT (action LOG), DENY, ALLOW; one Envoy
 * policy per rule, named `ns[<ns>]-policy[<name>]-rule[<i>]`; a rule's `from` sources become principals, its
 * `to` operations permissions, and its `when` conditions are ANDed into one or the other. An ALLOW filter is
 * emitted whenever an ALLOW policy applies, even one with no rules, so that "no rule matches" denies.
 * `istio.io/dry-run: "true"` policies go to `shadow_rules`.
 *
 * Where fedmesh is safer than Istio (docs/adr/0011-authorization-and-path-safety.md):
 * - Path matches that widen a denial (DENY `paths`, ALLOW `notPaths`) are hardened: case-insensitive, any run of
 *   slashes, `;parameters` on any segment and a trailing slash still match, so `/ADMIN`, `//admin`, `/admin;x`
 *   and `/admin/` are denied by DENY `/admin`. Path matches that widen an allowance stay exact.
 * - A rule fedmesh cannot translate never fails open: in ALLOW (and AUDIT) the rule is dropped; in DENY the
 *   untranslatable field or condition is treated as matching. CUSTOM has no provider here, so it acts as DENY.
 * - JWT attributes (`requestPrincipals`, `request.auth.*`) are always absent: there is no RequestAuthentication.
 *
 * TCP filter chains get the same policies as `envoy.filters.network.rbac` filters (stat_prefix `tcp.`), built as
 * Istio's `BuildTCP` does (pilot/pkg/security/authz/model: `Generate(forTCP)` and `checkError`; istio.io task
 * "Authorization for TCP traffic"): HTTP-only fields (`hosts`, `methods`, `paths` and their `not…`,
 * `requestPrincipals`, `request.*` conditions) make an ALLOW rule match no TCP traffic (the rule is dropped),
 * while in DENY and AUDIT only those fields are dropped and the rest of the rule still applies (docs/adr/0017).
 */
import type { Rule } from '@fedmesh/api';
import { namespaceOf, type AuthorizationPolicyObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { PushContext } from '../push-context.js';
import { matchesLabels } from './common.js';

/** RBAC_HTTP_FILTER names the filter and its config type, as Envoy and Istio do. */
export const RBAC_HTTP_FILTER = {
  name: 'envoy.filters.http.rbac',
  type: 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
} as const;

/** RBAC_NETWORK_FILTER names the L4 RBAC filter and its config type, as Envoy and Istio do. */
export const RBAC_NETWORK_FILTER = {
  name: 'envoy.filters.network.rbac',
  type: 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC',
} as const;

/** RBAC_TCP_STAT_PREFIX is the `stat_prefix` of the network RBAC filters (Istio's `RBACTCPFilterStatPrefix`). */
export const RBAC_TCP_STAT_PREFIX = 'tcp.';

type Json = Record<string, unknown>;
type Enforcement = 'ALLOW' | 'DENY' | 'LOG';

class Untranslatable extends Error {}

/**
 * policiesForWorkload returns the AuthorizationPolicies that apply to a sidecar, oldest first: root-namespace
 * policies without a selector (mesh-wide) or with one matching the workload's labels (in any namespace); its
 * namespace's policies without a selector or with a matching one; and policies whose `targetRef(s)` name a
 * Service (group `""`/`core`) of its namespace that selects the workload. Other target kinds (Gateway,
 * GatewayClass, ServiceEntry) do not attach to sidecars and are reported in `warnings`.
 */
export function policiesForWorkload(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): AuthorizationPolicyObject[] {
  const root = push.mesh.rootNamespace;
  return push.authorizationPolicies.filter((p) => {
    const ns = namespaceOf(p);
    if (ns !== root && ns !== proxy.namespace) return false;
    const refs = [...(p.spec.targetRef ? [p.spec.targetRef] : []), ...(p.spec.targetRefs ?? [])];
    if (refs.length > 0) {
      return refs.some((r) => {
        if (r.kind !== 'Service' || (r.group !== undefined && r.group !== '' && r.group !== 'core')) {
          warnings.push(
            `AuthorizationPolicy ${ns}/${p.metadata.name}: targetRef ${r.kind} does not attach to sidecars`,
          );
          return false;
        }
        const svc = push.services.find((s) => s.name === r.name && s.namespace === (r.namespace ?? ns));
        return (
          svc !== undefined &&
          svc.namespace === proxy.namespace &&
          Object.keys(svc.selector).length > 0 &&
          matchesLabels(svc.selector, proxy.labels)
        );
      });
    }
    const selector = p.spec.selector?.matchLabels ?? {};
    return matchesLabels(selector, proxy.labels);
  });
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** istioMatcher is Istio's string match for a value with an optional leading or trailing `*` (`*` alone: any). */
function istioMatcher(v: string, prefix = ''): Json {
  if (v === '*') return { safe_regex: { regex: '.+' } };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1) };
  return { exact: prefix + v };
}

const PARAMS = '(?:;[^/]*)?';

/**
 * hardenedPathRegex turns an Istio path (`/a/b`, `/a/*`, `*suffix`, `*`) into a case-insensitive RE2 full-match
 * regex that also matches the path with repeated slashes, `;parameters` on any segment and (for an exact path)
 * trailing slashes: the forms an application may read as the same resource.
 */
export function hardenedPathRegex(path: string): string {
  const literal = (s: string, closeLast: boolean): string => {
    const segs = s.split('/');
    return segs
      .map((seg, i) => {
        if (i === 0) return escapeRegex(seg);
        const last = i === segs.length - 1;
        return `/+${escapeRegex(seg)}${seg !== '' && (!last || closeLast) ? PARAMS : ''}`;
      })
      .join('');
  };
  if (path === '*') return '(?i).*';
  if (path.startsWith('*')) return `(?i).*${literal(path.slice(1), true)}/*`;
  if (path.endsWith('*')) return `(?i)${literal(path.slice(0, -1), false)}.*`;
  return `(?i)${literal(path, true)}/*`;
}

function pathPermission(path: string, hardened: boolean): Json {
  if (path.includes('{')) throw new Untranslatable(`path template ${JSON.stringify(path)} is not supported`);
  if (hardened) return { url_path: { path: { safe_regex: { regex: hardenedPathRegex(path) } } } };
  if (path === '*') return { url_path: { path: { safe_regex: { regex: '.*' } } } };
  return { url_path: { path: istioMatcher(path) } };
}

/** hostPermission matches an Istio host (`a.b`, `*.b`, `a*`) on `:authority`, case-insensitively, with or without a port. */
function hostPermission(host: string): Json {
  if (host === '*') return { header: { name: ':authority', present_match: true } };
  let body: string;
  if (host.startsWith('*')) body = `.*${escapeRegex(host.slice(1))}`;
  else if (host.endsWith('*')) body = `${escapeRegex(host.slice(0, -1))}.*`;
  else body = escapeRegex(host);
  return { header: { name: ':authority', string_match: { safe_regex: { regex: `(?i)${body}(?::[0-9]+)?` } } } };
}

function portNumber(v: string, what: string): number {
  if (!/^\d{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535)
    throw new Untranslatable(`${what} ${JSON.stringify(v)} is not a port number`);
  return Number(v);
}

function cidr(v: string): Json {
  const [addr = '', len] = v.split('/');
  const v4 = /^\d+\.\d+\.\d+\.\d+$/.test(addr);
  const v6 = addr.includes(':');
  const max = v4 ? 32 : 128;
  const n = len === undefined ? max : Number(len);
  if ((!v4 && !v6) || !Number.isInteger(n) || n < 0 || n > max)
    throw new Untranslatable(`${JSON.stringify(v)} is not an IP address or CIDR`);
  return { address_prefix: addr, prefix_len: { value: n } };
}

function namespaceRegex(ns: string): string {
  const body =
    ns === '*'
      ? '[^/]+'
      : ns.startsWith('*')
        ? `[^/]*${escapeRegex(ns.slice(1))}`
        : ns.endsWith('*')
          ? `${escapeRegex(ns.slice(0, -1))}[^/]*`
          : escapeRegex(ns);
  return `.*/ns/${body}/.*`;
}

const orP = (rules: Json[]): Json => (rules.length === 1 ? (rules[0] as Json) : { or_rules: { rules } });
const andP = (rules: Json[]): Json =>
  rules.length === 0 ? { any: true } : rules.length === 1 ? (rules[0] as Json) : { and_rules: { rules } };
const notP = (rule: Json): Json => ({ not_rule: rule });
const orI = (ids: Json[]): Json => (ids.length === 1 ? (ids[0] as Json) : { or_ids: { ids } });
const andI = (ids: Json[]): Json =>
  ids.length === 0 ? { any: true } : ids.length === 1 ? (ids[0] as Json) : { and_ids: { ids } };
const notI = (id: Json): Json => ({ not_id: id });
const NEVER_ID: Json = { not_id: { any: true } };
const NEVER_P: Json = { not_rule: { any: true } };

/** RuleContext says how to translate one rule: for which action, and what to do with an untranslatable part. */
interface RuleContext {
  action: Enforcement;
  trustDomain: string;
  /** denyWide is true in DENY: an untranslatable part matches (the rule denies more); otherwise it throws. */
  denyWide: boolean;
  /** forTcp is true for a network RBAC filter: HTTP-only fields follow {@link keepOnTcp}. */
  forTcp: boolean;
  warn: (msg: string) => void;
}

/**
 * keepOnTcp says whether an HTTP-only field or condition `key` at `where` is translated: always on HTTP chains. On
 * TCP chains, as Istio's checkError does, an ALLOW rule that uses it can never match a connection, so it throws
 * (the rule is dropped: "Istio ignores the invalid ALLOW rule"); in DENY and AUDIT the key alone is dropped
 * (returns false), so the rest of the rule still denies or audits: more restrictive, never less.
 */
function keepOnTcp(ctx: RuleContext, where: string, key: string): boolean {
  if (!ctx.forTcp) return true;
  if (ctx.action === 'ALLOW')
    throw new Untranslatable(`${where}: ${key} is HTTP-only; the rule matches no TCP traffic`);
  const verb = ctx.action === 'DENY' ? 'denies' : 'audits';
  ctx.warn(
    `${where}: ${key} is HTTP-only; dropped on TCP, so the rule ${verb} every connection the rest of it matches`,
  );
  return false;
}

function field<T>(ctx: RuleContext, what: string, fn: () => T, wide: T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof Untranslatable) || !ctx.denyWide) throw err;
    ctx.warn(`${what}: ${err.message}; treated as matching (DENY fails closed)`);
    return wide;
  }
}

function principalOf(v: string): Json {
  return { authenticated: { principal_name: istioMatcher(v, 'spiffe://') } };
}

type SourceSpec = NonNullable<NonNullable<Rule['from']>[number]['source']>;
type OperationSpec = NonNullable<NonNullable<Rule['to']>[number]['operation']>;
type ConditionSpec = NonNullable<Rule['when']>[number];

function sourceIds(s: SourceSpec, ctx: RuleContext, where: string): Json[] {
  const ids: Json[] = [];
  if (ctx.forTcp && (s.requestPrincipals?.length || s.notRequestPrincipals?.length)) {
    keepOnTcp(ctx, `${where}.source`, 'requestPrincipals');
    s = { ...s, requestPrincipals: undefined, notRequestPrincipals: undefined };
  }
  const both = (pos: string[] | undefined, neg: string[] | undefined, one: (v: string) => Json): void => {
    if (pos?.length) ids.push(orI(pos.map(one)));
    if (neg?.length) ids.push(notI(orI(neg.map(one))));
  };
  both(s.principals, s.notPrincipals, principalOf);
  both(s.namespaces, s.notNamespaces, (n) => ({
    authenticated: { principal_name: { safe_regex: { regex: namespaceRegex(n) } } },
  }));
  both(s.serviceAccounts, s.notServiceAccounts, (v) => {
    const [ns, sa] = v.split('/');
    if (!ns || !sa) throw new Untranslatable(`serviceAccount ${JSON.stringify(v)} is not <namespace>/<name>`);
    return { authenticated: { principal_name: { exact: `spiffe://${ctx.trustDomain}/ns/${ns}/sa/${sa}` } } };
  });
  both(s.ipBlocks, s.notIpBlocks, (v) => ({ direct_remote_ip: cidr(v) }));
  both(s.remoteIpBlocks, s.notRemoteIpBlocks, (v) => ({ remote_ip: cidr(v) }));
  // No RequestAuthentication: a request principal is never present.
  if (s.requestPrincipals?.length) ids.push(NEVER_ID);
  return ids;
}

function operationRules(o: OperationSpec, ctx: RuleContext, where: string): Json[] {
  const rules: Json[] = [];
  const hardenPositive = ctx.action === 'DENY';
  const both = (
    key: string | undefined,
    pos: string[] | undefined,
    neg: string[] | undefined,
    one: (v: string, negated: boolean) => Json,
  ): void => {
    if (!pos?.length && !neg?.length) return;
    if (key !== undefined && !keepOnTcp(ctx, `${where}.operation`, key)) return;
    if (pos?.length) rules.push(orP(pos.map((v) => one(v, false))));
    if (neg?.length) rules.push(notP(orP(neg.map((v) => one(v, true)))));
  };
  both('hosts', o.hosts, o.notHosts, (h) => hostPermission(h));
  both(undefined, o.ports, o.notPorts, (p) => ({ destination_port: portNumber(p, 'port') }));
  both('methods', o.methods, o.notMethods, (m) => ({ header: { name: ':method', string_match: istioMatcher(m) } }));
  both('paths', o.paths, o.notPaths, (p, negated) => pathPermission(p, hardenPositive !== negated));
  return rules;
}

const PRINCIPAL_KEYS = new Set(['source.ip', 'remote.ip', 'source.namespace', 'source.principal']);

function conditionMatch(c: ConditionSpec, value: string): { id?: Json; perm?: Json } {
  const header = /^request\.headers\[(.+)\]$/.exec(c.key);
  if (header?.[1]) return { perm: { header: { name: header[1].toLowerCase(), string_match: istioMatcher(value) } } };
  switch (c.key) {
    case 'source.ip':
      return { id: { direct_remote_ip: cidr(value) } };
    case 'remote.ip':
      return { id: { remote_ip: cidr(value) } };
    case 'source.namespace':
      return { id: { authenticated: { principal_name: { safe_regex: { regex: namespaceRegex(value) } } } } };
    case 'source.principal':
      return { id: principalOf(value) };
    case 'destination.ip':
      return { perm: { destination_ip: cidr(value) } };
    case 'destination.port':
      return { perm: { destination_port: portNumber(value, 'destination.port') } };
    case 'connection.sni':
      return { perm: { requested_server_name: istioMatcher(value) } };
    default:
      if (c.key.startsWith('request.auth.')) return { id: NEVER_ID };
      throw new Untranslatable(`condition key ${JSON.stringify(c.key)} is not supported`);
  }
}

function conditionParts(c: ConditionSpec): { ids: Json[]; perms: Json[] } {
  const out = { ids: [] as Json[], perms: [] as Json[] };
  const principalSide = PRINCIPAL_KEYS.has(c.key) || c.key.startsWith('request.auth.');
  const add = (values: string[], negate: boolean): void => {
    const parts = values.map((v) => conditionMatch(c, v));
    if (principalSide) {
      const id = orI(parts.map((p) => p.id ?? NEVER_ID));
      out.ids.push(negate ? notI(id) : id);
    } else {
      const perm = orP(parts.map((p) => p.perm ?? NEVER_P));
      out.perms.push(negate ? notP(perm) : perm);
    }
  };
  if (c.values?.length) add(c.values, false);
  if (c.notValues?.length) add(c.notValues, true);
  return out;
}

/** translateRule builds one Envoy `Policy` from an Istio rule; throws Untranslatable when it must be dropped. */
function translateRule(rule: Rule, ctx: RuleContext, where: string): Json {
  const whenIds: Json[] = [];
  const whenPerms: Json[] = [];
  (rule.when ?? []).forEach((c, i) => {
    // request.headers[…] and request.auth.* read the HTTP request: HTTP-only (Istio's conditions reference).
    if (c.key.startsWith('request.') && !keepOnTcp(ctx, `${where}.when[${i}]`, c.key)) return;
    const parts = field(ctx, `${where}.when[${i}]`, () => conditionParts(c), { ids: [], perms: [] });
    whenIds.push(...parts.ids);
    whenPerms.push(...parts.perms);
  });
  const froms = rule.from?.length ? rule.from : [undefined];
  const principals = froms.map((f, i) => {
    const ids = f ? field(ctx, `${where}.from[${i}]`, () => sourceIds(f.source, ctx, `${where}.from[${i}]`), []) : [];
    return andI([...ids, ...whenIds]);
  });
  const tos = rule.to?.length ? rule.to : [undefined];
  const permissions = tos.map((t, i) => {
    const rules = t
      ? field(ctx, `${where}.to[${i}]`, () => operationRules(t.operation, ctx, `${where}.to[${i}]`), [])
      : [];
    return andP([...rules, ...whenPerms]);
  });
  return { permissions, principals };
}

/** RbacBuildResult is the RBAC filters for one workload, in filter order, and what could not be translated. */
export interface RbacBuildResult {
  filters: object[];
  warnings: string[];
}

/** RbacConfig is one action's translated `config.rbac.v3.RBAC` rules and shadow rules, before wrapping in a filter. */
interface RbacConfig {
  rules?: Json;
  shadow_rules?: Json;
  shadow_rules_stat_prefix?: string;
}

/**
 * buildRbacConfigs translates the policies into one RBAC config per action present, in Istio's filter order AUDIT
 * (LOG), DENY (DENY and CUSTOM), ALLOW; `forTcp` applies Istio's TCP rules for HTTP-only fields. Pure.
 */
function buildRbacConfigs(
  policies: readonly AuthorizationPolicyObject[],
  trustDomain: string,
  forTcp: boolean,
): { configs: RbacConfig[]; warnings: string[] } {
  const warnings: string[] = [];
  const groups: Record<Enforcement, { live: Json; dry: Json; any: boolean }> = {
    LOG: { live: {}, dry: {}, any: false },
    DENY: { live: {}, dry: {}, any: false },
    ALLOW: { live: {}, dry: {}, any: false },
  };
  const on = forTcp ? ' on TCP' : '';
  let liveAllow = false;
  for (const p of policies) {
    const ns = namespaceOf(p);
    const name = `${ns}/${p.metadata.name}`;
    const declared = p.spec.action ?? 'ALLOW';
    if (declared === 'CUSTOM')
      warnings.push(`AuthorizationPolicy ${name}: CUSTOM has no provider in fedmesh; enforced as DENY`);
    const action: Enforcement = declared === 'AUDIT' ? 'LOG' : declared === 'ALLOW' ? 'ALLOW' : 'DENY';
    const dryRun = p.metadata.annotations?.['istio.io/dry-run'] === 'true';
    const group = groups[action];
    group.any = true;
    if (action === 'ALLOW' && !dryRun) liveAllow = true;
    const ctx: RuleContext = {
      action,
      trustDomain,
      denyWide: action === 'DENY',
      forTcp,
      warn: (m) => warnings.push(`AuthorizationPolicy ${name}: ${m}`),
    };
    (p.spec.rules ?? []).forEach((rule, i) => {
      const id = `ns[${ns}]-policy[${p.metadata.name}]-rule[${i}]`;
      try {
        (dryRun ? group.dry : group.live)[id] = translateRule(rule, ctx, `rules[${i}]`);
      } catch (err) {
        if (!(err instanceof Untranslatable)) throw err;
        warnings.push(`AuthorizationPolicy ${name}: rules[${i}]: ${err.message}; rule dropped${on} (it never matches)`);
      }
    });
  }
  const configs: RbacConfig[] = [];
  for (const action of ['LOG', 'DENY', 'ALLOW'] as const) {
    const g = groups[action];
    if (!g.any) continue;
    const config: RbacConfig = {};
    const enforce = action === 'ALLOW' ? liveAllow : Object.keys(g.live).length > 0;
    if (enforce) config.rules = { action, policies: g.live };
    if (Object.keys(g.dry).length > 0) {
      config.shadow_rules = { action, policies: g.dry };
      config.shadow_rules_stat_prefix = `istio_dry_run_${action.toLowerCase()}_`;
    }
    if (config.rules || config.shadow_rules) configs.push(config);
  }
  return { configs, warnings };
}

/**
 * buildRbacFilters translates the policies that apply to a workload into `envoy.filters.http.rbac` filters:
 * AUDIT (LOG), DENY (DENY and CUSTOM), ALLOW, each only when a policy of that action applies. Pure.
 */
export function buildRbacFilters(policies: readonly AuthorizationPolicyObject[], trustDomain: string): RbacBuildResult {
  const { configs, warnings } = buildRbacConfigs(policies, trustDomain, false);
  const filters = configs.map((c) => ({
    name: RBAC_HTTP_FILTER.name,
    typed_config: { '@type': RBAC_HTTP_FILTER.type, ...c },
  }));
  return { filters, warnings };
}

/**
 * buildNetworkRbacFilters translates the policies that apply to a workload into `envoy.filters.network.rbac`
 * filters for its TCP filter chains (before the tcp_proxy), in the same order as {@link buildRbacFilters}, with
 * stat_prefix {@link RBAC_TCP_STAT_PREFIX}; HTTP-only fields follow Istio's TCP rules (module comment). An ALLOW
 * policy whose every rule uses HTTP-only fields leaves an ALLOW filter without policies: every connection is
 * refused, as in Istio. Pure.
 */
export function buildNetworkRbacFilters(
  policies: readonly AuthorizationPolicyObject[],
  trustDomain: string,
): RbacBuildResult {
  const { configs, warnings } = buildRbacConfigs(policies, trustDomain, true);
  const filters = configs.map((c) => ({
    name: RBAC_NETWORK_FILTER.name,
    typed_config: { '@type': RBAC_NETWORK_FILTER.type, stat_prefix: RBAC_TCP_STAT_PREFIX, ...c },
  }));
  return { filters, warnings };
}
