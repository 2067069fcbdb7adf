import type { RequestView, RouteEntry, RouteTable, VirtualHostEntry } from '../route-table.js';
import type { SocketAddress } from './original-dst.js';

function hasPort(authority: string): boolean {
  return authority.startsWith('[') ? /\]:\d+$/.test(authority) : /:\d+$/.test(authority);
}

function hostPort(dst: SocketAddress): string {
  return dst.family === 'IPv6' ? `[${dst.address}]:${dst.port}` : `${dst.address}:${dst.port}`;
}

/**
 * authorityCandidates lists, in order, the authorities a redirected request is looked up under, as Istio's
 * per-port outbound routes behave: the Host header with the original destination's port when the header has no
 * port (`reviews` sent to `10.96.0.12:9080` is `reviews:9080`), the Host header as sent, then the original
 * destination itself (`10.96.0.12:9080`, the service's virtual IP, whose virtual host istiod generates).
 */
export function authorityCandidates(authority: string, dst: SocketAddress): string[] {
  const out: string[] = [];
  if (authority !== '' && !hasPort(authority)) out.push(`${authority}:${dst.port}`);
  if (authority !== '') out.push(authority);
  out.push(hostPort(dst));
  return out;
}

/**
 * routeForDestination picks the route of a request that arrived on a redirected connection: the first of
 * {@link authorityCandidates} that names a virtual host of `table` decides the virtual host (so the Host header
 * still works, and a request whose Host names no service is routed by the virtual IP:port the app dialled), else
 * the `*` virtual host (Istio's `allow_any` / `block_all`, for destinations the mesh does not know), then the first
 * matching route of that virtual host. Returns undefined when no virtual host or no route matches
 * (Envoy's 404 with flag NR). With no original destination it is `table.route(view)`.
 */
export function routeForDestination(
  table: RouteTable | undefined,
  view: RequestView,
  dst: SocketAddress | undefined,
): { vh: VirtualHostEntry; route: RouteEntry } | undefined {
  if (!table) return undefined;
  if (!dst) return table.route(view);
  const vh =
    authorityCandidates(view.authority, dst)
      .map((a) => table.virtualHost(a, false))
      .find((v) => v !== undefined) ?? table.virtualHost(view.authority);
  if (!vh) return undefined;
  // Routes match the request as sent (its own `:authority`); only the virtual host comes from the candidate.
  const q = view.path.indexOf('?');
  const pathOnly = q >= 0 ? view.path.slice(0, q) : view.path;
  const query = new URLSearchParams(q >= 0 ? view.path.slice(q + 1) : '');
  const route = vh.routes.find((r) => r.matches(view, pathOnly, query));
  return route ? { vh, route } : undefined;
}
