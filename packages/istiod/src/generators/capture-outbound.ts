/**
 * The filter chains of a capture-mode (REDIRECT) sidecar's `virtualOutbound`, chosen by each connection's original
 * destination as Istio's outbound listeners are (Istio generates one listener per `<vip>_<port>` or `0.0.0.0_<port>`
 * and hands connections to them with `use_original_dst`; fedmesh folds those listeners into `virtualOutbound` as
 * filter chains with the same matches, which Envoy's filter chain matching selects in the same way):
 * - HTTP ports (protocol by explicit selection: port name or `appProtocol`; no sniffing): `0.0.0.0_<port>`, a copy
 *   of the HTTP connection manager chain matched on `destination_port`; routes pick the service by Host or VIP;
 * - TCP ports: `<vip>_<port>` per virtual IP (`destination_port` + `prefix_ranges` `<vip>/32`), a tcp_proxy to
 *   `outbound|<port>||<host>` (or the VirtualService `tcp` route); a service with no virtual IP takes the whole port
 *   (`0.0.0.0_<port>`) unless an HTTP port or an earlier service (by hostname) has it;
 * - TLS ports: passed through by SNI (VirtualService `tls` routes' `sniHosts`, else the hostname), with the virtual
 *   IPs as `prefix_ranges` when the service has them; a service with virtual IPs and no `tls` route also gets a
 *   chain by address alone, as Istio's does;
 * - per port that has address or SNI chains but no chain for the rest of the port, and a catch-all for every other
 *   destination: `PassthroughFilterChain`, a tcp_proxy to `PassthroughCluster` (ORIGINAL_DST: the destination the
 *   app dialled) under `outboundTrafficPolicy` ALLOW_ANY (the default), to `BlackHoleCluster` (no host: closed)
 *   under REGISTRY_ONLY.
 * The mTLS to a peer sidecar is the outbound cluster's (auto mTLS, cds.ts); the peer's inbound redirect takes it to
 * its 15006, where the port picks the TCP chain (tcp-listeners.ts `inboundTcpChains`).
 */
import net from 'node:net';
import type { ProxyModel } from '../model/proxy.js';
import { isHttpProtocol, type MeshService } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { durationToProto } from './common.js';
import { isTlsProtocol, tcpPortCluster, tcpProxyFilter, tlsPortRoutes } from './tcp-listeners.js';

/** PASSTHROUGH_CLUSTER is Istio's ORIGINAL_DST cluster for destinations the mesh does not know (ALLOW_ANY). */
export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
/** BLACKHOLE_CLUSTER is Istio's cluster without hosts, where REGISTRY_ONLY sends unknown destinations. */
export const BLACKHOLE_CLUSTER = 'BlackHoleCluster';
/** PASSTHROUGH_CHAIN is the name of `virtualOutbound`'s catch-all chain (Istio's `PassthroughFilterChain`). */
export const PASSTHROUGH_CHAIN = 'PassthroughFilterChain';

type Obj = Record<string, unknown>;

/**
 * passthroughClusters are the clusters a capture-mode sidecar's catch-all chains use: `PassthroughCluster`
 * (ORIGINAL_DST, `lb_policy: CLUSTER_PROVIDED`, 10 s connect timeout, as Istio generates it) and `BlackHoleCluster`
 * (STATIC with no endpoint).
 */
export function passthroughClusters(): Obj[] {
  return [
    {
      name: PASSTHROUGH_CLUSTER,
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: durationToProto(10_000),
    },
    {
      name: BLACKHOLE_CLUSTER,
      type: 'STATIC',
      connect_timeout: durationToProto(10_000),
      load_assignment: { cluster_name: BLACKHOLE_CLUSTER, endpoints: [] },
    },
  ];
}

function hostRange(ip: string): Obj {
  return { address_prefix: ip, prefix_len: { value: net.isIP(ip) === 6 ? 128 : 32 } };
}

/** OutboundPlan collects the chains of one destination port. */
interface PortChains {
  http: boolean;
  /** byAddress: `<vip>` or `<vip>|<sni>` → chain; `*` and `*|<sni>` for chains without an address. */
  chains: Map<string, Obj>;
}

function chainFor(port: number, name: string, cluster: string, vips: readonly string[], sni?: string[]): Obj {
  return {
    name,
    filter_chain_match: {
      destination_port: { value: port },
      ...(vips.length > 0 ? { prefix_ranges: vips.map(hostRange) } : {}),
      ...(sni ? { server_names: sni } : {}),
    },
    filters: [tcpProxyFilter(cluster)],
  };
}

