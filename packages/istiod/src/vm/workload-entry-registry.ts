import { WorkloadEntryAnnotations, type ServiceEntrySpec, type WorkloadEntrySpec } from '@fedmesh/api';
import type { ConfigStore, StoredObject } from '../config/store.js';
import { namespaceOf, type ConfigObject, type ServiceObject } from '../model/config.js';
import {
  protocolFromPort,
  type MeshService,
  type ServiceInstance,
  type ServiceRegistry,
  type WorkloadEndpoint,
} from '../model/service.js';

/** WorkloadEntryCondition is one `status.conditions[]` entry of a WorkloadEntry (Istio's `Healthy` condition). */
export interface WorkloadEntryCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  lastProbeTime?: string;
  lastTransitionTime?: string;
  message?: string;
}

/** WorkloadEntryObject is a stored WorkloadEntry (static, or auto-registered with a health `status`). */
export type WorkloadEntryObject = ConfigObject<WorkloadEntrySpec, { conditions?: WorkloadEntryCondition[] }>;
/** ServiceEntryObject is a stored ServiceEntry. */
export type ServiceEntryObject = ConfigObject<ServiceEntrySpec>;

/** WorkloadEntryRegistryOptions name the cluster and default network of the entries. */
export interface WorkloadEntryRegistryOptions {
  cluster: string;
  network: string;
  domainSuffix: string;
}

/** TLS_MODE_LABEL is Istio's label telling whether a workload runs a sidecar (`istio`) or not (`disabled`). */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

/**
 * workloadEntryHealthy applies Istio's health rule: an entry whose `proxy.istio.io/health-checks-enabled` annotation
 * is `"true"` is healthy only while its `Healthy` condition is `True` (so a VM with a readiness probe is not an
 * endpoint before its first good report); any other entry is healthy.
 */
export function workloadEntryHealthy(we: WorkloadEntryObject): boolean {
  if (we.metadata.annotations?.[WorkloadEntryAnnotations.healthChecksEnabled] !== 'true') return true;
  return we.status?.conditions?.find((c) => c.type === 'Healthy')?.status === 'True';
}

interface SelectingService {
  service: MeshService;
  /** targetPort gives the workload port of a service port for one entry, or undefined when the entry lacks it. */
  targetPort: (we: WorkloadEntryObject, port: number) => number | undefined;
}

/**
 * WorkloadEntryRegistry is a {@link ServiceRegistry} of WorkloadEntries (written by hand or auto-registered from a
 * WorkloadGroup), the part of Istio's ServiceEntry controller VMs need:
 * - a Kubernetes Service's selector also selects the WorkloadEntries of its namespace carrying its labels; a
 *   Service `targetPort` that is a name, or a service port name, is looked up in the entry's `ports`;
 * - a ServiceEntry with `workloadSelector.labels` is a service (one per host) whose endpoints are the matching
 *   entries of its namespace; an entry's `ports[<port name>]` overrides the port's `targetPort`.
 * Endpoints carry the entry's address, labels, ServiceAccount, network (default: the cluster's), locality
 * (`region/zone/subzone`), weight and health ({@link workloadEntryHealthy}); `tlsMode` comes from the
 * `security.istio.io/tlsMode` label, defaulting to `istio` for auto-registered entries (they run the fedmesh proxy)
 * and `disabled` for others. Instances of a Kubernetes Service are merged by the push context with the Kubernetes
 * registry's pods (same hostname). Views are rebuilt lazily after each store revision.
 */
export class WorkloadEntryRegistry implements ServiceRegistry {
  readonly provider = 'External';
  readonly cluster: string;
  private builtAt = -1;
  private svcs: MeshService[] = [];
  private byHost = new Map<string, SelectingService>();
  private entries: WorkloadEntryObject[] = [];

  /** constructor stores references; nothing is computed before first use. */
  constructor(
    private readonly store: ConfigStore<StoredObject>,
    private readonly opts: WorkloadEntryRegistryOptions,
  ) {
    this.cluster = opts.cluster;
  }

  /** services implements {@link ServiceRegistry.services}: Services and ServiceEntries selecting at least one entry. */
  services(): MeshService[] {
    this.refresh();
    return this.svcs;
  }

  /** instances implements {@link ServiceRegistry.instances}. */
  instances(hostname: string, port: number): ServiceInstance[] {
    this.refresh();
    const hit = this.byHost.get(hostname);
    const servicePort = hit?.service.ports.find((p) => p.port === port);
    if (!hit || !servicePort) return [];
    const out: ServiceInstance[] = [];
    for (const we of this.entries) {
      if (namespaceOf(we) !== hit.service.namespace || !selects(hit.service.selector, we.spec.labels ?? {})) continue;
      const targetPort = hit.targetPort(we, port);
      const endpoint = this.endpointOf(we);
      if (targetPort !== undefined && endpoint)
        out.push({ service: hit.service, servicePort: { ...servicePort, targetPort }, endpoint });
    }
    return out;
  }

