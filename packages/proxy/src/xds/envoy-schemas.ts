/**
 * Zod schemas of the subset of Envoy v3 resources the fedmesh proxy implements, applied to resources decoded
 * with protobufjs (snake_case, enums as strings, 64-bit integers as strings, wrappers as `{value}`, nested `Any`
 * as `{'@type', …}`). Every object is strict: a field the proxy does not implement is a validation error, so the
 * resource is NACKed rather than half-applied (field names follow the Envoy v3 API reference,
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/api).
 */
import net from 'node:net';
import { z } from 'zod';
import {
  createNetworkRbacSchema,
  createRbacSchemas,
  NETWORK_RBAC_FILTER_NAME,
  type EnvoyNetworkRbacConfig,
} from './rbac-schemas.js';
import { CORS_FILTER_NAME, checkCorsFilterOrder, createCorsSchemas } from './cors-schemas.js';

const u32 = z.number().int().min(0).max(0xffffffff);
const wrappedU32 = z.strictObject({ value: u32.optional() });
const wrappedBool = z.strictObject({ value: z.boolean().optional() });

/** DurationSchema is `google.protobuf.Duration` as protobufjs decodes it. */
export const DurationSchema = z.strictObject({
  seconds: z.union([z.string().regex(/^\d+$/), z.number().int().min(0)]).optional(),
  nanos: z.number().int().min(0).max(999_999_999).optional(),
});
/** EnvoyDuration is a decoded `google.protobuf.Duration`. */
export type EnvoyDuration = z.infer<typeof DurationSchema>;

/** durationMs converts a decoded Duration into milliseconds (0 when unset). */
export function durationMs(d: EnvoyDuration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1e6);
}

const configSource = z.strictObject({
  ads: z.strictObject({}).optional(),
  resource_api_version: z.enum(['AUTO', 'V3']).optional(),
  initial_fetch_timeout: DurationSchema.optional(),
});

const socketAddress = z.strictObject({
  address: z.string().min(1),
  port_value: z.number().int().min(0).max(65535),
  protocol: z.enum(['TCP']).optional(),
});
/** AddressSchema is `config.core.v3.Address` with a `socket_address`. */
export const AddressSchema = z.strictObject({ socket_address: socketAddress });

const regexMatcher = z.strictObject({ regex: z.string(), google_re2: z.strictObject({}).optional() });

/** StringMatcherSchema is `type.matcher.v3.StringMatcher`: exactly one of exact, prefix, suffix, safe_regex, contains. */
export const StringMatcherSchema = z
  .strictObject({
    exact: z.string().optional(),
    prefix: z.string().optional(),
    suffix: z.string().optional(),
    contains: z.string().optional(),
    safe_regex: regexMatcher.optional(),
    ignore_case: z.boolean().optional(),
  })
  .refine(
    (m) => [m.exact, m.prefix, m.suffix, m.contains, m.safe_regex].filter((v) => v !== undefined).length === 1,
    'exactly one of exact, prefix, suffix, contains, safe_regex must be set',
  );
/** EnvoyStringMatcher is a decoded `StringMatcher`. */
export type EnvoyStringMatcher = z.infer<typeof StringMatcherSchema>;

const headerMatcher = z.strictObject({
  name: z.string().min(1),
  string_match: StringMatcherSchema.optional(),
  present_match: z.boolean().optional(),
  invert_match: z.boolean().optional(),
  treat_missing_header_as_empty: z.boolean().optional(),
});

const queryParameterMatcher = z.strictObject({
  name: z.string().min(1),
  string_match: StringMatcherSchema.optional(),
  present_match: z.boolean().optional(),
});

const routeMatch = z
  .strictObject({
    prefix: z.string().optional(),
    path: z.string().optional(),
    safe_regex: regexMatcher.optional(),
    case_sensitive: wrappedBool.optional(),
    headers: z.array(headerMatcher).optional(),
    query_parameters: z.array(queryParameterMatcher).optional(),
  })
  .refine(
    (m) => [m.prefix, m.path, m.safe_regex].filter((v) => v !== undefined).length === 1,
    'exactly one of prefix, path, safe_regex must be set',
  );

const headerValueOption = z.strictObject({
  header: z.strictObject({ key: z.string().min(1), value: z.string().optional() }),
  append_action: z
    .enum(['APPEND_IF_EXISTS_OR_ADD', 'ADD_IF_ABSENT', 'OVERWRITE_IF_EXISTS_OR_ADD', 'OVERWRITE_IF_EXISTS'])
    .optional(),
});

