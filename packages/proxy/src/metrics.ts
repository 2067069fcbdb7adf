import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

/** ProxyMetrics is the proxy's Prometheus registry with Istio's request metrics, built on prom-client. */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<(typeof ISTIO_LABELS)[number]>;
  readonly duration: Histogram<(typeof ISTIO_LABELS)[number]>;
  readonly requestBytes: Histogram<(typeof ISTIO_LABELS)[number]>;
  readonly responseBytes: Histogram<(typeof ISTIO_LABELS)[number]>;
  /**
   * tlsHandshakes is `fedmesh_tls_handshakes_total{direction, result}`: mTLS handshakes between proxies by direction
   * (`inbound`: a listener accepting a peer; `outbound`: a pool dialling one) and result (`ok`, `error`: TLS failed,
   * `peer_refused`: TLS succeeded but the peer is not an acceptable X509-SVID). Envoy counts the same events as
   * `ssl.handshake`, `ssl.connection_error` and `ssl.fail_verify_san`.
   */
  readonly tlsHandshakes: Counter<'direction' | 'result'>;

  /** constructor registers `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes` and Node's process metrics. */
  constructor() {
    const labelNames = [...ISTIO_LABELS];
    this.requests = new Counter({
      name: 'istio_requests_total',
      help: 'Requests processed by the proxy',
      labelNames,
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Request duration in milliseconds',
      labelNames,
      buckets: [
        0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
      ],
      registers: [this.registry],
    });
    const sizeBuckets = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];
    this.requestBytes = new Histogram({
      name: 'istio_request_bytes',
      help: 'Request body size in bytes',
      labelNames,
      buckets: sizeBuckets,
      registers: [this.registry],
    });
    this.responseBytes = new Histogram({
      name: 'istio_response_bytes',
      help: 'Response body size in bytes',
      labelNames,
      buckets: sizeBuckets,
      registers: [this.registry],
    });
    this.tlsHandshakes = new Counter({
      name: 'fedmesh_tls_handshakes_total',
      help: 'mTLS handshakes between proxies by direction and result',
      labelNames: ['direction', 'result'],
      registers: [this.registry],
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** record counts one finished request: `durationMs` in milliseconds, sizes in bytes. */
  record(labels: IstioLabels, durationMs: number, requestBytes: number, responseBytes: number): void {
    this.requests.inc(labels);
    this.duration.observe(labels, durationMs);
    this.requestBytes.observe(labels, requestBytes);
    this.responseBytes.observe(labels, responseBytes);
  }
}
