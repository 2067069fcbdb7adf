import type { EventEmitter } from 'node:events';
import { shortTypeName, type AnyMessage } from '@fedmesh/api/xds';
import type { DecodeResult, XdsResourceType } from './resource-type.js';
import type { XdsLogger } from './server.js';

/**
 * UpdateHandler applies one accepted update of a type: every resource of the subscription, by name. It may
 * throw to refuse the update as a whole (the client then NACKs with the error's message and keeps nothing of
 * it). It must apply all or nothing.
 */
export type UpdateHandler<T> = (resources: ReadonlyMap<string, T>, version: string) => void;

/**
 * ClientSubscription is what an ADS client, State-of-the-World or Delta, keeps of one subscribed type: its
 * decoder and handler, the names asked for, and the last accepted (ACKed) resources with their version and time.
 * `lastError` is the `error_detail` message of the last NACK, cleared by the next ACK.
 */
export interface ClientSubscription {
  type: XdsResourceType<unknown>;
  /** names are the explicit resource names, sorted; empty for LDS/CDS means wildcard. */
  names: string[];
  handler: UpdateHandler<unknown>;
  /** version is the last accepted response's `version_info` (SotW) or `system_version_info` (Delta). */
  version: string;
  resources: Map<string, unknown>;
  lastError?: string;
  /** acceptedAt is when the last response was accepted, in ms since the epoch. */
  acceptedAt?: number;
}

/** TypeState is what the client holds for one type URL, for admin endpoints. */
export interface TypeState {
  typeUrl: string;
  names: string[];
  version: string;
  resourceNames: string[];
  lastError?: string;
  acceptedAt?: number;
}

/** typeStates returns the {@link TypeState} of each subscription, in the iteration order of `subs`. */
export function typeStates(subs: Iterable<ClientSubscription>): TypeState[] {
  return [...subs].map((s) => {
    const t: TypeState = {
      typeUrl: s.type.typeUrl,
      names: s.names,
      version: s.version,
      resourceNames: [...s.resources.keys()],
    };
    if (s.lastError !== undefined) t.lastError = s.lastError;
    if (s.acceptedAt !== undefined) t.acceptedAt = s.acceptedAt;
    return t;
  });
}

/**
 * UpdateReply is how {@link ResponseUpdate.settle} answers the server and tells listeners: `ack()` sends the ACK
 * (the response's nonce, no `error_detail`), `nack(message)` the NACK (`error_detail` INVALID_ARGUMENT with the
 * message); `events` receives `'ack'` (typeUrl, version) or `'nack'` (typeUrl, version, message) after it.
 */
export interface UpdateReply {
  log: XdsLogger | undefined;
  events: EventEmitter;
  ack(): void;
  nack(message: string): void;
}

/**
 * ResponseUpdate is one DiscoveryResponse being applied to a {@link ClientSubscription}, the same way for both
 * protocols (Envoy's rule, as in grpc-js-xds: a response is accepted or rejected as a whole). {@link
 * ResponseUpdate.add} decodes each resource into `next`, which starts as a copy of `base`; a resource that fails
 * becomes an error line `name: reason` (the reason carries the decoder's field path). {@link
 * ResponseUpdate.settle} then hands `next` to the handler and ACKs, or NACKs with every error and keeps the last
 * good resources. Nothing here throws: decoder and handler failures become errors of the NACK.
 */
export class ResponseUpdate {
  /** next is what the subscription will hold if the response is accepted; callers may delete from it. */
  readonly next: Map<string, unknown>;
  /** errors are the NACK's lines so far. */
  readonly errors: string[] = [];
  private readonly seen = new Set<string>();

  /** constructor starts `next` as a copy of `base` (empty for a SotW wildcard type, whose response is all of it). */
  constructor(
    private readonly sub: ClientSubscription,
    base: ReadonlyMap<string, unknown>,
  ) {
    this.next = new Map(base);
  }

  /**
   * add decodes one resource with the subscription's decoder and puts it in `next`, returning its name; or
   * records why it was refused and returns undefined. Refused: a resource of another type URL, a decoder error
   * (or a decoder that throws: `decoder failed: …`), a name already in this response, and, when `envelope` is
   * given (Delta's `Resource`), a body whose name is not the envelope's.
   */
  add(resource: AnyMessage, envelope?: { name: string }): string | undefined {
    const typeUrl = this.sub.type.typeUrl;
    if (resource.type_url !== typeUrl) {
      const why = `resource of type ${resource.type_url} in a ${typeUrl} response`;
      this.errors.push(envelope ? `${envelope.name}: ${why}` : why);
      return undefined;
    }
    let result: DecodeResult<unknown>;
    try {
      result = this.sub.type.decode(resource);
    } catch (err) {
      result = { name: envelope ? envelope.name : '?', error: `decoder failed: ${(err as Error).message}` };
    }
    if ('error' in result) this.errors.push(`${result.name}: ${result.error}`);
    else if (envelope && result.name !== envelope.name)
      this.errors.push(`${envelope.name}: resource is named ${result.name}`);
    else if (this.seen.has(result.name)) this.errors.push(`${result.name}: duplicate resource name`);
    else {
      this.seen.add(result.name);
      this.next.set(result.name, result.value);
      return result.name;
    }
    return undefined;
  }

  /**
   * settle ends the response of `version`. Without errors so far, the handler gets `next`; if it throws, its
   * message is one more error. With errors, the subscription keeps its resources and version, records the errors
   * joined by `; ` as `lastError`, and `reply.nack` runs; otherwise it takes `next` and `version`, stamps
   * `acceptedAt`, clears `lastError`, and `reply.ack` runs. Returns whether the response was accepted.
   */
  settle(version: string, reply: UpdateReply): boolean {
    const { sub, errors } = this;
    if (errors.length === 0) {
      try {
        sub.handler(this.next, version);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (errors.length > 0) {
      const message = errors.join('; ');
      sub.lastError = message;
      const type = shortTypeName(sub.type.typeUrl);
      reply.log?.warn({ type, version, message }, 'NACK: keeping last good config');
      reply.nack(message);
      reply.events.emit('nack', sub.type.typeUrl, version, message);
      return false;
    }
    sub.resources = this.next;
    sub.version = version;
    sub.acceptedAt = Date.now();
    delete sub.lastError;
    reply.ack();
    reply.events.emit('ack', sub.type.typeUrl, version);
    return true;
  }
}
