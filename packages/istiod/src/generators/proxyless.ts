import { TypeUrl, outboundClusterName } from '@fedmesh/api/xds';
import { parseDurationMs } from '@fedmesh/api';
import type { XdsNode } from '@fedmesh/xds';
import type { ProxyModel } from '../model/proxy.js';
import type { MeshService, ServicePort } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { effectivePolicy } from './cds.js';
import { ADS_SOURCE, durationToProto, toResource, type GeneratedResource } from './common.js';
import { generateEndpoints } from './eds.js';
import type { ResourceGenerator } from './index.js';
import { generateProxylessRoutes, proxylessRouteName } from './proxyless-rds.js';
import { FAULT_FILTER_NAME } from './rds.js';

/**
 * PROXYLESS_GENERATOR is the node metadata value that marks a proxyless gRPC client: Istio's
 * `GENERATOR: grpc`, which istio-agent writes into the gRPC bootstrap.
 */
export const PROXYLESS_GENERATOR = 'grpc';

/**
 * isProxylessNode reports whether an xDS node is a proxyless gRPC client. fedmesh follows Istio: the node's
 * metadata carries `GENERATOR: grpc` (the node ID keeps Istio's `sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>`
 * form). The user agent (`gRPC Node Pure JS`, …) is not used: any gRPC client may speak to the mesh as a
 * sidecar-less workload only when its bootstrap says so.
 */
export function isProxylessNode(node: XdsNode): boolean {
  return node.metadata?.GENERATOR === PROXYLESS_GENERATOR;
}

const HCM_TYPE =
  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const FAULT_FILTER = {
  name: FAULT_FILTER_NAME,
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault' },
};
/** The router must be the last HTTP filter: gRPC NACKs a listener whose filter list ends otherwise. */
const ROUTER_FILTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};

/**
 * generateProxylessListeners is the LDS generator for proxyless gRPC clients (Istio's `grpcgen`): one Listener
 * per visible service port, named `<host>:<port>` (the name gRPC asks for when dialing `xds:///<host>:<port>`),
 * holding only an `api_listener` HttpConnectionManager that takes its routes over ADS from the RouteConfiguration
 * of the same name, with the fault filter and then the router. The Listener never changes while its name stays;
 * everything that does change lives in the RouteConfiguration (gRPC ignores a Listener-only change that keeps
 * the route name).
 */
export function generateProxylessListeners(push: PushContext, proxy: ProxyModel): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const svc of push.servicesFor(proxy.namespace))
    for (const port of svc.ports) {
      const name = proxylessRouteName(svc.hostname, port.port);
      out.push(
        toResource(TypeUrl.Listener, name, {
          name,
          api_listener: {
            api_listener: {
              '@type': HCM_TYPE,
              stat_prefix: name,
              rds: { route_config_name: name, config_source: ADS_SOURCE },
              http_filters: [FAULT_FILTER, ROUTER_FILTER],
            },
          },
        }),
      );
    }
  return out;
}

function proxylessCluster(
  push: PushContext,
  proxy: ProxyModel,
  svc: MeshService,
  port: ServicePort,
  subset: string,
  warnings: string[],
): object {
  const name = outboundClusterName(port.port, subset, svc.hostname);
  const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
  const subsetPolicy = subset ? dr?.spec.subsets?.find((s) => s.name === subset)?.trafficPolicy : undefined;
  const policy = effectivePolicy(dr?.spec.trafficPolicy, subsetPolicy, port.port);
  const cluster: Record<string, unknown> = {
    name,
    type: 'EDS',
    eds_cluster_config: { service_name: name, eds_config: ADS_SOURCE },
    // gRPC accepts ROUND_ROBIN and RING_HASH only (it NACKs LEAST_REQUEST).
    lb_policy: 'ROUND_ROBIN',
    connect_timeout: durationToProto(
      policy.connectionPool?.tcp?.connectTimeout ? parseDurationMs(policy.connectionPool.tcp.connectTimeout) : 10_000,
    ),
  };
  const simple = policy.loadBalancer?.simple;
  if ((simple && simple !== 'ROUND_ROBIN' && simple !== 'UNSPECIFIED') || policy.loadBalancer?.consistentHash)
    warnings.push(`${name}: proxyless gRPC uses ROUND_ROBIN here; loadBalancer ${simple ?? 'consistentHash'} ignored`);
  const maxRequests = policy.connectionPool?.http?.http2MaxRequests;
  if (maxRequests !== undefined)
    // gRFC A32: gRPC enforces max_requests of the DEFAULT threshold as its limit of concurrent calls.
    cluster.circuit_breakers = { thresholds: [{ priority: 'DEFAULT', max_requests: { value: maxRequests } }] };
  if (policy.tls?.mode && policy.tls.mode !== 'DISABLE')
    warnings.push(`${name}: DestinationRule tls ${policy.tls.mode} is not applied to proxyless gRPC (plaintext)`);
  return cluster;
}

/**
 * generateProxylessClusters is the CDS generator for proxyless gRPC clients: `outbound|<port>|<subset>|<host>`
 * EDS clusters for every visible service port and DestinationRule subset, round robin (gRPC NACKs
 * LEAST_REQUEST), with `circuit_breakers.thresholds[DEFAULT].max_requests` from the effective
 * `connectionPool.http.http2MaxRequests`. No transport socket: proxyless workloads talk plaintext here.
 */
export function generateProxylessClusters(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): GeneratedResource[] {
  const out: GeneratedResource[] = [];
  for (const svc of push.servicesFor(proxy.namespace)) {
    const dr = push.destinationRuleFor(svc.hostname, proxy.namespace);
    for (const port of svc.ports)
      for (const subset of ['', ...(dr?.spec.subsets ?? []).map((s) => s.name)])
        out.push(
          toResource(
            TypeUrl.Cluster,
            outboundClusterName(port.port, subset, svc.hostname),
            proxylessCluster(push, proxy, svc, port, subset, warnings),
          ),
        );
  }
  return out;
}

/**
 * createProxylessGenerators returns the generator map for proxyless gRPC clients, one per type URL: LDS, RDS
 * and CDS from this file's generators, EDS shared with sidecars (gRPC keeps only HEALTHY and UNKNOWN
 * endpoints and needs a `load_balancing_weight` on every locality, which the shared generator sets), and no
 * SDS.
 */
export function createProxylessGenerators(): Map<string, ResourceGenerator> {
  return new Map<string, ResourceGenerator>([
    [TypeUrl.Listener, (p, x) => generateProxylessListeners(p, x)],
    [TypeUrl.RouteConfiguration, (p, x, w) => generateProxylessRoutes(p, x, w)],
    [TypeUrl.Cluster, (p, x, w) => generateProxylessClusters(p, x, w)],
    [TypeUrl.ClusterLoadAssignment, (p, x) => generateEndpoints(p, x)],
  ]);
}
