import { Watch, type KubeConfig } from '@kubernetes/client-node';

/** BoundedWatchOptions are the limits and hooks of one {@link BoundedWatch}. */
export interface BoundedWatchOptions {
  /** connectTimeoutMs bounds connecting and receiving the response headers, in ms. */
  connectTimeoutMs: number;
  /** timeoutSeconds asks the API server to end each watch after this many seconds (the informer then resumes). */
  timeoutSeconds: number;
  /** idleTimeoutMs aborts a watch that delivered nothing (not even a bookmark) for this long, in ms. */
  idleTimeoutMs: number;
  /** closed tells whether the owner stopped; a stopped owner gets no new watch. */
  closed: () => boolean;
  /** onEstablished is called when the API server accepted a watch (HTTP 200). */
  onEstablished: () => void;
  /** onEvent is called for every watch event (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR). */
  onEvent: (type: string) => void;
}

/**
 * BoundedWatch is `@kubernetes/client-node`'s `Watch` (NDJSON `?watch=true` streaming, used by its `ListWatch`
 * informer) with the limits the library leaves out: a connect/headers timeout (node-fetch `timeout`), a server-side
 * `timeoutSeconds` so that every watch ends and resumes from its resourceVersion, `allowWatchBookmarks`, an idle
 * timeout that aborts a silent stream (seen as an error, so the informer is restarted), and a growing delay
 * (100 ms doubling to 5 s) before resuming after watches that end cleanly within a second, so a server that
 * accepts and at once closes watches is not hammered. After {@link BoundedWatchOptions.closed} it starts nothing.
 */
export class BoundedWatch extends Watch {
  private quickEnds = 0;

  /** constructor wraps `kc` so the library's fetch gets the connect timeout; no I/O. */
  constructor(
    kc: KubeConfig,
    private readonly limits: BoundedWatchOptions,
  ) {
    const withTimeout = Object.create(kc) as KubeConfig;
    withTimeout.applyToFetchOptions = async (o) => {
      const init = await kc.applyToFetchOptions(o);
      return { ...init, timeout: limits.connectTimeoutMs };
    };
    super(withTimeout);
  }

  /** watch implements `Watch.watch` with the limits in the class comment; `done` is called at most once. */
  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    if (this.limits.closed()) return new AbortController();
    const startedAt = Date.now();
    let last = startedAt;
    let finished = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (err: unknown): void => {
      if (finished) return;
      finished = true;
      if (idle) clearInterval(idle);
      const lived = Date.now() - startedAt;
      if (err == null && lived < 1000 && !this.limits.closed()) {
        this.quickEnds++;
        setTimeout(() => done(err), Math.min(5000, 100 * 2 ** (this.quickEnds - 1))).unref();
        return;
      }
      if (lived >= 1000) this.quickEnds = 0;
      done(err);
    };
    const ctrl = await super.watch(
      path,
      { ...queryParams, timeoutSeconds: this.limits.timeoutSeconds, allowWatchBookmarks: true },
      (phase, obj, raw) => {
        last = Date.now();
        this.limits.onEvent(phase);
        callback(phase, obj, raw);
      },
      finish,
    );
    if (!finished && this.limits.closed()) {
      // Stopped while connecting: the informer had no handle to abort this watch yet.
      ctrl.abort();
    } else if (!finished) {
      this.limits.onEstablished();
      const every = Math.max(50, Math.min(this.limits.idleTimeoutMs / 4, 10_000));
      idle = setInterval(() => {
        if (Date.now() - last > this.limits.idleTimeoutMs) ctrl.abort();
      }, every);
      idle.unref();
    }
    return ctrl;
  }
}
