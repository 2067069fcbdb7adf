import { murmur3 } from './hash.js';
import { hostKey, type LbContext, type LbHost, type LoadBalancer } from './types.js';

/** DEFAULT_MIN_RING_SIZE and DEFAULT_MAX_RING_SIZE are Envoy's `ring_hash_lb_config` defaults. */
export const DEFAULT_MIN_RING_SIZE = 1024;
/** DEFAULT_MAX_RING_SIZE bounds the ring (Envoy's default `maximum_ring_size`, 8M entries). */
export const DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024;
/** DEFAULT_MAGLEV_TABLE_SIZE is Envoy's default `maglev_lb_config.table_size` (a prime). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

function signature(hosts: readonly LbHost[]): string {
  return hosts.map((h) => `${hostKey(h)}*${h.weight}`).join(',');
}

/**
 * TableCache keeps the last few tables built per host list, so that a stable host set is hashed once and a
 * retry (which excludes hosts, not changes them) reuses the table.
 */
class TableCache<T> {
  private readonly entries = new Map<string, T>();

  get(hosts: readonly LbHost[], build: () => T): T {
    const key = signature(hosts);
    let t = this.entries.get(key);
    if (t === undefined) {
      t = build();
      if (this.entries.size >= 4) this.entries.delete(this.entries.keys().next().value ?? '');
      this.entries.set(key, t);
    }
    return t;
  }
}

/**
 * RingHashLoadBalancer is Envoy's `RING_HASH` (Ketama-style consistent hashing): every host gets ring points in
 * proportion to its weight, at least `minimumRingSize` points in all (capped at `maximumRingSize`); a request's
 * hash selects the first point clockwise. Removing a host moves only the keys that mapped to it. Without a hash
 * (no hash-policy key in the request) the choice is random, as Envoy does. With exclusions (retries) it walks
 * clockwise to the next host not excluded.
 */
export class RingHashLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  private readonly cache = new TableCache<{ points: Uint32Array; owners: H[] }>();

  /** constructor takes Envoy's `ring_hash_lb_config` sizes. */
  constructor(
    private readonly minimumRingSize = DEFAULT_MIN_RING_SIZE,
    private readonly maximumRingSize = DEFAULT_MAX_RING_SIZE,
  ) {}

  /** pick implements {@link LoadBalancer.pick}. */
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined {
    if (hosts.length === 0) return undefined;
    const ring = this.cache.get(hosts, () => this.build(hosts));
    const n = ring.points.length;
    const hash = ctx.hash ?? Math.floor(ctx.random() * 0x100000000);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((ring.points[mid] ?? 0) < hash) lo = mid + 1;
      else hi = mid;
    }
    const first = ring.owners[lo % n];
    if (!ctx.excluded) return first;
    for (let i = 0; i < n; i++) {
      const h = ring.owners[(lo + i) % n];
      if (h && !ctx.excluded(h)) return h;
    }
    return first;
  }

  private build(hosts: readonly H[]): { points: Uint32Array; owners: H[] } {
    const total = hosts.reduce((s, h) => s + h.weight, 0);
    const minShare = Math.min(...hosts.map((h) => h.weight)) / total;
    const size = Math.min(Math.ceil(Math.max(this.minimumRingSize, 1 / minShare)), this.maximumRingSize);
    const entries: { p: number; h: H }[] = [];
    for (const h of hosts) {
      const count = Math.max(1, Math.round((size * h.weight) / total));
      const key = hostKey(h);
      for (let i = 0; i < count; i++) entries.push({ p: murmur3(`${key}_${i}`), h });
    }
    entries.sort((a, b) => a.p - b.p || (hostKey(a.h) < hostKey(b.h) ? -1 : 1));
    return { points: Uint32Array.from(entries.map((e) => e.p)), owners: entries.map((e) => e.h) };
  }
}

/**
 * MaglevLoadBalancer is Envoy's `MAGLEV`: a lookup table of `tableSize` (prime) slots filled by each host's
 * permutation `(offset + j·skip) mod M` in turns proportional to its weight (Envoy's weighted Maglev), so every
 * host owns a share of slots close to its weight share and a host change moves few keys. A request's hash picks
 * slot `hash mod M`; without a hash the slot is random. With exclusions it probes the following slots.
 */
export class MaglevLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  private readonly cache = new TableCache<H[]>();

  /** constructor takes Envoy's `maglev_lb_config.table_size` (must be prime). */
  constructor(private readonly tableSize = DEFAULT_MAGLEV_TABLE_SIZE) {}

  /** pick implements {@link LoadBalancer.pick}. */
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined {
    if (hosts.length === 0) return undefined;
    const table = this.cache.get(hosts, () => this.build(hosts));
    const m = table.length;
    const hash = ctx.hash ?? Math.floor(ctx.random() * 0x100000000);
    const slot = hash % m;
    const first = table[slot];
    if (!ctx.excluded) return first;
    for (let i = 0; i < m; i++) {
      const h = table[(slot + i) % m];
      if (h && !ctx.excluded(h)) return h;
    }
    return first;
  }

  private build(hosts: readonly H[]): H[] {
    const m = this.tableSize;
    const maxWeight = Math.max(...hosts.map((h) => h.weight));
    const entries = [...hosts]
      .sort((a, b) => (hostKey(a) < hostKey(b) ? -1 : 1))
      .map((h) => {
        const key = hostKey(h);
        return {
          h,
          offset: murmur3(key, 0) % m,
          skip: (murmur3(key, 1) % (m - 1)) + 1,
          weight: h.weight / maxWeight,
          target: 0,
          next: 0,
        };
      });
    const table = new Array<H | undefined>(m);
    let filled = 0;
    for (let iteration = 1; filled < m; iteration++) {
      for (const e of entries) {
        if (filled >= m) break;
        if (iteration * e.weight < e.target) continue;
        e.target += 1;
        let c = (e.offset + e.next * e.skip) % m;
        while (table[c] !== undefined) {
          e.next++;
          c = (e.offset + e.next * e.skip) % m;
        }
        table[c] = e.h;
        e.next++;
        filled++;
      }
    }
    return table as H[];
  }
}
