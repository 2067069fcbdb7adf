import { createRequire } from 'node:module';
import type net from 'node:net';
import { ErrorCode, MeshError } from '@fedmesh/api';

/** SocketAddress is an IP address and port, as the kernel reports a connection's endpoint. */
export interface SocketAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

interface OriginalDstAddon {
  originalDst(fd: number): SocketAddress;
}

/** ORIGINAL_DST_ADDON is where `pnpm install` (script `install` of @fedmesh/proxy) builds the N-API addon. */
export const ORIGINAL_DST_ADDON = '../../native/build/Release/original_dst.node';

let addon: OriginalDstAddon | undefined;

/**
 * CaptureError is the {@link MeshError} thrown when transparent capture cannot work on this host: the
 * `original_dst` addon is not built (code `FEDMESH_ERR_UNSUPPORTED`), or the kernel refused to report a
 * connection's original destination for a reason other than "not redirected" (code `FEDMESH_ERR_INTERNAL`).
 */
export class CaptureError extends MeshError {
  /** name is `'CaptureError'`. */
  override readonly name: string = 'CaptureError';
}

/**
 * loadOriginalDst loads the `original_dst` N-API addon once (it is built by `pnpm install`, or by
 * `pnpm -F @fedmesh/proxy build:native`, offline with `npm_config_nodedir=/usr`). Throws a {@link CaptureError}
 * naming the command that builds it when it is missing. A sidecar in capture mode calls it at start, so a host
 * without the addon fails at once rather than on its first connection.
 */
export function loadOriginalDst(): void {
  if (addon) return;
  try {
    addon = createRequire(import.meta.url)(ORIGINAL_DST_ADDON) as OriginalDstAddon;
  } catch (err) {
    throw new CaptureError(
      ErrorCode.UNSUPPORTED,
      'transparent capture needs the original_dst addon; build it with `pnpm -F @fedmesh/proxy build:native` ' +
        '(npm_config_nodedir=/usr)',
      { cause: err },
    );
  }
}

/**
 * socketFd returns the file descriptor of a connected TCP socket, plain or TLS (Node keeps it on the socket's
 * native handle, `socket._handle.fd`), or undefined when the socket has none (closed, or not a kernel socket).
 */
export function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as net.Socket & { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * originalDestination returns where the peer of an accepted connection originally sent it, read with
 * `getsockopt(SO_ORIGINAL_DST)` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6): for a connection that iptables
 * redirected (`REDIRECT --to-ports 15001`), the service's virtual IP and port it dialled. For a connection the
 * kernel did not track (no NAT in this network namespace: `ENOENT`, `ENOPROTOOPT`) or whose socket is already
 * closed, it returns undefined; for a tracked connection that was not redirected it returns the local address.
 * Throws a {@link CaptureError} when the addon is missing or the kernel fails otherwise.
 */
export function originalDestination(socket: net.Socket): SocketAddress | undefined {
  loadOriginalDst();
  const fd = socketFd(socket);
  if (fd === undefined || !addon) return undefined;
  try {
    return addon.originalDst(fd);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOPROTOOPT') return undefined;
    throw new CaptureError(ErrorCode.INTERNAL, `SO_ORIGINAL_DST failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * redirectedDestination returns the original destination of a connection only when it differs from the socket's
 * local address and port, that is, when the kernel redirected it; undefined for connections made to the listener
 * itself (explicit mode clients) and for untracked ones.
 */
export function redirectedDestination(socket: net.Socket): SocketAddress | undefined {
  const dst = originalDestination(socket);
  if (!dst) return undefined;
  if (dst.port === socket.localPort && dst.address === socket.localAddress) return undefined;
  return dst;
}
