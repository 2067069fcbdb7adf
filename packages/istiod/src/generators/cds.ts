import { TypeUrl, inboundClusterName, mtlsSni, outboundClusterName } from '@fedmesh/api/xds';
import { parseDurationMs } from '@fedmesh/api';
import type { ProxyModel } from '../model/proxy.js';
import type { MeshService, ServicePort } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import type { TrafficPolicy } from '@fedmesh/api';
import {
  ADS_SOURCE,
  durationToProto,
  matchesLabels,
  serviceAccountsOf,
  subsetLabels,
  toResource,
  type GeneratedResource,
} from './common.js';
import { explicitFailover } from './locality.js';
import { applyLoadBalancer, applyOutlierDetection, circuitBreakers, httpProtocolOptions } from './traffic-policy.js';
import { autoMtlsToServers } from './authn.js';
import { applyUpstreamProtocol, inboundCodecProtocol } from './upstream-protocol.js';

/** effectivePolicy merges a DestinationRule's traffic policies for one subset and port: subset over port-level over top level (Istio's `MergeTrafficPolicy`). */
export function effectivePolicy(
  top: TrafficPolicy | undefined,
  subset: TrafficPolicy | undefined,
  port: number,
): Omit<TrafficPolicy, 'portLevelSettings'> {
  const pick = (p: TrafficPolicy | undefined): Omit<TrafficPolicy, 'portLevelSettings'> => {
    if (!p) return {};
    const { portLevelSettings, ...rest } = p;
    const pl = portLevelSettings?.find((s) => s.port?.number === port);
    if (!pl) return rest;
    const { port: _port, ...plRest } = pl;
    return { ...rest, ...Object.fromEntries(Object.entries(plRest).filter(([, v]) => v !== undefined)) };
  };
  const base = pick(top);
  const sub = pick(subset);
  return { ...base, ...Object.fromEntries(Object.entries(sub).filter(([, v]) => v !== undefined)) };
}

function outboundCluster(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  subset: string,
  warnings: string[],
): object | undefined {
  const name = outboundClusterName(port.port, subset, svc.hostname);
  const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
  const subsetPolicy = subset ? dr?.spec.subsets?.find((s) => s.name === subset)?.trafficPolicy : undefined;
  const policy = effectivePolicy(dr?.spec.trafficPolicy, subsetPolicy, port.port);
  const instances = push.instances(svc.hostname, port.port);
  const cluster: Record<string, unknown> = {
    name,
    type: 'EDS',
    eds_cluster_config: { service_name: name, eds_config: ADS_SOURCE },
    connect_timeout: durationToProto(
      policy.connectionPool?.tcp?.connectTimeout ? parseDurationMs(policy.connectionPool.tcp.connectTimeout) : 10_000,
    ),
  };
  applyLoadBalancer(cluster, policy, name, warnings, explicitFailover(dr));
  cluster.circuit_breakers = circuitBreakers(policy);
  const protocolOptions = httpProtocolOptions(policy, name, warnings);
  if (protocolOptions) cluster.typed_extension_protocol_options = protocolOptions;
  applyOutlierDetection(cluster, policy);
  const mode = policy.tls?.mode;
  if (mode === 'SIMPLE' || mode === 'MUTUAL') {
    warnings.push(`${name}: DestinationRule tls mode ${mode} (origination) not yet supported; cluster left out`);
    return undefined;
  }
  const autoMtls =
    mode === undefined &&
    push.mesh.enableAutoMtls !== false &&
    instances.every((i) => i.endpoint.tlsMode === 'istio') &&
    autoMtlsToServers(push, instances, name, warnings);
  if (mode === 'ISTIO_MUTUAL' || autoMtls) {
    // Istio expands the SANs with meshConfig.trustDomainAliases (spiffe.ExpandWithTrustDomains).
    const sans = [push.mesh.trustDomain, ...(push.mesh.trustDomainAliases ?? [])].flatMap((td) =>
      serviceAccountsOf(td, instances),
    );
    cluster.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: mtlsSni(port.port, subset, svc.hostname),
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS_SOURCE }],
          combined_validation_context: {
            default_validation_context: {
              match_typed_subject_alt_names: sans.map((s) => ({ san_type: 'URI', matcher: { exact: s } })),
            },
            validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS_SOURCE },
          },
        },
      },
    };
  }
  applyUpstreamProtocol(cluster, port.protocol, policy); // codec and ALPN (docs/adr/0015)
  return cluster;
}

