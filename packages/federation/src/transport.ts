import { connect, type NatsConnection, type Subscription } from 'nats';

/** Transport carries federation's fast fan-out messages (endpoint deltas, heartbeats) on subjects. */
export interface Transport {
  publish(subject: string, data: Uint8Array): void;
  /** subscribe calls `handler` for each message on `subject` (NATS wildcards `*` and `>` allowed). */
  subscribe(subject: string, handler: (data: Uint8Array, subject: string) => void): { unsubscribe(): void };
  close(): Promise<void>;
}

/** NatsTransportOptions configure {@link NatsTransport.connect}. */
export interface NatsTransportOptions {
  /** servers are NATS URLs, e.g. `nats://127.0.0.1:4222`. */
  servers: string[];
  /** user and pass, when set, authenticate (per-cluster NATS permissions restrict publishing to own subjects). */
  user?: string;
  pass?: string;
  name?: string;
}

/**
 * NatsTransport is the {@link Transport} on NATS (core pub/sub) through the `nats` client. It reconnects forever
 * with the client's own backoff; messages published while disconnected are buffered by the client.
 */
export class NatsTransport implements Transport {
  private constructor(private readonly nc: NatsConnection) {}

  /** connect opens the connection; rejects if no server answers within 5 s. */
  static async connect(opts: NatsTransportOptions): Promise<NatsTransport> {
    const nc = await connect({
      servers: opts.servers,
      ...(opts.user !== undefined ? { user: opts.user, pass: opts.pass ?? '' } : {}),
      name: opts.name ?? 'fedmesh',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 5_000,
      pingInterval: 5_000,
    });
    return new NatsTransport(nc);
  }

  /** publish implements {@link Transport.publish}; a permission violation is reported asynchronously by the server. */
  publish(subject: string, data: Uint8Array): void {
    this.nc.publish(subject, data);
  }

  /** subscribe implements {@link Transport.subscribe}. */
  subscribe(subject: string, handler: (data: Uint8Array, subject: string) => void): { unsubscribe(): void } {
    const sub: Subscription = this.nc.subscribe(subject, {
      callback: (err, msg) => (err ? undefined : handler(msg.data, msg.subject)),
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  /** close drains and closes the connection. */
  async close(): Promise<void> {
    await this.nc.close();
  }
}
