import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { isWildcardType } from './cache.js';
import {
  ResponseUpdate,
  typeStates,
  type ClientSubscription,
  type TypeState,
  type UpdateHandler,
} from './client-update.js';
import { ClientStream, type AdsClientOptions } from './client-stream.js';
import type { WireDiscoveryRequest, WireDiscoveryResponse } from './grpc-service.js';
import type { XdsResourceType } from './resource-type.js';

/**
 * AdsClientOptions (re-exported from `client-stream.ts`, where it is defined and documented) configures an ADS
 * client: server address, channel credentials, the Envoy `Node`, and reconnect backoff bounds in ms.
 */
export type { AdsClientOptions } from './client-stream.js';
/**
 * TypeState and UpdateHandler (re-exported from `client-update.ts`, where they are documented): a type URL's
 * state for admin endpoints (subscribed names, last accepted version_info and resource names, the last NACK's
 * error_detail, acceptedAt in ms since the epoch) and the all-or-nothing callback that applies an accepted update,
 * throwing to have it NACKed.
 */
export type { TypeState, UpdateHandler } from './client-update.js';

/** Subscription is a SotW subscription: the shared state plus the last nonce seen. */
interface Subscription extends ClientSubscription {
  nonce: string;
}

/**
 * AdsClient is a State-of-the-World ADS client over one gRPC stream. Each subscribed type has a decoder and an
 * update handler. A response with any resource that fails to decode, or whose handler throws, is NACKed as a
 * whole with the errors in `error_detail`, and the last good resources stay in place; otherwise it is applied
 * and ACKed. The stream reconnects with exponential backoff and full jitter, re-sending each subscription with
 * its last accepted version. Events: `'connected'`, `'disconnected'`, `'ack'` (typeUrl, version),
 * `'nack'` (typeUrl, version, message).
 */
export class AdsClient extends EventEmitter {
  private readonly opts: AdsClientOptions;
  private readonly subs = new Map<string, Subscription>();
  private readonly stream: ClientStream<WireDiscoveryRequest, WireDiscoveryResponse>;

  /** constructor only stores options; no I/O happens before {@link AdsClient.start}. */
  constructor(opts: AdsClientOptions) {
    super();
    this.opts = opts;
    this.stream = new ClientStream(opts, 'ads', {
      open: (client) => client.StreamAggregatedResources(),
      onConnected: () => {
        this.emit('connected');
        for (const sub of this.subs.values()) {
          sub.nonce = '';
          this.sendRequest(sub);
        }
      },
      onResponse: (resp) => this.onResponse(resp),
      onDisconnected: (why) => this.emit('disconnected', why),
    });
  }

  /**
   * subscribe sets (or replaces) the subscription of a type: `names` empty means wildcard for LDS/CDS. If the
   * names changed while connected, a new request is sent at once.
   */
  subscribe<T>(type: XdsResourceType<T>, names: readonly string[], handler: UpdateHandler<T>): void {
    const sorted = [...new Set(names)].sort();
    const prev = this.subs.get(type.typeUrl);
    if (prev) {
      const same = prev.names.length === sorted.length && prev.names.every((n, i) => n === sorted[i]);
      prev.handler = handler as UpdateHandler<unknown>;
      if (same) return;
      prev.names = sorted;
      if (!isWildcardType(type.typeUrl))
        for (const n of [...prev.resources.keys()]) if (!sorted.includes(n)) prev.resources.delete(n);
      this.sendRequest(prev);
      return;
    }
    const sub: Subscription = {
      type: type,
      names: sorted,
      handler: handler as UpdateHandler<unknown>,
      version: '',
      nonce: '',
      resources: new Map(),
    };
    this.subs.set(type.typeUrl, sub);
    this.sendRequest(sub);
  }

  /** state returns what the client holds per type URL. */
  state(): TypeState[] {
    return typeStates(this.subs.values());
  }

  /** resources returns the accepted resources of a type (empty map when none). */
  resources<T>(typeUrl: string): ReadonlyMap<string, T> {
    return (this.subs.get(typeUrl)?.resources ?? new Map()) as ReadonlyMap<string, T>;
  }

  /** start opens the stream; the client reconnects until `signal` aborts or {@link AdsClient.close} is called. */
  start(signal?: AbortSignal): void {
    this.stream.start(signal);
  }

  /** close ends the stream and stops reconnecting. */
  close(): void {
    this.stream.close();
  }

  private sendRequest(sub: Subscription, errorDetail?: string): void {
    const req: WireDiscoveryRequest = {
      type_url: sub.type.typeUrl,
      version_info: sub.version,
      resource_names: sub.names,
      response_nonce: sub.nonce,
    };
    if (errorDetail !== undefined) req.error_detail = { code: grpc.status.INVALID_ARGUMENT, message: errorDetail };
    this.stream.write(req);
  }

  private onResponse(resp: WireDiscoveryResponse): void {
    const sub = this.subs.get(resp.type_url);
    if (!sub) {
      this.opts.log?.warn({ typeUrl: resp.type_url }, 'response for a type not subscribed; ignored');
      return;
    }
    sub.nonce = resp.nonce;
    const update = new ResponseUpdate(sub, isWildcardType(sub.type.typeUrl) ? new Map() : sub.resources);
    for (const any of resp.resources ?? []) update.add(any);
    update.settle(resp.version_info, {
      log: this.opts.log,
      events: this,
      ack: () => this.sendRequest(sub),
      nack: (message) => this.sendRequest(sub, message),
    });
  }
}
