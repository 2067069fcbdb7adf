/**
 * VirtualService (networking.istio.io), following
 * https://istio.io/latest/docs/reference/config/networking/virtual-service/. Every message is strict: an
 * unknown field is a validation error, as with the API server's strict field validation.
 */
import { z } from 'zod';
import {
  BooleanSchema,
  checkOneOf,
  DurationSchema,
  ExportToSchema,
  HeaderMatchSchema,
  HostSchema,
  integer,
  NonNegativeInt32Schema,
  PercentSchema,
  PortNumberSchema,
  PortSelectorSchema,
  RegexSchema,
  requiredString,
  StringMapSchema,
  StringMatchSchema,
  whenValid,
} from './common.js';

/** WeightSchema is a route destination weight: an integer in 0..100, relative to the other destinations' weights. */
export const WeightSchema = integer(0, 100);

/**
 * HeaderOperationsSchema is Istio's `HeaderOperations`: `set` (overwrite), `add` (append) and `remove`
 * (header names) (https://istio.io/latest/docs/reference/config/networking/virtual-service/#Headers-HeaderOperations).
 */
export const HeaderOperationsSchema = z.strictObject({
  set: StringMapSchema.optional(),
  add: StringMapSchema.optional(),
  remove: z.array(requiredString()).optional(),
});

/** HeadersSchema is Istio's `Headers`: header operations on the `request` and on the `response`. */
export const HeadersSchema = z.strictObject({
  request: HeaderOperationsSchema.optional(),
  response: HeaderOperationsSchema.optional(),
});

/** Headers is a parsed Istio `Headers` (request/response header operations). */
export type Headers = z.infer<typeof HeadersSchema>;

/**
 * DestinationSchema is Istio's `Destination`: `host` (required; a registry host name, short names being
 * relative to the rule's namespace), `subset` (a DestinationRule subset name) and `port.number`.
 */
export const DestinationSchema = z.strictObject({
  host: HostSchema,
  subset: requiredString().optional(),
  port: PortSelectorSchema.optional(),
});

/** Destination is a parsed Istio `Destination`. */
export type Destination = z.infer<typeof DestinationSchema>;

/**
 * HTTPMatchRequestSchema is Istio's `HTTPMatchRequest`: all set conditions must hold. `uri`, `scheme`,
 * `method` and `authority` take a {@link StringMatchSchema}; `headers`, `queryParams` and `withoutHeaders`
 * map names to a header match (`{}` = present).
 */
export const HTTPMatchRequestSchema = z.strictObject({
  name: requiredString().optional(),
  uri: StringMatchSchema.optional(),
  scheme: StringMatchSchema.optional(),
  method: StringMatchSchema.optional(),
  authority: StringMatchSchema.optional(),
  headers: z.record(z.string(), HeaderMatchSchema).optional(),
  port: PortNumberSchema.optional(),
  sourceLabels: StringMapSchema.optional(),
  gateways: z.array(requiredString()).optional(),
  queryParams: z.record(z.string(), HeaderMatchSchema).optional(),
  ignoreUriCase: BooleanSchema.optional(),
  withoutHeaders: z.record(z.string(), HeaderMatchSchema).optional(),
  sourceNamespace: requiredString().optional(),
  statPrefix: requiredString().optional(),
});

/** HTTPMatchRequest is a parsed Istio `HTTPMatchRequest`. */
export type HTTPMatchRequest = z.infer<typeof HTTPMatchRequestSchema>;

/**
 * HTTPRouteDestinationSchema is Istio's `HTTPRouteDestination`: a `destination`, its `weight` (0..100,
 * relative; may be omitted when it is the only destination) and per-destination `headers`.
 */
export const HTTPRouteDestinationSchema = z.strictObject({
  destination: DestinationSchema,
  weight: WeightSchema.optional(),
  headers: HeadersSchema.optional(),
});

/** HTTPRouteDestination is a parsed Istio `HTTPRouteDestination`. */
export type HTTPRouteDestination = z.infer<typeof HTTPRouteDestinationSchema>;

/**
 * HTTPRedirectSchema is Istio's `HTTPRedirect`: replacement `uri`, `authority`, `scheme`, and either `port`
 * or `derivePort`; `redirectCode` is a 3xx status (default 301).
 */
