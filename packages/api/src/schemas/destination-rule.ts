/**
 * DestinationRule (networking.istio.io), following
 * https://istio.io/latest/docs/reference/config/networking/destination-rule/. Every message is strict.
 */
import { z } from 'zod';
import {
  BooleanSchema,
  checkOneOf,
  Dns1123LabelSchema,
  DurationSchema,
  ExportToSchema,
  HostSchema,
  integer,
  NonNegativeInt32Schema,
  PercentValueSchema,
  PortNumberSchema,
  PortSelectorSchema,
  requiredString,
  StringMapSchema,
  UInt32Schema,
  WorkloadSelectorSchema,
  whenValid,
} from './common.js';

/**
 * LB_POLICIES lists the values of Istio's `LoadBalancerSettings.simple`: UNSPECIFIED, LEAST_CONN (deprecated
 * alias of LEAST_REQUEST), RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST.
 */
export const LB_POLICIES = [
  'UNSPECIFIED',
  'LEAST_CONN',
  'RANDOM',
  'PASSTHROUGH',
  'ROUND_ROBIN',
  'LEAST_REQUEST',
] as const;

/**
 * ConsistentHashLBSchema is Istio's `ConsistentHashLB`: at most one hash key (`httpHeaderName`,
 * `httpCookie {name, path, ttl, attributes}`, `useSourceIp`, `httpQueryParameterName`) and at most one
 * algorithm (`ringHash {minimumRingSize}` or `maglev {tableSize}`); `minimumRingSize` is the deprecated
 * form of `ringHash.minimumRingSize`.
 */
export const ConsistentHashLBSchema = z
  .strictObject({
    httpHeaderName: requiredString().optional(),
    httpCookie: z
      .strictObject({
        name: requiredString(),
        path: requiredString().optional(),
        ttl: DurationSchema.optional(),
        attributes: z.array(z.strictObject({ name: requiredString(), value: requiredString().optional() })).optional(),
      })
      .optional(),
    useSourceIp: BooleanSchema.optional(),
    httpQueryParameterName: requiredString().optional(),
    ringHash: z.strictObject({ minimumRingSize: integer(0, Number.MAX_SAFE_INTEGER).optional() }).optional(),
    maglev: z.strictObject({ tableSize: integer(0, Number.MAX_SAFE_INTEGER).optional() }).optional(),
    minimumRingSize: integer(0, Number.MAX_SAFE_INTEGER).optional(),
  })
  .superRefine((c, ctx) => {
    checkOneOf(c, ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'], ctx);
    checkOneOf(c, ['ringHash', 'maglev'], ctx);
  }, whenValid);

/**
 * LocalityLoadBalancerSettingSchema is Istio's `LocalityLoadBalancerSetting`: `distribute[] {from, to}`
 * (weights per target locality, each list summing to 100), `failover[] {from, to}` (regions, `from` ≠
 * `to`), `failoverPriority` (ordered label keys) and `enabled`. `distribute` and `failover` exclude each other.
 */
export const LocalityLoadBalancerSettingSchema = z
  .strictObject({
    distribute: z
      .array(
        z.strictObject({ from: requiredString(), to: z.record(z.string(), integer(0, 100)) }).superRefine((d, ctx) => {
          const total = Object.values(d.to).reduce((a, b) => a + b, 0);
          if (total !== 100)
            ctx.addIssue({ code: 'custom', path: ['to'], message: `weights must sum to 100, got ${total}` });
        }, whenValid),
      )
      .optional(),
    failover: z
      .array(
        z.strictObject({ from: requiredString(), to: requiredString() }).superRefine((f, ctx) => {
          if (f.from === f.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'must differ from from' });
        }, whenValid),
      )
      .optional(),
    failoverPriority: z.array(requiredString()).optional(),
    enabled: BooleanSchema.optional(),
  })
  .superRefine((l, ctx) => {
    if (l.distribute !== undefined && l.distribute.length > 0 && l.failover !== undefined && l.failover.length > 0) {
      ctx.addIssue({ code: 'custom', message: 'distribute and failover cannot both be set' });
    }
  }, whenValid);

/** LocalityLoadBalancerSetting is a parsed Istio `LocalityLoadBalancerSetting`. */
export type LocalityLoadBalancerSetting = z.infer<typeof LocalityLoadBalancerSettingSchema>;

/**
 * LoadBalancerSettingsSchema is Istio's `LoadBalancerSettings`: one of `simple` ({@link LB_POLICIES}) or
 * `consistentHash`, plus `localityLbSetting` and slow start as `warmupDurationSecs` (duration) or
 * `warmup {duration, minimumPercent, aggression}`, not both.
 */
