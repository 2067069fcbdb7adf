import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { isWildcardType } from './cache.js';
import { ClientStream, type AdsClientOptions } from './client-stream.js';
import {
  ResponseUpdate,
  typeStates,
  type ClientSubscription,
  type TypeState,
  type UpdateHandler,
} from './client-update.js';
import type { WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse } from './grpc-service.js';
import type { XdsResourceType } from './resource-type.js';

/** DeltaSub is a Delta subscription: the shared state plus per-resource versions and whether it was sent. */
interface DeltaSub extends ClientSubscription {
  /** versions are the per-resource versions of the accepted resources (sent as initial_resource_versions). */
  versions: Map<string, string>;
  /** sent is true once this stream has carried the type's first request. */
  sent: boolean;
}

function wildcard(sub: DeltaSub): boolean {
  return sub.names.length === 0 && isWildcardType(sub.type.typeUrl);
}

/**
 * DeltaAdsClient is an incremental (Delta) ADS client over one `DeltaAggregatedResources` stream, with the same
 * surface as {@link AdsClient}: each subscribed type has an {@link XdsResourceType} decoder and an update handler
 * that receives every resource the client holds of the type. A response changes that set by its `resources`
 * (added or updated) and `removed_resources`; if any resource fails to decode, or the handler throws, the whole
 * response is NACKed with the errors in `error_detail` and nothing of it is kept; otherwise it is applied and
 * ACKed with its nonce. Empty names for LDS/CDS subscribe by wildcard (`*`). Subscription changes go out as
 * `resource_names_subscribe`/`_unsubscribe`; on reconnect the first request of each type carries every name and
 * `initial_resource_versions`, so the server re-sends only what changed. Events as {@link AdsClient}:
 * `'connected'`, `'disconnected'`, `'ack'` (typeUrl, version), `'nack'` (typeUrl, version, message).
 */
export class DeltaAdsClient extends EventEmitter {
  private readonly opts: AdsClientOptions;
  private readonly subs = new Map<string, DeltaSub>();
  private readonly stream: ClientStream<WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse>;

  /** constructor only stores options; no I/O happens before {@link DeltaAdsClient.start}. */
  constructor(opts: AdsClientOptions) {
    super();
    this.opts = opts;
    this.stream = new ClientStream(opts, 'delta ads', {
      open: (client) => client.DeltaAggregatedResources(),
      onConnected: () => {
        this.emit('connected');
        for (const sub of this.subs.values()) {
          sub.sent = false;
          this.sendInitial(sub);
        }
      },
      onResponse: (resp) => this.onResponse(resp),
      onDisconnected: (why) => this.emit('disconnected', why),
    });
  }

  /**
   * subscribe sets (or replaces) the subscription of a type: `names` empty means wildcard for LDS/CDS. Names
   * added or dropped while connected are sent at once; dropped resources are forgotten (the handler is not
   * called for them).
   */
  subscribe<T>(type: XdsResourceType<T>, names: readonly string[], handler: UpdateHandler<T>): void {
    const sorted = [...new Set(names)].sort();
    const prev = this.subs.get(type.typeUrl);
    if (!prev) {
      const sub: DeltaSub = {
        type,
        names: sorted,
        handler: handler as UpdateHandler<unknown>,
        resources: new Map(),
        versions: new Map(),
        version: '',
        sent: false,
      };
      this.subs.set(type.typeUrl, sub);
      this.sendInitial(sub);
      return;
    }
    prev.handler = handler as UpdateHandler<unknown>;
    const wasWildcard = wildcard(prev);
    const before = new Set(prev.names);
    prev.names = sorted;
    const isWildcard = wildcard(prev);
    const add = sorted.filter((n) => !before.has(n));
    const drop = [...before].filter((n) => !sorted.includes(n));
    if (isWildcard && !wasWildcard) add.push('*');
    if (wasWildcard && !isWildcard) drop.push('*');
    if (add.length === 0 && drop.length === 0) return;
    if (!isWildcard)
      for (const n of [...prev.resources.keys()])
        if (!sorted.includes(n)) {
          prev.resources.delete(n);
          prev.versions.delete(n);
        }
    if (!prev.sent) return; // the first request will carry the whole subscription
    this.stream.write({ type_url: type.typeUrl, resource_names_subscribe: add, resource_names_unsubscribe: drop });
  }

  /** state returns what the client holds per type URL (`version` is the last accepted `system_version_info`). */
  state(): TypeState[] {
    return typeStates(this.subs.values());
  }

  /** resources returns the accepted resources of a type (empty map when none). */
  resources<T>(typeUrl: string): ReadonlyMap<string, T> {
    return (this.subs.get(typeUrl)?.resources ?? new Map()) as ReadonlyMap<string, T>;
  }

  /** resourceVersions returns the per-resource versions the client holds of a type. */
  resourceVersions(typeUrl: string): ReadonlyMap<string, string> {
    return this.subs.get(typeUrl)?.versions ?? new Map();
  }

  /** start opens the stream; the client reconnects until `signal` aborts or {@link DeltaAdsClient.close} is called. */
  start(signal?: AbortSignal): void {
    this.stream.start(signal);
  }

  /** close ends the stream and stops reconnecting. */
  close(): void {
    this.stream.close();
  }

  private sendInitial(sub: DeltaSub): void {
    if (!this.stream.connected) return;
    const req: WireDeltaDiscoveryRequest = {
      type_url: sub.type.typeUrl,
      resource_names_subscribe: wildcard(sub) ? ['*'] : sub.names,
    };
    if (sub.versions.size > 0) req.initial_resource_versions = Object.fromEntries(sub.versions);
    sub.sent = true;
    this.stream.write(req);
  }

  private onResponse(resp: WireDeltaDiscoveryResponse): void {
    const sub = this.subs.get(resp.type_url);
    if (!sub) {
      this.opts.log?.warn({ typeUrl: resp.type_url }, 'delta response for a type not subscribed; ignored');
      return;
    }
    const update = new ResponseUpdate(sub, sub.resources);
    const versions = new Map(sub.versions);
    for (const r of resp.resources ?? []) {
      if (!r.resource) {
        // A Resource without a body says the name does not exist (Envoy's "resource does not exist").
        update.next.delete(r.name);
        versions.delete(r.name);
        continue;
      }
      const name = update.add(r.resource, r);
      if (name !== undefined) versions.set(name, r.version);
    }
    for (const n of resp.removed_resources ?? []) {
      update.next.delete(n);
      versions.delete(n);
    }
    update.settle(resp.system_version_info, {
      log: this.opts.log,
      events: this,
      ack: () => {
        sub.versions = versions;
        this.stream.write({ type_url: sub.type.typeUrl, response_nonce: resp.nonce });
      },
      nack: (message) =>
        this.stream.write({
          type_url: sub.type.typeUrl,
          response_nonce: resp.nonce,
          error_detail: { code: grpc.status.INVALID_ARGUMENT, message },
        }),
    });
  }
}
