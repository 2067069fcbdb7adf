/**
 * The resource envelope (`apiVersion`, `kind`, `metadata`, `spec`), the set of kinds fedmesh understands,
 * and validation of one decoded object (from YAML or from the Kubernetes API) into a {@link MeshResource}.
 */
import { z } from 'zod';
import { ErrorCode, InvalidConfigError, MeshError, type ValidationIssue } from '../errors.js';
import { ObjectMetaSchema } from './common.js';
import { DestinationRuleSpecSchema } from './destination-rule.js';
import { GatewaySpecSchema } from './gateway.js';
import { describeValue, meshErrorMap, toValidationIssues } from './issues.js';
import { DeploymentSpecSchema, PodSpecSchema, PodStatusSchema, ServiceSpecSchema } from './k8s.js';
import { AuthorizationPolicySpecSchema, PeerAuthenticationSpecSchema } from './security.js';
import { TLS_SECRET_TYPE, TlsSecretSchema, type TlsSecret } from './secret.js';
import { ServiceEntrySpecSchema, WorkloadEntrySpecSchema, WorkloadGroupSpecSchema } from './service-entry.js';
import { VirtualServiceSpecSchema } from './virtual-service.js';

/** NETWORKING_API_VERSIONS are the accepted `apiVersion`s of networking.istio.io kinds: v1, v1beta1 and v1alpha3. */
export const NETWORKING_API_VERSIONS = [
  'networking.istio.io/v1',
  'networking.istio.io/v1beta1',
  'networking.istio.io/v1alpha3',
] as const;

/** SECURITY_API_VERSIONS are the accepted `apiVersion`s of security.istio.io kinds: v1 and v1beta1. */
export const SECURITY_API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

const networking = z.enum(NETWORKING_API_VERSIONS);
const security = z.enum(SECURITY_API_VERSIONS);
const status = z.unknown().optional();

/** VirtualServiceSchema is a whole networking.istio.io VirtualService resource (strict; see {@link VirtualServiceSpecSchema}). */
export const VirtualServiceSchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('VirtualService'),
  metadata: ObjectMetaSchema,
  spec: VirtualServiceSpecSchema,
  status,
});
/** VirtualService is a parsed VirtualService resource. */
export type VirtualService = z.infer<typeof VirtualServiceSchema>;

/** DestinationRuleSchema is a whole networking.istio.io DestinationRule resource (strict). */
export const DestinationRuleSchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('DestinationRule'),
  metadata: ObjectMetaSchema,
  spec: DestinationRuleSpecSchema,
  status,
});
/** DestinationRule is a parsed DestinationRule resource. */
export type DestinationRule = z.infer<typeof DestinationRuleSchema>;

/** GatewaySchema is a whole networking.istio.io Gateway resource (strict). Kubernetes Gateway API Gateways are a different kind. */
export const GatewaySchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('Gateway'),
  metadata: ObjectMetaSchema,
  spec: GatewaySpecSchema,
  status,
});
/** Gateway is a parsed Istio Gateway resource. */
export type Gateway = z.infer<typeof GatewaySchema>;

/** ServiceEntrySchema is a whole networking.istio.io ServiceEntry resource (strict). */
export const ServiceEntrySchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('ServiceEntry'),
  metadata: ObjectMetaSchema,
  spec: ServiceEntrySpecSchema,
  status,
});
/** ServiceEntry is a parsed ServiceEntry resource. */
export type ServiceEntry = z.infer<typeof ServiceEntrySchema>;

/** WorkloadEntrySchema is a whole networking.istio.io WorkloadEntry resource (strict). */
export const WorkloadEntrySchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('WorkloadEntry'),
  metadata: ObjectMetaSchema,
  spec: WorkloadEntrySpecSchema,
  status,
});
/** WorkloadEntry is a parsed WorkloadEntry resource. */
export type WorkloadEntry = z.infer<typeof WorkloadEntrySchema>;

/** WorkloadGroupSchema is a whole networking.istio.io WorkloadGroup resource (strict). */
export const WorkloadGroupSchema = z.strictObject({
  apiVersion: networking,
  kind: z.literal('WorkloadGroup'),
  metadata: ObjectMetaSchema,
  spec: WorkloadGroupSpecSchema,
  status,
});
/** WorkloadGroup is a parsed WorkloadGroup resource. */
export type WorkloadGroup = z.infer<typeof WorkloadGroupSchema>;

