import { MESH_RESOURCE_KINDS, TLS_SECRET_TYPE, validateResource, type ValidationIssue } from '@fedmesh/api';
import type { StoredObject } from '../config/store.js';

/** KubeObject is an object as the Kubernetes API serves it (list items lack `apiVersion` and `kind`). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** Validated is the outcome of checking one API object: the object to store, or the problems with field paths. */
export type Validated = { ok: true; object: StoredObject } | { ok: false; issues: ValidationIssue[] };

/**
 * MirroredKind describes one kind the Kubernetes config source mirrors into the ConfigStore: its `kind`, the
 * `apiVersion` watched (group/version), the `plural` of its API path, whether it is `namespaced`, and `validate`,
 * which turns an API object into what is stored.
 */
export interface MirroredKind {
  readonly kind: string;
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly namespaced: boolean;
  /** namespace, when set, watches that namespace only (`/api/v1/namespaces/<ns>/<plural>`), as a Role allows. */
  readonly namespace?: string;
  /** fieldSelector, when set, is sent with every list and watch (e.g. `metadata.name=istio`). */
  readonly fieldSelector?: string;
  validate(obj: KubeObject): Validated;
}

/** apiVersionOf returns `group/version`, or `version` for the core group. */
export function apiVersionOf(k: Pick<MirroredKind, 'group' | 'version'>): string {
  return k.group === '' ? k.version : `${k.group}/${k.version}`;
}

/**
 * collectionPath returns the API path of a kind: cluster-wide (`/api/v1/pods`,
 * `/apis/networking.istio.io/v1/virtualservices`), or in its `namespace` when set
 * (`/api/v1/namespaces/istio-system/configmaps`).
 */
export function collectionPath(
  k: Pick<MirroredKind, 'group' | 'version' | 'plural'> & { namespace?: string | undefined },
): string {
  const base = k.group === '' ? `/api/${k.version}` : `/apis/${k.group}/${k.version}`;
  return k.namespace === undefined ? `${base}/${k.plural}` : `${base}/namespaces/${k.namespace}/${k.plural}`;
}

/**
 * trimmed drops the fields that change on every write but mean nothing to the mesh (`resourceVersion`,
 * `managedFields`), so that an object whose meaningful content is unchanged is not pushed again.
 */
function trimmed(obj: KubeObject, apiVersion: string, kind: string): KubeObject {
  const { resourceVersion: _rv, managedFields: _mf, ...metadata } = obj.metadata ?? {};
  return { ...obj, apiVersion, kind, metadata };
}

function fromMeshKind(kind: keyof typeof MESH_RESOURCE_KINDS, namespaced = true): MirroredKind {
  const info = MESH_RESOURCE_KINDS[kind];
  const version = info.versions[0] ?? 'v1';
  const apiVersion = info.group === '' ? version : `${info.group}/${version}`;
  return {
    kind,
    group: info.group,
    version,
    plural: info.plural,
    namespaced,
    validate(obj) {
      const r = validateResource(trimmed(obj, apiVersion, kind));
      return r.ok ? { ok: true, object: r.resource as unknown as StoredObject } : { ok: false, issues: r.issues };
    },
  };
}

/**
 * NamespaceKind mirrors v1 Namespaces, keeping only `metadata.name`, `labels` and `annotations` (the
 * parts Istio reads: labels for selectors and discovery filters). @fedmesh/api has no Namespace schema, so
 * this checks the name only.
 */
const NamespaceKind: MirroredKind = {
  kind: 'Namespace',
  group: '',
  version: 'v1',
  plural: 'namespaces',
  namespaced: false,
  validate(obj) {
    const m = obj.metadata ?? {};
    if (typeof m.name !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(m.name) || m.name.length > 63)
      return { ok: false, issues: [{ path: 'metadata.name', message: 'must be a DNS-1123 label' }] };
    const metadata: StoredObject['metadata'] & Record<string, unknown> = { name: m.name };
    if (m.labels) metadata['labels'] = m.labels;
    if (m.annotations) metadata['annotations'] = m.annotations;
    return { ok: true, object: { apiVersion: 'v1', kind: 'Namespace', metadata } };
  },
};

/** LAST_APPLIED is kubectl's annotation holding the whole applied object: for a Secret, its key material. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * TlsSecretKind mirrors core v1 Secrets of type `kubernetes.io/tls` only, asked of the API server with the field
 * selector `type=kubernetes.io/tls` (so other Secrets never leave it), cluster-wide as Istio's istiod reads them;
 * which namespace a gateway may read is decided at generation (a gateway's `credentialName` in its own namespace).
 * Validation is the file source's (`validateResource`: the certificate parses, the key matches it, messages carry
 * field paths and never a value). kubectl's last-applied annotation is dropped before storing: it repeats `data`.
 */
export const TlsSecretKind: MirroredKind = (() => {
  const base = fromMeshKind('Secret');
  return {
    ...base,
    fieldSelector: `type=${TLS_SECRET_TYPE}`,
    validate(obj) {
      const annotations = obj.metadata?.annotations;
      if (annotations === undefined || !(LAST_APPLIED in annotations)) return base.validate(obj);
      const { [LAST_APPLIED]: _dropped, ...rest } = annotations;
      return base.validate({ ...obj, metadata: { ...obj.metadata, annotations: rest } });
    },
  };
})();

/**
 * MIRRORED_KINDS are the kinds {@link KubeConfigSource} watches by default: core v1 Services, Pods (the endpoint
 * source: a Ready pod with a `podIP` selected by a Service is an endpoint, as in `KubeObjectsRegistry`),
 * Namespaces, ServiceAccounts and `kubernetes.io/tls` Secrets ({@link TlsSecretKind}), and Istio's networking.istio.io v1 and security.istio.io v1 kinds (the
 * versions `deploy/k8s/10-crds.yaml` stores).
 */
export const MIRRORED_KINDS: readonly MirroredKind[] = Object.freeze([
  fromMeshKind('Service'),
  fromMeshKind('Pod'),
  NamespaceKind,
  fromMeshKind('ServiceAccount'),
  TlsSecretKind,
  fromMeshKind('VirtualService'),
  fromMeshKind('DestinationRule'),
  fromMeshKind('Gateway'),
  fromMeshKind('ServiceEntry'),
  fromMeshKind('WorkloadEntry'),
  fromMeshKind('WorkloadGroup'),
  fromMeshKind('PeerAuthentication'),
  fromMeshKind('AuthorizationPolicy'),
]);
