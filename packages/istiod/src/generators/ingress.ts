import { tlsSecretMaterial } from '@fedmesh/api';
import { TypeUrl } from '@fedmesh/api/xds';
import { namespaceOf } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { PushContext } from '../push-context.js';
import { buildRbacFilters, policiesForWorkload } from './authz.js';
import { generateOutboundClusters } from './cds.js';
import { ADS_SOURCE, toResource, type GeneratedResource } from './common.js';
import { CORS_FILTER } from './cors.js';
import { generateEndpoints } from './eds.js';
import {
  DOWNSTREAM_TLS_TYPE,
  FAULT_FILTER as FAULT,
  HCM_TYPE,
  ROUTER_FILTER as ROUTER,
  TLS_INSPECTOR_LISTENER_FILTER as TLS_INSPECTOR,
} from './envoy-filters.js';
import { pathNormalizationFields } from './inbound.js';
import {
  CACERT_SUFFIX,
  boundHosts,
  credentialSdsName,
  httpRouteName,
  httpsRouteName,
  ingressPorts,
  type IngressPort,
  type IngressServer,
} from './ingress-servers.js';
import { virtualServiceRoutes } from './rds.js';
import { generateSecrets } from './sds.js';
import { ALPN_INBOUND_HTTP, WEBSOCKET_UPGRADE } from './upstream-protocol.js';

/** ingressListenerName is Istio's gateway Listener name for a port: `0.0.0.0_<port>`. */
export function ingressListenerName(port: number): string {
  return `0.0.0.0_${port}`;
}

/** IngressRoute is one RouteConfiguration of an ingress gateway, as a plain Envoy object. */
interface IngressRoute {
  name: string;
  config: { name: string; virtual_hosts: object[]; validate_clusters: { value: false } };
}

function domainsOf(host: string): string[] {
  if (host === '*' || host.startsWith('*')) return [host];
  return [host, `${host}:*`];
}

function isCatchAll(r: object): boolean {
  const m = (r as { match?: Record<string, unknown> }).match ?? {};
  return m.prefix === '/' && Object.keys(m).length === 1;
}

/**
 * routeConfigFor builds one RouteConfiguration from the servers that share it: per bound VirtualService and per
 * host the VS and server have in common (`boundHosts`), a virtual host `<host>:<port>` with the VS's routes for
 * this Gateway (Istio merges the routes of VSs sharing a host, catch-alls last), or for an `httpsRedirect` server
 * one route answering 301 to https. No bound VirtualService: no virtual host, so every request gets 404 NR.
 */
function routeConfigFor(
  push: PushContext,
  proxy: ProxyModel,
  name: string,
  port: number,
  servers: readonly IngressServer[],
  warnings: string[],
): IngressRoute {
  const vhosts = new Map<string, { routes: object[]; from: Set<string> }>();
  for (const s of servers) {
    const gwNs = namespaceOf(s.gateway);
    for (const vs of push.virtualServicesForGateway(s.gatewayKey, proxy.namespace)) {
      const vsKey = `${namespaceOf(vs)}/${vs.metadata.name}`;
      if ((vs.spec.http ?? []).length === 0) {
        if ((vs.spec.tcp ?? []).length > 0 || (vs.spec.tls ?? []).length > 0)
          warnings.push(`VirtualService ${vsKey}: tcp and tls routes are not served by ingress gateways; ignored`);
        continue;
      }
      for (const host of boundHosts(vs, s.server.hosts, gwNs)) {
        const vh = vhosts.get(host) ?? { routes: [], from: new Set<string>() };
        vhosts.set(host, vh);
        if (vh.from.has(vsKey)) continue;
        vh.from.add(vsKey);
        if (s.httpsRedirect)
          vh.routes.push({
            name: `${vsKey}.https-redirect`,
            match: { prefix: '/' },
            redirect: { https_redirect: true, response_code: 'MOVED_PERMANENTLY' },
          });
        else vh.routes.push(...virtualServiceRoutes(push, vs, proxy, port, warnings, s.gatewayKey));
      }
    }
  }
  const virtualHosts = [...vhosts.entries()].map(([host, vh]) => ({
    name: `${host}:${port}`,
    domains: domainsOf(host),
    routes: [...vh.routes.filter((r) => !isCatchAll(r)), ...vh.routes.filter(isCatchAll)],
    include_request_attempt_count: true,
  }));
  return { name, config: { name, virtual_hosts: virtualHosts, validate_clusters: { value: false } } };
}

/** ServedPort is a port with the servers that can be served: TLS servers whose credential is usable. */
interface ServedPort extends IngressPort {
  routes: IngressRoute[];
}

