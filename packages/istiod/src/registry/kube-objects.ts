import type { ConfigStore, StoredObject } from '../config/store.js';
import { namespaceOf, type PodObject, type ServiceObject } from '../model/config.js';
import { allocateVips, parseIpv4Cidr, type Ipv4Cidr } from './vip-allocator.js';
import { KubeEndpointIndex, type EndpointAddress } from './kube-endpoints.js';
import {
  protocolFromPort,
  type MeshService,
  type ServiceInstance,
  type ServiceRegistry,
  type WorkloadEndpoint,
} from '../model/service.js';

/** KubeObjectsRegistryOptions name the cluster and network the objects belong to. */
export interface KubeObjectsRegistryOptions {
  cluster: string;
  network: string;
  domainSuffix: string;
  /**
   * serviceCidr, when set (`fedmesh up` sets `10.96.<N>.0/24`), gives every Service with no `spec.clusterIP` a
   * virtual IP from that IPv4 prefix (`allocateVips`); headless Services (`None`) get none.
   */
  serviceCidr?: string;
}

/** workloadNameOf derives a pod's workload (Deployment) name as Istio does: from its owner, else the pod name. */
export function workloadNameOf(pod: PodObject): string {
  const owner = pod.metadata.ownerReferences?.[0];
  if (owner?.kind === 'ReplicaSet') return owner.name.replace(/-[a-z0-9]+$/, '');
  if (owner) return owner.name;
  return pod.metadata.name;
}