const fractionalPercent = z.strictObject({
  numerator: u32.optional(),
  denominator: z.enum(['HUNDRED', 'TEN_THOUSAND', 'MILLION']).optional(),
});

/**
 * RETRY_ON_CONDITIONS are the `retry_on` conditions the proxy implements (Envoy's `x-envoy-retry-on` and
 * `x-envoy-retry-grpc-on` values); any other condition makes the route NACK.
 */
export const RETRY_ON_CONDITIONS: ReadonlySet<string> = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

const percent = z.strictObject({ value: z.number().min(0).max(100).optional() });
const wrappedU64 = z.strictObject({
  value: z.union([z.string().regex(/^\d+$/), z.number().int().min(0)]).optional(),
});

const retryPolicy = z.strictObject({
  retry_on: z
    .string()
    .refine(
      (s) =>
        s
          .split(',')
          .map((c) => c.trim())
          .every((c) => c === '' || RETRY_ON_CONDITIONS.has(c)),
      { message: 'unsupported retry_on condition' },
    )
    .optional(),
  retry_back_off: z.strictObject({ base_interval: DurationSchema, max_interval: DurationSchema.optional() }).optional(),
  num_retries: wrappedU32.optional(),
  per_try_timeout: DurationSchema.optional(),
  retriable_status_codes: z.array(u32).optional(),
  retry_host_predicate: z
    .array(
      z.strictObject({
        name: z.literal('envoy.retry_host_predicates.previous_hosts'),
        typed_config: z.looseObject({ '@type': z.string() }).optional(),
      }),
    )
    .optional(),
  host_selection_retry_max_attempts: z.union([z.string().regex(/^\d+$/), z.number().int().min(0)]).optional(),
});

const hashPolicy = z
  .strictObject({
    header: z.strictObject({ header_name: z.string().min(1) }).optional(),
    cookie: z
      .strictObject({ name: z.string().min(1), ttl: DurationSchema.optional(), path: z.string().optional() })
      .optional(),
    connection_properties: z.strictObject({ source_ip: z.boolean().optional() }).optional(),
    query_parameter: z.strictObject({ name: z.string().min(1) }).optional(),
    terminal: z.boolean().optional(),
  })
  .refine(
    (h) => [h.header, h.cookie, h.connection_properties, h.query_parameter].filter((v) => v !== undefined).length === 1,
    'exactly one of header, cookie, connection_properties, query_parameter must be set',
  );
/** EnvoyHashPolicy is a decoded `config.route.v3.RouteAction.HashPolicy`. */
export type EnvoyHashPolicy = z.infer<typeof hashPolicy>;

const routeAction = z
  .strictObject({
    cluster: z.string().min(1).optional(),
    weighted_clusters: z
      .strictObject({
        clusters: z.array(z.strictObject({ name: z.string().min(1), weight: wrappedU32 })).min(1),
        total_weight: wrappedU32.optional(),
      })
      .optional(),
    timeout: DurationSchema.optional(),
    retry_policy: retryPolicy.optional(),
    prefix_rewrite: z.string().optional(),
    regex_rewrite: z.strictObject({ pattern: regexMatcher, substitution: z.string() }).optional(),
    host_rewrite_literal: z.string().optional(),
    request_mirror_policies: z
      .array(
        z.strictObject({
          cluster: z.string().min(1),
          runtime_fraction: z.strictObject({ default_value: fractionalPercent }).optional(),
          disable_shadow_host_suffix_append: z.boolean().optional(),
        }),
      )
      .optional(),
    hash_policy: z.array(hashPolicy).optional(),
  })
  .refine(
    (a) => (a.cluster === undefined) !== (a.weighted_clusters === undefined),
    'exactly one of cluster, weighted_clusters must be set',
  );

const redirectAction = z.strictObject({
  host_redirect: z.string().optional(),
  port_redirect: u32.optional(),
  path_redirect: z.string().optional(),
  prefix_rewrite: z.string().optional(),
  scheme_redirect: z.string().optional(),
  https_redirect: z.boolean().optional(),
  response_code: z
    .enum(['MOVED_PERMANENTLY', 'FOUND', 'SEE_OTHER', 'TEMPORARY_REDIRECT', 'PERMANENT_REDIRECT'])
    .optional(),
  strip_query: z.boolean().optional(),
});

