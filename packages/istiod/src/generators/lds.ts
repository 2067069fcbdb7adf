import { TypeUrl } from '@fedmesh/api/xds';
import type { ProxyModel } from '../model/proxy.js';
import type { PushContext } from '../push-context.js';
import { ADS_SOURCE, toResource, type GeneratedResource } from './common.js';
import { CORS_FILTER } from './cors.js';
import { FAULT_FILTER as FAULT, HCM_TYPE, ROUTER_FILTER as ROUTER } from './envoy-filters.js';
import { generateInboundListener, INBOUND_LISTENER_PORT } from './inbound.js';
import { OUTBOUND_ROUTE_NAME } from './rds.js';
import { WEBSOCKET_UPGRADE } from './upstream-protocol.js';
import { generateTcpListeners } from './tcp-listeners.js';

/** Listener ports of a sidecar, Istio's: 15001 outbound, 15006 inbound. */
export const OUTBOUND_PORT = 15001;
/** INBOUND_PORT is where a sidecar accepts peers (mutual TLS, and plaintext where PeerAuthentication allows it). */
export const INBOUND_PORT = INBOUND_LISTENER_PORT;

/**
 * generateListeners is the LDS generator for a sidecar in explicit mode:
 * - `virtualOutbound` on `<ip>:15001`: an HTTP connection manager over the `outbound` RouteConfiguration (RDS),
 *   with the fault, CORS and router filters (Istio's order);
 * - `virtualInbound` on `<ip>:15006` (inbound.ts): per inbound port an mTLS filter chain chosen by the SNI peers
 *   send, and a plaintext chain for PERMISSIVE/DISABLE ports, each with the workload's RBAC filters and path
 *   normalization, forwarding to `inbound|<port>||` with `x-forwarded-client-cert` set from the verified peer,
 *   and per TCP/TLS port an mTLS chain with a tcp_proxy (tcp-listeners.ts);
 * - `<ip>_<port>` per visible TCP or TLS service port: tcp_proxy chains, by SNI for TLS (tcp-listeners.ts).
 * Untranslatable authorization policy parts are reported in `warnings`.
 */
export function generateListeners(push: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
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
                http_filters: [FAULT, CORS_FILTER, ROUTER],
                upgrade_configs: [WEBSOCKET_UPGRADE],
              },
            },
          ],
        },
      ],
    }),
  );
  const inbound = generateInboundListener(push, proxy, warnings);
  if (inbound) out.push(inbound);
  out.push(...generateTcpListeners(push, proxy, warnings)); // TCP and TLS service ports
  return out;
}
