/**
 * Listeners and filter chains for TCP and TLS service ports (Istio's protocol selection: a port named `tcp-…`,
 * `tls-…`, `https-…`, an `appProtocol`, or an unnamed port), served by Envoy's `tcp_proxy`:
 * - outbound, an explicit-mode sidecar gets one Listener per such port on `<its ip>:<port>`: the app dials that
 *   address (as it dials 15001 for HTTP). TLS ports have one chain per SNI behind a `tls_inspector` (VirtualService
 *   `tls` routes' `sniHosts`, else the service's hostname), passing the app's TLS through untouched; a TCP port
 *   has one catch-all chain (VirtualService `tcp` routes, else the service). Explicit mode has no destination
 *   address to tell two TCP services on one port apart, so the first (by hostname) takes it;
 * - inbound, per TCP/TLS target port, an mTLS chain by SNI (`outbound_.<port>_.<subset>_.<host>`) whose tcp_proxy
 *   forwards the decrypted stream to `inbound|<port>||`, behind the workload's AuthorizationPolicies as
 *   `envoy.filters.network.rbac` filters (authz.ts `buildNetworkRbacFilters`, docs/adr/0017).
 */
import { TypeUrl, inboundClusterName, mtlsSni, outboundClusterName } from '@fedmesh/api/xds';
import type { RouteDestination } from '@fedmesh/api';
import { namespaceOf, type VirtualServiceObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import { isHttpProtocol, type MeshService, type ServicePort } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import type { MtlsMode } from './authn.js';
import { inboundPorts } from './cds.js';
import { matchesLabels, toResource, type GeneratedResource } from './common.js';
import { ALPN_IN_MESH_TCP } from './upstream-protocol.js';

/** PROXY_PORTS are the sidecar's own ports; a service port among them gets no outbound listener. */
export const PROXY_PORTS: ReadonlySet<number> = new Set([15000, 15001, 15004, 15006, 15020, 15021, 15053, 15090]);

const TLS_INSPECTOR = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
};

/** tcpProxyFilter is an `envoy.filters.network.tcp_proxy` to one cluster. */
export function tcpProxyFilter(cluster: string): object {
  return {
    name: 'envoy.filters.network.tcp_proxy',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
      stat_prefix: cluster,
      cluster,
    },
  };
}

/** isTlsProtocol tells the ports whose connections are passed through by SNI (Istio's TLS and HTTPS). */
export function isTlsProtocol(p: ServicePort['protocol']): boolean {
  return p === 'TLS' || p === 'HTTPS';
}

interface L4Match {
  port?: number | undefined;
  sourceLabels?: Record<string, string> | undefined;
  sourceNamespace?: string | undefined;
  gateways?: string[] | undefined;
}

