import type { XdsNode } from '@fedmesh/xds';

/** ProxyModel is what istiod knows of a connected proxy, from its xDS Node (Istio's metadata keys). */
export interface ProxyModel {
  id: string;
  type: 'sidecar' | 'router';
  ip: string;
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
  workloadName: string;
  podName: string;
  clusterId: string;
  /**
   * locality is where the proxy runs (Envoy `config.core.v3.Node.locality`), used for locality-aware endpoint
   * priorities and weights: the Node's `locality` when set, else the `topology.kubernetes.io/region|zone` and
   * `topology.istio.io/subzone` labels, as Istio reads it. Empty strings when unknown.
   */
  locality: { region: string; zone: string; subZone: string };
  /**
   * interceptionMode is the Node's `INTERCEPTION_MODE`: `REDIRECT` for a sidecar whose pod's traffic iptables
   * redirects to 15001/15006 (transparent capture); `NONE` (also when absent or unknown) for explicit mode.
   */
  interceptionMode?: InterceptionMode;
  /**
   * gatewayMode is what a `router` proxy serves, from the Node metadata `FEDMESH_GATEWAY_MODE`: `east-west` (the
   * default, also when absent: TLS AUTO_PASSTHROUGH servers on 15443) or `ingress` (HTTP and TLS-terminating
   * servers: `fedmesh gateway --mode ingress`, docs/adr/0018).
   */
  gatewayMode?: GatewayMode;
}

/** GatewayMode is the kind of Gateway servers a `router` proxy serves (see {@link ProxyModel.gatewayMode}). */
export type GatewayMode = 'east-west' | 'ingress';

/** GATEWAY_MODE_METADATA is the Node metadata key a gateway proxy announces its {@link GatewayMode} with. */
export const GATEWAY_MODE_METADATA = 'FEDMESH_GATEWAY_MODE';

/** InterceptionMode is how traffic reaches a sidecar: explicitly (`NONE`) or redirected by iptables (`REDIRECT`). */
export type InterceptionMode = 'NONE' | 'REDIRECT';

/**
 * parseProxyNode reads a proxy from its Node: the ID `<type>~<ip>~<pod>.<ns>~<ns>.svc.<domain>` and metadata
 * `NAMESPACE`, `SERVICE_ACCOUNT`, `LABELS`, `INSTANCE_IPS`, `WORKLOAD_NAME`, `POD_NAME`, `CLUSTER_ID`.
 * Throws an Error naming the field when the ID or metadata is malformed.
 */
export function parseProxyNode(node: XdsNode): ProxyModel {
  const parts = node.id.split('~');
  if (parts.length !== 4)
    throw new Error(`node.id: want <type>~<ip>~<pod>.<ns>~<domain>, got ${JSON.stringify(node.id)}`);
  const [type, ip, podDotNs] = parts as [string, string, string, string];
  if (type !== 'sidecar' && type !== 'router') throw new Error(`node.id: unknown proxy type ${JSON.stringify(type)}`);
  const md = node.metadata ?? {};
  const str = (k: string): string | undefined => (typeof md[k] === 'string' ? md[k] : undefined);
  const namespace = str('NAMESPACE') ?? podDotNs.slice(podDotNs.lastIndexOf('.') + 1);
  const labelsRaw = md.LABELS;
  const labels: Record<string, string> = {};
  if (labelsRaw && typeof labelsRaw === 'object')
    for (const [k, v] of Object.entries(labelsRaw as Record<string, unknown>)) if (typeof v === 'string') labels[k] = v;
  const podName = str('POD_NAME') ?? podDotNs.slice(0, podDotNs.lastIndexOf('.'));
  return {
    id: node.id,
    type,
    ip: (str('INSTANCE_IPS') ?? ip).split(',')[0] ?? ip,
    namespace,
    serviceAccount: str('SERVICE_ACCOUNT') ?? 'default',
    labels,
    workloadName: str('WORKLOAD_NAME') ?? podName,
    podName,
    clusterId: str('CLUSTER_ID') ?? 'Kubernetes',
    locality: proxyLocality(node, labels),
    interceptionMode: str('INTERCEPTION_MODE') === 'REDIRECT' ? 'REDIRECT' : 'NONE',
    ...(type === 'router' ? { gatewayMode: str(GATEWAY_MODE_METADATA) === 'ingress' ? 'ingress' : 'east-west' } : {}),
  };
}

function proxyLocality(node: XdsNode, labels: Record<string, string>): ProxyModel['locality'] {
  const l = node.locality;
  if (l && (l.region || l.zone || l.sub_zone))
    return { region: l.region ?? '', zone: l.zone ?? '', subZone: l.sub_zone ?? '' };
  return {
    region: labels['topology.kubernetes.io/region'] ?? '',
    zone: labels['topology.kubernetes.io/zone'] ?? '',
    subZone: labels['topology.istio.io/subzone'] ?? '',
  };
}
