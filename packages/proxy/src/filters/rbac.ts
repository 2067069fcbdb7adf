/**
 * Envoy's HTTP RBAC filter (`envoy.filters.http.rbac`), evaluated as Envoy's `RoleBasedAccessControlEngineImpl`
 * does (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/rbac_filter): a policy
 * matches when any of its permissions and any of its principals match; ALLOW lets a request through only when
 * a policy matches, DENY refuses it when one does, LOG never refuses and only records the match. Shadow rules
 * are evaluated and recorded, never enforced. Policies are tried in name order (Envoy keeps them in a sorted
 * map), so the reported policy is the first matching name.
 */
import net from 'node:net';
import type {
  EnvoyRbacFilterConfig,
  EnvoyRbacPermission,
  EnvoyRbacPrincipal,
  EnvoyRbacRules,
  RbacCidrRange,
  RbacHeaderMatcher,
  RbacStringMatcher,
} from '../xds/rbac-schemas.js';

/**
 * RbacRequest is what RBAC rules read of a request: the normalized path (with query), the verified peer
 * identity and the connection's addresses. Header names in `headers` are lower-case.
 */
export interface RbacRequest {
  method: string;
  /** path is the normalized `:path`, query included (`url_path` rules match it without the query). */
  path: string;
  /** authority is the `:authority` / Host header as received (after the HCM's host normalization). */
  authority: string;
  scheme: string;
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /**
   * peerPrincipal is the verified peer certificate's URI SAN (`spiffe://…`) when the connection is mutual TLS,
   * undefined for plaintext. `authenticated` principals never match a plaintext request.
   */
  peerPrincipal: string | undefined;
  /** directRemoteIp is the downstream connection's remote address. */
  directRemoteIp: string;
  /** remoteIp is the original client address; fedmesh trusts no `x-forwarded-for` hops, so it is the direct one. */
  remoteIp: string;
  /** destinationIp and destinationPort are the request's (original) destination. */
  destinationIp: string;
  destinationPort: number;
  /** requestedServerName is the TLS SNI, if any. */
  requestedServerName: string | undefined;
}

type Predicate = (r: RbacRequest) => boolean;

/** RbacEngineResult is one engine's verdict: whether a policy matched, and which (the first by name). */
export interface RbacEngineResult {
  matched: boolean;
  policyId: string | undefined;
}

/**
 * RbacVerdict is the filter's outcome for one request: `allowed` (the enforced rules' decision; true when there
 * are no enforced rules), the enforced action and its matched policy, whether a LOG action matched (`logged`),
 * and the shadow rules' would-be decision, if shadow rules are configured.
 */
export interface RbacVerdict {
  allowed: boolean;
  action: 'ALLOW' | 'DENY' | 'LOG' | undefined;
  policyId: string | undefined;
  logged: boolean;
  shadow: { allowed: boolean; policyId: string | undefined } | undefined;
}

function compileRegex(source: string, where: string): RegExp {
  // RE2's `(?i)` prefix (the only inline flag fedmesh's generators emit) becomes JS's `i` flag.
  const insensitive = source.startsWith('(?i)');
  const body = insensitive ? source.slice(4) : source;
  try {
    return new RegExp(`^(?:${body})$`, insensitive ? 'i' : '');
  } catch (err) {
    throw new Error(`${where}.safe_regex.regex: invalid regex: ${(err as Error).message}`);
  }
}

/**
 * compileRbacStringMatcher turns an Envoy `StringMatcher` into a predicate: exact, prefix, suffix and contains
 * honour `ignore_case`; `safe_regex` is a full match (RE2 syntax, run as a JS regex; a leading `(?i)` makes it
 * case-insensitive; `ignore_case` has no effect on it, as in Envoy). Throws with `where` on a bad regex.
 */
export function compileRbacStringMatcher(m: RbacStringMatcher, where: string): (v: string) => boolean {
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
  if (m.safe_regex !== undefined) {
    const re = compileRegex(m.safe_regex.regex, where);
    return (v) => re.test(v);
  }
  throw new Error(`${where}: no match kind set`);
}

function headerValue(r: RbacRequest, name: string): string | undefined {
  switch (name) {
    case ':method':
      return r.method;
    case ':path':
      return r.path;
    case ':authority':
    case 'host':
      return r.authority;
    case ':scheme':
      return r.scheme;
    default: {
      const v = r.headers[name];
      // Envoy joins repeated headers with ',' before matching (HeaderUtility::getAllOfHeaderAsString).
      return Array.isArray(v) ? v.join(',') : v;
    }
  }
}

