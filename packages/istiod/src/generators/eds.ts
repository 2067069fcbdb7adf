import { TypeUrl, outboundClusterName } from '@fedmesh/api/xds';
import type { ProxyModel } from '../model/proxy.js';
import type { ServiceInstance } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { matchesLabels, subsetLabels, toResource, type GeneratedResource } from './common.js';

function localityKey(i: ServiceInstance): string {
  const l = i.endpoint.locality;
  return `${l.region}/${l.zone}/${l.subZone}`;
}

/**
 * buildLoadAssignment makes the ClusterLoadAssignment of one cluster: endpoints grouped by locality, each locality
 * weighted by the sum of its endpoint weights (gRPC drops a locality without `load_balancing_weight`), health
 * from readiness, and Istio's endpoint metadata `istio.workload` = `<workload>;<ns>;<app>;<version>;<cluster>`.
 */
export function buildLoadAssignment(clusterName: string, instances: readonly ServiceInstance[]): object {
  const groups = new Map<string, ServiceInstance[]>();
  for (const i of instances) {
    const k = localityKey(i);
    const g = groups.get(k) ?? [];
    g.push(i);
    groups.set(k, g);
  }
  const endpoints = [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, list]) => {
      const l = list[0]?.endpoint.locality ?? { region: '', zone: '', subZone: '' };
      return {
        locality: { region: l.region, zone: l.zone, sub_zone: l.subZone },
        load_balancing_weight: { value: list.reduce((s, i) => s + i.endpoint.weight, 0) },
        lb_endpoints: list
          .slice()
          .sort((a, b) => (a.endpoint.address < b.endpoint.address ? -1 : 1))
          .map((i) => ({
            endpoint: {
              address: { socket_address: { address: i.endpoint.address, port_value: i.servicePort.targetPort } },
            },
            health_status: i.endpoint.healthy ? 'HEALTHY' : 'UNHEALTHY',
            load_balancing_weight: { value: i.endpoint.weight },
            metadata: {
              filter_metadata: {
                istio: {
                  fields: {
                    workload: {
                      stringValue: [
                        i.endpoint.workloadName,
                        i.endpoint.namespace,
                        i.endpoint.labels.app ?? '',
                        i.endpoint.labels.version ?? '',
                        i.endpoint.cluster,
                      ].join(';'),
                    },
                  },
                },
              },
            },
          })),
      };
    });
  return { cluster_name: clusterName, endpoints };
}

/**
 * generateEndpoints is the EDS generator: one ClusterLoadAssignment per outbound cluster visible to the proxy
 * (the base cluster and each DestinationRule subset, whose endpoints are those carrying the subset's labels).
 */
export function generateEndpoints(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const svc of push.servicesFor(proxy.namespace)) {
    const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
    for (const port of svc.ports) {
      const all = push.instances(svc.hostname, port.port);
      for (const subset of ['', ...(dr?.spec.subsets ?? []).map((s) => s.name)]) {
        const labels = subset ? (subsetLabels(dr, subset) ?? {}) : {};
        const name = outboundClusterName(port.port, subset, svc.hostname);
        out.push(
          toResource(
            TypeUrl.ClusterLoadAssignment,
            name,
            buildLoadAssignment(
              name,
              all.filter((i) => matchesLabels(labels, i.endpoint.labels)),
            ),
          ),
        );
      }
    }
  }
  return out;
}
