import http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ClusterManager } from '../cluster-manager.js';

/** GatewayAdminTarget is what the gateway's admin listener reads. */
export interface GatewayAdminTarget {
  ready(): boolean;
  configDump(): Record<string, unknown>;
  readonly clusters: ClusterManager;
  readonly registry: Registry;
}

/**
 * GatewayAdminServer is a gateway's admin listener (Istio's 15000): `/ready` (200 `LIVE` once listeners and
 * clusters are applied, else 503), `/config_dump` (JSON, no private keys), `/clusters` (Envoy's text form: one
 * `health_flags` and one `weight` line per host), `/stats/prometheus` (Istio's TCP metrics) and
 * `POST /quitquitquit` (SIGTERM). Explicit timeouts and limits.
 */
export class GatewayAdminServer {
  private readonly server: http.Server;

  /** constructor builds the server; nothing listens before {@link GatewayAdminServer.listen}. */
  constructor(
    private readonly target: GatewayAdminTarget,
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
    const text = { 'content-type': 'text/plain' };
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /ready': {
        const ok = this.target.ready();
        res.writeHead(ok ? 200 : 503, text).end(ok ? 'LIVE\n' : 'PRE_INITIALIZING\n');
        return;
      }
      case 'GET /config_dump':
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify(this.target.configDump(), null, 2));
        return;
      case 'GET /clusters': {
        const lines: string[] = [];
        for (const c of this.target.clusters.all())
          for (const e of c.endpoints) {
            const host = `${c.name}::${e.address}:${e.port}`;
            lines.push(`${host}::health_flags::${e.healthy ? 'healthy' : '/failed_eds_health'}`);
            lines.push(`${host}::weight::${e.weight}`);
          }
        res.writeHead(200, text).end(lines.join('\n') + '\n');
        return;
      }
      case 'GET /stats/prometheus':
        res
          .writeHead(200, { 'content-type': this.target.registry.contentType })
          .end(await this.target.registry.metrics());
        return;
      case 'POST /quitquitquit':
        res.writeHead(200, text).end('OK\n');
        setImmediate(() => process.kill(process.pid, 'SIGTERM'));
        return;
      default:
        res.writeHead(404, text).end('not found\n');
    }
  }
}
