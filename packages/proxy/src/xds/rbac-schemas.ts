/**
 * Zod schemas of Envoy's HTTP RBAC filter (`extensions.filters.http.rbac.v3.RBAC` over `config.rbac.v3.RBAC`,
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/rbac/v3/rbac.proto), the subset the fedmesh proxy
 * evaluates. Every object is strict and every `oneof` must have exactly one member set: a permission or
 * principal kind the proxy does not implement (`metadata`, `matcher`, `uri_template`, `filter_state`), a CEL
 * `condition`, audit logging options or the `matcher` tree make the Listener NACK. An authorization filter is
 * never half-applied, so it can never fail open.
 *
 * The network RBAC filter (`extensions.filters.network.rbac.v3.RBAC`, built by {@link createNetworkRbacSchema})
 * shares `config.rbac.v3.RBAC` but sees connections, not requests: its permissions and principals may not use
 * `header` or `url_path` (Envoy: "Header should not be used in rules/shadow_rules in RBAC network filter"), and
 * the `matcher` / `shadow_matcher` trees are not implemented; either makes the Listener NACK with the field path.
 *
 * The schemas are built by {@link createRbacSchemas} from the caller's StringMatcher schema, so that this file
 * imports nothing from `envoy-schemas.ts` (which imports this one) and the two stay free of import cycles.
 */
import { z } from 'zod';

/** RbacStringMatcher is `type.matcher.v3.StringMatcher` as decoded (exactly one of the match kinds set). */
export interface RbacStringMatcher {
  exact?: string | undefined;
  prefix?: string | undefined;
  suffix?: string | undefined;
  contains?: string | undefined;
  safe_regex?: { regex: string; google_re2?: Record<string, never> | undefined } | undefined;
  ignore_case?: boolean | undefined;
}

/** RbacHeaderMatcher is the `config.route.v3.HeaderMatcher` subset RBAC rules use. */
export interface RbacHeaderMatcher {
  name: string;
  string_match?: RbacStringMatcher | undefined;
  present_match?: boolean | undefined;
  invert_match?: boolean | undefined;
  treat_missing_header_as_empty?: boolean | undefined;
}

/** RbacCidrRange is `config.core.v3.CidrRange`: an address and a prefix length (wrapped UInt32). */
export interface RbacCidrRange {
  address_prefix: string;
  prefix_len?: { value?: number | undefined } | undefined;
}

/** EnvoyRbacPermission is `config.rbac.v3.Permission` (one `rule` member set). */
export interface EnvoyRbacPermission {
  and_rules?: { rules: EnvoyRbacPermission[] } | undefined;
  or_rules?: { rules: EnvoyRbacPermission[] } | undefined;
  any?: boolean | undefined;
  header?: RbacHeaderMatcher | undefined;
  url_path?: { path: RbacStringMatcher } | undefined;
  destination_ip?: RbacCidrRange | undefined;
  destination_port?: number | undefined;
  destination_port_range?: { start?: number | undefined; end?: number | undefined } | undefined;
  not_rule?: EnvoyRbacPermission | undefined;
  requested_server_name?: RbacStringMatcher | undefined;
}

/** EnvoyRbacPrincipal is `config.rbac.v3.Principal` (one `identifier` member set). */
export interface EnvoyRbacPrincipal {
  and_ids?: { ids: EnvoyRbacPrincipal[] } | undefined;
  or_ids?: { ids: EnvoyRbacPrincipal[] } | undefined;
  any?: boolean | undefined;
  authenticated?: { principal_name?: RbacStringMatcher | undefined } | undefined;
  source_ip?: RbacCidrRange | undefined;
  direct_remote_ip?: RbacCidrRange | undefined;
  remote_ip?: RbacCidrRange | undefined;
  header?: RbacHeaderMatcher | undefined;
  url_path?: { path: RbacStringMatcher } | undefined;
  not_id?: EnvoyRbacPrincipal | undefined;
}

/** EnvoyRbacPolicy is `config.rbac.v3.Policy`: it matches when any permission and any principal match. */
export interface EnvoyRbacPolicy {
  permissions: EnvoyRbacPermission[];
  principals: EnvoyRbacPrincipal[];
}

