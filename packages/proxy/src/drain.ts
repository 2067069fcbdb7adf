import type http from 'node:http';

/**
 * DrainController tracks the requests a proxy is serving and its drain state (Envoy's drain manager): while
 * draining, responses carry `Connection: close` so keep-alive connections end after their current request, and
 * {@link DrainController.idle} resolves once nothing is in flight.
 */
export class DrainController {
  private inflight = 0;
  private drainingSince: number | undefined;
  private waiters: (() => void)[] = [];
  private readonly open = new Set<http.ServerResponse>();

  /** draining reports whether a drain has begun. */
  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /** inflightRequests returns how many requests are being served. */
  inflightRequests(): number {
    return this.inflight;
  }

  /** begin starts draining (idempotent); responses not yet sent will close their connections. */
  begin(): void {
    this.drainingSince ??= Date.now();
    for (const res of this.open) if (!res.headersSent) res.shouldKeepAlive = false;
  }

  /**
   * track counts a request until its response finishes or its connection closes; while draining it asks the
   * client to close the connection after this response.
   */
  track(res: http.ServerResponse): void {
    this.inflight++;
    this.open.add(res);
    if (this.draining) res.shouldKeepAlive = false;
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      this.inflight--;
      this.open.delete(res);
      if (this.inflight === 0) for (const w of this.waiters.splice(0)) w();
    };
    res.once('finish', end);
    res.once('close', end);
  }

  /**
   * idle resolves true once no request is in flight, or false when `timeoutMs` passes first (the drain window
   * ends with requests still running).
   */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.waiters.push(done);
    });
  }
}
