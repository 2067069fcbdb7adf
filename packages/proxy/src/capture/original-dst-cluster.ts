import type net from 'node:net';
import type { Endpoint, UpstreamCluster } from '../cluster-manager.js';
import { destinationOf } from './listener-destination.js';
import type { SocketAddress } from './original-dst.js';

/** isOriginalDstCluster reports whether a cluster is Envoy's `ORIGINAL_DST` type (Istio's PassthroughCluster). */
export function isOriginalDstCluster(cluster: UpstreamCluster): boolean {
  return cluster.config.type === 'ORIGINAL_DST';
}

/**
 * originalDstEndpoint is the host an `ORIGINAL_DST` cluster (`lb_policy: CLUSTER_PROVIDED`) gives a connection:
 * the destination the downstream originally dialled, as the `original_dst` listener filter restored it
 * (`destinationOf`). Envoy makes one host per distinct original destination; the proxy makes it per connection
 * (nothing is pooled for tcp_proxy). Undefined when the connection was not redirected: Envoy then has no host
 * either (`UH`), and dialling the listener's own address would loop.
 */
export function originalDstEndpoint(down: net.Socket): Endpoint | undefined {
  return endpointOfDestination(destinationOf(down));
}

/**
 * endpointOfDestination is the `ORIGINAL_DST` host for an original destination (`address`, `port`), or undefined
 * without one. The HTTP router uses it per request: the host of an `ORIGINAL_DST` cluster route (Istio's
 * `allow_any` to PassthroughCluster) is where the request's connection was going.
 */
export function endpointOfDestination(dst: SocketAddress | undefined): Endpoint | undefined {
  if (!dst) return undefined;
  return {
    address: dst.address,
    port: dst.port,
    weight: 1,
    priority: 0,
    healthy: true,
    locality: { region: '', zone: '', subZone: '' },
    localityKey: '//',
    localityWeight: 1,
    workload: undefined,
  };
}