function podReady(pod: PodObject): boolean {
  const st = pod.status;
  if (!st?.podIP) return false;
  if (st.phase !== undefined && st.phase !== 'Running') return false;
  const ready = st.conditions?.find((c) => c.type === 'Ready');
  return ready ? ready.status === 'True' : true;
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/**
 * KubeObjectsRegistry is a {@link ServiceRegistry} computed from Kubernetes objects held in a {@link ConfigStore},
 * the way Istio's Kubernetes controller turns Services and endpoints into its model. A Service's endpoints come
 * from its `discovery.k8s.io` EndpointSlices (all of them merged) when it has any, else from its core v1 Endpoints
 * (see {@link KubeEndpointIndex}; which of the two is mirrored is the kube source's endpoint mode); each address
 * takes its labels, service account and sidecar from the Pod it names. A Service with neither (no controller runs:
 * manifest files, `fedmesh up`) gets what the endpoints controller would write: each pod its selector selects,
 * with a `podIP`, is an endpoint of each Service port, `targetPort` names resolved against the pod's container
 * ports. Views are rebuilt lazily after each store revision.
 */
export class KubeObjectsRegistry implements ServiceRegistry {
  readonly provider = 'Kubernetes';
  readonly cluster: string;
  private builtAt = -1;
  private svcs: MeshService[] = [];
  private byHost = new Map<string, MeshService>();
  private pods: PodObject[] = [];
  private index: KubeEndpointIndex | undefined;
  private readonly svcObjects = new Map<string, ServiceObject>();
  private readonly cidr: Ipv4Cidr | undefined;

  /** constructor stores references; nothing is computed before first use. Throws on an invalid `serviceCidr`. */
  constructor(
    private readonly store: ConfigStore<StoredObject>,
    private readonly opts: KubeObjectsRegistryOptions,
  ) {
    this.cluster = opts.cluster;
    this.cidr = opts.serviceCidr === undefined ? undefined : parseIpv4Cidr(opts.serviceCidr);
  }

  /** services implements {@link ServiceRegistry.services}. */
  services(): MeshService[] {
    this.refresh();
    return this.svcs;
  }

  /** instances implements {@link ServiceRegistry.instances}. */
  instances(hostname: string, port: number): ServiceInstance[] {
    this.refresh();
    const service = this.byHost.get(hostname);
    const servicePort = service?.ports.find((p) => p.port === port);
    const obj = this.svcObjects.get(hostname);
    if (!service || !servicePort || !obj) return [];
    const fromApi = this.index?.instances(service, servicePort, (a, pod, svc) => this.apiEndpoint(a, pod, svc));
    if (fromApi) return fromApi;
    const out: ServiceInstance[] = [];
    for (const pod of this.pods) {
      if (namespaceOf(pod) !== service.namespace || !selects(service.selector, pod.metadata.labels ?? {})) continue;
      const specPort = obj.spec.ports?.find((p) => p.port === port);
      let target = servicePort.targetPort;
      if (typeof specPort?.targetPort === 'string') {
        const named = pod.spec.containers?.flatMap((c) => c.ports ?? []).find((p) => p.name === specPort.targetPort);
        if (!named) continue;
        target = named.containerPort;
      }
      const ep = this.endpointOf(pod);
      if (ep) out.push({ service, servicePort: { ...servicePort, targetPort: target }, endpoint: ep });
    }
    return out;
  }

  /** workloadByAddress implements {@link ServiceRegistry.workloadByAddress}. */
  workloadByAddress(address: string): WorkloadEndpoint | undefined {
    this.refresh();
    const pod = this.pods.find((p) => p.status?.podIP === address);
    return pod ? this.endpointOf(pod) : undefined;
  }

  /** apiEndpoint is the endpoint of an address reported by an EndpointSlice or Endpoints (`EndpointBuilder` in kube-endpoints.ts). */
  private apiEndpoint(a: EndpointAddress, pod: PodObject | undefined, svc: MeshService): WorkloadEndpoint {
    const fromPod = pod ? this.endpointOf(pod, a.address) : undefined;
    if (fromPod) {
      const locality = { ...fromPod.locality, zone: fromPod.locality.zone || (a.zone ?? '') };
      return { ...fromPod, locality, healthy: a.ready };
    }
    return {
      address: a.address,
      labels: {},
      namespace: svc.namespace,
      serviceAccount: '',
      workloadName: '',
      podName: '',
      tlsMode: 'disabled',
      locality: { region: '', zone: a.zone ?? '', subZone: '' },
      network: this.opts.network,
      cluster: this.opts.cluster,
      healthy: a.ready,
      weight: 1,
    };
  }

  private endpointOf(pod: PodObject, reported?: string): WorkloadEndpoint | undefined {
    const address = reported ?? pod.status?.podIP;
    if (!address) return undefined;
    const labels = pod.metadata.labels ?? {};
    return {
      address,
      labels,
      namespace: namespaceOf(pod),
      serviceAccount: pod.spec.serviceAccountName ?? 'default',
      workloadName: workloadNameOf(pod),
      podName: pod.metadata.name,
      tlsMode: pod.metadata.annotations?.['sidecar.istio.io/inject'] === 'false' ? 'disabled' : 'istio',
      locality: {
        region: labels['topology.kubernetes.io/region'] ?? '',
        zone: labels['topology.kubernetes.io/zone'] ?? '',
        subZone: labels['topology.istio.io/subzone'] ?? '',
      },
      network: labels['topology.istio.io/network'] ?? this.opts.network,
      cluster: this.opts.cluster,
      healthy: podReady(pod),
      weight: 1,
    };
  }

  /** assignVips sets each service's `addresses`: its `spec.clusterIPs`/`clusterIP`, else one from `serviceCidr`. */
  private assignVips(): void {
    const taken = new Set<string>();
    const missing: string[] = [];
    for (const svc of this.svcs) {
      const spec = this.svcObjects.get(svc.hostname)?.spec;
      const ips = (spec?.clusterIPs ?? (spec?.clusterIP !== undefined ? [spec.clusterIP] : [])).filter(
        (ip) => ip !== '' && ip !== 'None',
      );
      if (ips.length > 0) {
        svc.addresses = ips;
        ips.forEach((ip) => taken.add(ip));
      } else if (spec?.clusterIP !== 'None' && spec?.type !== 'ExternalName') missing.push(svc.hostname);
    }
    if (!this.cidr || missing.length === 0) return;
    const vips = allocateVips(missing, this.cidr, taken);
    for (const svc of this.svcs) {
      const vip = vips.get(svc.hostname);
      if (vip !== undefined) svc.addresses = [vip];
    }
  }

  private refresh(): void {
    if (this.builtAt === this.store.revision) return;
    this.builtAt = this.store.revision;
    this.svcs = [];
    this.byHost.clear();
    this.svcObjects.clear();
    for (const s of this.store.list<ServiceObject & StoredObject>('Service')) {
      const ns = namespaceOf(s);
      const hostname = `${s.metadata.name}.${ns}.svc.${this.opts.domainSuffix}`;
      const svc: MeshService = {
        hostname,
        name: s.metadata.name,
        namespace: ns,
        selector: s.spec.selector ?? {},
        labels: s.metadata.labels ?? {},
        exportTo: (s.metadata.annotations?.['networking.istio.io/exportTo'] ?? '')
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
        ports: (s.spec.ports ?? []).map((p) => ({
          name: p.name ?? '',
          port: p.port,
          targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.port,
          protocol: protocolFromPort(p.name, p.appProtocol),
        })),
      };
      this.svcs.push(svc);
      this.byHost.set(hostname, svc);
      this.svcObjects.set(hostname, s);
    }
    this.svcs.sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
    this.assignVips();
    this.pods = this.store.list<PodObject & StoredObject>('Pod');
    this.index = new KubeEndpointIndex(this.store, this.pods);
  }
}
