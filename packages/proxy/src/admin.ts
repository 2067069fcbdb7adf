import http from 'node:http';
import type { Logger } from 'pino';
import type { Sidecar } from './sidecar.js';

/**
 * AdminServer is the proxy's admin listener (Istio's 15000, loopback only): `/ready` (200 `LIVE` once config is
 * applied, 503 `PRE_INITIALIZING` before, 503 `DRAINING` during a drain), `/config_dump` (JSON, no private keys),
 * `/clusters` (Envoy's text form: per host its health flags, e.g. `/failed_outlier_check`, and active requests),
 * `/stats/prometheus` (Istio's and Envoy's cluster metrics), `POST /drain_listeners[?inboundonly]` (stop
 * accepting connections, keep serving those open) and `POST /quitquitquit` (drain, then exit). Explicit timeouts
 * and limits.
 */
export class AdminServer {
  private readonly server: http.Server;

  /** constructor builds the server; nothing listens before {@link AdminServer.listen}. */
  constructor(
    private readonly proxy: Sidecar,
    private readonly log: Logger,
  ) {
    this.server = http.createServer(
      { headersTimeout: 5_000, requestTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          this.log.error({ err }, 'admin request failed');
          if (!res.headersSent) res.writeHead(500).end();
        });
      },
    );
    this.server.maxConnections = 64;
  }

  /** listen binds `host:port`; rejects on a bind error. */
  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** close stops the admin listener. */
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /ready': {
        const state = this.proxy.drain.draining ? 'DRAINING' : this.proxy.ready() ? 'LIVE' : 'PRE_INITIALIZING';
        res.writeHead(state === 'LIVE' ? 200 : 503, { 'content-type': 'text/plain' }).end(`${state}\n`);
        return;
      }
      case 'GET /config_dump':
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(this.proxy.configDump(), null, 2));
        return;
      case 'GET /clusters': {
        const lines: string[] = [];
        const cm = this.proxy.clusters;
        for (const c of cm.all())
          for (const e of c.endpoints) {
            const host = `${c.name}::${e.address}:${e.port}`;
            lines.push(`${host}::health_flags::${cm.healthFlags(c, e)}`);
            lines.push(`${host}::rq_active::${c.active.get(`${e.address}:${e.port}`) ?? 0}`);
            lines.push(`${host}::priority::${e.priority}`);
            lines.push(`${host}::weight::${e.weight}`);
            lines.push(`${host}::region::${e.locality.region}`);
            lines.push(`${host}::zone::${e.locality.zone}`);
          }
        res.writeHead(200, { 'content-type': 'text/plain' }).end(lines.join('\n') + '\n');
        return;
      }
      case 'GET /stats/prometheus': {
        const body = await this.proxy.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.proxy.metrics.registry.contentType }).end(body);
        return;
      }
      case 'POST /drain_listeners':
        this.proxy.drainListeners(url.searchParams.has('inboundonly'));
        res.writeHead(200, { 'content-type': 'text/plain' }).end('OK\n');
        return;
      case 'POST /quitquitquit':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('OK\n');
        setImmediate(() => this.proxy.quit());
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}