/**
 * EnvoyRbacRules is `config.rbac.v3.RBAC`: `action` (absent means ALLOW, proto3's zero value) and named
 * `policies`.
 */
export interface EnvoyRbacRules {
  action?: 'ALLOW' | 'DENY' | 'LOG' | undefined;
  policies?: Record<string, EnvoyRbacPolicy> | undefined;
}

/** EnvoyRbacFilterConfig is `extensions.filters.http.rbac.v3.RBAC`: enforced `rules` and/or `shadow_rules`. */
export interface EnvoyRbacFilterConfig {
  '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
  rules?: EnvoyRbacRules | undefined;
  rules_stat_prefix?: string | undefined;
  shadow_rules?: EnvoyRbacRules | undefined;
  shadow_rules_stat_prefix?: string | undefined;
  track_per_rule_stats?: boolean | undefined;
}

/**
 * EnvoyNetworkRbacConfig is `extensions.filters.network.rbac.v3.RBAC`: `stat_prefix` (required, non-empty),
 * enforced `rules` and/or `shadow_rules` (without HTTP-only matchers), `shadow_rules_stat_prefix` and
 * `enforcement_type` (both values evaluate once per connection here: the proxy emits no dynamic metadata, so a
 * CONTINUOUS re-evaluation could never change the verdict).
 */
export interface EnvoyNetworkRbacConfig {
  '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
  stat_prefix: string;
  rules?: EnvoyRbacRules | undefined;
  shadow_rules?: EnvoyRbacRules | undefined;
  shadow_rules_stat_prefix?: string | undefined;
  enforcement_type?: 'ONE_TIME_ON_FIRST_BYTE' | 'CONTINUOUS' | undefined;
}

/** NETWORK_RBAC_FILTER_TYPE is the type URL of the network RBAC filter's config. */
export const NETWORK_RBAC_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

/** NETWORK_RBAC_FILTER_NAME is the network filter name Envoy and Istio use for L4 RBAC. */
export const NETWORK_RBAC_FILTER_NAME = 'envoy.filters.network.rbac';

/** RBAC_FILTER_TYPE is the type URL of the HTTP RBAC filter's config. */
export const RBAC_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';

/** RBAC_FILTER_NAME is the HTTP filter name Envoy and Istio use for RBAC. */
export const RBAC_FILTER_NAME = 'envoy.filters.http.rbac';

function exactlyOne(o: object): boolean {
  return Object.values(o).filter((v) => v !== undefined).length === 1;
}

/**
 * rbacRuleSchemas builds the `config.rbac.v3.RBAC` schema around `stringMatcher`. With `l7` false (the network
 * filter) the HTTP-only `header` and `url_path` members of Permission and Principal are refused with a message
 * at their field path instead of being accepted.
 */