/** HttpFaultSchema is `extensions.filters.http.fault.v3.HTTPFault` (delay and abort by percentage). */
export const HttpFaultSchema = z.strictObject({
  '@type': z.literal('type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault'),
  delay: z.strictObject({ fixed_delay: DurationSchema, percentage: fractionalPercent.optional() }).optional(),
  abort: z
    .strictObject({
      http_status: z.number().int().min(200).max(599).optional(),
      grpc_status: u32.optional(),
      percentage: fractionalPercent.optional(),
    })
    .optional(),
});

/** CorsSchemas are Envoy's CORS filter entry and per-route `CorsPolicy` (`cors-schemas.ts`). */
const corsSchemas = createCorsSchemas(StringMatcherSchema, fractionalPercent);

const routeSchema = z.strictObject({
  name: z.string().optional(),
  match: routeMatch,
  route: routeAction.optional(),
  redirect: redirectAction.optional(),
  direct_response: z
    .strictObject({
      status: z.number().int().min(100).max(599),
      body: z.strictObject({ inline_string: z.string() }).optional(),
    })
    .optional(),
  request_headers_to_add: z.array(headerValueOption).optional(),
  request_headers_to_remove: z.array(z.string()).optional(),
  response_headers_to_add: z.array(headerValueOption).optional(),
  response_headers_to_remove: z.array(z.string()).optional(),
  typed_per_filter_config: z
    .strictObject({
      'envoy.filters.http.fault': HttpFaultSchema.optional(),
      [CORS_FILTER_NAME]: corsSchemas.policy.optional(),
    })
    .optional(),
  decorator: z.strictObject({ operation: z.string() }).optional(),
  metadata: z.unknown().optional(),
});
/** EnvoyRoute is a decoded `config.route.v3.Route`. */
export type EnvoyRoute = z.infer<typeof routeSchema>;

const virtualHost = z.strictObject({
  name: z.string().min(1),
  domains: z.array(z.string().min(1)).min(1),
  routes: z.array(routeSchema).optional(),
  include_request_attempt_count: z.boolean().optional(),
  include_attempt_count_in_response: z.boolean().optional(),
});

/** RouteConfigurationSchema is `config.route.v3.RouteConfiguration`. */
export const RouteConfigurationSchema = z.strictObject({
  '@type': z.string().optional(),
  name: z.string().min(1),
  virtual_hosts: z.array(virtualHost).optional(),
  validate_clusters: wrappedBool.optional(),
});
/** EnvoyRouteConfiguration is a decoded RouteConfiguration. */
export type EnvoyRouteConfiguration = z.infer<typeof RouteConfigurationSchema>;

const sdsSecretConfig = z.strictObject({ name: z.string().min(1), sds_config: configSource.optional() });
const sanMatcher = z.strictObject({
  san_type: z.enum(['URI', 'DNS', 'EMAIL', 'IP_ADDRESS']),
  matcher: StringMatcherSchema,
});
const commonTlsContext = z.strictObject({
  tls_certificate_sds_secret_configs: z.array(sdsSecretConfig).max(1).optional(),
  combined_validation_context: z
    .strictObject({
      default_validation_context: z.strictObject({ match_typed_subject_alt_names: z.array(sanMatcher).optional() }),
      validation_context_sds_secret_config: sdsSecretConfig,
    })
    .optional(),
  validation_context_sds_secret_config: sdsSecretConfig.optional(),
  alpn_protocols: z.array(z.string()).optional(),
});

/** UpstreamTlsContextSchema is `extensions.transport_sockets.tls.v3.UpstreamTlsContext` (SDS-only). */
export const UpstreamTlsContextSchema = z.strictObject({
  '@type': z.literal('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext'),
  sni: z.string().optional(),
  common_tls_context: commonTlsContext,
});

/** DownstreamTlsContextSchema is `extensions.transport_sockets.tls.v3.DownstreamTlsContext` (SDS-only). */
export const DownstreamTlsContextSchema = z.strictObject({
  '@type': z.literal('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext'),
  common_tls_context: commonTlsContext,
  require_client_certificate: wrappedBool.optional(),
});

const transportSocket = <T extends z.ZodType>(ctx: T) =>
  z.strictObject({ name: z.literal('envoy.transport_sockets.tls'), typed_config: ctx });

