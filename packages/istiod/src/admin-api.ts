import http from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { formatManifestError } from '@fedmesh/api';
import { decodeAny, shortTypeName, TYPE_URL_ORDER } from '@fedmesh/api/xds';
import type { Logger } from 'pino';
import type { LocalTokenAuthenticator } from './ca/index.js';
import { loadManifestText } from './config/file-source.js';
import { configKey, type ConfigStore, type StoredObject } from './config/store.js';
import type { DiscoveryServer } from './discovery.js';
import { redactConfigObject, redactXdsResource } from './generators/ingress-redact.js';
import type { IstiodMetrics } from './metrics.js';
import type { VmAdmin } from './vm/index.js';
import type { TrustAdmin } from './trust/admin.js';
import { parseManifests } from '@fedmesh/api';

/** AdminApiDeps are what istiod's monitoring/admin HTTP endpoint serves from. */
export interface AdminApiDeps {
  store: ConfigStore<StoredObject>;
  discovery: DiscoveryServer;
  metrics: IstiodMetrics;
  tokens: LocalTokenAuthenticator;
  /** adminToken is the bearer secret (from `<state-dir>/admin-token`, mode 0600) the write endpoints require. */
  adminToken: string;
  ready: () => boolean;
  /** vm, when set, serves the VM routes (`POST /v1/vm/bootstrap`, see createVmAdmin). */
  vm?: VmAdmin;
  /** trust, when set, serves the root-rotation routes under `/v1/ca/` (see createTrustAdmin). */
  trust?: TrustAdmin;
  /** federation, when set, answers `GET /v1/federation/status` (this cluster and its peers), or undefined when not joined. */
  federation?: () => unknown;
  log: Logger;
}

/** MAX_BODY_BYTES bounds an admin request body (4 MiB of manifests). */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function authorized(req: http.IncomingMessage, token: string): boolean {
  const h = req.headers.authorization ?? '';
  const given = Buffer.from(h.startsWith('Bearer ') ? h.slice(7) : '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * createAdminApi builds istiod's HTTP endpoint on the monitoring port (15014):
 * - `GET /metrics` (Prometheus), `GET /ready` (200 once serving);
 * - with `authorization: Bearer <admin token>`: `POST /v1/apply` and `POST /v1/delete` (YAML body; the reply lists
 *   the keys applied and every problem with file, document index and field path; 422 when any document is invalid,
 *   and the last good config keeps serving), `POST /v1/token` (`{namespace, serviceAccount, ttlSeconds}` →
 *   `{token}`, a bootstrap token for a local workload), `GET /debug/syncz` (proxy sync status),
 *   `GET /debug/config_dump?proxyID=…` (the resources pushed to a proxy), `GET /debug/configz` (the config store),
 *   and the CA routes of `deps.trust` (`/v1/ca/status`, `/v1/ca/roots`, `/v1/ca/activate`, `/v1/ca/retire`).
 * With the same token, `POST /v1/vm/bootstrap` (`deps.vm`) mints a VM bootstrap token for a WorkloadGroup.
 * Timeouts and sizes are bounded.
 */
export function createAdminApi(deps: AdminApiDeps): http.Server {
  const server = http.createServer(
    { headersTimeout: 5_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 },
    (req, res) => {
      handle(req, res).catch((err: unknown) => {
        deps.log.warn({ err: (err as Error).message, path: req.url }, 'admin request failed');
        if (!res.headersSent) json(res, 400, { error: (err as Error).message });
      });
    },
  );
  server.maxConnections = 256;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://istiod');
    const route = `${req.method} ${url.pathname}`;
    if (route === 'GET /metrics') {
      const body = await deps.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': deps.metrics.registry.contentType }).end(body);
      return;
    }
    if (route === 'GET /ready') {
      res.writeHead(deps.ready() ? 200 : 503).end(deps.ready() ? 'ready\n' : 'not ready\n');
      return;
    }
    if (!authorized(req, deps.adminToken)) return json(res, 401, { error: 'unauthorized' });
    switch (route) {
      case 'POST /v1/apply': {
        const source = url.searchParams.get('source') ?? 'api';
        const result = loadManifestText(deps.store, await readBody(req), 'api', false, source);
        const errors = result.errors.filter((e) => e.severity === 'error');
        deps.log.info({ source, applied: result.applied.length, errors: errors.length }, 'config applied');
        return json(res, errors.length > 0 ? 422 : 200, {
          applied: result.applied,
          errors: errors.map((e) => ({ ...e, text: formatManifestError(e) })),
          warnings: result.errors.filter((e) => e.severity === 'warning').map((e) => formatManifestError(e)),
        });
      }
      case 'POST /v1/delete': {
        const { resources, errors } = parseManifests(await readBody(req));
        const deleted = deps.store.remove(resources.map((r) => configKey(r as unknown as StoredObject)));
        return json(res, 200, { deleted, errors: errors.map((e) => formatManifestError(e)) });
      }
      case 'POST /v1/token': {
        const body = JSON.parse(await readBody(req)) as {
          namespace?: unknown;
          serviceAccount?: unknown;
          ttlSeconds?: unknown;
        };
        if (typeof body.namespace !== 'string' || typeof body.serviceAccount !== 'string')
          return json(res, 400, { error: 'namespace and serviceAccount are required' });
        const ttlMs = typeof body.ttlSeconds === 'number' ? body.ttlSeconds * 1000 : undefined;
        const token = deps.tokens.mint({
          namespace: body.namespace,
          serviceAccount: body.serviceAccount,
          ...(ttlMs !== undefined ? { ttlMs } : {}),
        });
        deps.log.info({ namespace: body.namespace, serviceAccount: body.serviceAccount }, 'bootstrap token minted');
        return json(res, 200, { token });
      }
      case 'GET /debug/syncz':
        return json(res, 200, deps.discovery.status());
      case 'GET /v1/federation/status': {
        const status = deps.federation?.();
        return status === undefined
          ? json(res, 404, { error: 'not joined to a federated mesh' })
          : json(res, 200, status);
      }
      case 'GET /debug/configz':
        return json(res, 200, deps.store.list().map(redactConfigObject));
      case 'GET /debug/config_dump': {
        const id = url.searchParams.get('proxyID') ?? '';
        const snap = deps.discovery.snapshotFor(id);
        if (!snap) return json(res, 404, { error: `no proxy ${id}` });
        const out: Record<string, unknown> = {};
        for (const t of TYPE_URL_ORDER)
          out[shortTypeName(t)] = {
            version: snap.version(t),
            resources: [...snap.resources(t).values()].map((a) => redactXdsResource(decodeAny(a))),
          };
        return json(res, 200, out);
      }
      default: {
        const reply = await deps.trust?.handle(route, () => readBody(req));
        if (reply) return json(res, reply.status, reply.body);
        const vmReply = await deps.vm?.handle(route, () => readBody(req));
        if (vmReply) return json(res, vmReply.status, vmReply.body);
        return json(res, 404, { error: 'not found' });
      }
    }
  }
  return server;
}