function planTcp(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: MeshService['ports'][number],
  plan: PortChains,
  warnings: string[],
): void {
  const where = `${svc.hostname}:${port.port}`;
  const vips = svc.addresses ?? [];
  if (isTlsProtocol(port.protocol)) {
    const { routes, routed } = tlsPortRoutes(push, proxy, svc, port, warnings);
    const addr = vips.length > 0 ? vips.join(',') : '*';
    for (const r of routes) {
      const names = r.names
        .map((n) => n.toLowerCase())
        .filter((n) => {
          const taken = plan.chains.has(`${addr}|${n}`);
          if (taken) warnings.push(`${where}: SNI ${n} on port ${port.port} is already routed; left out`);
          return !taken;
        });
      if (names.length === 0) continue;
      const chain = chainFor(port.port, `${addr}_${port.port}|tls|${names[0] ?? ''}`, r.cluster, vips, names);
      for (const n of names) plan.chains.set(`${addr}|${n}`, chain);
    }
    if (vips.length > 0 && !routed && !plan.chains.has(addr)) {
      const cluster = routes[0]?.cluster ?? '';
      plan.chains.set(addr, chainFor(port.port, `${addr}_${port.port}`, cluster, vips));
    }
    return;
  }
  const cluster = tcpPortCluster(push, proxy, svc, port, warnings);
  if (vips.length > 0) {
    const fresh = vips.filter((v) => !plan.chains.has(v));
    if (fresh.length < vips.length) warnings.push(`${where}: a virtual IP is already served on ${port.port}`);
    for (const v of fresh) plan.chains.set(v, chainFor(port.port, `${v}_${port.port}`, cluster, [v]));
    return;
  }
  if (plan.http || plan.chains.has('*')) {
    warnings.push(`${where}: TCP port ${port.port} without a virtual IP is already served (HTTP or TCP); left out`);
    return;
  }
  plan.chains.set('*', chainFor(port.port, `0.0.0.0_${port.port}`, cluster, []));
}

/**
 * captureOutboundChains builds the filter chains of a capture-mode sidecar's `virtualOutbound` (see the module
 * comment): `httpChain` is the HTTP connection manager chain the explicit-mode listener has (lds.ts), copied per
 * HTTP port. Services are visited by hostname so that the output and the winner of a contested port are stable.
 * Conflicts are reported in `warnings`. Pure.
 */
export function captureOutboundChains(
  push: PushContext,
  proxy: ProxyModel,
  httpChain: Obj | undefined,
  warnings: string[],
): Obj[] {
  const passthrough = push.mesh.outboundTrafficPolicy === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER;
  const services = [...push.servicesFor(proxy.namespace)].sort((a, b) => (a.hostname < b.hostname ? -1 : 1));
  const ports = new Map<number, PortChains>();
  const planOf = (p: number): PortChains => {
    let plan = ports.get(p);
    if (!plan) ports.set(p, (plan = { http: false, chains: new Map() }));
    return plan;
  };
  // HTTP ports first: they own their port's unaddressed traffic, as Istio's 0.0.0.0_<port> HTTP listeners do.
  for (const svc of services)
    for (const port of svc.ports) if (isHttpProtocol(port.protocol) && httpChain) planOf(port.port).http = true;
  for (const svc of services)
    for (const port of svc.ports)
      if (!isHttpProtocol(port.protocol)) planTcp(push, proxy, svc, port, planOf(port.port), warnings);
  const out: Obj[] = [];
  for (const [port, plan] of [...ports].sort(([a], [b]) => a - b)) {
    if (plan.http && httpChain)
      out.push({
        ...httpChain,
        name: `0.0.0.0_${port}`,
        filter_chain_match: { destination_port: { value: port } },
      });
    out.push(...new Set(plan.chains.values()));
    // The rest of this port (other addresses, other SNIs) passes through, as Envoy would not fall back to the
    // port-less catch-all once a chain names the port.
    if (!plan.http && !plan.chains.has('*') && plan.chains.size > 0)
      out.push({
        name: `${PASSTHROUGH_CHAIN}@${port}`,
        filter_chain_match: { destination_port: { value: port } },
        filters: [tcpProxyFilter(passthrough)],
      });
  }
  out.push({ name: PASSTHROUGH_CHAIN, filters: [tcpProxyFilter(passthrough)] });
  return out;
}
