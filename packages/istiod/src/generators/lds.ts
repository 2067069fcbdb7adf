import { TypeUrl, inboundClusterName, mtlsSni } from '@fedmesh/api/xds';
import type { ProxyModel } from '../model/proxy.js';
import { isHttpProtocol } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { inboundPorts } from './cds.js';
import { ADS_SOURCE, toResource, type GeneratedResource } from './common.js';
import { OUTBOUND_ROUTE_NAME } from './rds.js';

/** Listener ports of a sidecar, Istio's: 15001 outbound, 15006 inbound. */
export const OUTBOUND_PORT = 15001;
/** INBOUND_PORT is where a sidecar accepts mutual TLS from peers. */
export const INBOUND_PORT = 15006;

const ROUTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};
const FAULT = {
  name: 'envoy.filters.http.fault',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault' },
};
const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/**
 * generateListeners is the LDS generator for a sidecar in explicit mode:
 * - `virtualOutbound` on `<ip>:15001`: an HTTP connection manager over the `outbound` RouteConfiguration (RDS),
 *   with the fault and router filters;
 * - `virtualInbound` on `<ip>:15006`: mutual TLS only (client certificate required, URI SAN `spiffe://…`,
 *   trust bundle from SDS `ROOTCA`); one filter chain per inbound port, chosen by the SNI peers send
 *   (`outbound_.<port>_.<subset>_.<host>`), forwarding to `inbound|<port>||` with `x-forwarded-client-cert`
 *   set from the verified peer (SANITIZE_SET).
 */
export function generateListeners(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  out.push(
    toResource(TypeUrl.Listener, 'virtualOutbound', {
      name: 'virtualOutbound',
      address: { socket_address: { address: proxy.ip, port_value: OUTBOUND_PORT } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [
        {
          name: 'virtualOutbound-http',
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': HCM_TYPE,
                stat_prefix: `outbound_${proxy.ip}_${OUTBOUND_PORT}`,
                rds: { route_config_name: OUTBOUND_ROUTE_NAME, config_source: ADS_SOURCE },
                http_filters: [FAULT, ROUTER],
              },
            },
          ],
        },
      ],
    }),
  );
  const chains: object[] = [];
  for (const [targetPort, refs] of [...inboundPorts(push, proxy).entries()].sort(([a], [b]) => a - b)) {
    if (!refs.some((r) => isHttpProtocol(r.port.protocol))) continue;
    const serverNames = [
      ...new Set(refs.flatMap((r) => ['', ...r.subsets].map((s) => mtlsSni(r.port.port, s, r.svc.hostname)))),
    ].sort();
    const cluster = inboundClusterName(targetPort);
    chains.push({
      name: cluster,
      filter_chain_match: { transport_protocol: 'tls', server_names: serverNames },
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
          require_client_certificate: { value: true },
          common_tls_context: {
            tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS_SOURCE }],
            combined_validation_context: {
              default_validation_context: {
                match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://' } }],
              },
              validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS_SOURCE },
            },
            alpn_protocols: ['istio', 'http/1.1'],
          },
        },
      },
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': HCM_TYPE,
            stat_prefix: cluster,
            forward_client_cert_details: 'SANITIZE_SET',
            set_current_client_cert_details: { uri: true },
            route_config: {
              name: cluster,
              virtual_hosts: [
                {
                  name: `inbound|http|${targetPort}`,
                  domains: ['*'],
                  routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: { seconds: 0 } } }],
                },
              ],
              validate_clusters: { value: false },
            },
            http_filters: [ROUTER],
          },
        },
      ],
    });
  }
  if (chains.length > 0)
    out.push(
      toResource(TypeUrl.Listener, 'virtualInbound', {
        name: 'virtualInbound',
        address: { socket_address: { address: proxy.ip, port_value: INBOUND_PORT } },
        traffic_direction: 'INBOUND',
        listener_filters: [
          {
            name: 'envoy.filters.listener.tls_inspector',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
            },
          },
        ],
        filter_chains: chains,
      }),
    );
  return out;
}