export const HTTPRedirectSchema = z
  .strictObject({
    uri: requiredString().optional(),
    authority: requiredString().optional(),
    port: PortNumberSchema.optional(),
    derivePort: z.enum(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']).optional(),
    scheme: requiredString().optional(),
    redirectCode: integer(300, 399).optional(),
  })
  .superRefine((r, ctx) => checkOneOf(r, ['port', 'derivePort'], ctx), whenValid);

/**
 * HTTPDirectResponseSchema is Istio's `HTTPDirectResponse`: `status` (200..599, required) and an optional
 * `body` of either `string` or base64 `bytes`.
 */
export const HTTPDirectResponseSchema = z.strictObject({
  status: integer(200, 599),
  body: z
    .strictObject({ string: z.string().optional(), bytes: requiredString().optional() })
    .superRefine((b, ctx) => checkOneOf(b, ['string', 'bytes'], ctx), whenValid)
    .optional(),
});

/** DelegateSchema is Istio's `Delegate`: the `name` and `namespace` of the VirtualService routing is delegated to. */
export const DelegateSchema = z.strictObject({
  name: requiredString(),
  namespace: requiredString().optional(),
});

/**
 * HTTPRewriteSchema is Istio's `HTTPRewrite`: replace the `uri` prefix (or the whole path via
 * `uriRegexRewrite {match, rewrite}`, not both) and/or the `authority` before forwarding.
 */
export const HTTPRewriteSchema = z
  .strictObject({
    uri: z.string().optional(),
    authority: requiredString().optional(),
    uriRegexRewrite: z.strictObject({ match: RegexSchema, rewrite: z.string() }).optional(),
  })
  .superRefine((r, ctx) => checkOneOf(r, ['uri', 'uriRegexRewrite'], ctx), whenValid);

const RETRY_ON = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

/**
 * HTTPRetrySchema is Istio's `HTTPRetry`: `attempts` (≥ 0), `perTryTimeout` and `backoff` (durations),
 * `retryOn` (comma-separated Envoy retry policies such as `5xx,connect-failure` or HTTP status codes),
 * `retryRemoteLocalities` and `retryIgnorePreviousHosts`.
 */
export const HTTPRetrySchema = z.strictObject({
  attempts: NonNegativeInt32Schema.optional(),
  perTryTimeout: DurationSchema.optional(),
  retryOn: requiredString()
    .superRefine((s, ctx) => {
      const bad = s.split(',').filter((p) => !RETRY_ON.has(p.trim()) && !/^[1-5]\d\d$/.test(p.trim()));
      if (bad.length > 0)
        ctx.addIssue({
          code: 'custom',
          message: `unknown retry policy ${bad.map((b) => JSON.stringify(b)).join(', ')}`,
        });
    }, whenValid)
    .optional(),
  retryRemoteLocalities: BooleanSchema.optional(),
  retryIgnorePreviousHosts: BooleanSchema.optional(),
  backoff: DurationSchema.optional(),
});

/**
 * HTTPFaultInjectionSchema is Istio's `HTTPFaultInjection`: `delay` (`fixedDelay` duration for a
 * `percentage` of requests) and/or `abort` (one of `httpStatus` 200..599, `grpcStatus`, `http2Error`, for a
 * `percentage` of requests). Percentages are 0..100; the deprecated integer `percent` is still accepted.
 */
export const HTTPFaultInjectionSchema = z.strictObject({
  delay: z
    .strictObject({
      fixedDelay: DurationSchema.optional(),
      exponentialDelay: DurationSchema.optional(),
      percentage: PercentSchema.optional(),
      percent: integer(0, 100).optional(),
    })
    .superRefine((d, ctx) => checkOneOf(d, ['fixedDelay', 'exponentialDelay'], ctx, true), whenValid)
    .optional(),
  abort: z
    .strictObject({
      httpStatus: integer(200, 599).optional(),
      grpcStatus: requiredString().optional(),
      http2Error: requiredString().optional(),
      percentage: PercentSchema.optional(),
    })
    .superRefine((a, ctx) => checkOneOf(a, ['httpStatus', 'grpcStatus', 'http2Error'], ctx, true), whenValid)
    .optional(),
});

/** HTTPFaultInjection is a parsed Istio `HTTPFaultInjection`. */
export type HTTPFaultInjection = z.infer<typeof HTTPFaultInjectionSchema>;

/** HTTPMirrorPolicySchema is Istio's `HTTPMirrorPolicy`: a `destination` and the `percentage` (0..100) of traffic mirrored to it. */
export const HTTPMirrorPolicySchema = z.strictObject({
  destination: DestinationSchema,
  percentage: PercentSchema.optional(),
});

/**
 * CorsPolicySchema is Istio's `CorsPolicy`: `allowOrigins` (StringMatch list; `allowOrigin` is the
 * deprecated string form), `allowMethods`, `allowHeaders`, `exposeHeaders`, `maxAge` (duration),
 * `allowCredentials` and `unmatchedPreflights` (UNSPECIFIED, FORWARD or IGNORE).
 */
export const CorsPolicySchema = z.strictObject({
  allowOrigin: z.array(requiredString()).optional(),
  allowOrigins: z.array(StringMatchSchema).optional(),
  allowMethods: z.array(requiredString()).optional(),
  allowHeaders: z.array(requiredString()).optional(),
  exposeHeaders: z.array(requiredString()).optional(),
  maxAge: DurationSchema.optional(),
  allowCredentials: BooleanSchema.optional(),
  unmatchedPreflights: z.enum(['UNSPECIFIED', 'FORWARD', 'IGNORE']).optional(),
});

/**
 * checkWeights adds an issue at `route` when a rule has more than one destination and their weights are all
 * 0 or omitted (Istio: "total destination weight = 0"), since no destination could receive traffic.
 */
function checkWeights(route: readonly { weight?: number | undefined }[] | undefined, ctx: z.core.$RefinementCtx): void {
  if (route === undefined || route.length < 2) return;
  const total = route.reduce((sum, r) => sum + (r.weight ?? 0), 0);
  if (total === 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['route'],
      message: 'weights must not all be 0 or omitted when there is more than one destination',
    });
  }
}

