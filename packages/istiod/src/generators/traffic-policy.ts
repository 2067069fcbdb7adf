/**
 * Translation of DestinationRule traffic policies into Envoy cluster fields, following Istio's cluster builder
 * (`pilot/pkg/networking/core/cluster_traffic_policy.go`): load balancer, connection pool (circuit breakers),
 * outlier detection, retry budget, and the route hash policy of consistent-hash load balancing.
 */
import { parseDurationMs, type TrafficPolicy } from '@fedmesh/api';
import { durationToProto } from './common.js';
import { effectiveLocalitySetting, localityLbApplies } from './locality.js';

/** MAX_UINT32 is Istio's default for every circuit breaker threshold (Envoy's own defaults are 1024 and 3 retries). */
export const MAX_UINT32 = 0xffffffff;

/** DEFAULT_RING_SIZE is Istio's default `minimumRingSize` for consistent hashing (Envoy's `minimum_ring_size`). */
export const DEFAULT_RING_SIZE = 1024;

/** DEFAULT_MAGLEV_TABLE_SIZE is Envoy's default `maglev_lb_config.table_size` (a prime). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

type Policy = Omit<TrafficPolicy, 'portLevelSettings'>;

const SIMPLE_LB: Record<string, string | undefined> = {
  ROUND_ROBIN: 'ROUND_ROBIN',
  RANDOM: 'RANDOM',
  LEAST_REQUEST: 'LEAST_REQUEST',
  LEAST_CONN: 'LEAST_REQUEST',
  UNSPECIFIED: undefined,
};

/** isPrime reports whether n is prime (Envoy requires a prime Maglev table size). */
export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

/**
 * applyLoadBalancer sets `lb_policy` from `loadBalancer.simple` (LEAST_CONN is LEAST_REQUEST) or
 * `consistentHash` (`RING_HASH` with `ring_hash_lb_config.minimum_ring_size`, default 1024, or `MAGLEV` with
 * `maglev_lb_config.table_size`), and `common_lb_config.locality_weighted_lb_config` when locality load
 * balancing applies (see `locality.ts`). Unsupported settings are reported in `warnings`.
 */
export function applyLoadBalancer(
  cluster: Record<string, unknown>,
  policy: Policy,
  name: string,
  warnings: string[],
  explicitFailover = false,
): void {
  const lb = policy.loadBalancer;
  if (lb?.simple === 'PASSTHROUGH')
    warnings.push(`${name}: loadBalancer PASSTHROUGH (original destination) is not supported; using ROUND_ROBIN`);
  const simple = lb?.simple ? SIMPLE_LB[lb.simple] : undefined;
  if (simple) cluster.lb_policy = simple;
  const ch = lb?.consistentHash;
  if (ch) {
    if (ch.maglev) {
      let size = ch.maglev.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE;
      if (!isPrime(size)) {
        warnings.push(
          `${name}: consistentHash.maglev.tableSize ${size} is not prime; using ${DEFAULT_MAGLEV_TABLE_SIZE}`,
        );
        size = DEFAULT_MAGLEV_TABLE_SIZE;
      }
      cluster.lb_policy = 'MAGLEV';
      cluster.maglev_lb_config = { table_size: { value: size } };
    } else {
      cluster.lb_policy = 'RING_HASH';
      const min = ch.ringHash?.minimumRingSize ?? ch.minimumRingSize ?? DEFAULT_RING_SIZE;
      cluster.ring_hash_lb_config = { minimum_ring_size: { value: min } };
    }
    if (ch.httpCookie?.attributes)
      warnings.push(`${name}: consistentHash.httpCookie.attributes are not supported; ignored`);
  }
  if (lb?.warmup || lb?.warmupDurationSecs)
    warnings.push(`${name}: loadBalancer warmup (slow start) is not supported; ignored`);
  const locality = localityLbApplies(
    effectiveLocalitySetting(lb?.localityLbSetting),
    policy.outlierDetection,
    explicitFailover,
  );
  if (locality) commonLbConfig(cluster).locality_weighted_lb_config = {};
}

function commonLbConfig(cluster: Record<string, unknown>): Record<string, unknown> {
  let c = cluster.common_lb_config as Record<string, unknown> | undefined;
  if (!c) {
    c = {};
    cluster.common_lb_config = c;
  }
  return c;
}

/**
 * circuitBreakers builds Envoy `circuit_breakers.thresholds[0]` (priority DEFAULT) as Istio does: every limit
 * defaults to MaxUint32 with `track_remaining`, then `tcp.maxConnections` → `max_connections`,
 * `http.http1MaxPendingRequests` → `max_pending_requests`, `http.http2MaxRequests` → `max_requests`,
 * `http.maxRetries` → `max_retries`, and `retryBudget {percent, minRetryConcurrency}` → `retry_budget
 * {budget_percent, min_retry_concurrency}` (which replaces `max_retries` in Envoy).
 */
export function circuitBreakers(policy: Policy): object {
  const tcp = policy.connectionPool?.tcp;
  const http = policy.connectionPool?.http;
  const t: Record<string, unknown> = {
    max_connections: { value: tcp?.maxConnections || MAX_UINT32 },
    max_pending_requests: { value: http?.http1MaxPendingRequests || MAX_UINT32 },
    max_requests: { value: http?.http2MaxRequests || MAX_UINT32 },
    max_retries: { value: http?.maxRetries || MAX_UINT32 },
    track_remaining: true,
  };
  const rb = policy.retryBudget;
  if (rb) {
    const budget: Record<string, unknown> = {};
    if (rb.percent !== undefined) budget.budget_percent = { value: rb.percent };
    if (rb.minRetryConcurrency !== undefined) budget.min_retry_concurrency = { value: rb.minRetryConcurrency };
    t.retry_budget = budget;
  }
  return { thresholds: [t] };
}

