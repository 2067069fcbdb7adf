/**
 * PeerAuthentication and AuthorizationPolicy (security.istio.io), following
 * https://istio.io/latest/docs/reference/config/security/peer_authentication/ and
 * https://istio.io/latest/docs/reference/config/security/authorization-policy/. Every message is strict.
 */
import { z } from 'zod';
import { requiredString, whenValid, WorkloadSelectorSchema } from './common.js';

/** MTLS_MODES lists Istio's `PeerAuthentication.MutualTLS.Mode` values: UNSET (inherit), DISABLE, PERMISSIVE, STRICT. */
export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

/** MutualTLSSchema is Istio's `PeerAuthentication.MutualTLS`: `{ mode }`, one of {@link MTLS_MODES}. */
export const MutualTLSSchema = z.strictObject({ mode: z.enum(MTLS_MODES).optional() });

/**
 * PeerAuthenticationSpecSchema is the `spec` of a PeerAuthentication: `selector` (workloads; none = whole
 * namespace, or mesh in the root namespace), `mtls` and `portLevelMtls` (workload port number → mTLS
 * setting; Istio allows it only together with a selector).
 */
export const PeerAuthenticationSpecSchema = z
  .strictObject({
    selector: WorkloadSelectorSchema.optional(),
    mtls: MutualTLSSchema.optional(),
    portLevelMtls: z
      .record(
        z.string().regex(/^([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])$/, {
          error: 'must be a port number (1..65535)',
        }),
        MutualTLSSchema,
      )
      .optional(),
  })
  .superRefine((pa, ctx) => {
    const selected = pa.selector?.matchLabels !== undefined && Object.keys(pa.selector.matchLabels).length > 0;
    if (pa.portLevelMtls !== undefined && Object.keys(pa.portLevelMtls).length > 0 && !selected) {
      ctx.addIssue({ code: 'custom', path: ['portLevelMtls'], message: 'requires a selector with matchLabels' });
    }
  }, whenValid);

/** PeerAuthenticationSpec is a parsed PeerAuthentication `spec`. */
export type PeerAuthenticationSpec = z.infer<typeof PeerAuthenticationSpecSchema>;

const stringList = z.array(requiredString()).optional();

/**
 * SourceSchema is Istio's authorization `Source`: `principals` (`<trust-domain>/ns/<ns>/sa/<sa>`, `*`
 * patterns), `requestPrincipals`, `namespaces`, `ipBlocks`, `remoteIpBlocks`, `serviceAccounts`, each with
 * its `not…` negation.
 */
export const SourceSchema = z.strictObject({
  principals: stringList,
  notPrincipals: stringList,
  requestPrincipals: stringList,
  notRequestPrincipals: stringList,
  namespaces: stringList,
  notNamespaces: stringList,
  ipBlocks: stringList,
  notIpBlocks: stringList,
  remoteIpBlocks: stringList,
  notRemoteIpBlocks: stringList,
  serviceAccounts: stringList,
  notServiceAccounts: stringList,
});

/**
 * OperationSchema is Istio's authorization `Operation`: `hosts`, `ports` (strings, e.g. `"8080"`),
 * `methods`, `paths`, each with its `not…` negation.
 */
export const OperationSchema = z.strictObject({
  hosts: stringList,
  notHosts: stringList,
  ports: stringList,
  notPorts: stringList,
  methods: stringList,
  notMethods: stringList,
  paths: stringList,
  notPaths: stringList,
});

/** ConditionSchema is Istio's authorization `Condition`: a `key` (e.g. `request.headers[x-id]`) with `values` and/or `notValues`. */
export const ConditionSchema = z
  .strictObject({ key: requiredString(), values: stringList, notValues: stringList })
  .superRefine((c, ctx) => {
    if ((c.values?.length ?? 0) === 0 && (c.notValues?.length ?? 0) === 0) {
      ctx.addIssue({ code: 'custom', message: 'one of values, notValues must be set' });
    }
  }, whenValid);

/**
 * RuleSchema is Istio's authorization `Rule`: `from[] {source}`, `to[] {operation}` and `when[]`
 * conditions; a request matches when it matches one `from`, one `to` and every `when`.
 */
export const RuleSchema = z.strictObject({
  from: z.array(z.strictObject({ source: SourceSchema })).optional(),
  to: z.array(z.strictObject({ operation: OperationSchema })).optional(),
  when: z.array(ConditionSchema).optional(),
});

/** Rule is a parsed AuthorizationPolicy rule. */
export type Rule = z.infer<typeof RuleSchema>;

/** PolicyTargetReferenceSchema is Istio's `PolicyTargetReference`: `group`, `kind`, `name` (required), `namespace`. */
export const PolicyTargetReferenceSchema = z.strictObject({
  group: z.string().optional(),
  kind: requiredString(),
  name: requiredString(),
  namespace: requiredString().optional(),
});

/** AUTHZ_ACTIONS lists Istio's `AuthorizationPolicy.Action` values: ALLOW (default), DENY, AUDIT, CUSTOM. */
export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

/**
 * AuthorizationPolicySpecSchema is the `spec` of an AuthorizationPolicy: `selector` or `targetRef`/
 * `targetRefs` (not both), `rules`, `action` ({@link AUTHZ_ACTIONS}, default ALLOW) and `provider {name}`,
 * which is required with CUSTOM and allowed only with it.
 */
export const AuthorizationPolicySpecSchema = z
  .strictObject({
    selector: WorkloadSelectorSchema.optional(),
    targetRef: PolicyTargetReferenceSchema.optional(),
    targetRefs: z.array(PolicyTargetReferenceSchema).optional(),
    rules: z.array(RuleSchema).optional(),
    action: z.enum(AUTHZ_ACTIONS).optional(),
    provider: z.strictObject({ name: requiredString() }).optional(),
  })
  .superRefine((ap, ctx) => {
    const targeted = ap.targetRef !== undefined || (ap.targetRefs?.length ?? 0) > 0;
    if (targeted && ap.selector !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'only one of selector, targetRef/targetRefs may be set' });
    }
    if (ap.action === 'CUSTOM' && ap.provider === undefined) {
      ctx.addIssue({ code: 'custom', path: ['provider'], message: 'required when action is CUSTOM' });
    }
    if (ap.action !== 'CUSTOM' && ap.provider !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['provider'], message: 'allowed only when action is CUSTOM' });
    }
  }, whenValid);

/** AuthorizationPolicySpec is a parsed AuthorizationPolicy `spec`. */
export type AuthorizationPolicySpec = z.infer<typeof AuthorizationPolicySpecSchema>;
