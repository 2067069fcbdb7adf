import { Counter, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/** ISTIO_LABELS are the labels of Istio's standard metrics (https://istio.io/latest/docs/reference/config/metrics/). */
export const ISTIO_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

/** IstioLabels is one request's label values; every label is present, `unknown` when not known (as Istio does). */
export type IstioLabels = Record<(typeof ISTIO_LABELS)[number], string>;

/** blankLabels returns labels with every value `unknown`. */
export function blankLabels(): IstioLabels {
  const l = {} as IstioLabels;
  for (const k of ISTIO_LABELS) l[k] = 'unknown';
  l.grpc_response_status = '';
  l.response_flags = '-';
  return l;
}

/** DURATION_BUCKETS are Istio's `istio_request_duration_milliseconds` buckets (ms). */
export const DURATION_BUCKETS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];

/** SIZE_BUCKETS are Istio's `istio_request_bytes` and `istio_response_bytes` buckets (bytes). */
export const SIZE_BUCKETS: readonly number[] = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

type IstioLabel = (typeof ISTIO_LABELS)[number];

/** Distribution is one series of a histogram: a count per bucket (cumulative only when exported), sum and count. */
class Distribution {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++)
      if (v <= (b[i] ?? Infinity)) {
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        return;
      }
  }
}

/** RequestSeries is one label set's request count and its three distributions. */
interface RequestSeries {
  labels: Readonly<IstioLabels>;
  requests: number;
  duration: Distribution;
  requestBytes: Distribution;
  responseBytes: Distribution;
}

/** MetricValue is one exported sample, as prom-client's registry reads it (`metricName` for `_bucket`, …). */
interface MetricValue {
  labels: Readonly<Record<string, string | number>>;
  value: number;
  metricName?: string;
}

/** SeriesMetric is a metric of the request series that the registry exports (prom-client's duck-typed `get`). */
interface SeriesMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  get: () => Promise<{ help: string; name: string; type: string; values: MetricValue[]; aggregator: 'sum' }>;
  reset: () => void;
}

/**
 * ProxyMetrics is the proxy's Prometheus registry (prom-client) with Istio's request metrics:
 * `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes` and `istio_response_bytes`,
 * each with the labels of {@link ISTIO_LABELS}, beside Node's process metrics and the mTLS handshake counter.
 * The four request metrics share one series per label set, found by a single key per request, and are rendered
 * by the registry like prom-client's own Counter and Histogram (cumulative `_bucket{le}` lines, `_sum`,
 * `_count`): prom-client validates and hashes the labels on every observation, which cost more than the rest of
 * the bookkeeping together at proxy request rates.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  /**
   * tlsHandshakes is `fedmesh_tls_handshakes_total{direction, result}`: mTLS handshakes between proxies by direction
   * (`inbound`: a listener accepting a peer; `outbound`: a pool dialling one) and result (`ok`, `error`: TLS failed,
   * `peer_refused`: TLS succeeded but the peer is not an acceptable X509-SVID). Envoy counts the same events as
   * `ssl.handshake`, `ssl.connection_error` and `ssl.fail_verify_san`.
   */
  readonly tlsHandshakes: Counter<'direction' | 'result'>;
  private series = new Map<string, RequestSeries>();

  /** constructor registers the request metrics, the handshake counter and Node's process metrics. */
  constructor() {
    const metric = (
      name: string,
      help: string,
      type: 'counter' | 'histogram',
      values: (s: RequestSeries, name: string, out: MetricValue[]) => void,
    ): void => {
      const m: SeriesMetric = {
        name,
        help,
        type,
        aggregator: 'sum',
        get: () => {
          const out: MetricValue[] = [];
          for (const s of this.series.values()) values(s, name, out);
          return Promise.resolve({ help, name, type, values: out, aggregator: 'sum' });
        },
        reset: () => (this.series = new Map()),
      };
      // The registry needs only these members of a Metric (name, help, type, aggregator, get, reset).
      this.registry.registerMetric(m as unknown as Metric);
    };
    metric('istio_requests_total', 'Requests processed by the proxy', 'counter', (s, _n, out) =>
      out.push({ value: s.requests, labels: s.labels }),
    );
    metric('istio_request_duration_milliseconds', 'Request duration in milliseconds', 'histogram', (s, n, out) =>
      exportDistribution(n, s.labels, s.duration, DURATION_BUCKETS, out),
    );
    metric('istio_request_bytes', 'Request body size in bytes', 'histogram', (s, n, out) =>
      exportDistribution(n, s.labels, s.requestBytes, SIZE_BUCKETS, out),
    );
    metric('istio_response_bytes', 'Response body size in bytes', 'histogram', (s, n, out) =>
      exportDistribution(n, s.labels, s.responseBytes, SIZE_BUCKETS, out),
    );
    this.tlsHandshakes = new Counter({
      name: 'fedmesh_tls_handshakes_total',
      help: 'mTLS handshakes between proxies by direction and result',
      labelNames: ['direction', 'result'],
      registers: [this.registry],
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * record counts one finished request: `durationMs` in milliseconds, sizes in bytes. `labels` is read, not kept:
   * a new label set is copied.
   */
  record(labels: IstioLabels, durationMs: number, requestBytes: number, responseBytes: number): void {
    let key = '';
    for (const k of ISTIO_LABELS) key += labels[k] + '\u0001';
    let s = this.series.get(key);
    if (!s) {
      const copy = {} as IstioLabels;
      for (const k of ISTIO_LABELS) copy[k] = labels[k];
      s = {
        labels: copy,
        requests: 0,
        duration: new Distribution(DURATION_BUCKETS),
        requestBytes: new Distribution(SIZE_BUCKETS),
        responseBytes: new Distribution(SIZE_BUCKETS),
      };
      this.series.set(key, s);
    }
    s.requests++;
    s.duration.observe(durationMs);
    s.requestBytes.observe(requestBytes);
    s.responseBytes.observe(responseBytes);
  }
}

function exportDistribution(
  name: string,
  labels: Readonly<Record<IstioLabel, string>>,
  d: Distribution,
  bounds: readonly number[],
  out: MetricValue[],
): void {
  let acc = 0;
  for (let i = 0; i < bounds.length; i++) {
    acc += d.counts[i] ?? 0;
    out.push({ labels: { le: bounds[i] ?? 0, ...labels }, value: acc, metricName: `${name}_bucket` });
  }
  out.push({ labels: { le: '+Inf', ...labels }, value: d.count, metricName: `${name}_bucket` });
  out.push({ labels, value: d.sum, metricName: `${name}_sum` });
  out.push({ labels, value: d.count, metricName: `${name}_count` });
}
