import { TypeUrl, mtlsSni } from '@fedmesh/api/xds';
import { namespaceOf } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { MeshService, ServiceInstance } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import {
  ADS_SOURCE,
  durationToProto,
  matchesLabels,
  subsetLabels,
  toResource,
  type GeneratedResource,
} from './common.js';
import { buildLoadAssignment } from './eds.js';
import { INBOUND_PORT } from './lds.js';

/** EAST_WEST_PORT is Istio's east-west gateway port for TLS AUTO_PASSTHROUGH (`tls` on 15443). */
export const EAST_WEST_PORT = 15443;
/** GATEWAY_HELLO_TIMEOUT_MS is the gateway listener's `listener_filters_timeout` (Envoy's default is 15 s). */
export const GATEWAY_HELLO_TIMEOUT_MS = 5_000;
/** GATEWAY_TCP_IDLE_TIMEOUT_MS is each passthrough `tcp_proxy`'s `idle_timeout` (Envoy's and Istio's default, 1 h). */
export const GATEWAY_TCP_IDLE_TIMEOUT_MS = 3_600_000;

const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const TLS_INSPECTOR = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
};

/** PassthroughCluster is one SNI-named cluster an AUTO_PASSTHROUGH server routes to, with its local endpoints. */
export interface PassthroughCluster {
  /** name is `outbound_.<port>_.<subset>_.<host>`: the SNI, the filter chain and the cluster are all named so. */
  name: string;
  instances: ServiceInstance[];
}

/** PassthroughListener is one gateway port with TLS AUTO_PASSTHROUGH and the clusters it exposes. */
export interface PassthroughListener {
  port: number;
  clusters: PassthroughCluster[];
}

/**
 * hostMatches applies a Gateway server host (`[namespace/]host`, host `*`, `*.suffix` or exact; namespace `*`,
 * `.` for the Gateway's own, or a name) to a service, as Istio does for gateway servers.
 */
export function hostMatches(serverHost: string, gatewayNs: string, svc: MeshService): boolean {
  const slash = serverHost.indexOf('/');
  const ns = slash >= 0 ? serverHost.slice(0, slash) : '*';
  const host = slash >= 0 ? serverHost.slice(slash + 1) : serverHost;
  if (ns === '~') return false;
  if (ns !== '*' && (ns === '.' ? gatewayNs : ns) !== svc.namespace) return false;
  if (host === '*') return true;
  if (host.startsWith('*.')) return svc.hostname.endsWith(host.slice(1));
  return svc.hostname === host;
}

/**
 * passthroughListeners finds what a gateway proxy serves with TLS AUTO_PASSTHROUGH (Istio's east-west gateway,
 * e.g. the sample `cross-network-gateway`): every Gateway whose `selector` matches the proxy's labels, every server
 * with `tls.mode: AUTO_PASSTHROUGH`, every service its hosts match that has a workload on this network, and for
 * each service port and DestinationRule subset one cluster named by the SNI a client sidecar sends. A Service with
 * `networking.fedmesh.io/export: "false"` is not served (it stays local to this network). The endpoints
 * are this network's sidecar-injected workloads only (never another network's gateway, which would loop).
 * Servers of other modes are reported in `warnings` and left out.
 */
