/**
 * NETWORK_GATEWAY_METADATA is the `LbEndpoint.metadata.filter_metadata` key istiod marks an endpoint with when it is
 * another network's east-west gateway standing in for that network's workloads (docs/adr/0006): the value is a
 * Struct `{network_gateway: "<network>"}`. A sidecar in explicit mode dials such an endpoint at its own port (the
 * gateway's 15443) instead of the peer sidecar port (15006), keeping the cluster's SNI and peer SAN check.
 */
export const NETWORK_GATEWAY_METADATA = 'fedmesh';

/**
 * networkGatewayOf reads the marker {@link NETWORK_GATEWAY_METADATA} from a decoded `LbEndpoint.metadata`: the
 * network whose gateway the endpoint is, or undefined for an ordinary endpoint (absent, empty, or not a string).
 */
export function networkGatewayOf(metadata: unknown): string | undefined {
  const fm = (metadata as { filter_metadata?: Record<string, { fields?: Record<string, { stringValue?: unknown }> }> })
    ?.filter_metadata;
  const v = fm?.[NETWORK_GATEWAY_METADATA]?.fields?.network_gateway?.stringValue;
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** networkGatewayField is `{networkGateway}` for a marked endpoint and `{}` otherwise, to spread into an endpoint. */
export function networkGatewayField(metadata: unknown): { networkGateway?: string } {
  const network = networkGatewayOf(metadata);
  return network !== undefined ? { networkGateway: network } : {};
}
