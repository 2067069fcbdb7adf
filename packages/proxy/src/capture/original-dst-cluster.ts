import type net from 'node:net';
import type { Endpoint, UpstreamCluster } from '../cluster-manager.js';
import { destinationOf } from './listener-destination.js';

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
  const dst = destinationOf(down);
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