function l4MatchApplies(m: L4Match | undefined, proxy: ProxyModel, port: number): boolean {
  if (!m) return true;
  if (m.port !== undefined && m.port !== port) return false;
  if (m.sourceLabels && !matchesLabels(m.sourceLabels, proxy.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== proxy.namespace) return false;
  if (m.gateways && m.gateways.length > 0 && !m.gateways.includes('mesh')) return false;
  return true;
}

/** destinationClusterOf picks the cluster of an L4 route: its only destination, or the heaviest one (with a warning). */
function destinationClusterOf(
  push: PushContext,
  vs: VirtualServiceObject,
  dests: readonly RouteDestination[],
  port: number,
  where: string,
  warnings: string[],
): string | undefined {
  const sorted = [...dests].sort((a, b) => (b.weight ?? 0) - (a.weight ?? 0));
  const d = sorted[0];
  if (!d) return undefined;
  if (sorted.length > 1)
    warnings.push(
      `${where}: weighted TCP/TLS destinations are not supported yet; all traffic goes to ${d.destination.host}`,
    );
  const host = push.resolveHost(d.destination.host, namespaceOf(vs));
  const svc = push.service(host);
  const p = d.destination.port?.number ?? (svc && svc.ports.length === 1 ? svc.ports[0]?.port : port) ?? port;
  return outboundClusterName(p, d.destination.subset ?? '', host);
}

interface PortPlan {
  sni: { names: string[]; cluster: string }[];
  tcp: { cluster: string; owner: string } | undefined;
}

/**
 * tlsPortRoutes returns where a TLS service port's connections go by SNI, as Istio's outbound TLS chains have it: the
 * VirtualService `tls` routes whose match applies to the proxy (`sniHosts` → destination cluster), else the service's
 * own hostname to `outbound|<port>||<host>`. `routed` tells whether a VirtualService decided. Pure.
 */
export function tlsPortRoutes(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  warnings: string[],
): { routes: { names: string[]; cluster: string }[]; routed: boolean } {
  const vs = push.virtualServiceFor(svc.hostname, proxy.namespace);
  const where = `${svc.hostname}:${port.port}`;
  const routes: { names: string[]; cluster: string }[] = [];
  (vs?.spec.tls ?? []).forEach((r, i) => {
    if (!vs) return;
    const cluster = destinationClusterOf(push, vs, r.route ?? [], port.port, `${where} tls[${i}]`, warnings);
    if (!cluster) return;
    for (const m of r.match) if (l4MatchApplies(m, proxy, port.port)) routes.push({ names: m.sniHosts, cluster });
  });
  if (routes.length > 0) return { routes, routed: true };
  return {
    routes: [{ names: [svc.hostname], cluster: outboundClusterName(port.port, '', svc.hostname) }],
    routed: false,
  };
}

/**
 * tcpPortCluster returns the cluster a TCP service port's connections go to: the first VirtualService `tcp` route
 * whose match applies to the proxy, else `outbound|<port>||<host>`. Pure.
 */
export function tcpPortCluster(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  warnings: string[],
): string {
  const vs = push.virtualServiceFor(svc.hostname, proxy.namespace);
  const own = outboundClusterName(port.port, '', svc.hostname);
  for (const [i, r] of (vs?.spec.tcp ?? []).entries()) {
    if (!vs || !(r.match ?? [undefined]).some((m) => l4MatchApplies(m, proxy, port.port))) continue;
    const where = `${svc.hostname}:${port.port} tcp[${i}]`;
    return destinationClusterOf(push, vs, r.route ?? [], port.port, where, warnings) ?? own;
  }
  return own;
}

function planService(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  plan: PortPlan,
  warnings: string[],
): void {
  if (isTlsProtocol(port.protocol)) {
    plan.sni.push(...tlsPortRoutes(push, proxy, svc, port, warnings).routes);
    return;
  }
  const cluster = tcpPortCluster(push, proxy, svc, port, warnings);
  const where = `${svc.hostname}:${port.port}`;
  if (plan.tcp) warnings.push(`${where}: TCP port ${port.port} is already served for ${plan.tcp.owner}; left out`);
  else plan.tcp = { cluster, owner: svc.hostname };
}

/**
 * ownPorts are the ports the proxy's own workload listens on: the target ports of the services that have it as an
 * endpoint, and of those in its namespace whose selector matches its labels (known from its Node before the
 * registry lists its pod, so a new sidecar never takes its app's port, not even briefly).
 */
function ownPorts(push: PushContext, proxy: ProxyModel): Set<number> {
  const own = new Set(inboundPorts(push, proxy).keys());
  for (const svc of push.services) {
    if (svc.namespace !== proxy.namespace || Object.keys(svc.selector).length === 0) continue;
    if (!matchesLabels(svc.selector, proxy.labels)) continue;
    for (const p of svc.ports) own.add(p.targetPort);
  }
  return own;
}

/**
 * generateTcpListeners builds the outbound per-port Listeners of an explicit-mode sidecar for its visible TCP and
 * TLS service ports (see the module comment). Ports that collide with the proxy's own ports or its workload's
 * ({@link ownPorts}) are left out with a warning. Pure.
 */
export function generateTcpListeners(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): GeneratedResource[] {
  if (proxy.type !== 'sidecar' || proxy.interceptionMode === 'REDIRECT') return [];
  const own = ownPorts(push, proxy);
  const plans = new Map<number, PortPlan>();
  const services = [...push.servicesFor(proxy.namespace)].sort((a, b) => (a.hostname < b.hostname ? -1 : 1));
  for (const svc of services)
    for (const port of svc.ports) {
      if (isHttpProtocol(port.protocol)) continue;
      if (PROXY_PORTS.has(port.port) || own.has(port.port)) {
        warnings.push(`${svc.hostname}:${port.port}: port is taken on the sidecar's address; no outbound TCP listener`);
        continue;
      }
      let plan = plans.get(port.port);
      if (!plan) plans.set(port.port, (plan = { sni: [], tcp: undefined }));
      planService(push, proxy, svc, port, plan, warnings);
    }
  const out: GeneratedResource[] = [];
  for (const [port, plan] of [...plans].sort(([a], [b]) => a - b)) {
    const taken = new Set<string>();
    const chains: object[] = [];
    for (const s of plan.sni) {
      const names = s.names.map((n) => n.toLowerCase()).filter((n) => !taken.has(n));
      names.forEach((n) => taken.add(n));
      if (names.length === 0) continue;
      chains.push({
        name: `${port}|tls|${names[0] ?? ''}`,
        filter_chain_match: { transport_protocol: 'tls', server_names: names },
        filters: [tcpProxyFilter(s.cluster)],
      });
    }
    if (plan.tcp) chains.push({ name: `${port}|tcp`, filters: [tcpProxyFilter(plan.tcp.cluster)] });
    if (chains.length === 0) continue;
    const name = `${proxy.ip}_${port}`;
    out.push(
      toResource(TypeUrl.Listener, name, {
        name,
        address: { socket_address: { address: proxy.ip, port_value: port } },
        traffic_direction: 'OUTBOUND',
        ...(plan.sni.length > 0 ? { listener_filters: [TLS_INSPECTOR] } : {}),
        filter_chains: chains,
      }),
    );
  }
  return out;
}

/**
 * inboundTcpChains builds the inbound chains of a sidecar's TCP and TLS target ports (see the module comment). Per
 * port whose mode is STRICT or PERMISSIVE, an mTLS chain matched on the SNIs peers send, with the DownstreamTlsContext
 * `tlsContext`, the network RBAC filters `rbacFilters` (the workload's AuthorizationPolicies, in order; empty when
 * none applies) and a tcp_proxy to `inbound|<port>||`. In explicit mode plaintext TCP cannot be told apart by port on
 * 15006, so PERMISSIVE accepts mTLS only there and DISABLE leaves the port out (both warned). With `capture` (a
 * REDIRECT sidecar, whose peers' connections keep their destination port), each port also gets chains selected by
 * `destination_port`, as Istio's inbound chains are: mTLS (`transport_protocol: tls`, no SNI needed) for STRICT and
 * PERMISSIVE, and plaintext (`raw_buffer`) for PERMISSIVE and DISABLE, both behind the same RBAC filters.
 */
export function inboundTcpChains(
  ports: readonly [number, { svc: MeshService; port: ServicePort; subsets: string[] }[]][],
  modeOf: (port: number) => MtlsMode,
  rbacFilters: readonly object[],
  tlsContext: () => object,
  warnings: string[],
  capture = false,
): object[] {
  if (ports.length === 0) return [];
  const chains: object[] = [];
  const mtlsContext = (): object => {
    const ctx = tlsContext() as { typed_config: { common_tls_context: Record<string, unknown> } };
    ctx.typed_config.common_tls_context.alpn_protocols = [...ALPN_IN_MESH_TCP];
    return ctx;
  };
  for (const [targetPort, refs] of ports) {
    const mode = modeOf(targetPort);
    const cluster = inboundClusterName(targetPort);
    const filters = [...rbacFilters, tcpProxyFilter(cluster)];
    if (capture) {
      const destination_port = { value: targetPort };
      if (mode !== 'DISABLE')
        chains.push({
          name: `${cluster}@mtls`,
          filter_chain_match: { destination_port, transport_protocol: 'tls' },
          transport_socket: mtlsContext(),
          filters,
        });
      if (mode !== 'STRICT')
        chains.push({
          name: `${cluster}@plaintext`,
          filter_chain_match: { destination_port, transport_protocol: 'raw_buffer' },
          filters,
        });
    } else if (mode === 'DISABLE') {
      warnings.push(
        `virtualInbound: TCP port ${targetPort} with mTLS DISABLE is not reachable in explicit mode; left out`,
      );
      continue;
    } else if (mode === 'PERMISSIVE')
      warnings.push(`virtualInbound: TCP port ${targetPort} is PERMISSIVE; explicit mode accepts only mTLS there`);
    if (mode === 'DISABLE') continue;
    // The SNI chain serves explicit-mode peers, which dial 15006 itself (in capture mode too).
    const serverNames = [
      ...new Set(refs.flatMap((r) => ['', ...r.subsets].map((s) => mtlsSni(r.port.port, s, r.svc.hostname)))),
    ].sort();
    chains.push({
      name: cluster,
      filter_chain_match: { transport_protocol: 'tls', server_names: serverNames },
      transport_socket: mtlsContext(),
      filters,
    });
  }
  return chains;
}
