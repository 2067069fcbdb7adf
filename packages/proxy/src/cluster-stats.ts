import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterManager } from './cluster-manager.js';

type ClusterLabel = 'cluster_name';

/**
 * ClusterStats are Envoy's per-cluster resilience counters as Istio exposes them on `/stats/prometheus`
 * (`envoy_cluster_<stat>{cluster_name}`): retries, retry overflow and success, pending-request and request
 * overflow, timeouts, and outlier ejections; active and pending requests and active ejections are read from
 * the cluster manager at scrape time.
 */
export class ClusterStats {
  readonly retry: Counter<ClusterLabel>;
  readonly retrySuccess: Counter<ClusterLabel>;
  readonly retryOverflow: Counter<ClusterLabel>;
  readonly retryLimitExceeded: Counter<ClusterLabel>;
  readonly pendingOverflow: Counter<ClusterLabel>;
  readonly timeout: Counter<ClusterLabel>;
  readonly perTryTimeout: Counter<ClusterLabel>;
  readonly ejectionsEnforced: Counter<ClusterLabel>;

  /** constructor registers the metrics in `registry`; gauges read `clusters` when scraped. */
  constructor(registry: Registry, clusters: () => ClusterManager | undefined) {
    const counter = (stat: string, help: string): Counter<ClusterLabel> =>
      new Counter({ name: `envoy_cluster_${stat}`, help, labelNames: ['cluster_name'], registers: [registry] });
    this.retry = counter('upstream_rq_retry', 'Retries sent upstream');
    this.retrySuccess = counter('upstream_rq_retry_success', 'Requests that succeeded after a retry');
    this.retryOverflow = counter(
      'upstream_rq_retry_overflow',
      'Retries refused by the circuit breaker or retry budget',
    );
    this.retryLimitExceeded = counter('upstream_rq_retry_limit_exceeded', 'Requests whose retries ran out');
    this.pendingOverflow = counter('upstream_rq_pending_overflow', 'Requests refused by the circuit breaker (UO)');
    this.timeout = counter('upstream_rq_timeout', 'Requests that hit the route timeout (UT)');
    this.perTryTimeout = counter('upstream_rq_per_try_timeout', 'Attempts that hit the per-try timeout');
    this.ejectionsEnforced = counter('outlier_detection_ejections_enforced_total', 'Outlier ejections enforced');
    const gauge = (
      stat: string,
      help: string,
      read: (c: ReturnType<ClusterManager['all']>[number]) => number,
    ): void => {
      new Gauge({
        name: `envoy_cluster_${stat}`,
        help,
        labelNames: ['cluster_name'],
        registers: [registry],
        collect() {
          this.reset();
          for (const c of clusters()?.all() ?? []) this.set({ cluster_name: c.name }, read(c));
        },
      });
    };
    gauge('upstream_rq_active', 'Requests in flight upstream', (c) => c.breaker.activeRequests());
    gauge('upstream_rq_pending_active', 'Requests waiting for a connection', (c) => c.breaker.pendingRequests());
    gauge('outlier_detection_ejections_active', 'Hosts ejected now', (c) => c.outlier?.ejectedCount() ?? 0);
  }
}
