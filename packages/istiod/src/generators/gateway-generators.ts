import { TypeUrl } from '@fedmesh/api/xds';
import { generateGatewayClusters, generateGatewayEndpoints, generateGatewayListeners } from './gateway-passthrough.js';
import type { ResourceGenerator } from './index.js';

/**
 * withGatewayGenerators returns the generator map with gateway (`router~`) proxies answered by the gateway
 * generators: LDS, CDS and EDS from the AUTO_PASSTHROUGH servers of the Gateways selecting them
 * (`gateway-passthrough.ts`), no RouteConfigurations, and the sidecar's SDS (the `ROOTCA` trust bundle). Sidecars
 * keep `sidecar`'s generators. Any other type gets nothing for a gateway.
 */
export function withGatewayGenerators(sidecar: ReadonlyMap<string, ResourceGenerator>): Map<string, ResourceGenerator> {
  const router = new Map<string, ResourceGenerator>([
    [TypeUrl.Listener, (p, x, w) => generateGatewayListeners(p, x, w)],
    [TypeUrl.RouteConfiguration, () => []],
    [TypeUrl.Cluster, (p, x, w) => generateGatewayClusters(p, x, w)],
    [TypeUrl.ClusterLoadAssignment, (p, x) => generateGatewayEndpoints(p, x)],
  ]);
  const secret = sidecar.get(TypeUrl.Secret);
  if (secret) router.set(TypeUrl.Secret, secret);
  const out = new Map<string, ResourceGenerator>();
  for (const [typeUrl, gen] of sidecar) {
    const forRouter = router.get(typeUrl);
    out.set(typeUrl, (p, x, w) => (x.type === 'router' ? (forRouter ? forRouter(p, x, w) : []) : gen(p, x, w)));
  }
  return out;
}
