import type { ExportedService, FederationMember } from '@fedmesh/federation';
import type { MeshService, ServiceInstance, ServiceRegistry, WorkloadEndpoint } from '../model/service.js';
import { protocolFromPort } from '../model/service.js';

/** EXPORT_ANNOTATION turns export off for one Service when set to `"false"` (namespace sameness is the default). */
export const EXPORT_ANNOTATION = 'networking.fedmesh.io/export';

/** RemoteEntry is one live peer's export of a service, with how to reach it from this network. */
interface RemoteEntry {
  cluster: string;
  network: string;
  service: ExportedService;
  /** gateway is the peer network's east-west gateway, when the peer is on another network. */
  gateway?: { host: string; port: number };
}

/**
 * parseGatewayAddress splits a ClusterRecord's `gatewayAddress` (`host:port`, `[v6]:port`) into host and port;
 * undefined when it is empty or malformed.
 */
export function parseGatewayAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}

/**
 * FederatedRegistry is a {@link ServiceRegistry} of the endpoints other clusters export, as seen by one
 * {@link FederationMember} (only live peers). A peer on this network is reached directly at its pod addresses. A
 * peer on another network is reached through that network's east-west gateway (its ClusterRecord's
 * `gatewayAddress`, 15443), as Istio does: each of its healthy endpoints becomes an instance at the gateway's
 * address and port marked `networkGateway`, keeping the workload's labels (subsets), service account (peer SAN) and
 * locality; EDS then merges them into one endpoint per gateway weighted by their number (docs/adr/0006). Its
 * unhealthy endpoints are left out. A peer on another network without a gateway cannot be reached and is skipped
 * (`onSkipNetwork`, once per peer). Endpoints carry their cluster, network and locality
 * (`topology.istio.io/cluster`, `topology.istio.io/network`). Namespace sameness: `reviews.default` in every
 * cluster is one service, so the push context merges these instances with the local ones.
 */
export class FederatedRegistry implements ServiceRegistry {
  readonly provider = 'Federation';
  readonly cluster = 'federation';
  private version = 0;
  private builtAt = -1;
  private svcs: MeshService[] = [];
  private byHost = new Map<string, { service: MeshService; remotes: RemoteEntry[] }>();
  private readonly skippedNetworks = new Set<string>();

  /** constructor subscribes to the member's changes. */
  constructor(
    private readonly member: FederationMember,
    private readonly localNetwork: string,
    private readonly onSkipNetwork: (cluster: string, network: string) => void = () => undefined,
  ) {
    member.on('change', () => this.version++);
  }

  /** services implements {@link ServiceRegistry.services}. */
  services(): MeshService[] {
    this.refresh();
    return this.svcs;
  }

  /** instances implements {@link ServiceRegistry.instances}. */
  instances(hostname: string, port: number): ServiceInstance[] {
    this.refresh();
    const entry = this.byHost.get(hostname);
    const servicePort = entry?.service.ports.find((p) => p.port === port);
    if (!entry || !servicePort) return [];
    const out: ServiceInstance[] = [];
    for (const r of entry.remotes)
      for (const ep of r.service.endpoints) {
        const target = ep.targetPorts[String(port)];
        if (target === undefined) continue;
        if (r.gateway && !ep.healthy) continue;
        const endpoint: WorkloadEndpoint = {
          address: r.gateway ? r.gateway.host : ep.address,
          labels: { ...ep.labels, 'topology.istio.io/cluster': r.cluster, 'topology.istio.io/network': r.network },
          namespace: ep.namespace,
          serviceAccount: ep.serviceAccount,
          workloadName: ep.workloadName,
          podName: ep.podName,
          tlsMode: 'istio',
          locality: ep.locality,
          network: r.network,
          cluster: r.cluster,
          healthy: ep.healthy,
          weight: ep.weight,
          ...(r.gateway ? { networkGateway: r.network } : {}),
        };
        const targetPort = r.gateway ? r.gateway.port : target;
        out.push({ service: entry.service, servicePort: { ...servicePort, targetPort }, endpoint });
      }
    return out;
  }

  /** workloadByAddress implements {@link ServiceRegistry.workloadByAddress}: remote workloads have no local proxy. */
  workloadByAddress(): WorkloadEndpoint | undefined {
    return undefined;
  }

  private refresh(): void {
    if (this.builtAt === this.version) return;
    this.builtAt = this.version;
    this.byHost.clear();
    for (const { record, services } of this.member.remote()) {
      const gateway = record.network !== this.localNetwork ? parseGatewayAddress(record.gatewayAddress) : undefined;
      if (record.network !== this.localNetwork && !gateway) {
        if (!this.skippedNetworks.has(record.cluster)) {
          this.skippedNetworks.add(record.cluster);
          this.onSkipNetwork(record.cluster, record.network);
        }
        continue;
      }
      this.skippedNetworks.delete(record.cluster);
      for (const s of services) {
        let entry = this.byHost.get(s.hostname);
        if (!entry) {
          entry = {
            service: {
              hostname: s.hostname,
              name: s.name,
              namespace: s.namespace,
              ports: s.ports.map((p) => ({
                name: p.name,
                port: p.port,
                targetPort: p.port,
                protocol: protocolFromPort(p.name, p.protocol),
              })),
              selector: {},
              exportTo: [],
              labels: {},
            },
            remotes: [],
          };
          this.byHost.set(s.hostname, entry);
        }
        entry.remotes.push({
          cluster: record.cluster,
          network: record.network,
          service: s,
          ...(gateway ? { gateway } : {}),
        });
      }
    }
    this.svcs = [...this.byHost.values()].map((e) => e.service).sort((a, b) => (a.hostname < b.hostname ? -1 : 1));
  }
}

/**
 * exportedServices lists what a cluster exports from its local registry: every service not annotated
 * `networking.fedmesh.io/export: "false"`, with its workloads grouped by address (one endpoint per pod, mapping each
 * service port to its target port).
 */
export function exportedServices(
  local: ServiceRegistry,
  exportOff: (svc: MeshService) => boolean,
): Omit<ExportedService, 'seq'>[] {
  const out: Omit<ExportedService, 'seq'>[] = [];
  for (const svc of local.services()) {
    if (exportOff(svc)) continue;
    const byAddr = new Map<string, ExportedService['endpoints'][number]>();
    for (const port of svc.ports)
      for (const inst of local.instances(svc.hostname, port.port)) {
        const e = inst.endpoint;
        let ep = byAddr.get(e.address);
        if (!ep) {
          ep = {
            address: e.address,
            targetPorts: {},
            labels: e.labels,
            namespace: e.namespace,
            serviceAccount: e.serviceAccount,
            workloadName: e.workloadName,
            podName: e.podName,
            locality: e.locality,
            healthy: e.healthy,
            weight: e.weight,
          };
          byAddr.set(e.address, ep);
        }
        ep.targetPorts[String(port.port)] = inst.servicePort.targetPort;
      }
    out.push({
      hostname: svc.hostname,
      name: svc.name,
      namespace: svc.namespace,
      ports: svc.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
      endpoints: [...byAddr.values()].sort((a, b) => (a.address < b.address ? -1 : 1)),
    });
  }
  return out;
}
