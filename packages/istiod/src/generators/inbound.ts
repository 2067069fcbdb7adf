/**
 * The `virtualInbound` Listener of an explicit-mode sidecar (`<ip>:15006`), with PeerAuthentication,
 * AuthorizationPolicy and path normalization applied:
 * - a `tls_inspector` listener filter picks TLS or plaintext chains by the connection's first byte;
 * - per HTTP target port whose mTLS mode is STRICT or PERMISSIVE, a TLS chain selected by the SNI peers send
 *   (`outbound_.<port>_.<subset>_.<host>`, docs/adr/0003) that requires a client certificate under `ROOTCA` and
 *   forwards to `inbound|<port>||` with XFCC set from the verified peer;
 * - when any port is PERMISSIVE or DISABLE, one plaintext chain (`transport_protocol: raw_buffer`) whose route
 *   table picks `inbound|<port>||` by the Host header (or absolute-form URL) and its port: the service's names
 *   with the service port, and `*:<service port>` (docs/adr/0010). STRICT ports get no virtual host there, so
 *   plaintext never reaches them;
 * - every HCM carries the workload's RBAC filters (authz.ts) before the router, Istio's path normalization
 *   (`meshConfig.pathNormalization`) and `strip_trailing_host_dot`;
 * - per TCP/TLS target port, an mTLS chain whose network RBAC filters (the same policies, Istio's TCP rules)
 *   precede a tcp_proxy (tcp-listeners.ts); a REDIRECT (capture-mode) sidecar also gets that port's chains by
 *   `destination_port`, mTLS and, where PeerAuthentication allows it, plaintext.
 */
import { TypeUrl, inboundClusterName, mtlsSni } from '@fedmesh/api/xds';
import type { ProxyModel } from '../model/proxy.js';
import { isHttpProtocol } from '../model/service.js';
import type { MeshSettings, PushContext } from '../push-context.js';
import { portMtlsMode, workloadMtls, type MtlsMode } from './authn.js';
import { buildNetworkRbacFilters, buildRbacFilters, policiesForWorkload } from './authz.js';
import { inboundPorts } from './cds.js';
import { ADS_SOURCE, toResource, type GeneratedResource } from './common.js';
import { domainsFor } from './rds.js';
import { ALPN_INBOUND_HTTP, WEBSOCKET_UPGRADE } from './upstream-protocol.js';
import { inboundTcpChains } from './tcp-listeners.js';

/** INBOUND_LISTENER_PORT is where a sidecar accepts peers in explicit mode (Istio's 15006). */
export const INBOUND_LISTENER_PORT = 15006;

/** PLAINTEXT_CHAIN is the name of the inbound plaintext filter chain (and of its route configuration). */
export const PLAINTEXT_CHAIN = 'virtualInbound-plaintext';

const ROUTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};
const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/**
 * pathNormalizationFields maps Istio's `meshConfig.pathNormalization` to HCM fields. fedmesh's BASE and
 * MERGE_SLASHES refuse escaped slashes (`%2F`, `%5C`: REJECT_REQUEST) where Istio keeps them, so that an app that
 * decodes them cannot see a path the policy never saw (docs/adr/0011). NONE sets nothing.
 */
export function pathNormalizationFields(level: MeshSettings['pathNormalization']): Record<string, unknown> {
  switch (level ?? 'BASE') {
    case 'NONE':
      return {};
    case 'BASE':
      return {
        normalize_path: { value: true },
        path_with_escaped_slashes_action: 'REJECT_REQUEST',
        strip_trailing_host_dot: true,
      };
    case 'MERGE_SLASHES':
      return {
        normalize_path: { value: true },
        merge_slashes: true,
        path_with_escaped_slashes_action: 'REJECT_REQUEST',
        strip_trailing_host_dot: true,
      };
    case 'DECODE_AND_MERGE_SLASHES':
      return {
        normalize_path: { value: true },
        merge_slashes: true,
        path_with_escaped_slashes_action: 'UNESCAPE_AND_FORWARD',
        strip_trailing_host_dot: true,
      };
  }
}

function hcm(statPrefix: string, routeConfig: object, httpFilters: object[], normalization: object): object {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM_TYPE,
      stat_prefix: statPrefix,
      forward_client_cert_details: 'SANITIZE_SET',
      set_current_client_cert_details: { uri: true },
      route_config: routeConfig,
      http_filters: [...httpFilters, ROUTER],
      upgrade_configs: [WEBSOCKET_UPGRADE],
      ...normalization,
    },
  };
}

function tlsTransportSocket(): object {
  return {
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
        alpn_protocols: [...ALPN_INBOUND_HTTP],
      },
    },
  };
}

function inboundRoute(cluster: string): object {
  return { name: 'default', match: { prefix: '/' }, route: { cluster, timeout: { seconds: 0 } } };
}

