import type { LocalityLoadBalancerSetting, OutlierDetection } from '@fedmesh/api';
import type { ProxyModel } from '../model/proxy.js';
import type { ServiceInstance } from '../model/service.js';

/** Locality is a region/zone/sub-zone triple (Envoy `config.core.v3.Locality`); empty strings when unknown. */
export interface Locality {
  region: string;
  zone: string;
  subZone: string;
}

/**
 * LocalityGroup is one future `LocalityLbEndpoints` of a ClusterLoadAssignment: the endpoints of one locality at
 * one priority, with the locality's `load_balancing_weight`.
 */
export interface LocalityGroup {
  locality: Locality;
  priority: number;
  weight: number;
  instances: ServiceInstance[];
}

/** TOPOLOGY_LABELS are the endpoint label keys Istio derives from locality, network and cluster. */
export const TOPOLOGY_LABELS = {
  region: 'topology.kubernetes.io/region',
  zone: 'topology.kubernetes.io/zone',
  subZone: 'topology.istio.io/subzone',
  network: 'topology.istio.io/network',
  cluster: 'topology.istio.io/cluster',
} as const;

/**
 * localityMatches is Istio's `util.LocalityMatch`: a rule `region/zone/subzone` matches a locality when each
 * segment is `*`, equal, or (for zone and sub-zone) left out, so `us-east` matches every zone of that region.
 */
export function localityMatches(l: Locality, rule: string): boolean {
  const [region = '', zone = '', subZone = ''] = rule.split('/');
  return (
    (region === '*' || l.region === region) &&
    (zone === '*' || zone === '' || l.zone === zone) &&
    (subZone === '*' || subZone === '' || l.subZone === subZone)
  );
}