  /** workloadByAddress implements {@link ServiceRegistry.workloadByAddress}. */
  workloadByAddress(address: string): WorkloadEndpoint | undefined {
    this.refresh();
    const we = this.entries.find((e) => e.spec.address === address);
    return we ? this.endpointOf(we) : undefined;
  }

  private endpointOf(we: WorkloadEntryObject): WorkloadEndpoint | undefined {
    const address = we.spec.address;
    if (!address || address.startsWith('unix://')) return undefined;
    const labels = we.spec.labels ?? {};
    const group = we.metadata.annotations?.[WorkloadEntryAnnotations.autoRegistrationGroup];
    const [region = '', zone = '', subZone = ''] = (we.spec.locality ?? '').split('/');
    const tlsLabel = labels[TLS_MODE_LABEL];
    return {
      address,
      labels,
      namespace: namespaceOf(we),
      serviceAccount: we.spec.serviceAccount ?? 'default',
      workloadName: group ?? we.metadata.name,
      podName: we.metadata.name,
      tlsMode: tlsLabel === 'istio' || (tlsLabel === undefined && group !== undefined) ? 'istio' : 'disabled',
      locality: { region, zone, subZone },
      network: we.spec.network ?? this.opts.network,
      cluster: this.opts.cluster,
      healthy: workloadEntryHealthy(we),
      weight: we.spec.weight ?? 1,
    };
  }

  private refresh(): void {
    if (this.builtAt === this.store.revision) return;
    this.builtAt = this.store.revision;
    this.entries = this.store.list<WorkloadEntryObject & StoredObject>('WorkloadEntry');
    this.byHost.clear();
    const selected = (ns: string, selector: Record<string, string>): boolean =>
      this.entries.some((we) => namespaceOf(we) === ns && selects(selector, we.spec.labels ?? {}));
    for (const s of this.store.list<ServiceObject & StoredObject>('Service')) {
      const ns = namespaceOf(s);
      const selector = s.spec.selector ?? {};
      if (!selected(ns, selector)) continue;
      const hostname = `${s.metadata.name}.${ns}.svc.${this.opts.domainSuffix}`;
      const specPorts = s.spec.ports ?? [];
      this.byHost.set(hostname, {
        service: {
          hostname,
          name: s.metadata.name,
          namespace: ns,
          selector,
          labels: s.metadata.labels ?? {},
          exportTo: (s.metadata.annotations?.['networking.istio.io/exportTo'] ?? '')
            .split(',')
            .map((x) => x.trim())
            .filter(Boolean),
          ports: specPorts.map((p) => ({
            name: p.name ?? '',
            port: p.port,
            targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.port,
            protocol: protocolFromPort(p.name, p.appProtocol),
          })),
        },
        targetPort: (we, port) => {
          const p = specPorts.find((sp) => sp.port === port);
          if (!p) return undefined;
          if (typeof p.targetPort === 'string') return we.spec.ports?.[p.targetPort];
          return (p.name !== undefined ? we.spec.ports?.[p.name] : undefined) ?? p.targetPort ?? p.port;
        },
      });
    }
    for (const se of this.store.list<ServiceEntryObject & StoredObject>('ServiceEntry')) {
      const ns = namespaceOf(se);
      const selector = se.spec.workloadSelector?.labels ?? {};
      if (!selected(ns, selector)) continue;
      const ports = se.spec.ports ?? [];
      for (const host of se.spec.hosts) {
        if (host.startsWith('*') || this.byHost.has(host)) continue;
        this.byHost.set(host, {
          service: {
            hostname: host,
            name: host,
            namespace: ns,
            selector,
            labels: se.metadata.labels ?? {},
            exportTo: [...(se.spec.exportTo ?? [])],
            ports: ports.map((p) => ({
              name: p.name ?? '',
              port: p.number,
              targetPort: p.targetPort ?? p.number,
              protocol: protocolFromPort(p.name, p.protocol),
            })),
          },
          targetPort: (we, port) => {
            const p = ports.find((sp) => sp.number === port);
            if (!p) return undefined;
            return (p.name !== undefined ? we.spec.ports?.[p.name] : undefined) ?? p.targetPort ?? p.number;
          },
        });
      }
    }
    this.svcs = [...this.byHost.values()]
      .map((h) => h.service)
      .sort((a, b) => (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
  }
}
