import type net from 'node:net';
import type { EnvoyListener } from '../xds/envoy-schemas.js';
import type { SocketAddress } from './original-dst.js';

/** ORIGINAL_DST_FILTER is the name of Envoy's listener filter that restores a redirected connection's destination. */
export const ORIGINAL_DST_FILTER = 'envoy.filters.listener.original_dst';

const restored = new WeakMap<net.Socket, SocketAddress>();

/** usesOriginalDst reports whether a Listener carries the `envoy.filters.listener.original_dst` listener filter. */
export function usesOriginalDst(l: EnvoyListener): boolean {
  return l.listener_filters?.some((f) => f.name === ORIGINAL_DST_FILTER) === true;
}

/**
 * restoreDestination is the `original_dst` listener filter: it asks `restore` (in capture mode,
 * `redirectedDestination`) where an accepted connection was originally sent and remembers the answer for
 * {@link destinationOf}. Returns undefined when there is no `restore`, the connection was not redirected, or
 * `restore` threw (the error goes to `onError`; the connection is then treated as not redirected).
 */
export function restoreDestination(
  sock: net.Socket,
  restore: ((s: net.Socket) => SocketAddress | undefined) | undefined,
  onError?: (err: unknown) => void,
): SocketAddress | undefined {
  if (!restore) return undefined;
  let dst: SocketAddress | undefined;
  try {
    dst = restore(sock);
  } catch (err) {
    onError?.(err);
    return undefined;
  }
  if (dst) restored.set(sock, dst);
  return dst;
}

/** destinationOf returns the original destination {@link restoreDestination} found for a connection, if any. */
export function destinationOf(sock: net.Socket): SocketAddress | undefined {
  return restored.get(sock);
}