function usableTls(push: PushContext, proxy: ProxyModel, s: IngressServer, warnings: string[]): boolean {
  if (!s.tls) return true;
  const where = `Gateway ${s.gatewayKey} servers[${s.index}]`;
  const secret = push.tlsSecret(proxy.namespace, s.tls.credentialName);
  if (!secret) {
    warnings.push(
      `${where}: credentialName ${s.tls.credentialName}: no kubernetes.io/tls Secret in namespace ${proxy.namespace}; server left out`,
    );
    return false;
  }
  if (s.tls.mode === 'MUTUAL' && tlsSecretMaterial(secret).caPem === undefined) {
    warnings.push(`${where}: tls mode MUTUAL: Secret ${s.tls.credentialName} has no ca.crt; server left out`);
    return false;
  }
  return true;
}

/**
 * servedPorts is {@link ingressPorts} narrowed to what can be served, with each port's RouteConfigurations:
 * `http.<port>` for plain HTTP servers, one `https.<port>.<portName>.<gateway>.<ns>` per TLS server.
 */
function servedPorts(push: PushContext, proxy: ProxyModel, warnings: string[]): ServedPort[] {
  const out: ServedPort[] = [];
  for (const p of ingressPorts(push, proxy, warnings)) {
    const servers = p.servers.filter((s) => usableTls(push, proxy, s, warnings));
    if (servers.length === 0) continue;
    const routes =
      p.kind === 'http'
        ? [routeConfigFor(push, proxy, httpRouteName(p.port), p.port, servers, warnings)]
        : servers.map((s) => routeConfigFor(push, proxy, httpsRouteName(s), p.port, [s], warnings));
    out.push({ ...p, servers, routes });
  }
  return out;
}

function hcm(port: number, routeName: string, rbac: readonly object[], normalization: Record<string, unknown>): object {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM_TYPE,
      stat_prefix: `outbound_0.0.0.0_${port}`,
      rds: { route_config_name: routeName, config_source: ADS_SOURCE },
      http_filters: [...rbac, FAULT, CORS_FILTER, ROUTER],
      upgrade_configs: [WEBSOCKET_UPGRADE],
      use_remote_address: { value: true },
      // The Host's port is not part of the Gateway host: `*.example.com` matches `a.example.com:8080`.
      strip_any_host_port: true,
      ...normalization,
    },
  };
}

function serverNames(s: IngressServer, taken: Set<string>, warnings: string[]): string[] | undefined {
  const names: string[] = [];
  for (const h of s.server.hosts) {
    const host = h.includes('/') ? h.slice(h.indexOf('/') + 1) : h;
    if (host === '*') return undefined; // any SNI (and none)
    const k = host.toLowerCase();
    if (taken.has(k)) {
      warnings.push(
        `Gateway ${s.gatewayKey} servers[${s.index}]: host ${host} is already served on this port; not matched here`,
      );
      continue;
    }
    taken.add(k);
    names.push(k);
  }
  return names;
}

function tlsChain(
  s: IngressServer,
  routeName: string,
  filter: object,
  taken: Set<string>,
  warnings: string[],
): object | undefined {
  const tls = s.tls;
  if (!tls) return undefined;
  const names = serverNames(s, taken, warnings);
  if (names !== undefined && names.length === 0) return undefined;
  const sds = credentialSdsName(tls.credentialName);
  return {
    name: routeName,
    ...(names ? { filter_chain_match: { server_names: names } } : {}),
    filters: [filter],
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': DOWNSTREAM_TLS_TYPE,
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: sds, sds_config: ADS_SOURCE }],
          ...(tls.mode === 'MUTUAL'
            ? { validation_context_sds_secret_config: { name: `${sds}${CACERT_SUFFIX}`, sds_config: ADS_SOURCE } }
            : {}),
          alpn_protocols: [...ALPN_INBOUND_HTTP],
        },
        ...(tls.mode === 'MUTUAL' ? { require_client_certificate: { value: true } } : {}),
      },
    },
  };
}

/**
 * generateIngressListeners is the LDS generator of an ingress gateway (`router` node, gateway mode `ingress`):
 * per Gateway server port one Listener `0.0.0.0_<port>` (Istio's name) bound on the proxy's own address (in a pod
 * the only one; on a shared host it keeps gateways apart), traffic direction OUTBOUND. A plain HTTP port has one
 * filter chain whose HTTP connection manager uses RDS `http.<port>`; an HTTPS port has the tls_inspector and one
 * filter chain per server, chosen by SNI (`server_names` = the server's hosts, none for `*`), terminating TLS with
 * the SDS certificate `kubernetes://<credentialName>` (MUTUAL also verifies the client against
 * `kubernetes://<credentialName>-cacert`) and using RDS `https.<port>.<portName>.<gateway>.<ns>`. Every HCM has
 * the gateway's AuthorizationPolicies (RBAC), fault and router filters, WebSocket upgrades,
 * `use_remote_address`, `strip_any_host_port` (as Istio's gateway HCMs: the Host's port is dropped before
 * routing, so host rules ignore the port the client dialled) and the mesh's path normalization.
 */
