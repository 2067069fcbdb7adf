import { TypeUrl } from '@fedmesh/api/xds';
import type { ResourceEntry } from '@fedmesh/xds';
import type { ProxyModel } from '../model/proxy.js';
import type { PushContext } from '../push-context.js';
import { runMemoized } from '../push-memo.js';
import { generateInboundClusters, generateOutboundClusters } from './cds.js';
import { generateEndpoints } from './eds.js';
import { withInterceptionMode } from './capture.js';
import { withGatewayGenerators } from './gateway-generators.js';
import { generateListeners } from './lds.js';
import { generateRoutes } from './rds.js';
import { generateSecrets } from './sds.js';

/** ResourceGenerator makes every resource of one type URL for one proxy from a push context (pure). */
export type ResourceGenerator = (push: PushContext, proxy: ProxyModel, warnings: string[]) => ResourceEntry[];

/**
 * createGenerators returns the generator map, one per type URL (Istio's `XdsResourceGenerator` registry),
 * filled explicitly at bootstrap; capture-mode sidecars get their listeners rewritten (`capture.ts`).
 */
export function createGenerators(): Map<string, ResourceGenerator> {
  const generators = withGatewayGenerators(
    new Map<string, ResourceGenerator>([
      [TypeUrl.Listener, (p, x, w) => generateListeners(p, x, w)],
      [TypeUrl.RouteConfiguration, (p, x, w) => generateRoutes(p, x, w)],
      // Outbound clusters are shared by the proxies of a namespace; only the inbound ones are per proxy.
      [
        TypeUrl.Cluster,
        (p, x, w) => [...runMemoized(generateOutboundClusters, p, x, w), ...generateInboundClusters(p, x)],
      ],
      [TypeUrl.ClusterLoadAssignment, (p, x) => generateEndpoints(p, x)],
      [TypeUrl.Secret, (p) => generateSecrets(p)],
    ]),
  );
  return withInterceptionMode(generators);
}

export {
  generateClusters,
  generateInboundClusters,
  generateOutboundClusters,
  inboundPorts,
  effectivePolicy,
} from './cds.js';
export { generateEndpoints, buildLoadAssignment } from './eds.js';
export { generateListeners, INBOUND_PORT, OUTBOUND_PORT } from './lds.js';
export { generateRoutes, domainsFor, virtualServiceRoutes, OUTBOUND_ROUTE_NAME, ISTIO_DEFAULT_RETRY } from './rds.js';
export { generateSecrets, ROOTCA_SECRET } from './sds.js';
export { withGatewayGenerators } from './gateway-generators.js';
export {
  captureListener,
  withInterceptionMode,
  ORIGINAL_DST_LISTENER_FILTER,
  CAPTURE_BIND_ADDRESS,
  TLS_INSPECTOR_LISTENER_FILTER,
} from './capture.js';
export {
  BLACKHOLE_CLUSTER,
  captureOutboundChains,
  PASSTHROUGH_CHAIN,
  PASSTHROUGH_CLUSTER,
  passthroughClusters,
} from './capture-outbound.js';
export {
  EAST_WEST_PORT,
  generateGatewayClusters,
  generateGatewayEndpoints,
  generateGatewayListeners,
  hostMatches,
  passthroughListeners,
} from './gateway-passthrough.js';
export { NETWORK_GATEWAY_METADATA, withNetworkGateways } from './network-gateway.js';
export {
  createProxylessGenerators,
  generateProxylessClusters,
  generateProxylessListeners,
  isProxylessNode,
  PROXYLESS_GENERATOR,
} from './proxyless.js';
export {
  generateProxylessRoutes,
  proxylessRoutes,
  proxylessRouteName,
  PROXYLESS_DEFAULT_RETRY,
} from './proxyless-rds.js';
export {
  generateIngressClusters,
  generateIngressEndpoints,
  generateIngressListeners,
  generateIngressRoutes,
  generateIngressSecrets,
  ingressListenerName,
} from './ingress.js';
export {
  boundHosts,
  credentialSdsName,
  httpRouteName,
  httpsRouteName,
  ingressPorts,
  intersectHosts,
  type IngressPort,
  type IngressServer,
} from './ingress-servers.js';
