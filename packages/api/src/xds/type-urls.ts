/**
 * TypeUrl lists the xDS v3 resource type URLs fedmesh serves and consumes, as Envoy's
 * `envoy.service.discovery.v3.DiscoveryRequest.type_url` spells them
 * (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-types).
 */
export const TypeUrl = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

/** TypeUrlValue is the union of the type URLs in {@link TypeUrl}. */
export type TypeUrlValue = (typeof TypeUrl)[keyof typeof TypeUrl];

/**
 * TYPE_URL_ORDER is the order in which a server pushes types so that a client never sees a reference before
 * its target: CDS before EDS, LDS before RDS, secrets first (Envoy's xDS protocol, "Eventual consistency
 * considerations").
 */
export const TYPE_URL_ORDER: readonly TypeUrlValue[] = [
  TypeUrl.Secret,
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
];

/**
 * shortTypeName returns the short xDS name of a type URL (`LDS`, `RDS`, `CDS`, `EDS`, `SDS`), or the
 * message name for any other URL. Used in logs, metrics labels and `proxy-status`.
 */
export function shortTypeName(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.Listener:
      return 'LDS';
    case TypeUrl.RouteConfiguration:
      return 'RDS';
    case TypeUrl.Cluster:
      return 'CDS';
    case TypeUrl.ClusterLoadAssignment:
      return 'EDS';
    case TypeUrl.Secret:
      return 'SDS';
    default:
      return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
  }
}