/** PeerAuthenticationSchema is a whole security.istio.io PeerAuthentication resource (strict). */
export const PeerAuthenticationSchema = z.strictObject({
  apiVersion: security,
  kind: z.literal('PeerAuthentication'),
  metadata: ObjectMetaSchema,
  spec: PeerAuthenticationSpecSchema,
  status,
});
/** PeerAuthentication is a parsed PeerAuthentication resource. */
export type PeerAuthentication = z.infer<typeof PeerAuthenticationSchema>;

/** AuthorizationPolicySchema is a whole security.istio.io AuthorizationPolicy resource (strict). */
export const AuthorizationPolicySchema = z.strictObject({
  apiVersion: security,
  kind: z.literal('AuthorizationPolicy'),
  metadata: ObjectMetaSchema,
  spec: AuthorizationPolicySpecSchema,
  status,
});
/** AuthorizationPolicy is a parsed AuthorizationPolicy resource. */
export type AuthorizationPolicy = z.infer<typeof AuthorizationPolicySchema>;

/** ServiceSchema is a Kubernetes v1 Service (loose; `spec` defaults to `{}`). */
export const ServiceSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata: ObjectMetaSchema,
  spec: ServiceSpecSchema.prefault({}),
});
/** Service is a parsed Kubernetes Service. */
export type Service = z.infer<typeof ServiceSchema>;

/** ServiceAccountSchema is a Kubernetes v1 ServiceAccount (loose; only `metadata` is read). */
export const ServiceAccountSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('ServiceAccount'),
  metadata: ObjectMetaSchema,
});
/** ServiceAccount is a parsed Kubernetes ServiceAccount. */
export type ServiceAccount = z.infer<typeof ServiceAccountSchema>;

/** DeploymentSchema is a Kubernetes apps/v1 Deployment (loose; see {@link DeploymentSpecSchema}). */
export const DeploymentSchema = z.looseObject({
  apiVersion: z.literal('apps/v1'),
  kind: z.literal('Deployment'),
  metadata: ObjectMetaSchema,
  spec: DeploymentSpecSchema,
});
/** Deployment is a parsed Kubernetes Deployment. */
export type Deployment = z.infer<typeof DeploymentSchema>;

/** PodSchema is a Kubernetes v1 Pod (loose): `metadata`, `spec` ({@link PodSpecSchema}) and optional `status`. */
export const PodSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Pod'),
  metadata: ObjectMetaSchema,
  spec: PodSpecSchema,
  status: PodStatusSchema.optional(),
});
/** Pod is a parsed Kubernetes Pod. */
export type Pod = z.infer<typeof PodSchema>;

/**
 * MeshResource is any resource fedmesh understands, discriminated by `kind`: the Istio kinds
 * VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry, WorkloadGroup, PeerAuthentication,
 * AuthorizationPolicy, and the Kubernetes kinds Service, ServiceAccount, Deployment, Pod and Secret (type
 * `kubernetes.io/tls` only: Gateway `credentialName`s).
 */
export type MeshResource =
  | VirtualService
  | DestinationRule
  | Gateway
  | ServiceEntry
  | WorkloadEntry
  | WorkloadGroup
  | PeerAuthentication
  | AuthorizationPolicy
  | Service
  | ServiceAccount
  | Deployment
  | Pod
  | TlsSecret;

/** MeshResourceKind is the `kind` of a {@link MeshResource}, e.g. `'VirtualService'`. */
export type MeshResourceKind = MeshResource['kind'];

/** MeshResourceOf picks the {@link MeshResource} variant of one kind: `MeshResourceOf<'Gateway'>` is `Gateway`. */
export type MeshResourceOf<K extends MeshResourceKind> = Extract<MeshResource, { kind: K }>;

/**
 * ResourceKindInfo describes one kind for config sources: its API `group` (`''` for the core group), the
 * accepted `versions`, the lowercase `plural` used in Kubernetes API paths, and the zod `schema` of the
 * whole resource.
 */
