import { durationMs, type EnvoyOutlierDetection } from './xds/envoy-schemas.js';

/** OutlierConfig is a cluster's `outlier_detection` with Envoy's defaults filled in (times in ms). */
export interface OutlierConfig {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  enforcing5xx: number;
  enforcingGatewayFailure: number;
  enforcingLocalOriginFailure: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectionPercent: number;
  splitExternalLocalOriginErrors: boolean;
}

/**
 * outlierConfig fills Envoy's defaults into a decoded `outlier_detection`: consecutive_5xx 5 (enforced 100%),
 * consecutive_gateway_failure 5 (enforced 0%), consecutive_local_origin_failure 5 (enforced 100%), interval 10 s,
 * base_ejection_time 30 s, max_ejection_time 300 s, max_ejection_percent 10.
 */
export function outlierConfig(o: EnvoyOutlierDetection): OutlierConfig {
  const ms = (d: Parameters<typeof durationMs>[0], dflt: number): number => (d ? durationMs(d) : dflt);
  return {
    consecutive5xx: o.consecutive_5xx?.value ?? 5,
    consecutiveGatewayFailure: o.consecutive_gateway_failure?.value ?? 5,
    consecutiveLocalOriginFailure: o.consecutive_local_origin_failure?.value ?? 5,
    enforcing5xx: o.enforcing_consecutive_5xx?.value ?? 100,
    enforcingGatewayFailure: o.enforcing_consecutive_gateway_failure?.value ?? 0,
    enforcingLocalOriginFailure: o.enforcing_consecutive_local_origin_failure?.value ?? 100,
    intervalMs: Math.max(1, ms(o.interval, 10_000)),
    baseEjectionMs: ms(o.base_ejection_time, 30_000),
    maxEjectionMs: ms(o.max_ejection_time, 300_000),
    maxEjectionPercent: o.max_ejection_percent?.value ?? 10,
    splitExternalLocalOriginErrors: o.split_external_local_origin_errors === true,
  };
}

/**
 * OutlierResult is the outcome of one upstream attempt on a host: an HTTP status from upstream, or a local-origin
 * event (connect failure, timeout, reset after connect, or a successful connection).
 */
export type OutlierResult =
  | { kind: 'status'; status: number }
  | { kind: 'local'; event: 'connect-failure' | 'timeout' | 'reset' | 'connect-success' };

/** EjectionType names why a host was ejected, as Envoy's `envoy.data.cluster.v3.OutlierEjectionType`. */
export type EjectionType = 'CONSECUTIVE_5XX' | 'CONSECUTIVE_GATEWAY_FAILURE' | 'CONSECUTIVE_LOCAL_ORIGIN_FAILURE';

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  ejectedAt: number | undefined;
  lastUnejectedAt: number | undefined;
  /** backoff is Envoy's `ejectTimeBackoff`: the multiplier of base_ejection_time for the next ejection. */
  backoff: number;
  ejections: number;
}

/** OutlierDetectorOptions inject time, randomness and event callbacks. */
export interface OutlierDetectorOptions {
  now?: () => number;
  random?: () => number;
  onEject?: (host: string, type: EjectionType, durationMs: number) => void;
  onUneject?: (host: string) => void;
}

const LOCAL_AS_STATUS = { 'connect-failure': 503, timeout: 504, reset: 503 } as const;

/**
 * OutlierDetector is Envoy's consecutive-error outlier detection for one cluster
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier):
 * - every 5xx counts toward `consecutive_5xx`, 502/503/504 also toward `consecutive_gateway_failure`, and any
 *   other status resets both; without `split_external_local_origin_errors`, connect failures count as 503,
 *   timeouts as 504 and resets as 503; with it they count only toward `consecutive_local_origin_failure`, which a
 *   successful connection resets;
 * - reaching a threshold ejects the host at once, if the enforcement percentage allows it and ejecting it keeps
 *   the ejected share at or under `max_ejection_percent` (one host may always be ejected);
 * - every `interval` an ejected host returns once `min(base_ejection_time × backoff, max(max_ejection_time,
 *   base))` has passed since its ejection, where `backoff` grows by one per ejection and shrinks by one per
 *   interval spent healthy. Its counters restart at zero.
 * Hosts are keyed `address:port` and keep their state across EDS updates while they stay in the cluster.
 */
export class OutlierDetector {
  private readonly hosts = new Map<string, HostState>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly random: () => number;

