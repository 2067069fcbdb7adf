import * as grpc from '@grpc/grpc-js';
import type { ConfigWatcher } from './cache.js';
import { nodeFromWire, type WireNode } from './grpc-service.js';
import type { AdsCall, AdsServerHooks, StreamInfo, XdsLogger } from './server.js';

/** ServerContext is what the SotW and Delta handlers of one ADS server share. */
export interface ServerContext {
  watcher: ConfigWatcher;
  hooks: AdsServerHooks;
  log: XdsLogger | undefined;
  open: Set<StreamInfo>;
  nextStreamId(): number;
  /** nextNonce returns a nonce unique within the server (decimal). */
  nextNonce(): string;
}

/**
 * StreamLifecycle runs one ADS stream's life for either protocol: it authenticates and registers the stream on
 * its first request, turns a thrown handler error into INTERNAL, and closes exactly once (running the
 * `onStreamClose` hook and the protocol's own cleanup) however the stream ends.
 */
export class StreamLifecycle {
  stream: StreamInfo | undefined;
  closed = false;

  /** constructor wires nothing; {@link StreamLifecycle.run} attaches the call's events. */
  constructor(
    private readonly ctx: ServerContext,
    private readonly call: AdsCall,
    private readonly protocol: StreamInfo['protocol'],
    private readonly cleanup: () => void,
  ) {}

  /**
   * open returns the stream, creating it from the first request's node. A first request without `node.id`
   * ends the stream with INVALID_ARGUMENT, a refused authentication with PERMISSION_DENIED; both return undefined.
   */
  open(node: WireNode | undefined): StreamInfo | undefined {
    if (this.stream) return this.stream;
    if (!node?.id) {
      this.fail(grpc.status.INVALID_ARGUMENT, 'first DiscoveryRequest must carry node.id');
      return undefined;
    }
    const xnode = nodeFromWire(node);
    let identity: unknown;
    try {
      identity = this.ctx.hooks.authenticate?.(this.call, xnode);
    } catch (err) {
      this.ctx.log?.warn({ nodeId: xnode.id, err }, 'ads stream not authenticated');
      this.fail(grpc.status.PERMISSION_DENIED, 'permission denied');
      return undefined;
    }
    const stream: StreamInfo = {
      id: this.ctx.nextStreamId(),
      protocol: this.protocol,
      node: xnode,
      peer: this.call.getPeer(),
      connectedAt: Date.now(),
      types: new Map(),
    };
    if (identity !== undefined) stream.identity = identity;
    this.stream = stream;
    this.ctx.open.add(stream);
    this.ctx.hooks.onStreamOpen?.(stream);
    return stream;
  }

  /** fail ends the stream with a gRPC status (the details reach the client) and closes it. */
  fail(code: grpc.status, details: string): void {
    this.ctx.log?.warn({ peer: this.call.getPeer(), code, details }, 'ads stream refused');
    this.call.emit('error', { code, details });
    this.close();
  }

  /** close cancels the stream's watches (via cleanup) and unregisters it; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cleanup();
    const s = this.stream;
    if (!s) return;
    for (const st of s.types.values()) st.cancel?.();
    this.ctx.open.delete(s);
    this.ctx.hooks.onStreamClose?.(s);
  }

  /** run feeds every request to `onRequest` until the stream ends. */
  run<Req>(onRequest: (req: Req) => void): void {
    const call = this.call as grpc.ServerDuplexStream<Req, unknown>;
    call.on('data', (req: Req) => {
      if (this.closed) return;
      try {
        onRequest(req);
      } catch (err) {
        this.ctx.log?.warn({ err }, 'ads request failed');
        this.fail(grpc.status.INTERNAL, 'internal error');
      }
    });
    call.on('end', () => {
      this.close();
      call.end();
    });
    call.on('error', () => this.close());
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
  }
}
