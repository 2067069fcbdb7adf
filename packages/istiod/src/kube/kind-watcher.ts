import { ListWatch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { BoundedWatch } from './bounded-watch.js';
import { kubeRequestJson, statusMessage } from './http.js';
import { collectionPath, type KubeObject, type MirroredKind } from './kinds.js';

/** KindWatcherLimits are the timeouts, sizes and backoff of one kind's informer (all times in ms). */
export interface KindWatcherLimits {
  requestTimeoutMs: number;
  watchTimeoutSeconds: number;
  idleTimeoutMs: number;
  pageSize: number;
  maxPageBytes: number;
  maxPages: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
}

/** KindWatcherHandlers receive the informer's object events and its first complete list. */
export interface KindWatcherHandlers {
  upsert(kind: MirroredKind, obj: KubeObject): void;
  remove(kind: MirroredKind, obj: KubeObject): void;
  listed(kind: MirroredKind): void;
}

/**
 * KindStatus is one mirrored kind's state: `synced` once a first list has been applied; `watching` while a watch
 * is open; `served` false when the API server answered 404 (kind or CRD not installed); `lists` (the first one and
 * every relist, e.g. after 410 Gone); `restarts` of the informer after errors; the last error's message.
 */
export interface KindStatus {
  kind: string;
  synced: boolean;
  watching: boolean;
  served: boolean;
  lists: number;
  restarts: number;
  lastError?: string;
}

/** KubeApiError is a non-2xx answer from the Kubernetes API: `statusCode` and the Status message. */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError';
  /** constructor records the HTTP status (the informer relists on 410). */
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * KindWatcher runs `@kubernetes/client-node`'s `ListWatch` informer for one kind, cluster-wide, and keeps it
 * running: the library relists on 410 Gone itself, but stops on any other error (API server down, watch dropped
 * with an error, 5xx, 403), so this restarts it with exponential backoff and jitter (`backoffInitialMs` doubling to
 * `backoffMaxMs`; reset after a successful list, a watch event or 30 s of health). The informer's cache, and so
 * the state mirrored from it, is kept across restarts; a relist reports objects deleted meanwhile. Lists are paged
 * (`limit`/`continue`) and bounded in time and size.
 */
export class KindWatcher {
  private readonly informer: ListWatch<KubernetesObject>;
  private readonly abort = new AbortController();
  private closed = false;
  private attempts = 0;
  private lastStartAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly state: KindStatus;

  /** constructor builds the informer; nothing runs before {@link KindWatcher.start}. */
  constructor(
    private readonly kc: KubeConfig,
    readonly kind: MirroredKind,
    private readonly handlers: KindWatcherHandlers,
    private readonly limits: KindWatcherLimits,
    private readonly log: Logger,
  ) {
    this.state = { kind: kind.kind, synced: false, watching: false, served: true, lists: 0, restarts: 0 };
    const watch = new BoundedWatch(kc, {
      connectTimeoutMs: limits.requestTimeoutMs,
      timeoutSeconds: limits.watchTimeoutSeconds,
      idleTimeoutMs: limits.idleTimeoutMs,
      closed: () => this.closed,
      onEstablished: () => (this.state.watching = true),
      onEvent: (type) => {
        if (type !== 'ERROR') this.attempts = 0;
      },
    });
    this.informer = new ListWatch(collectionPath(kind), watch, () => this.list(), false, undefined, kind.fieldSelector);
    this.informer.on('add', (o) => handlers.upsert(kind, o as KubeObject));
    this.informer.on('update', (o) => handlers.upsert(kind, o as KubeObject));
    this.informer.on('delete', (o) => handlers.remove(kind, o as KubeObject));
    this.informer.on('error', (err) => this.onError(err));
  }

  /** status returns a copy of this kind's {@link KindStatus}. */
  status(): KindStatus {
    return { ...this.state };
  }

  /** start lists and watches; failures are retried, never thrown. */
  start(): void {
    this.run();
  }

  /** stop ends the informer and any pending list or retry. */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort.abort();
    this.state.watching = false;
    await this.informer.stop();
  }

  private run(): void {
    if (this.closed) return;
    this.lastStartAt = Date.now();
    this.informer.start().catch((err: unknown) => this.onError(err));
  }

  private onError(err: unknown): void {
    this.state.watching = false;
    if (this.closed || this.timer) return;
    if (Date.now() - this.lastStartAt > 30_000) this.attempts = 0;
    const base = Math.min(this.limits.backoffMaxMs, this.limits.backoffInitialMs * 2 ** this.attempts);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempts++;
    this.state.restarts++;
    this.state.lastError = describe(err);
    const fields = { kind: this.kind.kind, err: this.state.lastError, retryInMs: delay, attempt: this.attempts };
    if (this.attempts <= 1) this.log.warn(fields, 'kubernetes informer failed; keeping last known state');
    else this.log.debug(fields, 'kubernetes informer failed again');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run();
    }, delay);
    this.timer.unref();
  }

  /** list is the informer's list function: every page of the collection, at one resourceVersion. */
  private async list(): Promise<KubernetesListObject<KubernetesObject>> {
    const path = collectionPath(this.kind);
    let items: KubeObject[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    let restarted = false;
    for (let page = 0; ; page++) {
      if (page >= this.limits.maxPages) throw new Error(`list ${path}: more than ${this.limits.maxPages} pages`);
      const q = new URLSearchParams({ limit: String(this.limits.pageSize) });
      if (cont !== undefined) q.set('continue', cont);
      if (this.kind.fieldSelector !== undefined) q.set('fieldSelector', this.kind.fieldSelector);
      const res = await kubeRequestJson(this.kc, {
        method: 'GET',
        path: `${path}?${q.toString()}`,
        timeoutMs: this.limits.requestTimeoutMs,
        maxBytes: this.limits.maxPageBytes,
        signal: this.abort.signal,
      });
      if (res.status === 404 && page === 0) return this.notServed(path);
      if (res.status === 410 && cont !== undefined && !restarted) {
        // The continue token expired: list again from the start (Kubernetes API concepts, "Retrieving large results").
        restarted = true;
        items = [];
        cont = undefined;
        page = -1;
        continue;
      }
      if (res.status !== 200) {
        throw new KubeApiError(res.status, `list ${path}: HTTP ${res.status}: ${statusMessage(res.body) ?? ''}`);
      }
      const body = (res.body ?? {}) as {
        items?: unknown;
        metadata?: { resourceVersion?: unknown; continue?: unknown };
      };
      if (!Array.isArray(body.items)) throw new Error(`list ${path}: answer has no items array`);
      if (page === 0 || resourceVersion === '') {
        const rv = body.metadata?.resourceVersion;
        resourceVersion = typeof rv === 'string' ? rv : '';
      }
      items.push(...(body.items as KubeObject[]));
      const next = body.metadata?.continue;
      if (typeof next !== 'string' || next === '') break;
      cont = next;
    }
    this.state.lists++;
    this.state.served = true;
    this.attempts = 0;
    this.afterListApplied();
    return { metadata: { resourceVersion }, items };
  }

  private notServed(path: string): KubernetesListObject<KubernetesObject> {
    if (this.state.served)
      this.log.info({ kind: this.kind.kind, path }, 'kind not served by the API server (CRD not installed?); retrying');
    this.state.served = false;
    this.state.lists++;
    this.afterListApplied();
    // Deliberately no resourceVersion: the watch fails too, the informer is restarted with backoff and lists again.
    return { metadata: { resourceVersion: '' }, items: [] };
  }

  /** afterListApplied reports the list once the informer has delivered its items (they arrive in microtasks). */
  private afterListApplied(): void {
    setImmediate(() => {
      if (this.closed) return;
      this.state.synced = true;
      this.handlers.listed(this.kind);
    });
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { statusCode?: unknown }).statusCode;
    return typeof code === 'number' && !err.message.includes(String(code))
      ? `HTTP ${code}: ${err.message}`
      : err.message;
  }
  return String(err);
}
