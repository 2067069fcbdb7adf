import * as grpc from '@grpc/grpc-js';
import { loadAdsGrpc, nodeToWire, type AdsServiceClient, type WireNode, type XdsNode } from './grpc-service.js';
import type { XdsLogger } from './server.js';

/** AdsClientOptions configure an ADS client, State-of-the-World (`AdsClient`) or Delta (`DeltaAdsClient`). */
export interface AdsClientOptions {
  /** address is `host:port` of the ADS server. */
  address: string;
  credentials: grpc.ChannelCredentials;
  node: XdsNode;
  channelOptions?: grpc.ChannelOptions;
  log?: XdsLogger;
  /** backoffBaseMs and backoffMaxMs bound the reconnect delay (full jitter); defaults 250 ms and 15,000 ms. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** ClientStreamHooks are what one protocol plugs into a {@link ClientStream}. */
export interface ClientStreamHooks<Req, Resp> {
  /** open starts the protocol's bidirectional stream (`StreamAggregatedResources` or `DeltaAggregatedResources`). */
  open(client: AdsServiceClient): grpc.ClientDuplexStream<Req, Resp>;
  /** onConnected runs when a new stream is open, before any response: the client re-sends its subscriptions. */
  onConnected(): void;
  /** onResponse gets every response of the current stream, in order. */
  onResponse(resp: Resp): void;
  /** onDisconnected runs once per stream when it ends, errs or is cancelled, with the reason. */
  onDisconnected(why: string): void;
}

/**
 * ClientStream is an ADS client's channel and current stream, for either protocol. {@link ClientStream.start}
 * opens the channel (keepalive 30 s, timeout 10 s, then `channelOptions`) and a stream; a stream that ends or
 * fails is re-opened after a delay with full jitter, `random() × min(backoffMaxMs, backoffBaseMs × 2^attempt)`,
 * the attempt count reset by each response. The first request written on each stream carries the node, as
 * Envoy's xDS protocol requires. No I/O before `start`.
 */
export class ClientStream<Req extends { node?: WireNode }, Resp> {
  private client: AdsServiceClient | undefined;
  private call: grpc.ClientDuplexStream<Req, Resp> | undefined;
  private sentNode = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;

  /** constructor only stores its arguments; `label` names the stream in logs (`ads`, `delta ads`). */
  constructor(
    private readonly opts: AdsClientOptions,
    private readonly label: string,
    private readonly hooks: ClientStreamHooks<Req, Resp>,
  ) {}

  /** connected is true while a stream is open. */
  get connected(): boolean {
    return this.call !== undefined;
  }

  /** start opens the channel and a stream, reconnecting until `signal` aborts or {@link ClientStream.close}. */
  start(signal?: AbortSignal): void {
    this.stopped = false;
    signal?.addEventListener('abort', () => this.close(), { once: true });
    const { Client } = loadAdsGrpc();
    this.client = new Client(this.opts.address, this.opts.credentials, {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...this.opts.channelOptions,
    });
    this.connect();
  }

  /** close cancels the stream, closes the channel and stops reconnecting. */
  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
    this.client?.close();
    this.client = undefined;
  }

  /**
   * write sends one request on the current stream, adding the node if it is the stream's first; returns false
   * (and sends nothing) when no stream is open.
   */
  write(req: Req): boolean {
    const call = this.call;
    if (!call) return false;
    if (!this.sentNode) {
      req.node = nodeToWire(this.opts.node);
      this.sentNode = true;
    }
    call.write(req);
    return true;
  }

  private connect(): void {
    if (this.stopped || !this.client) return;
    const call = this.hooks.open(this.client);
    this.call = call;
    this.sentNode = false;
    let ended = false;
    const onEnd = (why: string): void => {
      if (ended) return;
      ended = true;
      if (this.call === call) this.call = undefined;
      this.hooks.onDisconnected(why);
      if (this.stopped) return;
      const base = this.opts.backoffBaseMs ?? 250;
      const max = this.opts.backoffMaxMs ?? 15_000;
      const delay = Math.random() * Math.min(max, base * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 16);
      this.opts.log?.warn({ why, delayMs: Math.round(delay) }, `${this.label} stream lost; reconnecting`);
      this.timer = setTimeout(() => this.connect(), delay);
    };
    call.on('data', (resp: Resp) => {
      this.attempt = 0;
      this.hooks.onResponse(resp);
    });
    call.on('error', (err: Error) => onEnd(err.message));
    call.on('end', () => onEnd('stream ended by server'));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code !== grpc.status.OK) onEnd(s.details);
    });
    this.hooks.onConnected();
  }
}