const routerFilter = z.strictObject({
  name: z.literal('envoy.filters.http.router'),
  typed_config: z.strictObject({
    '@type': z.literal('type.googleapis.com/envoy.extensions.filters.http.router.v3.Router'),
  }),
});
const faultFilter = z.strictObject({
  name: z.literal('envoy.filters.http.fault'),
  typed_config: z.strictObject({
    '@type': z.literal('type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault'),
  }),
});

/** RbacFilterSchema is an `envoy.filters.http.rbac` entry of `http_filters` (see `rbac-schemas.ts`). */
export const RbacFilterSchema = createRbacSchemas(StringMatcherSchema).filter;

/** NetworkRbacFilterSchema is an `envoy.filters.network.rbac` entry of a filter chain's `filters` (`rbac-schemas.ts`). */
export const NetworkRbacFilterSchema = createNetworkRbacSchema(StringMatcherSchema);

/**
 * Http2ProtocolOptionsSchema is `config.core.v3.Http2ProtocolOptions`: `max_concurrent_streams` (1..2^31 − 1) and
 * the initial stream and connection windows (64 KiB .. 2^31 − 1 bytes), as Envoy bounds them.
 */
export const Http2ProtocolOptionsSchema = z.strictObject({
  max_concurrent_streams: z.strictObject({ value: z.number().int().min(1).max(2147483647).optional() }).optional(),
  initial_stream_window_size: z
    .strictObject({ value: z.number().int().min(65535).max(2147483647).optional() })
    .optional(),
  initial_connection_window_size: z
    .strictObject({ value: z.number().int().min(65535).max(2147483647).optional() })
    .optional(),
});

