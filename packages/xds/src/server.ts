import * as grpc from '@grpc/grpc-js';
import { shortTypeName } from '@fedmesh/api/xds';
import type { ConfigWatcher, WatchResponse } from './cache.js';
import { handleDelta, type DeltaCall } from './delta-server.js';
import {
  loadAdsGrpc,
  type WireDeltaDiscoveryRequest,
  type WireDeltaDiscoveryResponse,
  type WireDiscoveryRequest,
  type WireDiscoveryResponse,
  type XdsNode,
} from './grpc-service.js';
import { StreamLifecycle, type ServerContext } from './stream-lifecycle.js';

type SotwCall = grpc.ServerDuplexStream<WireDiscoveryRequest, WireDiscoveryResponse>;

/**
 * AdsCall is one ADS stream as grpc-js hands it to the server: State of the World
 * (`StreamAggregatedResources`) or Delta (`DeltaAggregatedResources`). Both expose `getPeer()` and
 * `getAuthContext()`, which is what authentication needs.
 */
export type AdsCall = SotwCall | grpc.ServerDuplexStream<WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse>;

/** XdsLogger is the slice of pino's API the ADS server logs through. */
export interface XdsLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * TypeStreamState is what one ADS stream has been sent and has answered for one type URL. On a Delta stream the
 * versions are the `system_version_info` of the snapshot each response was diffed from, so an ACKed version
 * means the client holds that snapshot's resources of its subscription.
 */
export interface TypeStreamState {
  /** names are the subscribed resource names (SotW: empty means wildcard; Delta: the explicit names, `*` included). */
  names: string[];
  sentVersion?: string;
  sentNonce?: string;
  sentAt?: number;
  /** ackedVersion is the last version the client ACKed. */
  ackedVersion?: string;
  ackedAt?: number;
  /** nack is the last NACK: the version refused and the client's `error_detail.message`. */
  nack?: { version: string; message: string; at: number };
  cancel?: (() => void) | undefined;
}

/** StreamInfo describes one open ADS stream, for hooks, metrics and `proxy-status`. */
export interface StreamInfo {
  id: number;
  /** protocol is `sotw` for StreamAggregatedResources, `delta` for DeltaAggregatedResources. */
  protocol: 'sotw' | 'delta';
  node: XdsNode;
  peer: string;
  connectedAt: number;
  /** identity is what {@link AdsServerHooks.authenticate} returned for the stream, if anything. */
  identity?: unknown;
  types: Map<string, TypeStreamState>;
}

/** AdsServerHooks are the control plane's callbacks into the ADS server's life cycle. All are optional. */
export interface AdsServerHooks {
  /**
   * authenticate checks the stream's first request. It returns an identity stored on the stream, or throws to
   * end the stream with PERMISSION_DENIED (the message is not sent to the client).
   */
  authenticate?(call: AdsCall, node: XdsNode): unknown;
  /** onStreamOpen runs once the first request is authenticated, before any watch is created. */
  onStreamOpen?(stream: StreamInfo): void;
  onStreamClose?(stream: StreamInfo): void;
  onPush?(stream: StreamInfo, typeUrl: string, version: string, resourceCount: number): void;
  onAck?(stream: StreamInfo, typeUrl: string, version: string): void;
  onNack?(stream: StreamInfo, typeUrl: string, version: string, message: string): void;
}

/** AdsServer is the ADS service (SotW and Delta): a grpc-js service definition, its handlers and the open streams. */
export interface AdsServer {
  service: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  streams(): StreamInfo[];
}

/**
 * createAdsServer builds `AggregatedDiscoveryService` over a {@link ConfigWatcher}: `StreamAggregatedResources`
 * (State of the World) and `DeltaAggregatedResources` (incremental, see {@link handleDelta}) answered from the
 * same watcher, following Envoy's xDS protocol (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol).
 * State of the World:
 * - a request whose `response_nonce` is not the latest nonce sent for its type is stale and ignored;
 * - a request with `error_detail` is a NACK: the refused version is recorded and not re-sent, and the next
 *   push waits for a newer version (the client keeps its last good config);
 * - a push is sent only after the previous push of the same type was ACKed or NACKed, so at most one
 *   un-ACKed push per type per stream is in flight;
 * - a change of `resource_names` is answered at once with the current version.
 * A request without `type_url`, or a first request without `node.id`, ends the stream with INVALID_ARGUMENT.
 */
