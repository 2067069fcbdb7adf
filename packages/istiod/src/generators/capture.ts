import { TypeUrl, decodeAny, encodeAny, inboundClusterName } from '@fedmesh/api/xds';
import type { ResourceEntry } from '@fedmesh/xds';
import { captureOutboundChains, passthroughClusters, PASSTHROUGH_CLUSTER } from './capture-outbound.js';
import type { ResourceGenerator } from './index.js';
import { TLS_INSPECTOR_LISTENER_FILTER } from './envoy-filters.js';

/** ORIGINAL_DST_LISTENER_FILTER is Envoy's `original_dst` listener filter, as Istio puts it on 15001 and 15006. */
export const ORIGINAL_DST_LISTENER_FILTER = {
  name: 'envoy.filters.listener.original_dst',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' },
};

export { TLS_INSPECTOR_LISTENER_FILTER } from './envoy-filters.js';

/** CAPTURE_BIND_ADDRESS is where a capture-mode sidecar's listeners bind: iptables redirects to every address. */
export const CAPTURE_BIND_ADDRESS = '0.0.0.0';

type Obj = Record<string, unknown>;

function arr(v: unknown): Obj[] {
  return Array.isArray(v) ? (v as Obj[]) : [];
}

const INBOUND_CLUSTER = /^inbound\|(\d+)\|\|$/;

/** inboundPortsOfChain lists the target ports a filter chain's inline routes forward to (`inbound|<port>||`). */
function inboundPortsOfChain(chain: Obj): number[] {
  const hcm = arr(chain.filters)[0]?.typed_config as Obj | undefined;
  const rc = hcm?.route_config as Obj | undefined;
  const ports = new Set<number>();
  for (const vh of arr(rc?.virtual_hosts))
    for (const r of arr(vh.routes)) {
      const cluster = (r.route as Obj | undefined)?.cluster;
      const m = typeof cluster === 'string' ? INBOUND_CLUSTER.exec(cluster) : null;
      if (m) ports.add(Number(m[1]));
    }
  return [...ports].sort((a, b) => a - b);
}

/**
 * portChain copies an inbound filter chain for the connections redirected to one target port:
 * `filter_chain_match.destination_port` is that port (the SNI is no longer needed to tell ports apart), and the
 * inline routes keep only the virtual hosts that forward to `inbound|<port>||`, reachable under any Host (`*`).
 */
function portChain(chain: Obj, port: number): Obj {
  const cluster = inboundClusterName(port);
  const match: Obj = { ...((chain.filter_chain_match as Obj | undefined) ?? {}), destination_port: { value: port } };
  delete match.server_names;
  const filters = arr(chain.filters).map((f, i) => {
    const hcm = f.typed_config as Obj | undefined;
    const rc = hcm?.route_config as Obj | undefined;
    if (i !== 0 || !hcm || !rc) return f;
    const hosts = arr(rc.virtual_hosts).filter((vh) =>
      arr(vh.routes).every((r) => (r.route as Obj | undefined)?.cluster === cluster),
    );
    return {
      ...f,
      typed_config: {
        ...hcm,
        route_config: { ...rc, virtual_hosts: hosts.slice(0, 1).map((vh) => ({ ...vh, domains: ['*'] })) },
      },
    };
  });
  return {
    ...chain,
    name: `${typeof chain.name === 'string' ? chain.name : 'inbound'}@${port}`,
    filter_chain_match: match,
    filters,
  };
}

/**
 * captureListener rewrites one sidecar Listener (a plain object) for transparent capture, as Istio's REDIRECT
 * mode has it: `virtualOutbound` and `virtualInbound` bind `0.0.0.0` and carry the `original_dst` listener
 * filter, and `virtualInbound` gets, besides its existing chains, one chain per HTTP target port selected by
 * `destination_port` (the port the peer dialled before iptables sent it to 15006; TCP ports have theirs from
 * inbound.ts). The existing chains stay for explicit-mode peers that dial 15006 themselves. `virtualOutbound`'s
 * chains become `outboundChains` when given (capture-outbound.ts: by original destination), with a `tls_inspector`
 * after `original_dst` when a chain matches on SNI or transport protocol. Other listeners are returned unchanged.
 */
export function captureListener(listener: Obj, outboundChains?: readonly Obj[]): Obj {
  const name = listener.name;
  if (name !== 'virtualOutbound' && name !== 'virtualInbound') return listener;
  const address = listener.address as { socket_address?: Obj } | undefined;
  const out: Obj = {
    ...listener,
    address: { ...address, socket_address: { ...address?.socket_address, address: CAPTURE_BIND_ADDRESS } },
    listener_filters: [ORIGINAL_DST_LISTENER_FILTER, ...arr(listener.listener_filters)],
  };
  if (name === 'virtualOutbound' && outboundChains) {
    out.filter_chains = [...outboundChains];
    const inspect = outboundChains.some((c) => {
      const m = c.filter_chain_match as Obj | undefined;
      return m?.server_names !== undefined || m?.transport_protocol !== undefined;
    });
    if (inspect) out.listener_filters = [ORIGINAL_DST_LISTENER_FILTER, TLS_INSPECTOR_LISTENER_FILTER];
  }
  if (name === 'virtualInbound') {
    const chains = arr(listener.filter_chains);
    const byPort = chains.flatMap((c) => inboundPortsOfChain(c).map((p) => portChain(c, p)));
    // Order does not matter to Envoy's matching (the port level comes first); the originals go first so that a
    // first-match lookup that ignores ports still finds the explicit-mode chains.
    out.filter_chains = [...chains, ...byPort];
  }
  return out;
}

/**
 * withInterceptionMode returns the generator map with the generators of sidecars whose Node says
 * `INTERCEPTION_MODE: REDIRECT` post-processed: Listeners by {@link captureListener}, `virtualOutbound` getting its
 * chains by original destination (capture-outbound.ts, from the explicit-mode HTTP chain), and Clusters gaining
 * `PassthroughCluster` and `BlackHoleCluster`. Explicit-mode sidecars, gateways and every other type are unchanged.
 * Pure, like the generators it wraps.
 */
export function withInterceptionMode(gens: ReadonlyMap<string, ResourceGenerator>): Map<string, ResourceGenerator> {
  const out = new Map(gens);
  const captured = (proxy: Parameters<ResourceGenerator>[1]): boolean =>
    proxy.type === 'sidecar' && proxy.interceptionMode === 'REDIRECT';
  const lds = gens.get(TypeUrl.Listener);
  if (lds)
    out.set(TypeUrl.Listener, (push, proxy, warnings): ResourceEntry[] => {
      const entries = lds(push, proxy, warnings);
      if (!captured(proxy)) return entries;
      return entries.map((e) => {
        const l = decodeAny(e.resource);
        const outbound =
          l.name === 'virtualOutbound'
            ? captureOutboundChains(push, proxy, arr(l.filter_chains)[0], warnings)
            : undefined;
        return { name: e.name, resource: encodeAny(TypeUrl.Listener, captureListener(l, outbound)) };
      });
    });
  const cds = gens.get(TypeUrl.Cluster);
  if (cds)
    out.set(TypeUrl.Cluster, (push, proxy, warnings): ResourceEntry[] => {
      const entries = cds(push, proxy, warnings);
      if (!captured(proxy) || entries.some((e) => e.name === PASSTHROUGH_CLUSTER)) return entries;
      return [
        ...entries,
        ...passthroughClusters().map((c) => ({ name: String(c.name), resource: encodeAny(TypeUrl.Cluster, c) })),
      ];
    });
  return out;
}