export function passthroughListeners(push: PushContext, proxy: ProxyModel, warnings: string[]): PassthroughListener[] {
  const byPort = new Map<number, Map<string, PassthroughCluster>>();
  const local = (i: ServiceInstance): boolean =>
    i.endpoint.networkGateway === undefined &&
    i.endpoint.tlsMode === 'istio' &&
    i.endpoint.network === push.mesh.network;
  for (const gw of push.gateways) {
    if (!matchesLabels(gw.spec.selector ?? {}, proxy.labels)) continue;
    const gwNs = namespaceOf(gw);
    gw.spec.servers.forEach((server, idx) => {
      if (server.tls?.mode !== 'AUTO_PASSTHROUGH') {
        warnings.push(
          `Gateway ${gwNs}/${gw.metadata.name} servers[${idx}]: only TLS AUTO_PASSTHROUGH is served by east-west gateway proxies (ingress-mode gateways serve HTTP and HTTPS); server left out`,
        );
        return;
      }
      const clusters = byPort.get(server.port.number) ?? new Map<string, PassthroughCluster>();
      byPort.set(server.port.number, clusters);
      for (const svc of push.services) {
        if (push.exportDisabled.has(svc.hostname) || !server.hosts.some((h) => hostMatches(h, gwNs, svc))) continue;
        const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
        const perPort = svc.ports.map((p) => ({
          port: p,
          instances: push.instances(svc.hostname, p.port).filter(local),
        }));
        if (!perPort.some((p) => p.instances.length > 0)) continue;
        for (const { port, instances } of perPort)
          for (const subset of ['', ...(dr?.spec.subsets ?? []).map((s) => s.name)]) {
            const name = mtlsSni(port.port, subset, svc.hostname);
            if (clusters.has(name)) continue;
            const labels = subset ? (subsetLabels(dr, subset) ?? {}) : {};
            clusters.set(name, { name, instances: instances.filter((i) => matchesLabels(labels, i.endpoint.labels)) });
          }
      }
    });
  }
  return [...byPort.entries()]
    .sort(([a], [b]) => a - b)
    .map(([port, clusters]) => ({
      port,
      clusters: [...clusters.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    }));
}

/**
 * generateGatewayListeners is the LDS generator for a gateway proxy: per AUTO_PASSTHROUGH port, a Listener on
 * `<ip>:<port>` with the tls_inspector and one filter chain per cluster, matched on `server_names: [<sni>]`,
 * holding a `tcp_proxy` to the cluster of the same name (Istio's AUTO_PASSTHROUGH shape). TLS is never
 * terminated. Timeouts are explicit: the ClientHello within {@link GATEWAY_HELLO_TIMEOUT_MS}, idle connections
 * closed after {@link GATEWAY_TCP_IDLE_TIMEOUT_MS}.
 */
export function generateGatewayListeners(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[],
): GeneratedResource[] {
  return passthroughListeners(push, proxy, warnings)
    .filter((l) => l.clusters.length > 0)
    .map((l) => {
      const name = `${proxy.ip}_${l.port}`;
      return toResource(TypeUrl.Listener, name, {
        name,
        address: { socket_address: { address: proxy.ip, port_value: l.port } },
        traffic_direction: 'INBOUND',
        listener_filters: [TLS_INSPECTOR],
        listener_filters_timeout: durationToProto(GATEWAY_HELLO_TIMEOUT_MS),
        filter_chains: l.clusters.map((c) => ({
          name: c.name,
          filter_chain_match: { server_names: [c.name] },
          filters: [
            {
              name: 'envoy.filters.network.tcp_proxy',
              typed_config: {
                '@type': TCP_PROXY_TYPE,
                stat_prefix: c.name,
                cluster: c.name,
                idle_timeout: durationToProto(GATEWAY_TCP_IDLE_TIMEOUT_MS),
              },
            },
          ],
        })),
      });
    });
}

/** generateGatewayClusters is the CDS generator for a gateway proxy: one plaintext (passthrough) EDS cluster per SNI. */
export function generateGatewayClusters(push: PushContext, proxy: ProxyModel, warnings: string[]): GeneratedResource[] {
  const seen = new Set<string>();
  const out: GeneratedResource[] = [];
  for (const l of passthroughListeners(push, proxy, warnings))
    for (const c of l.clusters) {
      if (seen.has(c.name)) continue;
      seen.add(c.name);
      out.push(
        toResource(TypeUrl.Cluster, c.name, {
          name: c.name,
          type: 'EDS',
          eds_cluster_config: { service_name: c.name, eds_config: ADS_SOURCE },
          connect_timeout: durationToProto(10_000),
        }),
      );
    }
  return out;
}

/**
 * generateGatewayEndpoints is the EDS generator for a gateway proxy: each passthrough cluster's endpoints are the
 * local workloads at their sidecar's mTLS port (explicit mode: 15006), where the sidecar picks its inbound chain by
 * the same SNI and checks the client certificate itself.
 */
export function generateGatewayEndpoints(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const seen = new Set<string>();
  const out: GeneratedResource[] = [];
  for (const l of passthroughListeners(push, proxy, []))
    for (const c of l.clusters) {
      if (seen.has(c.name)) continue;
      seen.add(c.name);
      const atSidecar = c.instances.map((i) => ({ ...i, servicePort: { ...i.servicePort, targetPort: INBOUND_PORT } }));
      out.push(toResource(TypeUrl.ClusterLoadAssignment, c.name, buildLoadAssignment(c.name, atSidecar)));
    }
  return out;
}