export function createAdsServer(watcher: ConfigWatcher, hooks: AdsServerHooks = {}, log?: XdsLogger): AdsServer {
  let nextStreamId = 1;
  let nextNonce = 1;
  const ctx: ServerContext = {
    watcher,
    hooks,
    log,
    open: new Set<StreamInfo>(),
    nextStreamId: () => nextStreamId++,
    nextNonce: () => String(nextNonce++),
  };
  return {
    service: loadAdsGrpc().service,
    implementation: {
      StreamAggregatedResources: ((call: SotwCall) => handleSotw(ctx, call)) as grpc.handleBidiStreamingCall<
        unknown,
        unknown
      >,
      DeltaAggregatedResources: ((call: DeltaCall) => handleDelta(ctx, call)) as grpc.handleBidiStreamingCall<
        unknown,
        unknown
      >,
    },
    streams: () => [...ctx.open],
  };
}

function handleSotw(ctx: ServerContext, call: SotwCall): void {
  const { watcher, hooks, log } = ctx;
  const life = new StreamLifecycle(ctx, call, 'sotw', () => undefined);

  const send = (s: StreamInfo, st: TypeStreamState, resp: WatchResponse): void => {
    if (life.closed) return;
    st.cancel = undefined;
    st.sentVersion = resp.version;
    st.sentNonce = ctx.nextNonce();
    st.sentAt = Date.now();
    call.write({
      version_info: resp.version,
      resources: resp.resources,
      type_url: resp.typeUrl,
      nonce: st.sentNonce,
    });
    hooks.onPush?.(s, resp.typeUrl, resp.version, resp.resources.length);
    log?.debug(
      { nodeId: s.node.id, type: shortTypeName(resp.typeUrl), version: resp.version, nonce: st.sentNonce },
      'pushed',
    );
  };

  life.run((req: WireDiscoveryRequest): void => {
    const s = life.open(req.node);
    if (!s) return;
    const typeUrl = req.type_url ?? '';
    if (!typeUrl) return life.fail(grpc.status.INVALID_ARGUMENT, 'DiscoveryRequest without type_url');
    let st = s.types.get(typeUrl);
    if (!st) {
      st = { names: [] };
      s.types.set(typeUrl, st);
    }
    const nonce = req.response_nonce ?? '';
    if (nonce !== '' && nonce !== st.sentNonce) {
      log?.debug({ nodeId: s.node.id, type: shortTypeName(typeUrl), nonce }, 'stale nonce ignored');
      return;
    }
    const names = [...(req.resource_names ?? [])].sort();
    let known: string;
    if (nonce !== '' && st.sentVersion !== undefined) {
      known = st.sentVersion;
      if (req.error_detail) {
        const message = req.error_detail.message ?? '';
        st.nack = { version: st.sentVersion, message, at: Date.now() };
        hooks.onNack?.(s, typeUrl, st.sentVersion, message);
        log?.warn({ nodeId: s.node.id, type: shortTypeName(typeUrl), version: st.sentVersion, message }, 'NACK');
      } else {
        st.ackedVersion = req.version_info ?? '';
        st.ackedAt = Date.now();
        hooks.onAck?.(s, typeUrl, st.ackedVersion);
      }
    } else {
      known = req.version_info ?? '';
    }
    const namesChanged = names.length !== st.names.length || names.some((n, i) => n !== st.names[i]);
    if (namesChanged && st.sentVersion !== undefined) known = '';
    st.names = names;
    if (st.cancel && !namesChanged && nonce === '') return; // duplicate subscription: keep the open watch
    st.cancel?.();
    const cur = st;
    st.cancel = watcher.createWatch({ nodeId: s.node.id, typeUrl, resourceNames: names, knownVersion: known }, (resp) =>
      send(s, cur, resp),
    );
  });
}
