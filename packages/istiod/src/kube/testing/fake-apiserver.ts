import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import {
  FakeCollection,
  objectKey,
  stamp,
  DEFAULT_FAKE_RESOURCES,
  type FakeObject,
  type FakeResource,
} from './fake-store.js';
import { FakeTokenIssuer, type IssueTokenOptions } from './fake-tokens.js';

/** FakeApiServerOptions configure {@link FakeApiServer}. */
export interface FakeApiServerOptions {
  /** host to bind. Default `127.0.0.1`. */
  host?: string;
  /** port to bind; 0 picks one (kept across stop/start). Default 0. */
  port?: number;
  /** tls, when set, serves HTTPS with this certificate chain and key (PEM). */
  tls?: { certPem: string; keyPem: string };
  /** token, when set, is the bearer token every request must carry (else 401). */
  token?: string;
  /** resources served. Default {@link DEFAULT_FAKE_RESOURCES}. */
  resources?: readonly FakeResource[];
  /** historyLimit is the number of events kept per collection; a watch from before them gets 410. Default 1000. */
  historyLimit?: number;
  /** bookmarkIntervalMs sends BOOKMARK events this often to watches that allow them; 0 = never. Default 0. */
  bookmarkIntervalMs?: number;
  /** watchHeadersDelayMs holds each watch's response headers this long (a slow API server). Default 0. */
  watchHeadersDelayMs?: number;
}

/** RecordedRequest is one request the fake served: method, path, and the watch parameters. */
export interface RecordedRequest {
  method: string;
  path: string;
  watch: boolean;
  resourceVersion?: string;
  status: number;
}

const MAX_BODY = 1024 * 1024;
const MAX_RECORDED = 10_000;

function status(code: number, reason: string, message: string): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/**
 * FakeApiServer is a small, faithful Kubernetes API server for tests (the real client, `@kubernetes/client-node`,
 * talks to it): API discovery (`/api`, `/apis`, `/apis/<group>[/<version>]` for the served collections), paged list (`limit`/`continue`, resourceVersion), NDJSON watch (`?watch=true&resourceVersion=`,
 * headers flushed at once, replay from a resourceVersion, `ERROR` 410 Expired for one too old, `timeoutSeconds`,
 * bookmarks), cluster-wide and per-namespace paths, and `TokenReview` (`POST
 * /apis/authentication.k8s.io/v1/tokenreviews`) for tokens it issued. Tests change objects with
 * {@link FakeApiServer.apply}/{@link FakeApiServer.delete} and inject faults: {@link FakeApiServer.expireWatches}
 * (410 Gone), {@link FakeApiServer.dropConnections}, {@link FakeApiServer.failNext} and stop/start on the same
 * port. Everything listens on loopback and is released by {@link FakeApiServer.stop}.
 */
export class FakeApiServer {
  readonly tokens = new FakeTokenIssuer();
  readonly requests: RecordedRequest[] = [];
  private readonly collections = new Map<string, FakeCollection>();
  private readonly sockets = new Set<net.Socket>();
  private readonly watchEnders = new Set<(expired: boolean) => void>();
  private readonly snapshots = new Map<string, FakeObject[]>();
  private failures: { count: number; status: number; match: (method: string, path: string) => boolean }[] = [];
  private server: http.Server | undefined;
  private rv = 1000;
  private boundPort = 0;

  /** constructor sets up empty collections; no I/O before {@link FakeApiServer.start}. */
  constructor(private readonly opts: FakeApiServerOptions = {}) {
    for (const r of opts.resources ?? DEFAULT_FAKE_RESOURCES)
      this.collections.set(`${r.group}/${r.version}/${r.plural}`, new FakeCollection(r, opts.historyLimit ?? 1000));
    this.boundPort = opts.port ?? 0;
  }