/** HttpConnectionManagerSchema is `extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`. */
export const HttpConnectionManagerSchema = z
  .strictObject({
    '@type': z.literal(
      'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    ),
    stat_prefix: z.string(),
    codec_type: z.enum(['AUTO', 'HTTP1', 'HTTP2']).optional(),
    rds: z.strictObject({ route_config_name: z.string().min(1), config_source: configSource }).optional(),
    route_config: RouteConfigurationSchema.optional(),
    http_filters: z
      .array(z.discriminatedUnion('name', [faultFilter, corsSchemas.filter, RbacFilterSchema, routerFilter]))
      .min(1)
      .refine((f) => f[f.length - 1]?.name === 'envoy.filters.http.router', 'the router must be the last HTTP filter')
      .superRefine(checkCorsFilterOrder),
    forward_client_cert_details: z
      .enum(['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'])
      .optional(),
    set_current_client_cert_details: z
      .strictObject({ uri: z.boolean().optional(), subject: wrappedBool.optional() })
      .optional(),
    stream_idle_timeout: DurationSchema.optional(),
    request_timeout: DurationSchema.optional(),
    request_headers_timeout: DurationSchema.optional(),
    common_http_protocol_options: z
      .strictObject({ idle_timeout: DurationSchema.optional(), max_headers_count: wrappedU32.optional() })
      .optional(),
    max_request_headers_kb: wrappedU32.optional(),
    use_remote_address: wrappedBool.optional(),
    normalize_path: wrappedBool.optional(),
    merge_slashes: z.boolean().optional(),
    path_with_escaped_slashes_action: z
      .enum([
        'IMPLEMENTATION_SPECIFIC_DEFAULT',
        'KEEP_UNCHANGED',
        'REJECT_REQUEST',
        'UNESCAPE_AND_REDIRECT',
        'UNESCAPE_AND_FORWARD',
      ])
      .optional(),
    strip_trailing_host_dot: z.boolean().optional(),
    // oneof strip_port_mode; strip_matching_host_port is not implemented (NACKed as an unknown field).
    strip_any_host_port: z.boolean().optional(),
    // Downstream HTTP/2 settings (SETTINGS_MAX_CONCURRENT_STREAMS, windows), and WebSocket upgrades.
    http2_protocol_options: Http2ProtocolOptionsSchema.optional(),
    upgrade_configs: z
      .array(
        z.strictObject({
          upgrade_type: z
            .string()
            .refine((t) => t.toLowerCase() === 'websocket', 'only websocket upgrades are implemented'),
          enabled: wrappedBool.optional(),
        }),
      )
      .optional(),
  })
  .refine(
    (h) => (h.rds === undefined) !== (h.route_config === undefined),
    'exactly one of rds, route_config must be set',
  );
/** EnvoyHttpConnectionManager is a decoded HttpConnectionManager. */
export type EnvoyHttpConnectionManager = z.infer<typeof HttpConnectionManagerSchema>;

/**
 * CidrRangeSchema is `config.core.v3.CidrRange` (`address_prefix`, `prefix_len`) as filter chains match a
 * destination with it (`filter_chain_match.prefix_ranges`): an IPv4 or IPv6 address and a prefix length the family
 * allows (Envoy's default length is 0, the whole family).
 */
export const CidrRangeSchema = z
  .strictObject({ address_prefix: z.string().min(1), prefix_len: wrappedU32.optional() })
  .superRefine((c, ctx) => {
    const family = net.isIP(c.address_prefix);
    if (family === 0)
      ctx.addIssue({ code: 'custom', path: ['address_prefix'], message: 'must be an IPv4 or IPv6 address' });
    else if ((c.prefix_len?.value ?? 0) > (family === 4 ? 32 : 128))
      ctx.addIssue({ code: 'custom', path: ['prefix_len'], message: `must be ≤ ${family === 4 ? 32 : 128}` });
  });
/** EnvoyCidrRange is a decoded CidrRange. */
export type EnvoyCidrRange = z.infer<typeof CidrRangeSchema>;

const filterChain = z.strictObject({
  name: z.string().optional(),
  // The criteria the proxy matches, in Envoy's order (filter-chain-match.ts); the others (application_protocols,
  // source_*, direct_source_prefix_ranges) are refused by the strict object rather than ignored.
  filter_chain_match: z
    .strictObject({
      destination_port: wrappedU32.optional(),
      prefix_ranges: z.array(CidrRangeSchema).optional(),
      transport_protocol: z.enum(['tls', 'raw_buffer']).optional(),
      server_names: z.array(z.string()).optional(),
    })
    .optional(),
  // One terminal network filter, last: an HTTP connection manager, or a tcp_proxy (TCP services, TLS passthrough
  // by SNI), which network RBAC filters may precede (AuthorizationPolicy on TCP, docs/adr/0017).
  filters: z
    .array(
      z.discriminatedUnion('name', [
        z.strictObject({
          name: z.literal('envoy.filters.network.http_connection_manager'),
          typed_config: HttpConnectionManagerSchema,
        }),
        z.strictObject({
          name: z.literal('envoy.filters.network.tcp_proxy'),
          typed_config: z.lazy(() => TcpProxySchema),
        }),
        NetworkRbacFilterSchema,
      ]),
    )
    .min(1)
    .superRefine(checkNetworkFilterOrder),
  transport_socket: transportSocket(DownstreamTlsContextSchema).optional(),
});
/** EnvoyFilterChain is a decoded `config.listener.v3.FilterChain`. */
export type EnvoyFilterChain = z.infer<typeof filterChain>;

/**
 * checkNetworkFilterOrder enforces the shapes the proxy implements: the last filter is the chain's only terminal
 * filter (HCM or tcp_proxy), and `envoy.filters.network.rbac` filters stand only before a tcp_proxy (network RBAC
 * in front of an HTTP connection manager is not implemented, so it is refused rather than skipped).
 */
function checkNetworkFilterOrder(filters: readonly { name: string }[], ctx: z.RefinementCtx): void {
  const terminal = filters.length - 1;
  filters.forEach((f, i) => {
    const isTerminal = f.name !== NETWORK_RBAC_FILTER_NAME;
    if (isTerminal && i !== terminal)
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `${f.name} must be the last network filter` });
    if (!isTerminal && i === terminal)
      ctx.addIssue({
        code: 'custom',
        path: [i, 'name'],
        message: 'a filter chain must end with a tcp_proxy or an HCM',
      });
  });
  const last = filters[terminal]?.name;
  if (last === 'envoy.filters.network.http_connection_manager')
    filters.forEach((f, i) => {
      if (f.name === NETWORK_RBAC_FILTER_NAME)
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: 'network RBAC before an HTTP connection manager is not implemented (use envoy.filters.http.rbac)',
        });
    });
}

/** hcmOf returns a filter chain's HTTP connection manager (its last filter), or undefined for a tcp_proxy chain. */
export function hcmOf(chain: EnvoyFilterChain): EnvoyHttpConnectionManager | undefined {
  const f = chain.filters[chain.filters.length - 1];
  return f?.name === 'envoy.filters.network.http_connection_manager' ? f.typed_config : undefined;
}

