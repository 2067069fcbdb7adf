/**
 * TRANSPORT_SOCKET_MATCH is the `LbEndpoint.metadata.filter_metadata` key Istio marks endpoints with for
 * transport socket matching: `{tlsMode: "istio"}` on a workload that runs a sidecar.
 */
export const TRANSPORT_SOCKET_MATCH = 'envoy.transport_socket_match';

/**
 * sidecarField reads Istio's `envoy.transport_socket_match.tlsMode` from a decoded `LbEndpoint.metadata` and
 * returns `{sidecar: true}` for `istio` (the endpoint has a sidecar), `{}` otherwise. In explicit mode a
 * sidecar endpoint is always reached through its sidecar's inbound port (15006), in mTLS or, where the
 * server's PeerAuthentication allows it, in plaintext: never at the app's port, which would bypass the
 * server's authorization (docs/adr/0010).
 */
export function sidecarField(metadata: unknown): { sidecar?: true } {
  const fm = (metadata as { filter_metadata?: Record<string, { fields?: Record<string, { stringValue?: unknown }> }> })
    ?.filter_metadata;
  return fm?.[TRANSPORT_SOCKET_MATCH]?.fields?.tlsMode?.stringValue === 'istio' ? { sidecar: true } : {};
}
