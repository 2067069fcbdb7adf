import type { ConfigStore, StoredObject } from '../config/store.js';
import { namespaceOf, type PodObject } from '../model/config.js';
import type { MeshService, ServiceInstance, ServicePort, WorkloadEndpoint } from '../model/service.js';
import {
  SERVICE_NAME_LABEL,
  type EndpointSliceEndpoint,
  type EndpointSliceObject,
  type EndpointsAddress,
  type EndpointsObject,
} from '../kube/endpoint-kinds.js';

/** TargetRef names the object behind an endpoint address (a Pod for selector Services). */
type TargetRef = EndpointSliceEndpoint['targetRef'];

/**
 * EndpointAddress is one address of a Service port as the API reports it, whichever object it came from: the
 * workload port (`port`), whether it is `ready`, the Pod behind it (`targetRef`) and its zone when the slice says.
 */
export interface EndpointAddress {
  address: string;
  port: number;
  ready: boolean;
  targetRef?: TargetRef;
  zone?: string;
}

/**
 * EndpointBuilder turns an address into a mesh endpoint: from its Pod when there is one (`podEndpoint`, then the
 * reported address and readiness win), else an endpoint with no labels, no service account and no sidecar
 * (`tlsMode: disabled`, as Istio treats an address with no pod). Returns undefined for an address whose
 * `targetRef` names a Pod not (yet) mirrored: Istio defers such endpoints until the Pod is seen.
 */
export type EndpointBuilder = (
  a: EndpointAddress,
  pod: PodObject | undefined,
  service: MeshService,
) => WorkloadEndpoint | undefined;

/**
 * KubeEndpointIndex indexes the EndpointSlices and Endpoints of one store revision by Service (`namespace/name`),
 * and Pods by `namespace/name` and by IP, for {@link KubeEndpointIndex.instances}. Build a new one per revision.
 */
export class KubeEndpointIndex {
  private readonly slices = new Map<string, EndpointSliceObject[]>();
  private readonly endpoints = new Map<string, EndpointsObject>();
  private readonly podsByName = new Map<string, PodObject>();
  private readonly podsByIp = new Map<string, PodObject>();

  /**
   * constructor reads the store: EndpointSlices with a `kubernetes.io/service-name` label and an IPv4 or IPv6
   * `addressType` (FQDN slices are skipped, as Istio does), every Endpoints, and the given Pods.
   */
  constructor(store: ConfigStore<StoredObject>, pods: readonly PodObject[]) {
    for (const s of store.list<EndpointSliceObject & StoredObject>('EndpointSlice')) {
      const svc = s.metadata.labels[SERVICE_NAME_LABEL];
      if (svc === undefined || s.addressType === 'FQDN') continue;
      const key = `${s.metadata.namespace}/${svc}`;
      const list = this.slices.get(key);
      if (list) list.push(s);
      else this.slices.set(key, [s]);
    }
    for (const e of store.list<EndpointsObject & StoredObject>('Endpoints'))
      this.endpoints.set(`${e.metadata.namespace}/${e.metadata.name}`, e);
    for (const p of pods) {
      this.podsByName.set(`${namespaceOf(p)}/${p.metadata.name}`, p);
      const ip = p.status?.podIP;
      if (ip) this.podsByIp.set(ip, p);
      for (const { ip: other } of p.status?.podIPs ?? []) if (other) this.podsByIp.set(other, p);
    }
  }

  /** hasEndpoints is true when the Service `namespace/name` has EndpointSlices or an Endpoints object. */
  hasEndpoints(service: MeshService): boolean {
    const key = `${service.namespace}/${service.name}`;
    return this.slices.has(key) || this.endpoints.has(key);
  }

  /**
   * addresses lists what the API reports for one Service port, matched by port name as Kubernetes does (the
   * Service port's `name`, "" when unnamed): from all of the Service's EndpointSlices merged when it has any (its
   * Endpoints are then ignored), else from its Endpoints (ready `addresses` and `notReadyAddresses`). Readiness of a
   * slice endpoint is `conditions.ready`, unknown meaning ready (discovery.k8s.io/v1 API reference); a terminating
   * endpoint is never ready. An address listed twice (slices overlap while the controller moves endpoints) is kept
   * once, ready if any copy is. Undefined when the Service has neither kind of object.
   */
  addresses(service: MeshService, portName: string): EndpointAddress[] | undefined {
    const key = `${service.namespace}/${service.name}`;
    const slices = this.slices.get(key);
    const out = new Map<string, EndpointAddress>();
    const add = (a: EndpointAddress): void => {
      const k = `${a.address}|${a.port}`;
      const prev = out.get(k);
      if (!prev || (!prev.ready && a.ready)) out.set(k, a);
    };
    if (slices) {
      for (const s of slices) {
        const port = s.ports.find((p) => p.name === portName)?.port;
        if (port === undefined) continue;
        for (const e of s.endpoints) {
          const ready = e.conditions.ready !== false && e.conditions.terminating !== true;
          for (const address of e.addresses)
            add({
              address,
              port,
              ready,
              ...(e.targetRef ? { targetRef: e.targetRef } : {}),
              ...(e.zone !== undefined ? { zone: e.zone } : {}),
            });
        }
      }
    } else {
      const eps = this.endpoints.get(key);
      if (!eps) return undefined;
      for (const sub of eps.subsets) {
        const port = sub.ports.find((p) => p.name === portName)?.port;
        if (port === undefined) continue;
        const each = (ready: boolean) => (a: EndpointsAddress) =>
          add({ address: a.ip, port, ready, ...(a.targetRef ? { targetRef: a.targetRef } : {}) });
        sub.addresses.forEach(each(true));
        sub.notReadyAddresses.forEach(each(false));
      }
    }
    return [...out.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
  }

  /**
   * instances returns the Service port's instances from its EndpointSlices or Endpoints (see
   * {@link KubeEndpointIndex.addresses}), each endpoint made by `build` with the Pod its `targetRef` names (else
   * the Pod with that IP); undefined when the Service has neither kind of object.
   */
  instances(service: MeshService, servicePort: ServicePort, build: EndpointBuilder): ServiceInstance[] | undefined {
    const addresses = this.addresses(service, servicePort.name);
    if (!addresses) return undefined;
    const out: ServiceInstance[] = [];
    for (const a of addresses) {
      const ref = a.targetRef;
      const pod =
        ref?.kind === 'Pod' && ref.name !== undefined
          ? this.podsByName.get(`${ref.namespace ?? service.namespace}/${ref.name}`)
          : this.podsByIp.get(a.address);
      if (ref?.kind === 'Pod' && !pod) continue;
      const endpoint = build(a, pod, service);
      if (endpoint) out.push({ service, servicePort: { ...servicePort, targetPort: a.port }, endpoint });
    }
    return out;
  }
}