export const LoadBalancerSettingsSchema = z
  .strictObject({
    simple: z.enum(LB_POLICIES).optional(),
    consistentHash: ConsistentHashLBSchema.optional(),
    localityLbSetting: LocalityLoadBalancerSettingSchema.optional(),
    warmupDurationSecs: DurationSchema.optional(),
    warmup: z
      .strictObject({
        duration: DurationSchema,
        minimumPercent: PercentValueSchema.optional(),
        aggression: z.number().min(1).optional(),
      })
      .optional(),
  })
  .superRefine((lb, ctx) => {
    checkOneOf(lb, ['simple', 'consistentHash'], ctx);
    checkOneOf(lb, ['warmupDurationSecs', 'warmup'], ctx);
  }, whenValid);

/** LoadBalancerSettings is a parsed Istio `LoadBalancerSettings`. */
export type LoadBalancerSettings = z.infer<typeof LoadBalancerSettingsSchema>;

/**
 * ConnectionPoolSettingsSchema is Istio's `ConnectionPoolSettings`: `tcp {maxConnections, connectTimeout,
 * tcpKeepalive {probes, time, interval}, maxConnectionDuration, idleTimeout}` and `http
 * {http1MaxPendingRequests, http2MaxRequests, maxRequestsPerConnection, maxRetries, idleTimeout,
 * h2UpgradePolicy, useClientProtocol, maxConcurrentStreams}`. Counts are non-negative integers.
 */
export const ConnectionPoolSettingsSchema = z.strictObject({
  tcp: z
    .strictObject({
      maxConnections: NonNegativeInt32Schema.optional(),
      connectTimeout: DurationSchema.optional(),
      tcpKeepalive: z
        .strictObject({
          probes: UInt32Schema.optional(),
          time: DurationSchema.optional(),
          interval: DurationSchema.optional(),
        })
        .optional(),
      maxConnectionDuration: DurationSchema.optional(),
      idleTimeout: DurationSchema.optional(),
    })
    .optional(),
  http: z
    .strictObject({
      http1MaxPendingRequests: NonNegativeInt32Schema.optional(),
      http2MaxRequests: NonNegativeInt32Schema.optional(),
      maxRequestsPerConnection: NonNegativeInt32Schema.optional(),
      maxRetries: NonNegativeInt32Schema.optional(),
      idleTimeout: DurationSchema.optional(),
      h2UpgradePolicy: z.enum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']).optional(),
      useClientProtocol: BooleanSchema.optional(),
      maxConcurrentStreams: NonNegativeInt32Schema.optional(),
    })
    .optional(),
});

/** ConnectionPoolSettings is a parsed Istio `ConnectionPoolSettings`. */
export type ConnectionPoolSettings = z.infer<typeof ConnectionPoolSettingsSchema>;

/**
 * OutlierDetectionSchema is Istio's `OutlierDetection`: `consecutive5xxErrors`, `consecutiveGatewayErrors`,
 * `consecutiveLocalOriginFailures` (only with `splitExternalLocalOriginErrors: true`), `interval`,
 * `baseEjectionTime` (durations), `maxEjectionPercent` and `minHealthPercent` (0..100), and the
 * deprecated `consecutiveErrors`.
 */
export const OutlierDetectionSchema = z
  .strictObject({
    consecutiveErrors: NonNegativeInt32Schema.optional(),
    splitExternalLocalOriginErrors: BooleanSchema.optional(),
    consecutiveLocalOriginFailures: UInt32Schema.optional(),
    consecutiveGatewayErrors: UInt32Schema.optional(),
    consecutive5xxErrors: UInt32Schema.optional(),
    interval: DurationSchema.optional(),
    baseEjectionTime: DurationSchema.optional(),
    maxEjectionPercent: integer(0, 100).optional(),
    minHealthPercent: integer(0, 100).optional(),
  })
  .superRefine((o, ctx) => {
    if (o.consecutiveLocalOriginFailures !== undefined && o.splitExternalLocalOriginErrors !== true) {
      ctx.addIssue({
        code: 'custom',
        path: ['consecutiveLocalOriginFailures'],
        message: 'requires splitExternalLocalOriginErrors: true',
      });
    }
  }, whenValid);

/** OutlierDetection is a parsed Istio `OutlierDetection`. */
export type OutlierDetection = z.infer<typeof OutlierDetectionSchema>;

/**
 * ClientTLSSettingsSchema is Istio's `ClientTLSSettings` for upstream connections: `mode` (DISABLE, SIMPLE,
 * MUTUAL, ISTIO_MUTUAL), `clientCertificate`, `privateKey`, `caCertificates`, `caCrl`, `credentialName`,
 * `subjectAltNames`, `sni`, `insecureSkipVerify`. MUTUAL needs `clientCertificate` and `privateKey` unless
 * `credentialName` is set; ISTIO_MUTUAL takes no certificate files (the mesh provides them).
 */
