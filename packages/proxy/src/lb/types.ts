/** LbHost is what a load balancer reads of a host: a stable key (`address:port`) and its endpoint weight. */
export interface LbHost {
  address: string;
  port: number;
  /** weight is the endpoint's `load_balancing_weight` (≥ 1). */
  weight: number;
}

/** LbContext is the per-request input of a host choice. */
export interface LbContext<H extends LbHost> {
  /** hash is the request's hash from the route `hash_policy` (consistent hashing), if any key was present. */
  hash?: number | undefined;
  /** excluded reports hosts a retry must avoid (Envoy's `previous_hosts` retry predicate). */
  excluded?: ((h: H) => boolean) | undefined;
  /** active returns a host's outstanding requests (LEAST_REQUEST). */
  active: (h: H) => number;
  /** random returns a float in [0, 1); injectable for tests. */
  random: () => number;
}

/**
 * LoadBalancer chooses one host from a candidate list (already narrowed to one priority and, with
 * locality-weighted load balancing, one locality; unhealthy hosts already removed unless in panic). It returns
 * undefined only when `hosts` is empty. When every candidate is excluded, it returns its first choice anyway, as
 * Envoy does once `host_selection_retry_max_attempts` is spent.
 */
export interface LoadBalancer<H extends LbHost = LbHost> {
  pick(hosts: readonly H[], ctx: LbContext<H>): H | undefined;
}

/** hostKey is the stable identity of a host across EDS updates: `address:port`. */
export function hostKey(h: LbHost): string {
  return `${h.address}:${h.port}`;
}

/** allWeightsEqual reports whether every host has the same weight. */
export function allWeightsEqual(hosts: readonly LbHost[]): boolean {
  const w = hosts[0]?.weight;
  return hosts.every((h) => h.weight === w);
}
