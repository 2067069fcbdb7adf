import { TypeUrl } from '@fedmesh/api/xds';
import { generateGatewayClusters, generateGatewayEndpoints, generateGatewayListeners } from './gateway-passthrough.js';
import type { ResourceGenerator } from './index.js';
import {
  generateIngressClusters,
  generateIngressEndpoints,
  generateIngressListeners,
  generateIngressRoutes,
  generateIngressSecrets,
} from './ingress.js';

/**
 * withGatewayGenerators returns the generator map with gateway (`router~`) proxies answered by the gateway
 * generators, by the gateway mode the proxy announces (`FEDMESH_GATEWAY_MODE`):
 * - `east-west` (default): LDS, CDS and EDS from the AUTO_PASSTHROUGH servers of the Gateways selecting it
 *   (`gateway-passthrough.ts`), no RouteConfigurations, and the sidecar's SDS (the `ROOTCA` trust bundle);
 * - `ingress`: listeners, routes, clusters, endpoints and secrets of the HTTP and TLS-terminating servers of the
 *   Gateways selecting it (`ingress.ts`, docs/adr/0018).
 * Sidecars keep `sidecar`'s generators. Any other type gets nothing for a gateway.
 */
export function withGatewayGenerators(sidecar: ReadonlyMap<string, ResourceGenerator>): Map<string, ResourceGenerator> {
  const eastWest = new Map<string, ResourceGenerator>([
    [TypeUrl.Listener, (p, x, w) => generateGatewayListeners(p, x, w)],
    [TypeUrl.RouteConfiguration, () => []],
    [TypeUrl.Cluster, (p, x, w) => generateGatewayClusters(p, x, w)],
    [TypeUrl.ClusterLoadAssignment, (p, x) => generateGatewayEndpoints(p, x)],
  ]);
  const secret = sidecar.get(TypeUrl.Secret);
  if (secret) eastWest.set(TypeUrl.Secret, secret);
  const ingress = new Map<string, ResourceGenerator>([
    [TypeUrl.Listener, (p, x, w) => generateIngressListeners(p, x, w)],
    [TypeUrl.RouteConfiguration, (p, x, w) => generateIngressRoutes(p, x, w)],
    [TypeUrl.Cluster, (p, x, w) => generateIngressClusters(p, x, w)],
    [TypeUrl.ClusterLoadAssignment, (p, x) => generateIngressEndpoints(p, x)],
    [TypeUrl.Secret, (p, x) => generateIngressSecrets(p, x)],
  ]);
  const out = new Map<string, ResourceGenerator>();
  for (const [typeUrl, gen] of sidecar) {
    out.set(typeUrl, (p, x, w) => {
      if (x.type !== 'router') return gen(p, x, w);
      const forRouter = (x.gatewayMode === 'ingress' ? ingress : eastWest).get(typeUrl);
      return forRouter ? forRouter(p, x, w) : [];
    });
  }
  return out;
}