function rbacRuleSchemas(stringMatcher: z.ZodType<RbacStringMatcher>, l7: boolean): z.ZodType<EnvoyRbacRules> {
  const header: z.ZodType<RbacHeaderMatcher> = z
    .strictObject({
      name: z.string().min(1),
      string_match: stringMatcher.optional(),
      present_match: z.boolean().optional(),
      invert_match: z.boolean().optional(),
      treat_missing_header_as_empty: z.boolean().optional(),
    })
    .refine((h) => h.string_match === undefined || h.present_match === undefined, {
      message: 'at most one of string_match, present_match may be set',
    });
  const cidr: z.ZodType<RbacCidrRange> = z.strictObject({
    address_prefix: z.string().min(1),
    prefix_len: z.strictObject({ value: z.number().int().min(0).max(128).optional() }).optional(),
  });
  const pathMatcher = z.strictObject({ path: stringMatcher });
  const u32Port = z.number().int().min(0).max(65535);
  // The network filter sees a connection: there is no request to read a header or a path from.
  const httpOnly = z
    .never({ error: 'is HTTP-only: the network RBAC filter sees connections, not requests' })
    .optional();
  const headerField = l7 ? header.optional() : httpOnly;
  const pathField = l7 ? pathMatcher.optional() : httpOnly;

  const permission: z.ZodType<EnvoyRbacPermission> = z.lazy(() =>
    z
      .strictObject({
        and_rules: z.strictObject({ rules: z.array(permission).min(1) }).optional(),
        or_rules: z.strictObject({ rules: z.array(permission).min(1) }).optional(),
        any: z.literal(true).optional(),
        header: headerField,
        url_path: pathField,
        destination_ip: cidr.optional(),
        destination_port: u32Port.optional(),
        destination_port_range: z
          .strictObject({ start: z.number().int().optional(), end: z.number().int().optional() })
          .optional(),
        not_rule: permission.optional(),
        requested_server_name: stringMatcher.optional(),
      })
      .refine(exactlyOne, { message: 'exactly one permission rule must be set' }),
  );
  const principal: z.ZodType<EnvoyRbacPrincipal> = z.lazy(() =>
    z
      .strictObject({
        and_ids: z.strictObject({ ids: z.array(principal).min(1) }).optional(),
        or_ids: z.strictObject({ ids: z.array(principal).min(1) }).optional(),
        any: z.literal(true).optional(),
        authenticated: z.strictObject({ principal_name: stringMatcher.optional() }).optional(),
        source_ip: cidr.optional(),
        direct_remote_ip: cidr.optional(),
        remote_ip: cidr.optional(),
        header: headerField,
        url_path: pathField,
        not_id: principal.optional(),
      })
      .refine(exactlyOne, { message: 'exactly one principal identifier must be set' }),
  );
  const policy: z.ZodType<EnvoyRbacPolicy> = z.strictObject({
    permissions: z.array(permission).min(1),
    principals: z.array(principal).min(1),
  });
  return z.strictObject({
    action: z.enum(['ALLOW', 'DENY', 'LOG']).optional(),
    policies: z.record(z.string(), policy).optional(),
  });
}

/**
 * createRbacSchemas builds the RBAC filter schemas around `stringMatcher` (Envoy's `StringMatcher` schema).
 * Returns `{ filter, rules }`: `filter` validates a whole `envoy.filters.http.rbac` entry of `http_filters`
 * (`{name, typed_config}`), `rules` one `config.rbac.v3.RBAC`. Unknown fields and unimplemented oneof members
 * fail validation with their field path.
 */
export function createRbacSchemas(stringMatcher: z.ZodType<RbacStringMatcher>) {
  const rules = rbacRuleSchemas(stringMatcher, true);
  const typedConfig: z.ZodType<EnvoyRbacFilterConfig> = z.strictObject({
    '@type': z.literal(RBAC_FILTER_TYPE),
    rules: rules.optional(),
    rules_stat_prefix: z.string().optional(),
    shadow_rules: rules.optional(),
    shadow_rules_stat_prefix: z.string().optional(),
    track_per_rule_stats: z.boolean().optional(),
  });
  const filter = z.strictObject({ name: z.literal(RBAC_FILTER_NAME), typed_config: typedConfig });
  return { filter, rules };
}

/**
 * createNetworkRbacSchema builds the schema of one `envoy.filters.network.rbac` entry of a filter chain's
 * `filters` (`{name, typed_config}`) around `stringMatcher`. HTTP-only matchers, the `matcher` trees and unknown
 * fields fail validation with their field path; `stat_prefix` must be non-empty, as Envoy requires.
 */
export function createNetworkRbacSchema(stringMatcher: z.ZodType<RbacStringMatcher>) {
  const rules = rbacRuleSchemas(stringMatcher, false);
  const typedConfig: z.ZodType<EnvoyNetworkRbacConfig> = z.strictObject({
    '@type': z.literal(NETWORK_RBAC_FILTER_TYPE),
    stat_prefix: z.string().min(1),
    rules: rules.optional(),
    shadow_rules: rules.optional(),
    shadow_rules_stat_prefix: z.string().optional(),
    enforcement_type: z.enum(['ONE_TIME_ON_FIRST_BYTE', 'CONTINUOUS']).optional(),
  });
  return z.strictObject({ name: z.literal(NETWORK_RBAC_FILTER_NAME), typed_config: typedConfig });
}