function compileHeader(h: RbacHeaderMatcher, where: string): Predicate {
  const name = h.name.toLowerCase();
  const test = h.string_match ? compileRbacStringMatcher(h.string_match, `${where}.string_match`) : undefined;
  return (r) => {
    const v = headerValue(r, name) ?? (h.treat_missing_header_as_empty ? '' : undefined);
    let ok: boolean;
    if (h.present_match !== undefined) ok = (v !== undefined) === h.present_match;
    else ok = v !== undefined && (test ? test(v) : true);
    return h.invert_match ? !ok : ok;
  };
}

/** plainIp strips an IPv4-mapped IPv6 prefix (`::ffff:10.0.0.1` → `10.0.0.1`) so that IPv4 CIDRs apply. */
export function plainIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip;
}

/**
 * compileCidr builds a membership test for a `CidrRange` with Node's `net.BlockList`. Throws with `where` when
 * the address is not an IP or the prefix is longer than the family allows.
 */
export function compileCidr(c: RbacCidrRange, where: string): (ip: string) => boolean {
  const family = net.isIP(c.address_prefix);
  if (family === 0) throw new Error(`${where}.address_prefix: not an IP address: ${JSON.stringify(c.address_prefix)}`);
  const max = family === 4 ? 32 : 128;
  const len = c.prefix_len?.value ?? 0;
  if (len > max) throw new Error(`${where}.prefix_len: ${len} exceeds ${max} for IPv${family}`);
  const list = new net.BlockList();
  const type = family === 4 ? 'ipv4' : 'ipv6';
  list.addSubnet(c.address_prefix, len, type);
  return (ip) => {
    const p = plainIp(ip);
    const f = net.isIP(p);
    return f !== 0 && list.check(p, f === 4 ? 'ipv4' : 'ipv6');
  };
}

function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q >= 0 ? path.slice(0, q) : path;
}

/** compilePermission turns a `Permission` into a predicate. Throws with a field path on a bad matcher. */
export function compilePermission(p: EnvoyRbacPermission, where: string): Predicate {
  if (p.and_rules) {
    const all = p.and_rules.rules.map((x, i) => compilePermission(x, `${where}.and_rules.rules[${i}]`));
    return (r) => all.every((f) => f(r));
  }
  if (p.or_rules) {
    const any = p.or_rules.rules.map((x, i) => compilePermission(x, `${where}.or_rules.rules[${i}]`));
    return (r) => any.some((f) => f(r));
  }
  if (p.any) return () => true;
  if (p.header) return compileHeader(p.header, `${where}.header`);
  if (p.url_path) {
    const test = compileRbacStringMatcher(p.url_path.path, `${where}.url_path.path`);
    return (r) => test(pathOnly(r.path));
  }
  if (p.destination_ip) {
    const inRange = compileCidr(p.destination_ip, `${where}.destination_ip`);
    return (r) => inRange(r.destinationIp);
  }
  if (p.destination_port !== undefined) {
    const port = p.destination_port;
    return (r) => r.destinationPort === port;
  }
  if (p.destination_port_range) {
    const { start = 0, end = 0 } = p.destination_port_range;
    if (end < start) throw new Error(`${where}.destination_port_range: end ${end} < start ${start}`);
    return (r) => r.destinationPort >= start && r.destinationPort < end;
  }
  if (p.not_rule) {
    const inner = compilePermission(p.not_rule, `${where}.not_rule`);
    return (r) => !inner(r);
  }
  if (p.requested_server_name) {
    const test = compileRbacStringMatcher(p.requested_server_name, `${where}.requested_server_name`);
    return (r) => test(r.requestedServerName ?? '');
  }
  throw new Error(`${where}: no permission rule set`);
}

/** compilePrincipal turns a `Principal` into a predicate. Throws with a field path on a bad matcher. */
export function compilePrincipal(p: EnvoyRbacPrincipal, where: string): Predicate {
  if (p.and_ids) {
    const all = p.and_ids.ids.map((x, i) => compilePrincipal(x, `${where}.and_ids.ids[${i}]`));
    return (r) => all.every((f) => f(r));
  }
  if (p.or_ids) {
    const any = p.or_ids.ids.map((x, i) => compilePrincipal(x, `${where}.or_ids.ids[${i}]`));
    return (r) => any.some((f) => f(r));
  }
  if (p.any) return () => true;
  if (p.authenticated) {
    const name = p.authenticated.principal_name;
    // Without principal_name, any connection with a verified peer certificate matches.
    if (!name) return (r) => r.peerPrincipal !== undefined;
    const test = compileRbacStringMatcher(name, `${where}.authenticated.principal_name`);
    return (r) => r.peerPrincipal !== undefined && test(r.peerPrincipal);
  }
  const cidr = p.direct_remote_ip ?? p.source_ip;
  if (cidr) {
    const inRange = compileCidr(cidr, `${where}.${p.direct_remote_ip ? 'direct_remote_ip' : 'source_ip'}`);
    return (r) => inRange(r.directRemoteIp);
  }
  if (p.remote_ip) {
    const inRange = compileCidr(p.remote_ip, `${where}.remote_ip`);
    return (r) => inRange(r.remoteIp);
  }
  if (p.header) return compileHeader(p.header, `${where}.header`);
  if (p.url_path) {
    const test = compileRbacStringMatcher(p.url_path.path, `${where}.url_path.path`);
    return (r) => test(pathOnly(r.path));
  }
  if (p.not_id) {
    const inner = compilePrincipal(p.not_id, `${where}.not_id`);
    return (r) => !inner(r);
  }
  throw new Error(`${where}: no principal identifier set`);
}

