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
 * DeltaSubscription is what a Delta stream tells the cache about one type (go-control-plane's
 * `Subscription`): the client's interest and the resources it is known to hold, so that the cache itself keeps
 * no per-stream state.
 */
export interface DeltaSubscription {
  /** wildcard: the client wants every resource of the type (`*`, or the legacy empty first LDS/CDS request). */
  wildcard: boolean;
  /** names are the explicitly subscribed resource names. */
  names: ReadonlySet<string>;
  /** known maps each resource the client holds (or was last sent) to its version. */
  known: ReadonlyMap<string, string>;
  /**
   * mustAnswer are names subscribed since the last response: each is answered (as a resource, or in
   * `removed_resources` when the cache does not hold it) even if the client seems to have it, as Envoy's
   * `resource_names_subscribe` requires.
   */
  mustAnswer: ReadonlySet<string>;
  /** answerEmpty asks for a response even when nothing differs (the first wildcard request of a type). */
  answerEmpty: boolean;
}

/** DeltaWatchRequest is a Delta stream's watch for one type URL of one node. */
export interface DeltaWatchRequest {
  nodeId: string;
  typeUrl: string;
  subscription: DeltaSubscription;
}

/** DeltaResource is one resource of a Delta answer with its per-resource version (a content hash). */
export interface DeltaResource {
  name: string;
  version: string;
  resource: AnyMessage;
}

/** DeltaWatchResponse is one Delta answer: the resources that differ from the client's, and those to remove. */
export interface DeltaWatchResponse {
  typeUrl: string;
  /** systemVersion is the snapshot's version of the whole type (`system_version_info`, for debugging and status). */
  systemVersion: string;
  resources: DeltaResource[];
  removed: string[];
}

/**
 * ConfigWatcher is the only thing the ADS server sees of the config source (go-control-plane's
 * `ConfigWatcher`). Both watches are one-shot: `createWatch` (State of the World) calls `respond` once when the
 * node's resources of the type differ from `knownVersion`; `createDeltaWatch` calls it once when some resource
 * in the subscription differs from what the client holds (or must be answered). The returned function cancels
 * the watch; cancelling a fired watch is a no-op.
 */
export interface ConfigWatcher {
  createWatch(request: WatchRequest, respond: (response: WatchResponse) => void): () => void;
  createDeltaWatch(request: DeltaWatchRequest, respond: (response: DeltaWatchResponse) => void): () => void;
}

interface PendingWatch {
  request: WatchRequest;
  respond: (response: WatchResponse) => void;
}

interface PendingDeltaWatch {
  request: DeltaWatchRequest;
  respond: (response: DeltaWatchResponse) => void;
  /**
   * seenVersion is the type version of the last snapshot this watch was diffed against without an answer: a later
   * snapshot with the same version holds the same resources, so it cannot have an answer either.
   */
  seenVersion: string | undefined;
}

/** isWildcardType reports whether a type URL is subscribed by wildcard in SotW when no names are given. */
export function isWildcardType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster;
}

/**
 * SnapshotCache holds one {@link Snapshot} per node ID and answers State-of-the-World and Delta watches from
 * the same snapshots. It keeps no per-stream state: what the client knows arrives in each {@link WatchRequest}
 * or {@link DeltaWatchRequest}.
 */
export class SnapshotCache implements ConfigWatcher {
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly watches = new Map<string, Set<PendingWatch>>();
  private readonly deltaWatches = new Map<string, Set<PendingDeltaWatch>>();

  /** setSnapshot replaces a node's snapshot and fires every open watch of that node that it changes. */
  setSnapshot(nodeId: string, snapshot: Snapshot): void {
    this.snapshots.set(nodeId, snapshot);
    const open = this.watches.get(nodeId);
    if (open)
      for (const w of [...open]) {
        if (snapshot.version(w.request.typeUrl) !== w.request.knownVersion) {
          open.delete(w);
          w.respond(buildResponse(snapshot, w.request));
        }
      }
    const delta = this.deltaWatches.get(nodeId);
    if (delta)
      for (const w of [...delta]) {
        const version = snapshot.version(w.request.typeUrl);
        if (version === w.seenVersion) continue;
        const resp = buildDeltaResponse(snapshot, w.request);
        if (resp) {
          delta.delete(w);
          w.respond(resp);
        } else w.seenVersion = version;
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
    this.deltaWatches.delete(nodeId);
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

  /**
   * createDeltaWatch implements {@link ConfigWatcher.createDeltaWatch}: it answers at once (asynchronously) when
   * the node's snapshot already differs from the subscription, else when a later snapshot does.
   */
  createDeltaWatch(request: DeltaWatchRequest, respond: (response: DeltaWatchResponse) => void): () => void {
    const snapshot = this.snapshots.get(request.nodeId);
    const now = snapshot ? buildDeltaResponse(snapshot, request) : undefined;
    if (now) {
      let cancelled = false;
      queueMicrotask(() => {
        if (!cancelled) respond(now);
      });
      return () => {
        cancelled = true;
      };
    }
    const watch: PendingDeltaWatch = { request, respond, seenVersion: snapshot?.version(request.typeUrl) };
    let set = this.deltaWatches.get(request.nodeId);
    if (!set) {
      set = new Set();
      this.deltaWatches.set(request.nodeId, set);
    }
    set.add(watch);
    return () => {
      this.deltaWatches.get(request.nodeId)?.delete(watch);
    };
  }
}

/**
 * buildDeltaResponse diffs a snapshot against a Delta subscription (Envoy's incremental xDS): every resource in
 * scope (all of the type for a wildcard, else the subscribed names) whose version differs from the client's, or
 * that must be answered; and in `removed` every name in scope the client holds (or must be told about) that
 * the snapshot lacks. Returns undefined when there is nothing to say and no empty answer is owed.
 */
export function buildDeltaResponse(snapshot: Snapshot, request: DeltaWatchRequest): DeltaWatchResponse | undefined {
  const { typeUrl, subscription: sub } = request;
  const all = snapshot.resources(typeUrl);
  const resources: DeltaResource[] = [];
  const removed: string[] = [];
  const consider = (name: string): void => {
    const resource = all.get(name);
    if (resource) {
      const version = snapshot.resourceVersion(typeUrl, name) ?? '';
      if (sub.mustAnswer.has(name) || sub.known.get(name) !== version) resources.push({ name, version, resource });
    } else if (sub.known.has(name) || sub.mustAnswer.has(name)) removed.push(name);
  };
  if (sub.wildcard) {
    for (const name of all.keys()) consider(name);
    for (const name of sub.known.keys()) if (!all.has(name)) consider(name);
    for (const name of sub.names) if (!all.has(name) && !sub.known.has(name)) consider(name);
  } else for (const name of sub.names) consider(name);
  if (resources.length === 0 && removed.length === 0 && !sub.answerEmpty) return undefined;
  return { typeUrl, systemVersion: snapshot.version(typeUrl), resources, removed };
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