export interface ResourceKindInfo {
  /** group is the API group, `''` for Kubernetes core (v1). */
  readonly group: string;
  /** versions are the accepted versions, preferred (storage) version first. */
  readonly versions: readonly string[];
  /** plural is the resource name in API paths, e.g. `virtualservices`. */
  readonly plural: string;
  /** schema validates the whole resource. */
  readonly schema: z.ZodType;
}

const ISTIO_NET = { group: 'networking.istio.io', versions: ['v1', 'v1beta1', 'v1alpha3'] } as const;
const ISTIO_SEC = { group: 'security.istio.io', versions: ['v1', 'v1beta1'] } as const;

/**
 * MESH_RESOURCE_KINDS maps each {@link MeshResourceKind} to its {@link ResourceKindInfo} (group, versions,
 * plural, schema). Config stores use it to know what to watch and how to validate it.
 */
export const MESH_RESOURCE_KINDS: Readonly<Record<MeshResourceKind, ResourceKindInfo>> = Object.freeze({
  VirtualService: { ...ISTIO_NET, plural: 'virtualservices', schema: VirtualServiceSchema },
  DestinationRule: { ...ISTIO_NET, plural: 'destinationrules', schema: DestinationRuleSchema },
  Gateway: { ...ISTIO_NET, plural: 'gateways', schema: GatewaySchema },
  ServiceEntry: { ...ISTIO_NET, plural: 'serviceentries', schema: ServiceEntrySchema },
  WorkloadEntry: { ...ISTIO_NET, plural: 'workloadentries', schema: WorkloadEntrySchema },
  WorkloadGroup: { ...ISTIO_NET, plural: 'workloadgroups', schema: WorkloadGroupSchema },
  PeerAuthentication: { ...ISTIO_SEC, plural: 'peerauthentications', schema: PeerAuthenticationSchema },
  AuthorizationPolicy: { ...ISTIO_SEC, plural: 'authorizationpolicies', schema: AuthorizationPolicySchema },
  Service: { group: '', versions: ['v1'], plural: 'services', schema: ServiceSchema },
  ServiceAccount: { group: '', versions: ['v1'], plural: 'serviceaccounts', schema: ServiceAccountSchema },
  Deployment: { group: 'apps', versions: ['v1'], plural: 'deployments', schema: DeploymentSchema },
  Pod: { group: '', versions: ['v1'], plural: 'pods', schema: PodSchema },
  Secret: { group: '', versions: ['v1'], plural: 'secrets', schema: TlsSecretSchema },
});

