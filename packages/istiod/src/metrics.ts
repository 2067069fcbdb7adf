import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * IstiodMetrics are the control-plane metrics under Istio's names: `pilot_xds_pushes` (by type),
 * `pilot_proxy_convergence_time` (seconds from a change to an ACK), `pilot_total_xds_rejects` (NACKs by type)
 * and `pilot_xds` (connected proxies).
 */
export class IstiodMetrics {
  readonly registry = new Registry();
  readonly pushes = new Counter({
    name: 'pilot_xds_pushes',
    help: 'xDS pushes by type',
    labelNames: ['type'],
    registers: [this.registry],
  });
  readonly rejects = new Counter({
    name: 'pilot_total_xds_rejects',
    help: 'xDS NACKs by type',
    labelNames: ['type'],
    registers: [this.registry],
  });
  readonly convergence = new Histogram({
    name: 'pilot_proxy_convergence_time',
    help: 'Seconds from a config change to a proxy ACK',
    buckets: [0.1, 0.5, 1, 3, 5, 10, 20, 30],
    registers: [this.registry],
  });
  readonly connected = new Gauge({ name: 'pilot_xds', help: 'Connected xDS clients', registers: [this.registry] });

  /** constructor registers the metrics and Node's process metrics. */
  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
