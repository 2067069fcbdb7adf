import { randomUUID } from 'node:crypto';

/** FakeObject is a Kubernetes object held by the fake API server (plain JSON). */
export type FakeObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown> & { name: string; namespace?: string; resourceVersion?: string };
};

/** FakeResource describes one served collection: its group ('' for core), version, plural, kind and scope. */
export interface FakeResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

/** WatchEvent is one entry of a collection's history: `ADDED`, `MODIFIED` or `DELETED` at a resourceVersion. */
export interface WatchEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: FakeObject;
}

/**
 * FakeCollection is etcd-like storage for one resource: objects keyed `namespace/name`, a history of events by
 * resourceVersion (bounded to `historyLimit` entries; older resourceVersions are "too old", HTTP 410), and the
 * subscribers of live events.
 */
export class FakeCollection {
  readonly objects = new Map<string, FakeObject>();
  readonly history: WatchEvent[] = [];
  /** compactedRv: a watch from a resourceVersion below this gets 410 Gone. */
  compactedRv = 0;
  readonly subscribers = new Set<(e: WatchEvent) => void>();

  /** constructor stores the resource description. */
  constructor(
    readonly resource: FakeResource,
    private readonly historyLimit: number,
  ) {}

  /** record appends an event, trims history (raising compactedRv) and notifies subscribers. */
  record(e: WatchEvent): void {
    this.history.push(e);
    while (this.history.length > this.historyLimit) {
      const dropped = this.history.shift();
      if (dropped) this.compactedRv = dropped.rv;
    }
    for (const s of this.subscribers) s(e);
  }

  /** list returns the objects, sorted by namespace/name, optionally in one namespace. */
  list(namespace?: string): FakeObject[] {
    return [...this.objects.entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, o]) => o);
  }
}

/** objectKey is `namespace/name` (`/name` for cluster-scoped objects). */
export function objectKey(o: { metadata: { name: string; namespace?: string } }): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

/** stamp sets server-owned metadata as the API server does: uid and creationTimestamp kept from `prev`, new resourceVersion. */
export function stamp(obj: FakeObject, rv: number, prev?: FakeObject): FakeObject {
  const copy = structuredClone(obj);
  copy.metadata.resourceVersion = String(rv);
  copy.metadata['uid'] = prev?.metadata['uid'] ?? randomUUID();
  copy.metadata['creationTimestamp'] =
    prev?.metadata['creationTimestamp'] ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return copy;
}

/** DEFAULT_FAKE_RESOURCES are the collections a FakeApiServer serves unless told otherwise: what istiod mirrors. */
export const DEFAULT_FAKE_RESOURCES: readonly FakeResource[] = [
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', plural: 'endpoints', kind: 'Endpoints', namespaced: true },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  ...(
    [
      ['virtualservices', 'VirtualService'],
      ['destinationrules', 'DestinationRule'],
      ['gateways', 'Gateway'],
      ['serviceentries', 'ServiceEntry'],
      ['workloadentries', 'WorkloadEntry'],
      ['workloadgroups', 'WorkloadGroup'],
    ] as const
  ).map(([plural, kind]) => ({ group: 'networking.istio.io', version: 'v1', plural, kind, namespaced: true })),
  ...(
    [
      ['peerauthentications', 'PeerAuthentication'],
      ['authorizationpolicies', 'AuthorizationPolicy'],
    ] as const
  ).map(([plural, kind]) => ({ group: 'security.istio.io', version: 'v1', plural, kind, namespaced: true })),
];
