import { TypeUrl, outboundClusterName } from '@fedmesh/api/xds';
import type { ProxyModel } from '../model/proxy.js';
import type { ServiceInstance } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { effectivePolicy } from './cds.js';
import { matchesLabels, subsetLabels, toResource, type GeneratedResource } from './common.js';
import { withNetworkGateways } from './network-gateway.js';
import {
  applyLocalityLb,
  effectiveLocalitySetting,
  explicitFailover,
  groupByLocality,
  type LocalityGroup,
} from './locality.js';

function lbEndpoint(i: ServiceInstance): object {
  return {
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
        // Istio's transport socket match label: the endpoint runs a sidecar.
        ...(i.endpoint.tlsMode === 'istio'
          ? { 'envoy.transport_socket_match': { fields: { tlsMode: { stringValue: 'istio' } } } }
          : {}),
      },
    },
  };
}

/**
 * buildLoadAssignment makes the ClusterLoadAssignment of one cluster: one `LocalityLbEndpoints` per locality
 * group (by default every locality at priority 0, weighted by the sum of its endpoint weights: gRPC drops a
 * locality without `load_balancing_weight`), health from readiness, and Istio's endpoint metadata
 * `istio.workload` = `<workload>;<ns>;<app>;<version>;<cluster>`. `groups` overrides the grouping (locality
 * load balancing: priorities and weights per proxy, see `locality.ts`).
 */
export function buildLoadAssignment(
  clusterName: string,
  instances: readonly ServiceInstance[],
  groups: readonly LocalityGroup[] = groupByLocality(instances),
): object {
  const endpoints = groups.map((g) => ({
    locality: { region: g.locality.region, zone: g.locality.zone, sub_zone: g.locality.subZone },
    load_balancing_weight: { value: g.weight },
    ...(g.priority > 0 ? { priority: g.priority } : {}),
    lb_endpoints: withNetworkGateways(
      g.instances.slice().sort((a, b) => (a.endpoint.address < b.endpoint.address ? -1 : 1)),
      lbEndpoint,
    ),
  }));
  return { cluster_name: clusterName, endpoints };
}

/**
 * generateEndpoints is the EDS generator: one ClusterLoadAssignment per outbound cluster visible to the proxy
 * (the base cluster and each DestinationRule subset, whose endpoints are those carrying the subset's labels).
 * Locality load balancing follows the cluster's effective DestinationRule policy, relative to the proxy's own
 * locality: `localityLbSetting.distribute` sets locality weights; with `outlierDetection`, endpoints get
 * failover priorities (`failover`, `failoverPriority`, or by default same zone, then region, then elsewhere), and
 * so do DestinationRules in the explicit failover mode (`networking.fedmesh.io/failover-mode: explicit`).
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
        const subsetPolicy = subset ? dr?.spec.subsets?.find((s) => s.name === subset)?.trafficPolicy : undefined;
        const policy = effectivePolicy(dr?.spec.trafficPolicy, subsetPolicy, port.port);
        const instances = all.filter((i) => matchesLabels(labels, i.endpoint.labels));
        const setting = effectiveLocalitySetting(policy.loadBalancer?.localityLbSetting);
        const groups = applyLocalityLb(instances, proxy, setting, policy.outlierDetection, explicitFailover(dr));
        out.push(toResource(TypeUrl.ClusterLoadAssignment, name, buildLoadAssignment(name, instances, groups)));
      }
    }
  }
  return out;
}