/**
 * httpProtocolOptions returns the cluster's `typed_extension_protocol_options` for
 * `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` when the connection pool needs one:
 * `http.maxRequestsPerConnection` → `common_http_protocol_options.max_requests_per_connection`,
 * `http.idleTimeout` → `idle_timeout`, `tcp.maxConnectionDuration` → `max_connection_duration`; HTTP/1.1
 * upstream (`explicit_http_config`). Undefined when none is set.
 */
export function httpProtocolOptions(policy: Policy, name: string, warnings: string[]): object | undefined {
  const tcp = policy.connectionPool?.tcp;
  const http = policy.connectionPool?.http;
  if (tcp?.tcpKeepalive) warnings.push(`${name}: connectionPool.tcp.tcpKeepalive is not supported; ignored`);
  // h2UpgradePolicy and maxConcurrentStreams are applied by upstream-protocol.ts.
  if (http?.useClientProtocol)
    warnings.push(`${name}: connectionPool.http.useClientProtocol is not supported; ignored`);
  const common: Record<string, unknown> = {};
  if (http?.maxRequestsPerConnection) common.max_requests_per_connection = { value: http.maxRequestsPerConnection };
  if (http?.idleTimeout) common.idle_timeout = durationToProto(parseDurationMs(http.idleTimeout));
  if (tcp?.maxConnectionDuration)
    common.max_connection_duration = durationToProto(parseDurationMs(tcp.maxConnectionDuration));
  if (Object.keys(common).length === 0) return undefined;
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      common_http_protocol_options: common,
      explicit_http_config: { http_protocol_options: {} },
    },
  };
}

/**
 * applyOutlierDetection sets Envoy `outlier_detection` as Istio translates `outlierDetection`: success-rate
 * ejection off (`enforcing_success_rate: 0`); the deprecated `consecutiveErrors` counts gateway errors only;
 * `consecutive5xxErrors` and `consecutiveGatewayErrors` set their thresholds with enforcement 100% (0% when the
 * threshold is 0); `interval`, `baseEjectionTime`, `maxEjectionPercent`; `splitExternalLocalOriginErrors` and
 * `consecutiveLocalOriginFailures`; and `minHealthPercent` (default 0) becomes
 * `common_lb_config.healthy_panic_threshold`.
 */
export function applyOutlierDetection(cluster: Record<string, unknown>, policy: Policy): void {
  const o = policy.outlierDetection;
  if (!o) return;
  const out: Record<string, unknown> = { enforcing_success_rate: { value: 0 } };
  if (o.consecutiveErrors !== undefined && o.consecutiveErrors > 0) {
    out.consecutive_gateway_failure = { value: o.consecutiveErrors };
    out.enforcing_consecutive_gateway_failure = { value: 100 };
    out.enforcing_consecutive_5xx = { value: 0 };
  }
  if (o.consecutive5xxErrors !== undefined) {
    out.consecutive_5xx = { value: o.consecutive5xxErrors };
    out.enforcing_consecutive_5xx = { value: o.consecutive5xxErrors > 0 ? 100 : 0 };
  }
  if (o.consecutiveGatewayErrors !== undefined) {
    out.consecutive_gateway_failure = { value: o.consecutiveGatewayErrors };
    out.enforcing_consecutive_gateway_failure = { value: o.consecutiveGatewayErrors > 0 ? 100 : 0 };
  }
  if (o.interval) out.interval = durationToProto(parseDurationMs(o.interval));
  if (o.baseEjectionTime) out.base_ejection_time = durationToProto(parseDurationMs(o.baseEjectionTime));
  if (o.maxEjectionPercent !== undefined) out.max_ejection_percent = { value: o.maxEjectionPercent };
  if (o.splitExternalLocalOriginErrors) {
    out.split_external_local_origin_errors = true;
    if (o.consecutiveLocalOriginFailures !== undefined) {
      out.consecutive_local_origin_failure = { value: o.consecutiveLocalOriginFailures };
      out.enforcing_consecutive_local_origin_failure = { value: o.consecutiveLocalOriginFailures > 0 ? 100 : 0 };
    }
  }
  cluster.outlier_detection = out;
  commonLbConfig(cluster).healthy_panic_threshold = { value: o.minHealthPercent ?? 0 };
}

/**
 * hashPolicy translates `loadBalancer.consistentHash` into the route's Envoy `hash_policy`: `httpHeaderName` →
 * `header`, `httpCookie` → `cookie {name, path, ttl}`, `useSourceIp` → `connection_properties.source_ip`,
 * `httpQueryParameterName` → `query_parameter`. Undefined when the policy hashes nothing.
 */
export function hashPolicy(policy: Policy | undefined): object[] | undefined {
  const ch = policy?.loadBalancer?.consistentHash;
  if (!ch) return undefined;
  if (ch.httpHeaderName !== undefined) return [{ header: { header_name: ch.httpHeaderName.toLowerCase() } }];
  if (ch.httpCookie) {
    const c: Record<string, unknown> = { name: ch.httpCookie.name };
    if (ch.httpCookie.path !== undefined) c.path = ch.httpCookie.path;
    if (ch.httpCookie.ttl !== undefined) c.ttl = durationToProto(parseDurationMs(ch.httpCookie.ttl));
    return [{ cookie: c }];
  }
  if (ch.useSourceIp) return [{ connection_properties: { source_ip: true } }];
  if (ch.httpQueryParameterName !== undefined) return [{ query_parameter: { name: ch.httpQueryParameterName } }];
  return undefined;
}