export const ClientTLSSettingsSchema = z
  .strictObject({
    mode: z.enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']).optional(),
    clientCertificate: requiredString().optional(),
    privateKey: requiredString().optional(),
    caCertificates: requiredString().optional(),
    caCrl: requiredString().optional(),
    credentialName: requiredString().optional(),
    subjectAltNames: z.array(requiredString()).optional(),
    sni: requiredString().optional(),
    insecureSkipVerify: BooleanSchema.optional(),
  })
  .superRefine((t, ctx) => {
    if (t.mode === 'MUTUAL' && t.credentialName === undefined) {
      for (const key of ['clientCertificate', 'privateKey'] as const) {
        if (t[key] === undefined)
          ctx.addIssue({ code: 'custom', path: [key], message: 'required when mode is MUTUAL' });
      }
    }
    if (t.mode === 'ISTIO_MUTUAL') {
      for (const key of ['clientCertificate', 'privateKey', 'caCertificates', 'credentialName'] as const) {
        if (t[key] !== undefined)
          ctx.addIssue({ code: 'custom', path: [key], message: 'must not be set when mode is ISTIO_MUTUAL' });
      }
    }
  }, whenValid);

/** ClientTLSSettings is a parsed Istio `ClientTLSSettings`. */
export type ClientTLSSettings = z.infer<typeof ClientTLSSettingsSchema>;

const PolicyFields = {
  loadBalancer: LoadBalancerSettingsSchema.optional(),
  connectionPool: ConnectionPoolSettingsSchema.optional(),
  outlierDetection: OutlierDetectionSchema.optional(),
  tls: ClientTLSSettingsSchema.optional(),
};

/** PortTrafficPolicySchema is Istio's `PortTrafficPolicy`: the four policies of a traffic policy, for one `port.number`. */
export const PortTrafficPolicySchema = z.strictObject({ port: PortSelectorSchema.optional(), ...PolicyFields });

/**
 * TrafficPolicySchema is Istio's `TrafficPolicy`: `loadBalancer`, `connectionPool`, `outlierDetection`,
 * `tls`, `portLevelSettings` (per-port overrides), `tunnel {protocol CONNECT|POST, targetHost, targetPort}`,
 * `proxyProtocol {version V1|V2}` and `retryBudget {percent 0..100, minRetryConcurrency}`.
 */
export const TrafficPolicySchema = z.strictObject({
  ...PolicyFields,
  portLevelSettings: z.array(PortTrafficPolicySchema).optional(),
  tunnel: z
    .strictObject({
      protocol: z.enum(['CONNECT', 'POST']).optional(),
      targetHost: requiredString(),
      targetPort: PortNumberSchema,
    })
    .optional(),
  proxyProtocol: z.strictObject({ version: z.enum(['V1', 'V2']).optional() }).optional(),
  retryBudget: z
    .strictObject({ percent: PercentValueSchema.optional(), minRetryConcurrency: UInt32Schema.optional() })
    .optional(),
});

/** TrafficPolicy is a parsed Istio `TrafficPolicy`. */
export type TrafficPolicy = z.infer<typeof TrafficPolicySchema>;

/** SubsetSchema is Istio's `Subset`: a `name` (DNS-1123 label), the endpoint `labels` it selects, and its own `trafficPolicy`. */
export const SubsetSchema = z.strictObject({
  name: Dns1123LabelSchema,
  labels: StringMapSchema.optional(),
  trafficPolicy: TrafficPolicySchema.optional(),
});

/** Subset is a parsed Istio `Subset`. */
export type Subset = z.infer<typeof SubsetSchema>;

/**
 * DestinationRuleSpecSchema is the `spec` of a DestinationRule: `host` (required), `trafficPolicy`,
 * `subsets` (names unique), `exportTo` and `workloadSelector`.
 */
export const DestinationRuleSpecSchema = z
  .strictObject({
    host: HostSchema,
    trafficPolicy: TrafficPolicySchema.optional(),
    subsets: z.array(SubsetSchema).optional(),
    exportTo: ExportToSchema.optional(),
    workloadSelector: WorkloadSelectorSchema.optional(),
  })
  .superRefine((dr, ctx) => {
    const seen = new Set<string>();
    dr.subsets?.forEach((s, i) => {
      if (seen.has(s.name))
        ctx.addIssue({
          code: 'custom',
          path: ['subsets', i, 'name'],
          message: `duplicate subset name ${JSON.stringify(s.name)}`,
        });
      seen.add(s.name);
    });
  }, whenValid);

/** DestinationRuleSpec is a parsed DestinationRule `spec`. */
export type DestinationRuleSpec = z.infer<typeof DestinationRuleSpecSchema>;