/**
 * HTTPRouteSchema is Istio's `HTTPRoute`. Besides field checks it enforces Istio's cross-field rules: one of
 * `route`, `redirect`, `directResponse` or `delegate` is set; `route` excludes `redirect` and
 * `directResponse`; `delegate` excludes all three; `rewrite` excludes `redirect`; `mirror` excludes
 * `mirrors`; with several destinations their weights must not all be 0/omitted.
 */
export const HTTPRouteSchema = z
  .strictObject({
    name: requiredString().optional(),
    match: z.array(HTTPMatchRequestSchema).optional(),
    route: z.array(HTTPRouteDestinationSchema).optional(),
    redirect: HTTPRedirectSchema.optional(),
    directResponse: HTTPDirectResponseSchema.optional(),
    delegate: DelegateSchema.optional(),
    rewrite: HTTPRewriteSchema.optional(),
    timeout: DurationSchema.optional(),
    retries: HTTPRetrySchema.optional(),
    fault: HTTPFaultInjectionSchema.optional(),
    mirror: DestinationSchema.optional(),
    mirrors: z.array(HTTPMirrorPolicySchema).optional(),
    mirrorPercentage: PercentSchema.optional(),
    mirrorPercent: integer(0, 100).optional(),
    corsPolicy: CorsPolicySchema.optional(),
    headers: HeadersSchema.optional(),
  })
  .superRefine((r, ctx) => {
    const hasRoute = r.route !== undefined && r.route.length > 0;
    const problems: string[] = [];
    if (!hasRoute && !r.redirect && !r.directResponse && !r.delegate) {
      problems.push('one of route, redirect, directResponse or delegate must be set');
    }
    if (hasRoute && r.redirect) problems.push('route and redirect cannot both be set');
    if (hasRoute && r.directResponse) problems.push('route and directResponse cannot both be set');
    if (r.delegate && (hasRoute || r.redirect || r.directResponse)) {
      problems.push('delegate cannot be combined with route, redirect or directResponse');
    }
    if (r.rewrite && r.redirect) problems.push('rewrite and redirect cannot both be set');
    if (r.mirror && r.mirrors !== undefined && r.mirrors.length > 0)
      problems.push('mirror and mirrors cannot both be set');
    for (const message of problems) ctx.addIssue({ code: 'custom', message });
    checkWeights(r.route, ctx);
  }, whenValid);

/** HTTPRoute is a parsed Istio `HTTPRoute`. */
export type HTTPRoute = z.infer<typeof HTTPRouteSchema>;

/** RouteDestinationSchema is Istio's L4 `RouteDestination` (TLS and TCP routes): a `destination` and its `weight` (0..100). */
export const RouteDestinationSchema = z.strictObject({
  destination: DestinationSchema,
  weight: WeightSchema.optional(),
});

/** RouteDestination is a parsed Istio `RouteDestination`. */
export type RouteDestination = z.infer<typeof RouteDestinationSchema>;

/**
 * TLSMatchAttributesSchema is Istio's `TLSMatchAttributes`: `sniHosts` (required, non-empty),
 * `destinationSubnets`, `port`, `sourceLabels`, `gateways`, `sourceNamespace`.
 */