function localityKey(l: Locality): string {
  return `${l.region}/${l.zone}/${l.subZone}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** groupByLocality groups instances by locality (priority 0), each weighted by the sum of its endpoint weights. */
export function groupByLocality(instances: readonly ServiceInstance[]): LocalityGroup[] {
  const groups = new Map<string, LocalityGroup>();
  for (const i of instances) {
    const k = localityKey(i.endpoint.locality);
    let g = groups.get(k);
    if (!g) {
      g = { locality: { ...i.endpoint.locality }, priority: 0, weight: 0, instances: [] };
      groups.set(k, g);
    }
    g.instances.push(i);
    g.weight += i.endpoint.weight;
  }
  return [...groups.entries()].sort(([a], [b]) => compare(a, b)).map(([, g]) => g);
}

/**
 * applyDistribute is Istio's `applyLocalityWeights` (DestinationRule `localityLbSetting.distribute`): the first
 * rule whose `from` matches the proxy's locality sets each matched locality's weight to `to[pattern]`, split
 * across the localities a wildcard matches in proportion to their own weights (rounded up); localities no `to`
 * entry matches get no traffic and are left out. Groups are returned unchanged when no rule applies.
 */
export function applyDistribute(
  groups: readonly LocalityGroup[],
  proxy: Locality,
  distribute: NonNullable<LocalityLoadBalancerSetting['distribute']>,
): LocalityGroup[] {
  const rule = distribute.find((d) => localityMatches(proxy, d.from));
  if (!rule) return [...groups];
  const unmatched = new Set(groups.map((_, i) => i));
  const weights = new Map<number, number>();
  for (const [pattern, weight] of Object.entries(rule.to)) {
    const hit = [...unmatched].filter((i) => {
      const g = groups[i];
      return g !== undefined && localityMatches(g.locality, pattern);
    });
    const total = hit.reduce((s, i) => s + (groups[i]?.weight || 1), 0);
    for (const i of hit) {
      unmatched.delete(i);
      const w = Math.ceil(((groups[i]?.weight || 1) * weight) / total);
      if (w > 0) weights.set(i, w);
    }
  }
  const out: LocalityGroup[] = [];
  groups.forEach((g, i) => {
    const w = weights.get(i);
    if (w !== undefined) out.push({ ...g, weight: w });
  });
  return out;
}

/**
 * failoverLevel is the raw priority Istio's `applyLocalityFailover` gives an endpoint locality relative to the
 * proxy: 0 same region/zone/sub-zone, 1 same region and zone, 2 same region, 3 another region (or the `failover`
 * target region of the proxy's region, when one is configured), 4 any other region when a `failover` rule for
 * the proxy's region exists.
 */
export function failoverLevel(
  endpoint: Locality,
  proxy: Locality,
  failover: NonNullable<LocalityLoadBalancerSetting['failover']>,
): number {
  if (localityMatches(endpoint, `${proxy.region}/${proxy.zone}/${proxy.subZone}`)) return 0;
  if (localityMatches(endpoint, `${proxy.region}/${proxy.zone}`)) return 1;
  if (localityMatches(endpoint, proxy.region)) return 2;
  const rule = failover.find((f) => f.from === proxy.region);
  if (rule && endpoint.region !== rule.to) return 4;
  return 3;
}

/**
 * failoverPriorityLevel is Istio's `failoverPriority` rule for one endpoint: the number of leading keys of
 * `keys` (label names, or `name=value` to match a fixed value) on which the endpoint's labels do not all agree
 * with the proxy's, i.e. `keys.length - (length of the matching prefix)`.
 */
export function failoverPriorityLevel(
  keys: readonly string[],
  proxyLabels: Readonly<Record<string, string>>,
  endpointLabels: Readonly<Record<string, string>>,
): number {
  let matched = 0;
  for (const k of keys) {
    const eq = k.indexOf('=');
    const name = eq >= 0 ? k.slice(0, eq) : k;
    const want = eq >= 0 ? k.slice(eq + 1) : proxyLabels[name];
    if (want === undefined || endpointLabels[name] !== want) break;
    matched++;
  }
  return keys.length - matched;
}

function withTopology(labels: Record<string, string>, l: Locality, network?: string, cluster?: string) {
  const out: Record<string, string> = { ...labels };
  if (l.region) out[TOPOLOGY_LABELS.region] ??= l.region;
  if (l.zone) out[TOPOLOGY_LABELS.zone] ??= l.zone;
  if (l.subZone) out[TOPOLOGY_LABELS.subZone] ??= l.subZone;
  if (network) out[TOPOLOGY_LABELS.network] ??= network;
  if (cluster) out[TOPOLOGY_LABELS.cluster] ??= cluster;
  return out;
}

/**
 * applyFailover assigns priorities (Istio's `applyFailoverPriorities` then `applyLocalityFailover`): with
 * `failoverPriority`, endpoints are first ordered by {@link failoverPriorityLevel} (regrouping a locality whose
 * endpoints land at different levels), then, when `failover` is also set or `failoverPriority` is empty, by
 * {@link failoverLevel}; the pair is compressed into consecutive priorities 0..N as Envoy requires.
 */
export function applyFailover(
  groups: readonly LocalityGroup[],
  proxy: ProxyModel,
  setting: LocalityLoadBalancerSetting,
): LocalityGroup[] {
  const keys = setting.failoverPriority ?? [];
  const failover = setting.failover ?? [];
  const useLocality = keys.length === 0 || failover.length > 0;
  const proxyLabels = withTopology(
    proxy.labels,
    proxy.locality,
    proxy.labels['topology.istio.io/network'],
    proxy.clusterId,
  );
  const split = new Map<string, LocalityGroup & { level: [number, number] }>();
  for (const g of groups) {
    const loc = useLocality ? failoverLevel(g.locality, proxy.locality, failover) : 0;
    for (const i of g.instances) {
      const e = i.endpoint;
      const prio =
        keys.length > 0
          ? failoverPriorityLevel(keys, proxyLabels, withTopology(e.labels, e.locality, e.network, e.cluster))
          : 0;
      const k = `${prio}|${loc}|${localityKey(g.locality)}`;
      let s = split.get(k);
      if (!s) {
        s = { locality: g.locality, priority: 0, weight: 0, instances: [], level: [prio, loc] };
        split.set(k, s);
      }
      s.instances.push(i);
      s.weight += e.weight;
    }
  }
  const levels = [...new Set([...split.values()].map((s) => s.level[0] * 1000 + s.level[1]))].sort((a, b) => a - b);
  return [...split.values()]
    .map(({ level, ...g }) => ({ ...g, priority: levels.indexOf(level[0] * 1000 + level[1]) }))
    .sort((a, b) => a.priority - b.priority || compare(localityKey(a.locality), localityKey(b.locality)));
}

/**
 * effectiveLocalitySetting is Istio's `GetLocalityLbSetting` with the mesh default (locality load balancing
 * enabled): the DestinationRule's setting unless it says `enabled: false`.
 */
export function effectiveLocalitySetting(
  dr: LocalityLoadBalancerSetting | undefined,
): LocalityLoadBalancerSetting | undefined {
  if (dr?.enabled === false) return undefined;
  return dr ?? {};
}

/**
 * localityLbApplies reports what locality load balancing does for a cluster (Istio's `ApplyLocalityLoadBalancer`):
 * `distribute` when the setting has distribute rules; `failover` when the cluster has outlier detection (without
 * it Envoy would never fail over), or when the DestinationRule asks for fedmesh's explicit failover mode
 * ({@link FAILOVER_MODE_ANNOTATION} `explicit`), which applies failover priorities without outlier detection and
 * moves traffic on endpoint health (readiness, cluster liveness) and connection failures alone; otherwise nothing.
 */
export function localityLbApplies(
  setting: LocalityLoadBalancerSetting | undefined,
  outlier: OutlierDetection | undefined,
  explicitFailover = false,
): 'distribute' | 'failover' | undefined {
  if (!setting) return explicitFailover ? 'failover' : undefined;
  if (setting.distribute && setting.distribute.length > 0) return 'distribute';
  if (outlier || explicitFailover) return 'failover';
  return undefined;
}

/**
 * FAILOVER_MODE_ANNOTATION on a DestinationRule set to `explicit` turns on failover priorities without outlier
 * detection (Istio couples the two, istio/istio#48084): endpoints in the proxy's own locality (or matching its
 * `failoverPriority` labels, e.g. `topology.istio.io/cluster`) get priority 0 and the rest follow, so traffic moves
 * only when the preferred endpoints are unhealthy or gone.
 */
export const FAILOVER_MODE_ANNOTATION = 'networking.fedmesh.io/failover-mode';

/** explicitFailover reports whether a DestinationRule asks for the explicit failover mode. */
export function explicitFailover(
  dr: { metadata: { annotations?: Record<string, string> | undefined } } | undefined,
): boolean {
  return dr?.metadata.annotations?.[FAILOVER_MODE_ANNOTATION] === 'explicit';
}

/**
 * applyLocalityLb groups instances by locality and applies the effective locality setting for one proxy: weights
 * for `distribute`, priorities for failover (see {@link localityLbApplies}).
 */
export function applyLocalityLb(
  instances: readonly ServiceInstance[],
  proxy: ProxyModel,
  setting: LocalityLoadBalancerSetting | undefined,
  outlier: OutlierDetection | undefined,
  explicit = false,
): LocalityGroup[] {
  const groups = groupByLocality(instances);
  switch (localityLbApplies(setting, outlier, explicit)) {
    case 'distribute':
      return applyDistribute(groups, proxy.locality, setting?.distribute ?? []);
    case 'failover':
      return applyFailover(groups, proxy, setting ?? {});
    case undefined:
      return groups;
  }
}