export function generateIngressListeners(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[],
): GeneratedResource[] {
  const rbac = buildRbacFilters(policiesForWorkload(push, proxy, warnings), push.mesh.trustDomain);
  warnings.push(...rbac.warnings);
  const normalization = pathNormalizationFields(push.mesh.pathNormalization);
  const out: GeneratedResource[] = [];
  for (const p of servedPorts(push, proxy, warnings)) {
    const name = ingressListenerName(p.port);
    const base = {
      name,
      address: { socket_address: { address: proxy.ip, port_value: p.port } },
      traffic_direction: 'OUTBOUND',
    };
    if (p.kind === 'http') {
      const route = httpRouteName(p.port);
      out.push(
        toResource(TypeUrl.Listener, name, {
          ...base,
          filter_chains: [{ name: route, filters: [hcm(p.port, route, rbac.filters, normalization)] }],
        }),
      );
      continue;
    }
    const taken = new Set<string>();
    const chains = p.servers
      .map((s) => {
        const route = httpsRouteName(s);
        return tlsChain(s, route, hcm(p.port, route, rbac.filters, normalization), taken, warnings);
      })
      .filter((c): c is object => c !== undefined);
    if (chains.length === 0) continue;
    out.push(
      toResource(TypeUrl.Listener, name, {
        ...base,
        listener_filters: [TLS_INSPECTOR],
        filter_chains: chains,
      }),
    );
  }
  return out;
}

/** generateIngressRoutes is the RDS generator of an ingress gateway: the RouteConfigurations its listeners name. */
export function generateIngressRoutes(push: PushContext, proxy: ProxyModel, warnings: string[]): GeneratedResource[] {
  return servedPorts(push, proxy, warnings).flatMap((p) =>
    p.routes.map((r) => toResource(TypeUrl.RouteConfiguration, r.name, r.config)),
  );
}

/** referencedClusters lists the cluster names an ingress gateway's routes send to (routes, splits, mirrors). */
function referencedClusters(push: PushContext, proxy: ProxyModel): Set<string> {
  const names = new Set<string>();
  for (const p of servedPorts(push, proxy, []))
    for (const r of p.routes)
      for (const vh of r.config.virtual_hosts as { routes: { route?: Record<string, unknown> }[] }[])
        for (const route of vh.routes) {
          const a = route.route as
            | {
                cluster?: string;
                weighted_clusters?: { clusters: { name: string }[] };
                request_mirror_policies?: { cluster: string }[];
              }
            | undefined;
          if (!a) continue;
          if (a.cluster) names.add(a.cluster);
          for (const c of a.weighted_clusters?.clusters ?? []) names.add(c.name);
          for (const m of a.request_mirror_policies ?? []) names.add(m.cluster);
        }
  return names;
}

/**
 * generateIngressClusters is the CDS generator of an ingress gateway: the outbound clusters its routes use (as a
 * sidecar in the gateway's namespace would have them: DestinationRule policies, mTLS to sidecars with auto mTLS
 * or ISTIO_MUTUAL), and no others (Istio's PILOT_FILTER_GATEWAY_CLUSTER_CONFIG).
 */
export function generateIngressClusters(push: PushContext, proxy: ProxyModel, warnings: string[]): GeneratedResource[] {
  const used = referencedClusters(push, proxy);
  if (used.size === 0) return [];
  return generateOutboundClusters(push, proxy, warnings).filter((c) => used.has(c.name));
}

/** generateIngressEndpoints is the EDS generator of an ingress gateway: the assignments of its clusters. */
export function generateIngressEndpoints(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const used = referencedClusters(push, proxy);
  if (used.size === 0) return [];
  return generateEndpoints(push, proxy).filter((c) => used.has(c.name));
}

/**
 * generateIngressSecrets is the SDS generator of an ingress gateway: the `ROOTCA` trust bundle and, per served
 * TLS server, `kubernetes://<credentialName>` (`tls_certificate`: the Secret's `tls.crt` chain and `tls.key`) and
 * for MUTUAL `kubernetes://<credentialName>-cacert` (`validation_context`: its `ca.crt`). The Secret is read from
 * the gateway workload's namespace. Key material only ever travels in these resources, over the proxy's mTLS ADS
 * stream; it is never logged.
 */
export function generateIngressSecrets(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const out = generateSecrets(push);
  const seen = new Set<string>();
  for (const p of servedPorts(push, proxy, []))
    for (const s of p.servers) {
      if (!s.tls || seen.has(s.tls.credentialName)) continue;
      seen.add(s.tls.credentialName);
      const secret = push.tlsSecret(proxy.namespace, s.tls.credentialName);
      if (!secret) continue;
      const m = tlsSecretMaterial(secret);
      const name = credentialSdsName(s.tls.credentialName);
      out.push(
        toResource(TypeUrl.Secret, name, {
          name,
          tls_certificate: {
            certificate_chain: { inline_string: m.certChainPem },
            private_key: { inline_string: m.keyPem },
          },
        }),
      );
      if (m.caPem !== undefined)
        out.push(
          toResource(TypeUrl.Secret, `${name}${CACERT_SUFFIX}`, {
            name: `${name}${CACERT_SUFFIX}`,
            validation_context: { trusted_ca: { inline_string: m.caPem } },
          }),
        );
    }
  return out;
}
