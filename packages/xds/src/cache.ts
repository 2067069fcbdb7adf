import type { AnyMessage } from '@fedmesh/api/xds';
import { TypeUrl } from '@fedmesh/api/xds';
import type { Snapshot } from './snapshot.js';

/** WatchRequest is what a stream asks the cache for: one type URL for one node, given what the client has. */
export interface WatchRequest {
  nodeId: string;
  typeUrl: string;
  /** resourceNames are the subscribed names; empty means wildcard (all), as for LDS and CDS. */
  resourceNames: readonly string[];
  /** knownVersion is the version the client already holds ('' for none): the watch fires only on a different one. */
  knownVersion: string;
}

/** WatchResponse is one State-of-the-World answer: every subscribed resource of the type at `version`. */
export interface WatchResponse {
  typeUrl: string;
  version: string;
  resources: AnyMessage[];
  /** names are the resource names in `resources`, in the same order. */
  names: string[];
}

/**
 * ConfigWatcher is the only thing the ADS server sees of the config source (go-control-plane's
 * `ConfigWatcher`): a one-shot watch that calls `respond` once when the node's resources of the type differ
 * from `knownVersion`. The returned function cancels the watch; cancelling a fired watch is a no-op.
 */
export interface ConfigWatcher {
  createWatch(request: WatchRequest, respond: (response: WatchResponse) => void): () => void;
}

interface PendingWatch {
  request: WatchRequest;
  respond: (response: WatchResponse) => void;
}

/** isWildcardType reports whether a type URL is subscribed by wildcard in SotW when no names are given. */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster;
}

/**
 * SnapshotCache holds one {@link Snapshot} per node ID and answers watches from it. It keeps no per-stream
 * state: what the client knows arrives in each {@link WatchRequest}.
 */
export class SnapshotCache implements ConfigWatcher {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watches = new Map<string, Set<PendingWatch>>();

  /** setSnapshot replaces a node's snapshot and fires every open watch of that node whose version differs. */
  setSnapshot(nodeId: string, snapshot: Snapshot): void {
    this.snapshots.set(nodeId, snapshot);
    const open = this.watches.get(nodeId);
    if (!open) return;
    for (const w of [...open]) {
      if (snapshot.version(w.request.typeUrl) !== w.request.knownVersion) {
        open.delete(w);
        w.respond(buildResponse(snapshot, w.request));
      }
    }
  }

  /** getSnapshot returns a node's current snapshot, if any. */
  getSnapshot(nodeId: string): Snapshot | undefined {
    return this.snapshots.get(nodeId);
  }

  /** clearSnapshot forgets a node's snapshot and open watches (call when its last stream closes). */
  clearSnapshot(nodeId: string): void {
    this.snapshots.delete(nodeId);
    this.watches.delete(nodeId);
  }

  /** nodeIds lists the nodes that hold a snapshot. */
  nodeIds(): string[] {
    return [...this.snapshots.keys()];
  }

  /** createWatch implements {@link ConfigWatcher.createWatch}; an immediate answer is delivered asynchronously. */
  createWatch(request: WatchRequest, respond: (response: WatchResponse) => void): () => void {
    const snapshot = this.snapshots.get(request.nodeId);
    let cancelled = false;
    if (snapshot && snapshot.version(request.typeUrl) !== request.knownVersion) {
      const response = buildResponse(snapshot, request);
      queueMicrotask(() => {
        if (!cancelled) respond(response);
      });
      return () => {
        cancelled = true;
      };
    }
    const watch: PendingWatch = { request, respond };
    let set = this.watches.get(request.nodeId);
    if (!set) {
      set = new Set();
      this.watches.set(request.nodeId, set);
    }
    set.add(watch);
    return () => {
      this.watches.get(request.nodeId)?.delete(watch);
    };
  }
}

function buildResponse(snapshot: Snapshot, request: WatchRequest): WatchResponse {
  const all = snapshot.resources(request.typeUrl);
  const resources: AnyMessage[] = [];
  const names: string[] = [];
  const wildcard =
    request.resourceNames.includes('*') || (request.resourceNames.length === 0 && isWildcardType(request.typeUrl));
  const wanted = wildcard ? [...all.keys()] : request.resourceNames.filter((n) => all.has(n));
  for (const n of wanted) {
    const r = all.get(n);
    if (r) {
      resources.push(r);
      names.push(n);
    }
  }
  return { typeUrl: request.typeUrl, version: snapshot.version(request.typeUrl), resources, names };
}