/**
 * RbacEngine is one compiled `config.rbac.v3.RBAC`: its action and its policies in name order. `evaluate`
 * reports the first matching policy.
 */
export class RbacEngine {
  readonly action: 'ALLOW' | 'DENY' | 'LOG';
  private readonly policies: { id: string; permissions: Predicate[]; principals: Predicate[] }[];

  /** constructor compiles every policy; throws with a field path under `where` on a bad matcher or CIDR. */
  constructor(rules: EnvoyRbacRules, where: string) {
    this.action = rules.action ?? 'ALLOW';
    this.policies = Object.keys(rules.policies ?? {})
      .sort()
      .map((id) => {
        const p = rules.policies?.[id];
        const at = `${where}.policies[${JSON.stringify(id)}]`;
        return {
          id,
          permissions: (p?.permissions ?? []).map((x, i) => compilePermission(x, `${at}.permissions[${i}]`)),
          principals: (p?.principals ?? []).map((x, i) => compilePrincipal(x, `${at}.principals[${i}]`)),
        };
      });
  }

  /** evaluate returns whether a policy matches the request, and the first matching policy's name. */
  evaluate(r: RbacRequest): RbacEngineResult {
    for (const p of this.policies)
      if (p.permissions.some((f) => f(r)) && p.principals.some((f) => f(r))) return { matched: true, policyId: p.id };
    return { matched: false, policyId: undefined };
  }

  /** allows applies the action to a result: ALLOW needs a match, DENY refuses on a match, LOG always allows. */
  allows(result: RbacEngineResult): boolean {
    if (this.action === 'ALLOW') return result.matched;
    if (this.action === 'DENY') return !result.matched;
    return true;
  }
}

/**
 * RbacFilter is one compiled `envoy.filters.http.rbac` filter: enforced `rules` (absent: nothing is enforced)
 * and `shadow_rules` (evaluated, never enforced), with their stat prefixes.
 */
export class RbacFilter {
  readonly rules: RbacEngine | undefined;
  readonly shadow: RbacEngine | undefined;
  readonly rulesStatPrefix: string;
  readonly shadowStatPrefix: string;
  /** usesDestinationPort is true when any rule reads the destination port (the caller then resolves it). */
  readonly usesDestinationPort: boolean;

  /** constructor compiles a validated filter config; throws with a field path under `where` on a bad matcher. */
  constructor(config: EnvoyRbacFilterConfig, where: string) {
    this.rules = config.rules ? new RbacEngine(config.rules, `${where}.rules`) : undefined;
    this.shadow = config.shadow_rules ? new RbacEngine(config.shadow_rules, `${where}.shadow_rules`) : undefined;
    this.rulesStatPrefix = config.rules_stat_prefix ?? '';
    this.shadowStatPrefix = config.shadow_rules_stat_prefix ?? '';
    const text = JSON.stringify([config.rules, config.shadow_rules]);
    this.usesDestinationPort = text.includes('"destination_port');
  }

  /** evaluate runs the enforced and shadow rules against one request. */
  evaluate(r: RbacRequest): RbacVerdict {
    let allowed = true;
    let policyId: string | undefined;
    let logged = false;
    if (this.rules) {
      const res = this.rules.evaluate(r);
      allowed = this.rules.allows(res);
      policyId = res.policyId;
      logged = this.rules.action === 'LOG' && res.matched;
    }
    let shadow: RbacVerdict['shadow'];
    if (this.shadow) {
      const res = this.shadow.evaluate(r);
      shadow = { allowed: this.shadow.allows(res), policyId: res.policyId };
    }
    return { allowed, action: this.rules?.action, policyId, logged, shadow };
  }
}
