import http from 'node:http';
import type { Logger } from 'pino';
import type { Sidecar } from './sidecar.js';

/**
 * AdminServer is the proxy's admin listener (Istio's 15000, loopback only): `/ready` (200 once config is
 * applied, else 503), `/config_dump` (JSON, no private keys), `/clusters` (Envoy's text form, one line per
 * host), `/stats/prometheus` (Istio's metrics), and `POST /quitquitquit` (exit). Explicit timeouts and limits.
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
        const ok = this.proxy.ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'LIVE\n' : 'PRE_INITIALIZING\n');
        return;
      }
      case 'GET /config_dump':
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(this.proxy.configDump(), null, 2));
        return;
      case 'GET /clusters': {
        const lines: string[] = [];
        for (const c of this.proxy.clusters.all())
          for (const e of c.endpoints)
            lines.push(
              `${c.name}::${e.address}:${e.port}::health_flags::${e.healthy ? 'healthy' : '/failed_eds_health'}`,
            );
        res.writeHead(200, { 'content-type': 'text/plain' }).end(lines.join('\n') + '\n');
        return;
      }
      case 'GET /stats/prometheus': {
        const body = await this.proxy.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.proxy.metrics.registry.contentType }).end(body);
        return;
      }
      case 'POST /quitquitquit':
        res.writeHead(200).end('OK\n');
        setImmediate(() => process.kill(process.pid, 'SIGTERM'));
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }
}