/**
 * generateClusters is the CDS generator (Istio's `CdsGenerator`): for every service port visible to the proxy,
 * `outbound|<port>||<host>` and one `outbound|<port>|<subset>|<host>` per DestinationRule subset, using the
 * effective traffic policy (subset over port-level over top-level); mTLS when the DestinationRule says
 * ISTIO_MUTUAL or, with no TLS setting, when every endpoint has a sidecar (auto mTLS); load balancer, circuit
 * breakers, connection pool and outlier detection as `traffic-policy.ts` translates them. Then `inbound|<port>||`
 * STATIC clusters to the proxy's own workload for each service port selecting it (Istio's default circuit breakers). Pure: push and proxy in,
 * resources out; problems are appended to `warnings`.
 */
export function generateClusters(push: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
  return [...generateOutboundClusters(push, proxy, warnings), ...generateInboundClusters(push, proxy)];
}

/**
 * generateOutboundClusters is the outbound half of {@link generateClusters}. It does not depend on the proxy's
 * address, so istiod shares it between proxies that agree on the fields it reads (`push-memo.ts`).
 */
export function generateOutboundClusters(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const svc of push.servicesFor(proxy.namespace)) {
    const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
    for (const port of svc.ports) {
      for (const subset of ['', ...(dr?.spec.subsets ?? []).map((s) => s.name)]) {
        const c = outboundCluster(push, proxy, svc, port, subset, warnings);
        if (c) out.push(toResource(TypeUrl.Cluster, outboundClusterName(port.port, subset, svc.hostname), c));
      }
    }
  }
  return out;
}

/** generateInboundClusters is the inbound half of {@link generateClusters}: `inbound|<port>||` to the proxy's own workload. */
export function generateInboundClusters(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const [targetPort, refs] of inboundPorts(push, proxy)) {
    const name = inboundClusterName(targetPort);
    const cluster: Record<string, unknown> = {
      name,
      type: 'STATIC',
      connect_timeout: durationToProto(10_000),
      circuit_breakers: circuitBreakers({}),
      load_assignment: {
        cluster_name: name,
        endpoints: [
          {
            lb_endpoints: [
              { endpoint: { address: { socket_address: { address: proxy.ip, port_value: targetPort } } } },
            ],
          },
        ],
      },
    };
    // h2c to an app whose port is http2/grpc (upstream-protocol.ts)
    applyUpstreamProtocol(cluster, inboundCodecProtocol(refs.map((r) => r.port.protocol)), {});
    out.push(toResource(TypeUrl.Cluster, name, cluster));
  }
  return out;
}

/**
 * inboundPorts returns the proxy's own inbound ports: target port → the (service, port, subsets) pairs that
 * reach it, from every visible-or-not service whose endpoints include the proxy's address.
 */
export function inboundPorts(
  push: PushContext,
  proxy: ProxyModel,
): Map<number, { svc: MeshService; port: ServicePort; subsets: string[] }[]> {
  const out = new Map<number, { svc: MeshService; port: ServicePort; subsets: string[] }[]>();
  const own = push.instancesAt(proxy.ip);
  if (own.length === 0) return out;
  for (const svc of push.services) {
    if (svc.namespace !== proxy.namespace) continue;
    for (const port of svc.ports) {
      const mine = own.find((i) => i.service.hostname === svc.hostname && i.servicePort.port === port.port);
      if (!mine) continue;
      const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
      const subsets = (dr?.spec.subsets ?? [])
        .filter((s) => matchesLabels(subsetLabels(dr, s.name) ?? {}, mine.endpoint.labels))
        .map((s) => s.name);
      const list = out.get(mine.servicePort.targetPort) ?? [];
      list.push({ svc, port, subsets });
      out.set(mine.servicePort.targetPort, list);
    }
  }
  return out;
}