  /** url is `http(s)://host:port` of the running server. */
  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://${this.opts.host ?? '127.0.0.1'}:${this.boundPort}`;
  }

  /** delayedWatches is the number of watch requests held by `watchHeadersDelayMs` right now. */
  delayedWatches = 0;

  /** openWatches is the number of watch streams open now. */
  get openWatches(): number {
    return this.watchEnders.size;
  }

  /** resourceVersion is the latest resourceVersion handed out. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** start listens (again, on the same port after a stop). Resolves with {@link FakeApiServer.url}. */
  async start(): Promise<string> {
    const opts = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    const server = this.opts.tls
      ? https.createServer({ ...opts, cert: this.opts.tls.certPem, key: this.opts.tls.keyPem }, handler)
      : http.createServer(opts, handler);
    server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.boundPort, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const a = server.address();
    if (typeof a === 'object' && a) this.boundPort = a.port;
    this.server = server;
    return this.url;
  }

  /** stop closes the server and every open connection (watches included); objects are kept for a restart. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    server.closeAllConnections();
    await closed;
  }

  /** dropConnections destroys every open connection abruptly, as a network failure would. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.closeAllConnections();
  }

  /**
   * expireWatches compacts every collection's history (as etcd compaction does) and ends each open watch with an
   * `ERROR` event carrying a 410 Expired Status; a watch from an older resourceVersion then also gets 410.
   */
  expireWatches(): void {
    this.rv++;
    for (const c of this.collections.values()) {
      c.history.length = 0;
      c.compactedRv = this.rv;
    }
    for (const end of this.watchEnders) end(true);
  }

  /** failNext answers the next `count` requests that `match` (default: all) with HTTP `status` (default 500). */
  failNext(count: number, statusCode = 500, match: (method: string, path: string) => boolean = () => true): void {
    this.failures.push({ count, status: statusCode, match });
  }

  /** issueToken issues a ServiceAccount JWT the TokenReview endpoint accepts (see {@link FakeTokenIssuer.issue}). */
  issueToken(options: IssueTokenOptions): string {
    return this.tokens.issue(options);
  }

  /** apply creates or replaces an object (its collection found by apiVersion and kind) and returns it as stored. */
  apply(obj: FakeObject): FakeObject {
    const c = this.collectionOf(obj.apiVersion, obj.kind);
    if (c.resource.namespaced)
      obj = { ...obj, metadata: { ...obj.metadata, namespace: obj.metadata.namespace ?? 'default' } };
    const key = objectKey(obj);
    const prev = c.objects.get(key);
    const stored = stamp(obj, ++this.rv, prev);
    c.objects.set(key, stored);
    c.record({ rv: this.rv, type: prev ? 'MODIFIED' : 'ADDED', object: stored });
    return stored;
  }

  /** delete removes an object; returns false when it did not exist. */
  delete(apiVersion: string, kind: string, name: string, namespace?: string): boolean {
    const c = this.collectionOf(apiVersion, kind);
    const key = `${c.resource.namespaced ? (namespace ?? 'default') : ''}/${name}`;
    const prev = c.objects.get(key);
    if (!prev) return false;
    c.objects.delete(key);
    const gone = { ...prev, metadata: { ...prev.metadata, resourceVersion: String(++this.rv) } };
    c.record({ rv: this.rv, type: 'DELETED', object: gone });
    return true;
  }

  /** get returns a stored object, or undefined. */
  get(apiVersion: string, kind: string, name: string, namespace?: string): FakeObject | undefined {
    const c = this.collectionOf(apiVersion, kind);
    return c.objects.get(`${c.resource.namespaced ? (namespace ?? 'default') : ''}/${name}`);
  }

  /** watchCount is the number of watch requests served for a plural (e.g. `pods`); listCount likewise for lists. */
  watchCount(plural: string): number {
    return this.requests.filter((r) => r.watch && r.path.endsWith(`/${plural}`)).length;
  }

  /** listCount is the number of list requests (first pages) answered 200 for a plural. */
  listCount(plural: string): number {
    return this.requests.filter(
      (r) => !r.watch && r.method === 'GET' && r.status === 200 && r.path.endsWith(`/${plural}`),
    ).length;
  }

  private collectionOf(apiVersion: string, kind: string): FakeCollection {
    const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
    for (const c of this.collections.values())
      if (c.resource.group === group && c.resource.version === version && c.resource.kind === kind) return c;
    throw new Error(`FakeApiServer: ${apiVersion} ${kind} is not served`);
  }

  private record(req: http.IncomingMessage, url: URL, statusCode: number): void {
    if (this.requests.length >= MAX_RECORDED) this.requests.shift();
    const rv = url.searchParams.get('resourceVersion');
    this.requests.push({
      method: req.method ?? '',
      path: url.pathname,
      watch: url.searchParams.get('watch') === 'true',
      ...(rv === null ? {} : { resourceVersion: rv }),
      status: statusCode,
    });
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, url: URL, code: number, body: unknown): void {
    this.record(req, url, code);
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`)
      return this.send(req, res, url, 401, status(401, 'Unauthorized', 'Unauthorized'));
    const failure = this.failures.find((f) => f.count > 0 && f.match(req.method ?? '', url.pathname));
    if (failure) {
      failure.count--;
      return this.send(req, res, url, failure.status, status(failure.status, 'InternalError', 'injected failure'));
    }
    if (req.method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews')
      return void this.tokenReview(req, res, url);
    const discovery = req.method === 'GET' ? this.discovery(url.pathname) : undefined;
    if (discovery) return this.send(req, res, url, 200, discovery);
    const route = this.route(url.pathname);
    if (!route || req.method !== 'GET')
      return this.send(req, res, url, 404, status(404, 'NotFound', `the server could not find the requested resource`));
    const { c, namespace, name } = route;
    if (name !== undefined) {
      const o = c.objects.get(`${c.resource.namespaced ? (namespace ?? '') : ''}/${name}`);
      if (!o) return this.send(req, res, url, 404, status(404, 'NotFound', `${c.resource.plural} "${name}" not found`));
      return this.send(req, res, url, 200, o);
    }
    if (url.searchParams.get('watch') === 'true') {
      const delay = this.opts.watchHeadersDelayMs ?? 0;
      if (delay > 0) {
        this.delayedWatches++;
        setTimeout(() => {
          this.delayedWatches--;
          if (!req.destroyed) this.watch(req, res, url, c, namespace);
        }, delay);
      } else this.watch(req, res, url, c, namespace);
      return;
    }
    this.list(req, res, url, c, namespace);
  }

  /**
   * discovery answers the API discovery documents for the served collections, as the API server does: `/api`
   * (APIVersions), `/apis` (APIGroupList), `/apis/<group>` (APIGroup, versions newest first as served) and
   * `/api/v1`, `/apis/<group>/<version>` (APIResourceList). Undefined for any other path or an unserved group.
   */
  private discovery(p: string): object | undefined {
    const parts = p.split('/').filter(Boolean);
    const resources = [...this.collections.values()].map((c) => c.resource);
    const groups = [...new Set(resources.filter((r) => r.group !== '').map((r) => r.group))];
    const versionsOf = (g: string): { groupVersion: string; version: string }[] =>
      [...new Set(resources.filter((r) => r.group === g).map((r) => r.version))].map((version) => ({
        groupVersion: g === '' ? version : `${g}/${version}`,
        version,
      }));
    const group = (g: string): object => {
      const versions = versionsOf(g);
      return { name: g, versions, preferredVersion: versions[0] };
    };
    const resourceList = (g: string, v: string): object | undefined => {
      const rs = resources.filter((r) => r.group === g && r.version === v);
      if (rs.length === 0) return undefined;
      return {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion: g === '' ? v : `${g}/${v}`,
        resources: rs.map((r) => ({
          name: r.plural,
          singularName: '',
          namespaced: r.namespaced,
          kind: r.kind,
          verbs: ['get', 'list', 'watch'],
        })),
      };
    };
    if (parts[0] === 'api' && parts.length === 1)
      return { kind: 'APIVersions', versions: versionsOf('').map((v) => v.version), serverAddressByClientCIDRs: [] };
    if (parts[0] === 'api' && parts.length === 2) return resourceList('', parts[1] ?? '');
    if (parts[0] !== 'apis') return undefined;
    if (parts.length === 1) return { kind: 'APIGroupList', apiVersion: 'v1', groups: groups.map(group) };
    if (parts.length === 2 && groups.includes(parts[1] ?? ''))
      return { kind: 'APIGroup', apiVersion: 'v1', ...group(parts[1] ?? '') };
    if (parts.length === 3) return resourceList(parts[1] ?? '', parts[2] ?? '');
    return undefined;
  }

  private route(p: string): { c: FakeCollection; namespace?: string; name?: string } | undefined {
    const parts = p.split('/').filter(Boolean);
    let gv: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 3) [gv, rest] = [`/${parts[1]}`, parts.slice(2)];
    else if (parts[0] === 'apis' && parts.length >= 4) [gv, rest] = [`${parts[1]}/${parts[2]}`, parts.slice(3)];
    else return undefined;
    const find = (plural: string | undefined): FakeCollection | undefined => this.collections.get(`${gv}/${plural}`);
    if (rest.length === 3 && rest[0] === 'namespaces') {
      const c = find(rest[2]);
      return c ? { c, namespace: rest[1] as string } : undefined;
    }
    if (rest.length === 4 && rest[0] === 'namespaces') {
      const c = find(rest[2]);
      return c ? { c, namespace: rest[1] as string, name: rest[3] as string } : undefined;
    }
    const c = find(rest[0]);
    if (!c || rest.length > 2) return undefined;
    return rest.length === 2 ? { c, name: rest[1] as string } : { c };
  }

  private list(req: http.IncomingMessage, res: http.ServerResponse, url: URL, c: FakeCollection, ns?: string): void {
    const limit = Number(url.searchParams.get('limit') ?? '0');
    const token = url.searchParams.get('continue');
    let items: FakeObject[];
    let offset = 0;
    let rv = String(this.rv);
    if (token) {
      const snap = this.snapshots.get(token);
      const [tokenRv, off] = token.split(':');
      if (!snap || Number(tokenRv) < c.compactedRv)
        return this.send(req, res, url, 410, status(410, 'Expired', 'The provided continue parameter is too old'));
      [items, offset, rv] = [snap, Number(off), tokenRv ?? rv];
    } else items = c.list(ns).filter(fieldSelector(url));
    const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
    const metadata: Record<string, string> = { resourceVersion: rv };
    if (limit > 0 && offset + limit < items.length) {
      const next = `${rv}:${offset + limit}:${Math.random().toString(36).slice(2)}`;
      if (this.snapshots.size > 100) this.snapshots.delete(this.snapshots.keys().next().value as string);
      this.snapshots.set(next, items);
      metadata['continue'] = next;
    }
    const { group, version, kind } = c.resource;
    // Real list items carry neither apiVersion nor kind.
    const bare = page.map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
    this.send(req, res, url, 200, {
      apiVersion: group ? `${group}/${version}` : version,
      kind: `${kind}List`,
      metadata,
      items: bare,
    });
  }

  private watch(req: http.IncomingMessage, res: http.ServerResponse, url: URL, c: FakeCollection, ns?: string): void {
    this.record(req, url, 200);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const write = (type: string, object: unknown): void => void res.write(`${JSON.stringify({ type, object })}\n`);
    const selected = fieldSelector(url);
    const visible = (o: FakeObject): boolean => (ns === undefined || o.metadata.namespace === ns) && selected(o);
    const from = url.searchParams.get('resourceVersion') ?? '';
    let timer: NodeJS.Timeout | undefined;
    let bookmarks: NodeJS.Timeout | undefined;
    const end = (expired: boolean): void => {
      this.watchEnders.delete(end);
      c.subscribers.delete(onEvent);
      clearTimeout(timer);
      clearInterval(bookmarks);
      if (expired) write('ERROR', status(410, 'Expired', 'too old resource version'));
      res.end();
    };
    const onEvent = (e: WatchEventLike): void => {
      if (visible(e.object)) write(e.type, e.object);
    };
    if (from === '' || from === '0') {
      for (const o of c.list(ns)) if (visible(o)) write('ADDED', o);
    } else if (Number(from) < c.compactedRv) {
      write('ERROR', status(410, 'Expired', `too old resource version: ${from} (${c.compactedRv})`));
      return void res.end();
    } else {
      for (const e of c.history) if (e.rv > Number(from)) onEvent(e);
    }
    c.subscribers.add(onEvent);
    this.watchEnders.add(end);
    res.on('close', () => end(false));
    const seconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    if (seconds > 0) timer = setTimeout(() => end(false), seconds * 1000);
    const every = this.opts.bookmarkIntervalMs ?? 0;
    if (every > 0 && url.searchParams.get('allowWatchBookmarks') === 'true') {
      const { group, version, kind } = c.resource;
      const apiVersion = group ? `${group}/${version}` : version;
      bookmarks = setInterval(
        () => write('BOOKMARK', { kind, apiVersion, metadata: { resourceVersion: String(this.rv) } }),
        every,
      );
    }
  }

  private async tokenReview(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) return this.send(req, res, url, 413, status(413, 'RequestEntityTooLarge', 'too large'));
      chunks.push(chunk);
    }
    let review: { spec?: { token?: unknown; audiences?: unknown } };
    try {
      review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof review;
    } catch {
      return this.send(req, res, url, 400, status(400, 'BadRequest', 'invalid JSON'));
    }
    const token = review.spec?.token;
    if (typeof token !== 'string' || token === '')
      return this.send(req, res, url, 422, status(422, 'Invalid', 'spec.token: Required value'));
    const audiences = Array.isArray(review.spec?.audiences) ? (review.spec.audiences as string[]) : undefined;
    const saExists = (ns: string, sa: string): boolean => this.get('v1', 'ServiceAccount', sa, ns) !== undefined;
    const result = this.tokens.review(token, audiences, saExists);
    this.send(req, res, url, 201, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      metadata: { creationTimestamp: null },
      spec: { token, ...(audiences ? { audiences } : {}) },
      status: result,
    });
  }
}

type WatchEventLike = { type: string; object: FakeObject };

/**
 * fieldSelector returns the filter of a request's `fieldSelector` (comma-separated `metadata.name=`,
 * `metadata.namespace=`, with `==` or `!=`, the fields every kind supports, and a Secret's `type`, as the API
 * server's Secret strategy adds); everything passes without one. An unsupported field selects nothing.
 */
function fieldSelector(url: URL): (o: FakeObject) => boolean {
  const sel = url.searchParams.get('fieldSelector');
  if (!sel) return () => true;
  const terms = sel.split(',').map((t) => {
    const m = /^([a-zA-Z.]+)(==|!=|=)(.*)$/.exec(t.trim());
    return m ? { field: m[1], neg: m[2] === '!=', value: m[3] } : undefined;
  });
  return (o) =>
    terms.every((t) => {
      if (!t) return false;
      const v =
        t.field === 'metadata.name'
          ? o.metadata.name
          : t.field === 'metadata.namespace'
            ? o.metadata.namespace
            : t.field === 'type' && o.kind === 'Secret'
              ? typeof o['type'] === 'string'
                ? o['type']
                : 'Opaque'
              : undefined;
      if (v === undefined && t.field !== 'metadata.namespace') return false;
      return (v === t.value) !== t.neg;
    });
}