export const TLSMatchAttributesSchema = z.strictObject({
  sniHosts: z.array(requiredString()).min(1),
  destinationSubnets: z.array(requiredString()).optional(),
  port: PortNumberSchema.optional(),
  sourceLabels: StringMapSchema.optional(),
  gateways: z.array(requiredString()).optional(),
  sourceNamespace: requiredString().optional(),
});

/** TLSRouteSchema is Istio's `TLSRoute` for non-terminated TLS: `match` (at least one) and `route` destinations. */
export const TLSRouteSchema = z
  .strictObject({
    match: z.array(TLSMatchAttributesSchema).min(1),
    route: z.array(RouteDestinationSchema).optional(),
  })
  .superRefine((r, ctx) => checkWeights(r.route, ctx), whenValid);

/** TLSRoute is a parsed Istio `TLSRoute`. */
export type TLSRoute = z.infer<typeof TLSRouteSchema>;

/**
 * L4MatchAttributesSchema is Istio's `L4MatchAttributes`: `destinationSubnets`, `port`, `sourceSubnet`,
 * `sourceLabels`, `gateways`, `sourceNamespace`.
 */
export const L4MatchAttributesSchema = z.strictObject({
  destinationSubnets: z.array(requiredString()).optional(),
  port: PortNumberSchema.optional(),
  sourceSubnet: requiredString().optional(),
  sourceLabels: StringMapSchema.optional(),
  gateways: z.array(requiredString()).optional(),
  sourceNamespace: requiredString().optional(),
});

/** TCPRouteSchema is Istio's `TCPRoute` for opaque TCP: `match` conditions and `route` destinations. */
export const TCPRouteSchema = z
  .strictObject({
    match: z.array(L4MatchAttributesSchema).optional(),
    route: z.array(RouteDestinationSchema).optional(),
  })
  .superRefine((r, ctx) => checkWeights(r.route, ctx), whenValid);

/** TCPRoute is a parsed Istio `TCPRoute`. */
export type TCPRoute = z.infer<typeof TCPRouteSchema>;

/**
 * checkDelegateSpec applies Istio's rules for a delegate VirtualService, one without `hosts` (istio/istio
 * `ValidateVirtualService`): its routes are merged under a root's `http[].delegate`, so it may not bind
 * `gateways`, hold `tls` or `tcp` routes, or delegate again (only one level of delegation exists).
 */
function checkDelegateSpec(
  s: {
    hosts?: readonly string[] | undefined;
    gateways?: readonly string[] | undefined;
    http?: readonly { delegate?: unknown }[] | undefined;
    tls?: readonly unknown[] | undefined;
    tcp?: readonly unknown[] | undefined;
  },
  ctx: z.core.$RefinementCtx,
): void {
  if (s.hosts !== undefined && s.hosts.length > 0) return;
  const issue = (path: (string | number)[], message: string): void => ctx.addIssue({ code: 'custom', path, message });
  if (s.gateways !== undefined && s.gateways.length > 0)
    issue(['gateways'], 'a delegate VirtualService (no hosts) must have no gateways specified');
  if (s.tls !== undefined && s.tls.length > 0)
    issue(['tls'], 'a delegate VirtualService (no hosts) must have no tls route specified');
  if (s.tcp !== undefined && s.tcp.length > 0)
    issue(['tcp'], 'a delegate VirtualService (no hosts) must have no tcp route specified');
  (s.http ?? []).forEach((r, i) => {
    if (r.delegate !== undefined)
      issue(['http', i, 'delegate'], 'http delegate only applies to a root VirtualService (one with hosts)');
  });
}

/**
 * VirtualServiceSpecSchema is the `spec` of a VirtualService: `hosts`, `gateways` (`mesh` = sidecars),
 * ordered `http`, `tls` and `tcp` route lists, and `exportTo`. A VirtualService without `hosts` is a delegate
 * (see {@link checkDelegateSpec}).
 */
export const VirtualServiceSpecSchema = z
  .strictObject({
    hosts: z.array(HostSchema).optional(),
    gateways: z.array(requiredString()).optional(),
    http: z.array(HTTPRouteSchema).optional(),
    tls: z.array(TLSRouteSchema).optional(),
    tcp: z.array(TCPRouteSchema).optional(),
    exportTo: ExportToSchema.optional(),
  })
  .superRefine(checkDelegateSpec, whenValid);

/** VirtualServiceSpec is a parsed VirtualService `spec`. */
export type VirtualServiceSpec = z.infer<typeof VirtualServiceSpecSchema>;
