/**
 * Priority and locality selection, following Envoy's load balancer base
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/priority,
 * .../panic_threshold and .../locality_weight).
 */

/** OVERPROVISIONING_FACTOR is Envoy's default `overprovisioning_factor` (140%, i.e. 1.4). */
export const OVERPROVISIONING_FACTOR = 1.4;

/** DEFAULT_PANIC_THRESHOLD is Envoy's default `common_lb_config.healthy_panic_threshold` (50%). */
export const DEFAULT_PANIC_THRESHOLD = 50;

/** PriorityLevel is one priority's host counts. */
export interface PriorityLevel {
  total: number;
  healthy: number;
}

/** PriorityLoad is the share of traffic (percent, summing to 100) per priority and whether each is in panic. */
export interface PriorityLoad {
  load: number[];
  panic: boolean[];
}

/**
 * availability is Envoy's per-priority health: `min(100, 140 × healthy / total)` in whole percent (0 when the
 * priority has no hosts).
 */
export function availability(level: PriorityLevel): number {
  if (level.total === 0) return 0;
  return Math.min(100, Math.floor((OVERPROVISIONING_FACTOR * 100 * level.healthy) / level.total));
}

/**
 * priorityLoad is Envoy's `recalculatePerPriorityState` and `recalculatePerPriorityPanic`:
 * - each priority's availability (see {@link availability}); the normalized total is `min(100, Σ)`;
 * - load spills from priority 0 downwards, each taking up to its availability scaled by 100/total (so the
 *   loads always sum to 100); rounding leftovers go to the first priority with availability;
 * - when the normalized total is below 100, a priority whose healthy share `100 × healthy / total` is below
 *   `panicThreshold` is in panic (its traffic goes to all of its hosts, healthy or not);
 * - when every priority is in panic, load follows host counts instead ("total panic");
 * - with the threshold 0 and no availability anywhere, priority 0 takes the load and finds no host.
 */
export function priorityLoad(levels: readonly PriorityLevel[], panicThreshold = DEFAULT_PANIC_THRESHOLD): PriorityLoad {
  const avail = levels.map(availability);
  const normalized = Math.min(
    100,
    avail.reduce((a, b) => a + b, 0),
  );
  const load = levels.map(() => 0);
  if (levels.length === 0) return { load, panic: [] };
  if (normalized === 0 && panicThreshold === 0) {
    load[0] = 100;
    return { load, panic: levels.map(() => false) };
  }
  if (normalized > 0) {
    let remaining = 100;
    for (let i = 0; i < levels.length; i++) {
      const share = Math.min(remaining, Math.floor(((avail[i] ?? 0) * 100) / normalized));
      load[i] = share;
      remaining -= share;
    }
    if (remaining > 0) {
      const first = avail.findIndex((a) => a > 0);
      load[first] = (load[first] ?? 0) + remaining;
    }
  }
  const panic = levels.map(
    (l) => normalized < 100 && panicThreshold > 0 && (l.total === 0 || (100 * l.healthy) / l.total < panicThreshold),
  );
  if (panic.every(Boolean)) {
    const hosts = levels.reduce((s, l) => s + l.total, 0);
    if (hosts === 0) return { load, panic };
    let remaining = 100;
    for (let i = 0; i < levels.length; i++) {
      load[i] = Math.floor((100 * (levels[i]?.total ?? 0)) / hosts);
      remaining -= load[i] ?? 0;
    }
    const first = levels.findIndex((l) => l.total > 0);
    load[first] = (load[first] ?? 0) + remaining;
  }
  return { load, panic };
}

/** choosePriority maps a number in [0, 1) onto a priority by cumulative load (Envoy's `choosePriority`). */
export function choosePriority(load: readonly number[], r: number): number {
  let acc = 0;
  const target = r * 100;
  for (let i = 0; i < load.length; i++) {
    acc += load[i] ?? 0;
    if (target < acc) return i;
  }
  return Math.max(0, load.length - 1);
}

/** LocalityBucket is one locality's hosts within a priority, with its `load_balancing_weight`. */
export interface LocalityBucket<H> {
  weight: number;
  hosts: readonly H[];
  healthy: readonly H[];
}

/**
 * chooseLocality is Envoy's locality-weighted choice within a priority: each locality's effective weight is its
 * weight × `min(1, 1.4 × healthy / total)`, and one is drawn in proportion (`r` in [0, 1)). Returns the index,
 * or -1 when no locality has an effective weight.
 */
export function chooseLocality<H>(buckets: readonly LocalityBucket<H>[], r: number): number {
  const eff = buckets.map((b) =>
    b.hosts.length === 0 ? 0 : b.weight * Math.min(1, (OVERPROVISIONING_FACTOR * b.healthy.length) / b.hosts.length),
  );
  const total = eff.reduce((a, b) => a + b, 0);
  if (total <= 0) return -1;
  let x = r * total;
  for (let i = 0; i < eff.length; i++) {
    x -= eff[i] ?? 0;
    if (x < 0 && (eff[i] ?? 0) > 0) return i;
  }
  return eff.findLastIndex((e) => e > 0);
}
