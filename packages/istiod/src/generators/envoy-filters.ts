/** HCM_TYPE is the type URL of Envoy's HTTP connection manager (`envoy.filters.network.http_connection_manager`). */
export const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/** DOWNSTREAM_TLS_TYPE is the type URL of a listener filter chain's `DownstreamTlsContext` transport socket. */
export const DOWNSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

/** ROUTER_FILTER is Envoy's router HTTP filter, the last of every HCM's `http_filters`. */
export const ROUTER_FILTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};

/** FAULT_FILTER is Envoy's fault HTTP filter (no defaults: a route's `typed_per_filter_config` drives it, as Istio). */
export const FAULT_FILTER = {
  name: 'envoy.filters.http.fault',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault' },
};

/**
 * TLS_INSPECTOR_LISTENER_FILTER is Envoy's `tls_inspector` listener filter, for chains matched on SNI or transport
 * protocol: it reads the ClientHello for SNI and ALPN.
 */
export const TLS_INSPECTOR_LISTENER_FILTER = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
};