/**
 * plaintextVirtualHosts builds the plaintext chain's virtual hosts: per PERMISSIVE/DISABLE target port, the
 * service names with the service port (`domainsFor`) and `*:<service port>`. A domain claimed by two target
 * ports is left out (and reported), so the Host header never picks a port ambiguously.
 */
function plaintextVirtualHosts(
  push: PushContext,
  proxy: ProxyModel,
  open: [number, ReturnType<typeof inboundPorts> extends Map<number, infer R> ? R : never][],
  warnings: string[],
): object[] {
  const owner = new Map<string, number>();
  const clash = new Set<string>();
  for (const [targetPort, refs] of open)
    for (const r of refs)
      for (const d of [...domainsFor(r.svc, r.port, proxy.namespace, push.mesh.domainSuffix), `*:${r.port.port}`]) {
        const prev = owner.get(d);
        if (prev !== undefined && prev !== targetPort) clash.add(d);
        owner.set(d, targetPort);
      }
  for (const d of clash) warnings.push(`virtualInbound: plaintext domain ${d} reaches two ports; left out`);
  return open
    .map(([targetPort]) => ({
      name: `inbound|http|${targetPort}`,
      domains: [...owner.entries()]
        .filter(([d, p]) => p === targetPort && !clash.has(d))
        .map(([d]) => d)
        .sort(),
      routes: [inboundRoute(inboundClusterName(targetPort))],
    }))
    .filter((vh) => vh.domains.length > 0);
}

/**
 * generateInboundListener builds `virtualInbound` for a sidecar, or undefined when it has no HTTP inbound
 * port. Untranslatable policy parts and ambiguous plaintext domains are reported in `warnings`. Pure.
 */
export function generateInboundListener(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): GeneratedResource | undefined {
  const all = [...inboundPorts(push, proxy).entries()].sort(([a], [b]) => a - b);
  const ports = all.filter(([, refs]) => refs.some((r) => isHttpProtocol(r.port.protocol)));
  const tcpPorts = all.filter(([, refs]) => !refs.some((r) => isHttpProtocol(r.port.protocol)));
  if (ports.length === 0 && tcpPorts.length === 0) return undefined;
  const policies = policiesForWorkload(push, proxy, warnings);
  const rbac = buildRbacFilters(policies, push.mesh.trustDomain);
  warnings.push(...rbac.warnings);
  const normalization = pathNormalizationFields(push.mesh.pathNormalization);
  const mtls = workloadMtls(push, proxy.namespace, proxy.labels);
  const chains: object[] = [];
  const open: typeof ports = [];
  for (const [targetPort, refs] of ports) {
    const mode: MtlsMode = portMtlsMode(mtls, targetPort);
    if (mode !== 'STRICT') open.push([targetPort, refs]);
    if (mode === 'DISABLE') continue;
    const serverNames = [
      ...new Set(refs.flatMap((r) => ['', ...r.subsets].map((s) => mtlsSni(r.port.port, s, r.svc.hostname)))),
    ].sort();
    const cluster = inboundClusterName(targetPort);
    const routeConfig = {
      name: cluster,
      virtual_hosts: [{ name: `inbound|http|${targetPort}`, domains: ['*'], routes: [inboundRoute(cluster)] }],
      validate_clusters: { value: false },
    };
    chains.push({
      name: cluster,
      filter_chain_match: { transport_protocol: 'tls', server_names: serverNames },
      transport_socket: tlsTransportSocket(),
      filters: [hcm(cluster, routeConfig, rbac.filters, normalization)],
    });
  }
  // TCP and TLS target ports: mTLS chains by SNI with network RBAC and a tcp_proxy to the app (tcp-listeners.ts).
  const modeOf = (port: number): MtlsMode => portMtlsMode(mtls, port);
  const tcpRbac = tcpPorts.length > 0 ? buildNetworkRbacFilters(policies, push.mesh.trustDomain) : undefined;
  for (const w of tcpRbac?.warnings ?? []) if (!warnings.includes(w)) warnings.push(w);
  const capture = proxy.interceptionMode === 'REDIRECT'; // chains by destination port too (tcp-listeners.ts)
  chains.push(...inboundTcpChains(tcpPorts, modeOf, tcpRbac?.filters ?? [], tlsTransportSocket, warnings, capture));
  const vhosts = plaintextVirtualHosts(push, proxy, open, warnings);
  if (vhosts.length > 0)
    chains.push({
      name: PLAINTEXT_CHAIN,
      filter_chain_match: { transport_protocol: 'raw_buffer' },
      filters: [
        hcm(
          PLAINTEXT_CHAIN,
          { name: PLAINTEXT_CHAIN, virtual_hosts: vhosts, validate_clusters: { value: false } },
          rbac.filters,
          normalization,
        ),
      ],
    });
  if (chains.length === 0) return undefined;
  return toResource(TypeUrl.Listener, 'virtualInbound', {
    name: 'virtualInbound',
    address: { socket_address: { address: proxy.ip, port_value: INBOUND_LISTENER_PORT } },
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
  });
}
