import { allWeightsEqual, hostKey, type LbContext, type LbHost, type LoadBalancer } from './types.js';

/**
 * RoundRobinLoadBalancer is Envoy's `ROUND_ROBIN`: each host in turn; with unequal endpoint weights, smooth
 * weighted round robin (every host is chosen in proportion to its weight, interleaved, as Envoy's EDF
 * scheduler does). Excluded hosts are skipped.
 */
export class RoundRobinLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  private next = 0;
  private readonly current = new Map<string, number>();

  /** pick implements {@link LoadBalancer.pick}. */
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined {
    if (hosts.length === 0) return undefined;
    const ok = (h: H): boolean => !ctx.excluded?.(h);
    if (allWeightsEqual(hosts)) {
      for (let i = 0; i < hosts.length; i++) {
        const h = hosts[(this.next + i) % hosts.length];
        if (h && ok(h)) {
          this.next = (this.next + i + 1) % Number.MAX_SAFE_INTEGER;
          return h;
        }
      }
      return hosts[this.next++ % hosts.length];
    }
    return this.smooth(hosts.filter(ok)) ?? this.smooth(hosts);
  }

  private smooth(hosts: readonly H[]): H | undefined {
    if (hosts.length === 0) return undefined;
    let total = 0;
    let best: H | undefined;
    let bestWeight = -Infinity;
    for (const h of hosts) {
      const k = hostKey(h);
      const cw = (this.current.get(k) ?? 0) + h.weight;
      this.current.set(k, cw);
      total += h.weight;
      if (cw > bestWeight) {
        bestWeight = cw;
        best = h;
      }
    }
    if (best) this.current.set(hostKey(best), bestWeight - total);
    if (this.current.size > hosts.length * 4) this.current.clear();
    return best;
  }
}

/** RandomLoadBalancer is Envoy's `RANDOM`: a uniformly random host (weights are not used, as in Envoy). */
export class RandomLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  /** pick implements {@link LoadBalancer.pick}. */
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined {
    const ok = hosts.filter((h) => !ctx.excluded?.(h));
    const from = ok.length > 0 ? ok : hosts;
    return from[Math.floor(ctx.random() * from.length)];
  }
}

/**
 * LeastRequestLoadBalancer is Envoy's `LEAST_REQUEST`. With equal weights it samples `choiceCount` hosts at
 * random (with replacement, default 2: "power of two choices") and takes the one with the fewest active requests.
 * With unequal weights it picks at random in proportion to `weight / (active + 1)` (Envoy's weighted mode with
 * `active_request_bias` 1.0).
 */
export class LeastRequestLoadBalancer<H extends LbHost> implements LoadBalancer<H> {
  /** constructor takes Envoy's `least_request_lb_config.choice_count` (≥ 2). */
  constructor(private readonly choiceCount = 2) {}

  /** pick implements {@link LoadBalancer.pick}. */
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined {
    const ok = hosts.filter((h) => !ctx.excluded?.(h));
    const from = ok.length > 0 ? ok : hosts;
    if (from.length === 0) return undefined;
    if (allWeightsEqual(from)) {
      let best: H | undefined;
      for (let i = 0; i < this.choiceCount; i++) {
        const h = from[Math.floor(ctx.random() * from.length)];
        if (h && (!best || ctx.active(h) < ctx.active(best))) best = h;
      }
      return best;
    }
    const eff = from.map((h) => h.weight / (ctx.active(h) + 1));
    let r = ctx.random() * eff.reduce((a, b) => a + b, 0);
    for (let i = 0; i < from.length; i++) {
      r -= eff[i] ?? 0;
      if (r < 0) return from[i];
    }
    return from[from.length - 1];
  }
}