/** resourceKey returns the identity of a resource as `kind/namespace/name`, e.g. `VirtualService/default/reviews`. */
export function resourceKey(r: MeshResource): string {
  return `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
}

/** isResourceKind narrows a {@link MeshResource} to the variant of `kind`. */
export function isResourceKind<K extends MeshResourceKind>(r: MeshResource, kind: K): r is MeshResourceOf<K> {
  return r.kind === kind;
}

/**
 * ValidateResult is the outcome of {@link validateResource}: `{ ok: true, resource }`, or `{ ok: false }`
 * with the stable `code` (`FEDMESH_ERR_INVALID_CONFIG` for a bad resource, `FEDMESH_ERR_UNSUPPORTED` for a
 * kind fedmesh does not handle), `severity` (`'warning'` only for unsupported kinds, which callers skip),
 * the `issues` found, and whatever of `kind`, `name` and `namespace` could be read from the input.
 */
export type ValidateResult =
  | { ok: true; resource: MeshResource }
  | {
      ok: false;
      code: ErrorCode;
      severity: 'error' | 'warning';
      issues: ValidationIssue[];
      kind?: string;
      name?: string;
      namespace?: string;
    };

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function identify(obj: Record<string, unknown>): { kind?: string; name?: string; namespace?: string } {
  const out: { kind?: string; name?: string; namespace?: string } = {};
  if (typeof obj.kind === 'string') out.kind = obj.kind;
  const meta = obj.metadata;
  if (isRecord(meta)) {
    if (typeof meta.name === 'string') out.name = meta.name;
    if (typeof meta.namespace === 'string') out.namespace = meta.namespace;
  }
  return out;
}

function lookupKind(apiVersion: string, kind: string): ResourceKindInfo | undefined {
  if (!Object.hasOwn(MESH_RESOURCE_KINDS, kind)) return undefined;
  const info = MESH_RESOURCE_KINDS[kind as MeshResourceKind];
  const slash = apiVersion.indexOf('/');
  const group = slash === -1 ? '' : apiVersion.slice(0, slash);
  return group === info.group ? info : undefined;
}

/**
 * validateResource checks one decoded object (from YAML or the Kubernetes API) against the schema of its
 * `apiVersion`/`kind` and returns the parsed {@link MeshResource} (defaults applied: `metadata.namespace`
 * `"default"`, Deployment `replicas` 1, port `protocol` TCP) or the problems, each with a field path
 * relative to the object. An API group/kind fedmesh does not handle (e.g. v1 `Namespace`, or a Kubernetes
 * Gateway API `Gateway`) yields `severity: 'warning'` with code `FEDMESH_ERR_UNSUPPORTED`. An Istio
 * resource without `spec` is validated as `spec: {}`. Never throws.
 */
export function validateResource(obj: unknown): ValidateResult {
  if (!isRecord(obj)) {
    return {
      ok: false,
      code: ErrorCode.INVALID_CONFIG,
      severity: 'error',
      issues: [{ path: '', message: `must be a mapping (a Kubernetes object), got ${describeValue(obj)}` }],
    };
  }
  const id = identify(obj);
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    const issues: ValidationIssue[] = [];
    if (typeof apiVersion !== 'string') issues.push({ path: 'apiVersion', message: describeMissing(apiVersion) });
    if (typeof kind !== 'string') issues.push({ path: 'kind', message: describeMissing(kind) });
    return { ok: false, code: ErrorCode.INVALID_CONFIG, severity: 'error', issues, ...id };
  }
  const info = lookupKind(apiVersion, kind);
  if (info === undefined) {
    return {
      ok: false,
      code: ErrorCode.UNSUPPORTED,
      severity: 'warning',
      issues: [{ path: '', message: `unsupported kind ${kind} (apiVersion ${apiVersion}); skipped` }],
      ...id,
    };
  }
  if (kind === 'Secret' && obj.type !== TLS_SECRET_TYPE) {
    const type = typeof obj.type === 'string' ? obj.type : 'Opaque';
    return {
      ok: false,
      code: ErrorCode.UNSUPPORTED,
      severity: 'warning',
      issues: [{ path: 'type', message: `Secret of type ${type} is not read (only ${TLS_SECRET_TYPE}); skipped` }],
      ...id,
    };
  }
  const input = info.group.endsWith('.istio.io') && obj.spec === undefined ? { ...obj, spec: {} } : obj;
  const result = info.schema.safeParse(input, { error: meshErrorMap });
  if (result.success) return { ok: true, resource: result.data as MeshResource };
  return {
    ok: false,
    code: ErrorCode.INVALID_CONFIG,
    severity: 'error',
    issues: toValidationIssues(result.error.issues),
    ...id,
  };
}

function describeMissing(value: unknown): string {
  return value === undefined ? 'required' : `must be a string, got ${describeValue(value)}`;
}

/**
 * parseResource is {@link validateResource} for callers that want an exception: it returns the parsed
 * {@link MeshResource}, or throws an {@link InvalidConfigError} (code `FEDMESH_ERR_INVALID_CONFIG`, with
 * `issues`) for an invalid object, or a {@link MeshError} with code `FEDMESH_ERR_UNSUPPORTED` for a kind
 * fedmesh does not handle.
 */
export function parseResource(obj: unknown): MeshResource {
  const result = validateResource(obj);
  if (result.ok) return result.resource;
  const subject = [
    result.kind,
    result.name === undefined ? undefined : `${result.namespace ?? 'default'}/${result.name}`,
  ]
    .filter((s) => s !== undefined)
    .join(' ');
  if (result.code === ErrorCode.UNSUPPORTED) {
    throw new MeshError(ErrorCode.UNSUPPORTED, result.issues.map((i) => i.message).join('; '));
  }
  throw new InvalidConfigError(result.issues, subject === '' ? undefined : subject);
}
