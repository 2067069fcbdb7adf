import * as grpc from '@grpc/grpc-js';
import { shortTypeName } from '@fedmesh/api/xds';
import { isWildcardType, type DeltaWatchResponse } from './cache.js';
import type { WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse } from './grpc-service.js';
import type { StreamInfo, TypeStreamState } from './server.js';
import { StreamLifecycle, type ServerContext } from './stream-lifecycle.js';

/** DeltaCall is one `DeltaAggregatedResources` stream as grpc-js hands it to the server. */
export type DeltaCall = grpc.ServerDuplexStream<WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse>;

/** WILDCARD is the resource name that subscribes to every resource of a type. */
const WILDCARD = '*';

/** InFlight is the one un-ACKed response of a type: its nonce, system version and per-name changes. */
interface InFlight {
  nonce: string;
  version: string;
  /** changes maps each name in the response to its new version, or null for a removal. */
  changes: Map<string, string | null>;
}

/** DeltaTypeState is the server's view of one type on one Delta stream. */
interface DeltaTypeState {
  status: TypeStreamState;
  wildcard: boolean;
  /** names are the explicitly subscribed names. */
  names: Set<string>;
  /** acked maps each resource the client holds (ACKed, or declared in initial_resource_versions) to its version. */
  acked: Map<string, string>;
  /** refused holds what NACKed responses carried (null: a removal), so the same thing is not re-sent. */
  refused: Map<string, string | null>;
  mustAnswer: Set<string>;
  answerEmpty: boolean;
  inFlight: InFlight | undefined;
}

function known(t: DeltaTypeState): Map<string, string> {
  const out = new Map(t.acked);
  for (const [name, v] of t.refused) {
    if (v === null) out.delete(name);
    else out.set(name, v);
  }
  return out;
}

function inScope(t: DeltaTypeState, name: string): boolean {
  return t.wildcard || t.names.has(name);
}

/**
 * handleDelta serves one `DeltaAggregatedResources` stream (Envoy's incremental xDS,
 * https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#incremental-xds) from the same
 * `ConfigWatcher` as State of the World. The stream keeps, per type, what the client holds (names →
 * versions) and passes it to the watcher as a `DeltaSubscription`; the cache keeps nothing per stream.
 * - `resource_names_subscribe`/`_unsubscribe` change the tracked names in any request; `*` subscribes to
 *   every resource of the type, and so does an empty first request for LDS or CDS (legacy wildcard). A newly
 *   subscribed name is always answered, as a resource or in `removed_resources` when it does not exist.
 * - `initial_resource_versions` on the first request of a type seed what the client holds, so a reconnect
 *   re-sends only what changed and removes what disappeared.
 * - A request carrying the nonce of the response in flight ACKs it (the client now holds its resources), or
 *   NACKs it with `error_detail` (the client kept its previous resources; the refused versions are not re-sent
 *   until they change). A request with any other nonce is stale: its subscription changes still apply.
 * - At most one un-ACKed response per type is in flight; changes made meanwhile go out after its ACK or NACK.
 * A request without `type_url`, or a first request without `node.id`, ends the stream with INVALID_ARGUMENT.
 */
