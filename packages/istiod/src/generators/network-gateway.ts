import type { ServiceInstance } from '../model/service.js';

/** NETWORK_GATEWAY_METADATA is the filter-metadata key marking an east-west gateway endpoint (docs/adr/0006). */
export const NETWORK_GATEWAY_METADATA = 'fedmesh';

/**
 * withNetworkGateways turns one locality's instances into `lb_endpoints`: ordinary instances one each
 * (`lbEndpoint`), and the instances another network's east-west gateway stands in for merged into one endpoint
 * per gateway address whose `load_balancing_weight` is the sum of theirs (Istio weights a network gateway by the
 * number of endpoints behind it). A merged endpoint carries `filter_metadata.fedmesh.network_gateway: <network>`,
 * so an explicit-mode sidecar dials its port (15443) rather than 15006, and `istio.workload` keeps the remote
 * cluster (`;<ns>;<app>;<version>;<cluster>`, each part only where every merged instance agrees).
 */
export function withNetworkGateways(
  instances: readonly ServiceInstance[],
  lbEndpoint: (i: ServiceInstance) => object,
): object[] {
  const out: object[] = [];
  const gateways = new Map<string, ServiceInstance[]>();
  for (const i of instances) {
    if (i.endpoint.networkGateway === undefined) {
      out.push(lbEndpoint(i));
      continue;
    }
    const key = `${i.endpoint.networkGateway}|${i.endpoint.address}|${i.servicePort.targetPort}`;
    gateways.set(key, [...(gateways.get(key) ?? []), i]);
  }
  for (const group of gateways.values()) {
    const first = group[0];
    if (!first) continue;
    const same = (f: (i: ServiceInstance) => string): string => {
      const v = f(first);
      return group.every((i) => f(i) === v) ? v : '';
    };
    const workload = [
      '',
      same((i) => i.endpoint.namespace),
      same((i) => i.endpoint.labels.app ?? ''),
      same((i) => i.endpoint.labels.version ?? ''),
      same((i) => i.endpoint.cluster),
    ].join(';');
    out.push({
      endpoint: {
        address: { socket_address: { address: first.endpoint.address, port_value: first.servicePort.targetPort } },
      },
      health_status: 'HEALTHY',
      load_balancing_weight: { value: group.reduce((n, i) => n + i.endpoint.weight, 0) },
      metadata: {
        filter_metadata: {
          istio: { fields: { workload: { stringValue: workload } } },
          [NETWORK_GATEWAY_METADATA]: { fields: { network_gateway: { stringValue: first.endpoint.networkGateway } } },
        },
      },
    });
  }
  return out;
}