/** tcpProxyOf returns a filter chain's tcp_proxy settings (its last filter), or undefined for an HTTP chain. */
export function tcpProxyOf(chain: EnvoyFilterChain): EnvoyTcpProxy | undefined {
  const f = chain.filters[chain.filters.length - 1];
  return f?.name === 'envoy.filters.network.tcp_proxy' ? f.typed_config : undefined;
}

/** networkRbacConfigsOf returns a filter chain's `envoy.filters.network.rbac` configs with their filter index. */
export function networkRbacConfigsOf(chain: EnvoyFilterChain): { index: number; config: EnvoyNetworkRbacConfig }[] {
  const out: { index: number; config: EnvoyNetworkRbacConfig }[] = [];
  chain.filters.forEach((f, index) => {
    if (f.name === NETWORK_RBAC_FILTER_NAME) out.push({ index, config: f.typed_config });
  });
  return out;
}

/** ListenerSchema is `config.listener.v3.Listener`. */
export const ListenerSchema = z.strictObject({
  '@type': z.string().optional(),
  name: z.string().min(1),
  address: AddressSchema,
  filter_chains: z.array(filterChain).min(1),
  listener_filters: z
    .array(
      z.union([
        z.strictObject({
          name: z.literal('envoy.filters.listener.tls_inspector'),
          typed_config: z.strictObject({
            '@type': z.literal('type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector'),
          }),
        }),
        // Capture mode: the destination a redirected connection was sent to picks the chain and the route.
        z.strictObject({
          name: z.literal('envoy.filters.listener.original_dst'),
          typed_config: z.strictObject({
            '@type': z.literal('type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst'),
          }),
        }),
      ]),
    )
    .optional(),
  traffic_direction: z.enum(['UNSPECIFIED', 'INBOUND', 'OUTBOUND']).optional(),
  bind_to_port: wrappedBool.optional(),
  metadata: z.unknown().optional(),
});
/** EnvoyListener is a decoded Listener. */
export type EnvoyListener = z.infer<typeof ListenerSchema>;

const lbEndpoint = z.strictObject({
  endpoint: z.strictObject({ address: AddressSchema }),
  health_status: z.enum(['UNKNOWN', 'HEALTHY', 'UNHEALTHY', 'DRAINING', 'TIMEOUT', 'DEGRADED']).optional(),
  load_balancing_weight: wrappedU32.optional(),
  metadata: z.unknown().optional(),
});

/** ClusterLoadAssignmentSchema is `config.endpoint.v3.ClusterLoadAssignment`. */
export const ClusterLoadAssignmentSchema = z.strictObject({
  '@type': z.string().optional(),
  cluster_name: z.string().min(1),
  endpoints: z
    .array(
      z.strictObject({
        locality: z
          .strictObject({ region: z.string().optional(), zone: z.string().optional(), sub_zone: z.string().optional() })
          .optional(),
        lb_endpoints: z.array(lbEndpoint).optional(),
        load_balancing_weight: wrappedU32.optional(),
        priority: u32.optional(),
      }),
    )
    .optional(),
});
/** EnvoyClusterLoadAssignment is a decoded ClusterLoadAssignment. */
export type EnvoyClusterLoadAssignment = z.infer<typeof ClusterLoadAssignmentSchema>;

const thresholds = z.strictObject({
  priority: z.enum(['DEFAULT', 'HIGH']).optional(),
  max_connections: wrappedU32.optional(),
  max_pending_requests: wrappedU32.optional(),
  max_requests: wrappedU32.optional(),
  max_retries: wrappedU32.optional(),
  retry_budget: z
    .strictObject({ budget_percent: percent.optional(), min_retry_concurrency: wrappedU32.optional() })
    .optional(),
  track_remaining: z.boolean().optional(),
});

/**
 * OutlierDetectionSchema is `config.cluster.v3.OutlierDetection`: consecutive 5xx, gateway-failure and
 * local-origin ejection. Success-rate and failure-percentage ejection are not implemented, so
 * `enforcing_success_rate` must be 0 (Envoy enforces it at 100% by default) and their other fields are refused.
 */