  /** constructor stores the config; the interval timer starts with {@link OutlierDetector.start}. */
  constructor(
    readonly config: OutlierConfig,
    private readonly opts: OutlierDetectorOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
  }

  /** start runs the interval sweep (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.config.intervalMs);
    this.timer.unref();
  }

  /** stop ends the interval sweep. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** setHosts declares the cluster's current hosts: new ones start clean, removed ones are forgotten. */
  setHosts(keys: Iterable<string>): void {
    const keep = new Set(keys);
    for (const k of keep) if (!this.hosts.has(k)) this.hosts.set(k, fresh());
    for (const k of [...this.hosts.keys()]) if (!keep.has(k)) this.hosts.delete(k);
  }

  /** isEjected reports whether a host is currently ejected. */
  isEjected(key: string): boolean {
    return this.hosts.get(key)?.ejectedAt !== undefined;
  }

  /** ejectedCount returns how many hosts are ejected now (Envoy's `outlier_detection.ejections_active`). */
  ejectedCount(): number {
    let n = 0;
    for (const h of this.hosts.values()) if (h.ejectedAt !== undefined) n++;
    return n;
  }

  /** report records the result of one attempt on a host and ejects it when a threshold is reached. */
  report(key: string, result: OutlierResult): void {
    let h = this.hosts.get(key);
    if (!h) {
      h = fresh();
      this.hosts.set(key, h);
    }
    const c = this.config;
    if (result.kind === 'local') {
      if (c.splitExternalLocalOriginErrors) {
        if (result.event === 'connect-success') h.consecutiveLocal = 0;
        else if (++h.consecutiveLocal === c.consecutiveLocalOriginFailure)
          this.maybeEject(key, h, 'CONSECUTIVE_LOCAL_ORIGIN_FAILURE', c.enforcingLocalOriginFailure);
        return;
      }
      if (result.event === 'connect-success') return;
      return this.status(key, h, LOCAL_AS_STATUS[result.event]);
    }
    this.status(key, h, result.status);
  }

  /** sweep is the interval timer's work: return hosts whose ejection time is over, decay the backoff of others. */
  sweep(): void {
    const now = this.now();
    const c = this.config;
    for (const [key, h] of this.hosts) {
      if (h.ejectedAt === undefined) {
        if (h.backoff > 0 && h.lastUnejectedAt !== undefined && now - h.lastUnejectedAt >= c.intervalMs) h.backoff--;
        continue;
      }
      const ejectFor = Math.min(c.baseEjectionMs * h.backoff, Math.max(c.maxEjectionMs, c.baseEjectionMs));
      if (now - h.ejectedAt >= ejectFor) {
        h.ejectedAt = undefined;
        h.lastUnejectedAt = now;
        h.consecutive5xx = 0;
        h.consecutiveGateway = 0;
        h.consecutiveLocal = 0;
        this.opts.onUneject?.(key);
      }
    }
  }

  private status(key: string, h: HostState, status: number): void {
    const c = this.config;
    if (status < 500 || status > 599) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    if (status >= 502 && status <= 504) {
      if (++h.consecutiveGateway === c.consecutiveGatewayFailure)
        this.maybeEject(key, h, 'CONSECUTIVE_GATEWAY_FAILURE', c.enforcingGatewayFailure);
    } else h.consecutiveGateway = 0;
    if (++h.consecutive5xx === c.consecutive5xx) this.maybeEject(key, h, 'CONSECUTIVE_5XX', c.enforcing5xx);
  }

  private maybeEject(key: string, h: HostState, type: EjectionType, enforcing: number): void {
    if (h.ejectedAt !== undefined) return;
    const active = this.ejectedCount();
    const percent = (100 * (active + 1)) / Math.max(1, this.hosts.size);
    if (percent > this.config.maxEjectionPercent && active > 0) return;
    if (this.random() * 100 >= enforcing) return;
    const c = this.config;
    if (c.baseEjectionMs * h.backoff < c.maxEjectionMs + c.baseEjectionMs) h.backoff++;
    h.ejectedAt = this.now();
    h.ejections++;
    this.opts.onEject?.(key, type, Math.min(c.baseEjectionMs * h.backoff, Math.max(c.maxEjectionMs, c.baseEjectionMs)));
  }
}

function fresh(): HostState {
  return {
    consecutive5xx: 0,
    consecutiveGateway: 0,
    consecutiveLocal: 0,
    ejectedAt: undefined,
    lastUnejectedAt: undefined,
    backoff: 0,
    ejections: 0,
  };
}
