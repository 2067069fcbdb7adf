import { Counter, type Registry } from 'prom-client';
import { ISTIO_LABELS } from '../metrics.js';

/**
 * TCP_LABELS are the labels of Istio's TCP metrics (https://istio.io/latest/docs/reference/config/metrics/): the
 * request labels without `response_code` and `grpc_response_status`; `request_protocol` is `tcp`.
 */
export const TCP_LABELS = ISTIO_LABELS.filter((l) => l !== 'response_code' && l !== 'grpc_response_status');

/** TcpLabels is one TCP connection's label values (every label present, `unknown` when not known). */
export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

/** blankTcpLabels returns TCP labels with every value `unknown`, `request_protocol` `tcp` and `response_flags` `-`. */
export function blankTcpLabels(): TcpLabels {
  const l = {} as TcpLabels;
  for (const k of TCP_LABELS) l[k] = 'unknown';
  l.request_protocol = 'tcp';
  l.response_flags = '-';
  return l;
}

/** TcpRejectReason is a value of `fedmesh_gateway_rejected_connections_total{reason}`. */
export type TcpRejectReason =
  | 'not_tls'
  | 'record_too_large'
  | 'client_hello_too_large'
  | 'not_client_hello'
  | 'malformed'
  | 'bad_server_name'
  | 'duplicate_extension'
  | 'timeout'
  | 'closed'
  | 'no_filter_chain'
  | 'overflow';

/**
 * TcpMetrics are Istio's TCP metrics, registered on a proxy's registry: `istio_tcp_sent_bytes_total` (bytes sent to
 * the downstream, the response direction), `istio_tcp_received_bytes_total` (bytes received from the downstream),
 * `istio_tcp_connections_opened_total` and `istio_tcp_connections_closed_total`; plus
 * `fedmesh_gateway_rejected_connections_total{listener, reason}` for connections closed before a filter chain
 * (Envoy counts these as `tls_inspector.*` and `no_filter_chain_match`).
 */
export class TcpMetrics {
  readonly sentBytes: Counter<(typeof TCP_LABELS)[number]>;
  readonly receivedBytes: Counter<(typeof TCP_LABELS)[number]>;
  readonly opened: Counter<(typeof TCP_LABELS)[number]>;
  readonly closed: Counter<(typeof TCP_LABELS)[number]>;
  readonly rejected: Counter<'listener' | 'reason'>;

  /** constructor registers the counters on `registry`. */
  constructor(registry: Registry) {
    const labelNames = [...TCP_LABELS];
    this.sentBytes = new Counter({
      name: 'istio_tcp_sent_bytes_total',
      help: 'Bytes sent to the downstream of TCP connections (response direction)',
      labelNames,
      registers: [registry],
    });
    this.receivedBytes = new Counter({
      name: 'istio_tcp_received_bytes_total',
      help: 'Bytes received from the downstream of TCP connections (request direction)',
      labelNames,
      registers: [registry],
    });
    this.opened = new Counter({
      name: 'istio_tcp_connections_opened_total',
      help: 'TCP connections opened',
      labelNames,
      registers: [registry],
    });
    this.closed = new Counter({
      name: 'istio_tcp_connections_closed_total',
      help: 'TCP connections closed',
      labelNames,
      registers: [registry],
    });
    this.rejected = new Counter({
      name: 'fedmesh_gateway_rejected_connections_total',
      help: 'Connections closed before a filter chain was chosen, by reason',
      labelNames: ['listener', 'reason'],
      registers: [registry],
    });
  }
}