export const OutlierDetectionSchema = z
  .strictObject({
    consecutive_5xx: wrappedU32.optional(),
    consecutive_gateway_failure: wrappedU32.optional(),
    consecutive_local_origin_failure: wrappedU32.optional(),
    interval: DurationSchema.optional(),
    base_ejection_time: DurationSchema.optional(),
    max_ejection_time: DurationSchema.optional(),
    max_ejection_percent: z.strictObject({ value: z.number().int().min(0).max(100).optional() }).optional(),
    enforcing_consecutive_5xx: z.strictObject({ value: z.number().int().min(0).max(100).optional() }).optional(),
    enforcing_consecutive_gateway_failure: z
      .strictObject({ value: z.number().int().min(0).max(100).optional() })
      .optional(),
    enforcing_consecutive_local_origin_failure: z
      .strictObject({ value: z.number().int().min(0).max(100).optional() })
      .optional(),
    enforcing_success_rate: z.strictObject({ value: z.number().int().min(0).max(100).optional() }),
    split_external_local_origin_errors: z.boolean().optional(),
  })
  .refine((o) => (o.enforcing_success_rate.value ?? 0) === 0, {
    message: 'must be 0: success-rate outlier detection is not implemented',
    path: ['enforcing_success_rate'],
  });
/** EnvoyOutlierDetection is a decoded OutlierDetection. */
export type EnvoyOutlierDetection = z.infer<typeof OutlierDetectionSchema>;

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

const httpCodecs = z.strictObject({
  http_protocol_options: z.strictObject({}).optional(),
  http2_protocol_options: Http2ProtocolOptionsSchema.optional(),
});

/**
 * HttpProtocolOptionsSchema is `extensions.upstreams.http.v3.HttpProtocolOptions`: exactly one of
 * `explicit_http_config` (HTTP/1.1 or HTTP/2, exactly one) and `auto_config` (ALPN picks h2 or http/1.1 over
 * TLS; both must be given, as Envoy requires). `use_downstream_protocol_config` is not implemented.
 */
export const HttpProtocolOptionsSchema = z
  .strictObject({
    '@type': z.literal(`type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`),
    common_http_protocol_options: z
      .strictObject({
        idle_timeout: DurationSchema.optional(),
        max_connection_duration: DurationSchema.optional(),
        max_requests_per_connection: wrappedU32.optional(),
      })
      .optional(),
    explicit_http_config: httpCodecs
      .refine(
        (c) => (c.http_protocol_options === undefined) !== (c.http2_protocol_options === undefined),
        'exactly one of http_protocol_options, http2_protocol_options must be set',
      )
      .optional(),
    auto_config: httpCodecs
      .refine(
        (c) => c.http_protocol_options !== undefined && c.http2_protocol_options !== undefined,
        'auto_config needs http_protocol_options and http2_protocol_options',
      )
      .optional(),
  })
  .refine(
    (o) => (o.explicit_http_config === undefined) !== (o.auto_config === undefined),
    'exactly one of explicit_http_config, auto_config must be set',
  );

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/** ClusterSchema is `config.cluster.v3.Cluster` (EDS, STATIC or ORIGINAL_DST discovery). */
export const ClusterSchema = z
  .strictObject({
    '@type': z.string().optional(),
    name: z.string().min(1),
    // ORIGINAL_DST: hosts are the connections' original destinations (capture mode's PassthroughCluster).
    type: z.enum(['STATIC', 'EDS', 'ORIGINAL_DST']),
    eds_cluster_config: z.strictObject({ service_name: z.string().optional(), eds_config: configSource }).optional(),
    load_assignment: ClusterLoadAssignmentSchema.optional(),
    connect_timeout: DurationSchema.optional(),
    lb_policy: z.enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV', 'CLUSTER_PROVIDED']).optional(),
    least_request_lb_config: z
      .strictObject({ choice_count: z.strictObject({ value: z.number().int().min(2).optional() }).optional() })
      .optional(),
    ring_hash_lb_config: z
      .strictObject({
        minimum_ring_size: wrappedU64.optional(),
        maximum_ring_size: wrappedU64.optional(),
        hash_function: z.enum(['XX_HASH']).optional(),
      })
      .optional(),
    maglev_lb_config: z
      .strictObject({
        table_size: wrappedU64
          .refine((t) => t.value === undefined || (Number(t.value) <= 5_000_011 && isPrime(Number(t.value))), {
            message: 'table_size must be a prime ≤ 5000011',
          })
          .optional(),
      })
      .optional(),
    common_lb_config: z
      .strictObject({
        healthy_panic_threshold: percent.optional(),
        locality_weighted_lb_config: z.strictObject({}).optional(),
      })
      .optional(),
    circuit_breakers: z.strictObject({ thresholds: z.array(thresholds).optional() }).optional(),
    outlier_detection: OutlierDetectionSchema.optional(),
    typed_extension_protocol_options: z
      .strictObject({ [HTTP_PROTOCOL_OPTIONS]: HttpProtocolOptionsSchema.optional() })
      .optional(),
    transport_socket: transportSocket(UpstreamTlsContextSchema).optional(),
    metadata: z.unknown().optional(),
    alt_stat_name: z.string().optional(),
  })
  .refine((c) => c.type !== 'EDS' || c.eds_cluster_config !== undefined, {
    message: 'an EDS cluster needs eds_cluster_config',
    path: ['eds_cluster_config'],
  })
  .refine((c) => c.type !== 'STATIC' || c.load_assignment !== undefined, {
    message: 'a STATIC cluster needs load_assignment',
    path: ['load_assignment'],
  })
  // Envoy: an ORIGINAL_DST cluster takes its hosts from the connection, so it needs lb_policy CLUSTER_PROVIDED and
  // has no assignment; the proxy originates no TLS to an arbitrary original destination, so that is refused too.
  .refine((c) => (c.type === 'ORIGINAL_DST') === (c.lb_policy === 'CLUSTER_PROVIDED'), {
    message: 'lb_policy CLUSTER_PROVIDED goes with type ORIGINAL_DST, and ORIGINAL_DST needs it',
    path: ['lb_policy'],
  })
  .refine((c) => c.type !== 'ORIGINAL_DST' || (c.load_assignment === undefined && c.eds_cluster_config === undefined), {
    message: 'an ORIGINAL_DST cluster takes no load_assignment or eds_cluster_config',
    path: ['type'],
  })
  .refine((c) => c.type !== 'ORIGINAL_DST' || c.transport_socket === undefined, {
    message: 'TLS to an ORIGINAL_DST cluster is not implemented',
    path: ['transport_socket'],
  })
  .refine((c) => c.ring_hash_lb_config === undefined || c.lb_policy === 'RING_HASH', {
    message: 'ring_hash_lb_config needs lb_policy RING_HASH',
    path: ['ring_hash_lb_config'],
  })
  .refine((c) => c.maglev_lb_config === undefined || c.lb_policy === 'MAGLEV', {
    message: 'maglev_lb_config needs lb_policy MAGLEV',
    path: ['maglev_lb_config'],
  })
  .refine((c) => c.least_request_lb_config === undefined || c.lb_policy === 'LEAST_REQUEST', {
    message: 'least_request_lb_config needs lb_policy LEAST_REQUEST',
    path: ['least_request_lb_config'],
  });