export function handleDelta(ctx: ServerContext, call: DeltaCall): void {
  const types = new Map<string, DeltaTypeState>();
  const life = new StreamLifecycle(ctx, call, 'delta', () => {
    types.clear();
  });

  const send = (s: StreamInfo, typeUrl: string, t: DeltaTypeState, resp: DeltaWatchResponse): void => {
    if (life.closed) return;
    const nonce = ctx.nextNonce();
    const changes = new Map<string, string | null>();
    for (const r of resp.resources) changes.set(r.name, r.version);
    for (const n of resp.removed) changes.set(n, null);
    t.inFlight = { nonce, version: resp.systemVersion, changes };
    t.mustAnswer.clear();
    t.answerEmpty = false;
    const st = t.status;
    st.cancel = undefined;
    st.sentVersion = resp.systemVersion;
    st.sentNonce = nonce;
    st.sentAt = Date.now();
    call.write({
      system_version_info: resp.systemVersion,
      resources: resp.resources.map((r) => ({ name: r.name, version: r.version, resource: r.resource })),
      type_url: typeUrl,
      removed_resources: resp.removed,
      nonce,
    });
    ctx.hooks.onPush?.(s, typeUrl, resp.systemVersion, resp.resources.length);
    ctx.log?.debug(
      {
        nodeId: s.node.id,
        type: shortTypeName(typeUrl),
        version: resp.systemVersion,
        nonce,
        resources: resp.resources.length,
        removed: resp.removed.length,
      },
      'delta pushed',
    );
  };

  const watch = (s: StreamInfo, typeUrl: string, t: DeltaTypeState): void => {
    t.status.cancel?.();
    t.status.cancel = ctx.watcher.createDeltaWatch(
      {
        nodeId: s.node.id,
        typeUrl,
        subscription: {
          wildcard: t.wildcard,
          // Handed over without copies: the stream changes these only while no watch is pending (a response is
          // in flight) or right before replacing the watch.
          names: t.names,
          known: t.refused.size === 0 ? t.acked : known(t),
          mustAnswer: t.mustAnswer,
          answerEmpty: t.answerEmpty,
        },
      },
      (resp) => send(s, typeUrl, t, resp),
    );
  };

  const settle = (s: StreamInfo, typeUrl: string, t: DeltaTypeState, req: WireDeltaDiscoveryRequest): void => {
    const sent = t.inFlight;
    if (!sent) return;
    t.inFlight = undefined;
    const st = t.status;
    if (req.error_detail) {
      for (const [name, v] of sent.changes) t.refused.set(name, v);
      const message = req.error_detail.message ?? '';
      st.nack = { version: sent.version, message, at: Date.now() };
      ctx.hooks.onNack?.(s, typeUrl, sent.version, message);
      ctx.log?.warn({ nodeId: s.node.id, type: shortTypeName(typeUrl), version: sent.version, message }, 'NACK');
      return;
    }
    for (const [name, v] of sent.changes) {
      t.refused.delete(name);
      if (v === null) t.acked.delete(name);
      else if (inScope(t, name)) t.acked.set(name, v);
    }
    st.ackedVersion = sent.version;
    st.ackedAt = Date.now();
    ctx.hooks.onAck?.(s, typeUrl, sent.version);
  };

  life.run((req: WireDeltaDiscoveryRequest): void => {
    const s = life.open(req.node);
    if (!s) return;
    const typeUrl = req.type_url ?? '';
    if (!typeUrl) return life.fail(grpc.status.INVALID_ARGUMENT, 'DeltaDiscoveryRequest without type_url');
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    let t = types.get(typeUrl);
    if (!t) {
      const status: TypeStreamState = { names: [] };
      s.types.set(typeUrl, status);
      const wildcard = subscribe.includes(WILDCARD) || (subscribe.length === 0 && isWildcardType(typeUrl));
      t = {
        status,
        wildcard,
        names: new Set(),
        acked: new Map(Object.entries(req.initial_resource_versions ?? {})),
        refused: new Map(),
        mustAnswer: new Set(),
        answerEmpty: wildcard,
        inFlight: undefined,
      };
      types.set(typeUrl, t);
    }
    for (const n of subscribe) {
      if (n === WILDCARD) t.wildcard = true;
      else {
        t.names.add(n);
        t.mustAnswer.add(n);
      }
    }
    for (const n of unsubscribe) {
      if (n === WILDCARD) t.wildcard = false;
      else {
        t.names.delete(n);
        t.mustAnswer.delete(n);
      }
    }
    // The client forgets what it no longer tracks; so does the stream.
    for (const n of [...t.acked.keys()]) if (!inScope(t, n)) t.acked.delete(n);
    for (const n of [...t.refused.keys()]) if (!inScope(t, n)) t.refused.delete(n);
    t.status.names = [...(t.wildcard ? [WILDCARD] : []), ...[...t.names].sort()];

    const nonce = req.response_nonce ?? '';
    if (nonce !== '') {
      if (t.inFlight && nonce === t.inFlight.nonce) settle(s, typeUrl, t, req);
      else ctx.log?.debug({ nodeId: s.node.id, type: shortTypeName(typeUrl), nonce }, 'stale nonce ignored');
    }
    if (t.inFlight) return; // the next answer goes out after this one is ACKed or NACKed
    const changedInterest = subscribe.length > 0 || unsubscribe.length > 0;
    if (t.status.cancel && nonce === '' && !changedInterest) return; // nothing new: keep the open watch
    watch(s, typeUrl, t);
  });
}
