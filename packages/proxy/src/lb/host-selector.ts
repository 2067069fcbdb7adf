import { choosePriority, chooseLocality, priorityLoad, type LocalityBucket } from './priority.js';
import type { LbContext, LbHost, LoadBalancer } from './types.js';

/** SelectableHost is a host with what priority and locality selection read. */
export interface SelectableHost extends LbHost {
  priority: number;
  /** localityKey identifies the host's locality (`region/zone/sub_zone`). */
  localityKey: string;
  /** localityWeight is the `load_balancing_weight` of the host's `LocalityLbEndpoints`. */
  localityWeight: number;
}

/** SelectionPolicy is a cluster's host-selection settings. */
export interface SelectionPolicy<H extends SelectableHost> {
  lb: LoadBalancer<H>;
  /** panicThreshold is `common_lb_config.healthy_panic_threshold` (percent; 0 disables panic). */
  panicThreshold: number;
  /** localityWeighted is `common_lb_config.locality_weighted_lb_config`; consistent-hash balancers ignore it. */
  localityWeighted: boolean;
  /** hashBased tells that the balancer maps request hashes (ring hash, Maglev): the priority is chosen by hash too. */
  hashBased: boolean;
  /** hostSelectionAttempts is the retry policy's `host_selection_retry_max_attempts` (at least 1). */
  hostSelectionAttempts: number;
}

interface Level<H> {
  priority: number;
  hosts: H[];
  healthy: H[];
}

function levelsOf<H extends SelectableHost>(hosts: readonly H[], healthy: (h: H) => boolean): Level<H>[] {
  const by = new Map<number, Level<H>>();
  for (const h of hosts) {
    let l = by.get(h.priority);
    if (!l) {
      l = { priority: h.priority, hosts: [], healthy: [] };
      by.set(h.priority, l);
    }
    l.hosts.push(h);
    if (healthy(h)) l.healthy.push(h);
  }
  return [...by.values()].sort((a, b) => a.priority - b.priority);
}

/**
 * selectHost chooses an upstream host as Envoy's load balancer base does: priority levels by health (see
 * `priorityLoad`: overprovisioning factor 1.4, spill-over to lower priorities, panic threshold), then within the
 * chosen priority a locality by effective weight when locality-weighted, then a host by the cluster's balancer
 * over the healthy hosts (all hosts in panic). When a retry excludes the chosen host, selection runs again, up to
 * `hostSelectionAttempts` times, and the last choice is kept. Returns undefined when no host can be chosen
 * (Envoy's `no_healthy_upstream`).
 */
export function selectHost<H extends SelectableHost>(
  hosts: readonly H[],
  healthy: (h: H) => boolean,
  policy: SelectionPolicy<H>,
  ctx: LbContext<H>,
): H | undefined {
  if (hosts.length === 0) return undefined;
  const levels = levelsOf(hosts, healthy);
  const { load, panic } = priorityLoad(
    levels.map((l) => ({ total: l.hosts.length, healthy: l.healthy.length })),
    policy.panicThreshold,
  );
  let chosen: H | undefined;
  const attempts = Math.max(1, policy.hostSelectionAttempts);
  for (let attempt = 0; attempt < attempts; attempt++) {
    const r = policy.hashBased && ctx.hash !== undefined && attempt === 0 ? (ctx.hash % 100) / 100 : ctx.random();
    const p = choosePriority(load, r);
    const level = levels[p];
    if (!level) return chosen;
    let candidates = panic[p] ? level.hosts : level.healthy;
    if (policy.localityWeighted && !policy.hashBased && !panic[p] && candidates.length > 0) {
      const buckets = localityBuckets(level, healthy);
      const i = chooseLocality(buckets, ctx.random());
      const b = buckets[i];
      if (b) candidates = [...b.healthy];
    }
    const pick = policy.lb.pick(candidates, ctx);
    if (pick === undefined) continue;
    chosen = pick;
    if (!ctx.excluded?.(pick)) return pick;
  }
  return chosen;
}

function localityBuckets<H extends SelectableHost>(level: Level<H>, healthy: (h: H) => boolean): LocalityBucket<H>[] {
  const by = new Map<string, { weight: number; hosts: H[]; healthy: H[] }>();
  for (const h of level.hosts) {
    let b = by.get(h.localityKey);
    if (!b) {
      b = { weight: h.localityWeight, hosts: [], healthy: [] };
      by.set(h.localityKey, b);
    }
    b.hosts.push(h);
    if (healthy(h)) b.healthy.push(h);
  }
  return [...by.values()];
}