/** EnvoyCluster is a decoded Cluster. */
export type EnvoyCluster = z.infer<typeof ClusterSchema>;

/** SecretSchema is `extensions.transport_sockets.tls.v3.Secret` holding a validation context (the trust bundle). */
export const SecretSchema = z.strictObject({
  '@type': z.string().optional(),
  name: z.string().min(1),
  validation_context: z.strictObject({
    trusted_ca: z.strictObject({ inline_string: z.string().min(1) }),
  }),
});
/** EnvoySecret is a decoded Secret. */
export type EnvoySecret = z.infer<typeof SecretSchema>;

/** formatIssuePath renders a zod issue path as `virtual_hosts[0].routes[1].match`. */
export function formatIssuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** formatZodError renders every issue of a failed parse as `path: message`, joined by `; `. */
export function formatZodError(err: z.ZodError): string {
  return err.issues.map((i) => `${formatIssuePath(i.path) || '(root)'}: ${i.message}`).join('; ');
}

/**
 * TcpProxySchema is `extensions.filters.network.tcp_proxy.v3.TcpProxy` as the east-west gateway uses it: one
 * `cluster`, `idle_timeout` (0 disables; Envoy's default is 1 h) and `max_connect_attempts` (≥ 1, default 1).
 * Weighted clusters, access logs and tunneling are not implemented, so they are refused.
 */
export const TcpProxySchema = z.strictObject({
  '@type': z.literal('type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy'),
  stat_prefix: z.string().min(1),
  cluster: z.string().min(1),
  idle_timeout: DurationSchema.optional(),
  max_connect_attempts: z.strictObject({ value: z.number().int().min(1).max(10).optional() }).optional(),
});
/** EnvoyTcpProxy is a decoded TcpProxy. */
export type EnvoyTcpProxy = z.infer<typeof TcpProxySchema>;
