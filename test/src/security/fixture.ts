/**
 * Shared pieces of the security suites: a backend that records every request it receives, raw HTTP/1.1
 * exchanges over plain TCP or mutual TLS (so tests can send bytes no well-behaved client would), workload
 * certificates from the mesh CA, and applying or removing Istio policies in istiod's config store.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parseManifests, type MeshResource } from '@fedmesh/api';
import { generateKeyPair } from '@fedmesh/pki';
import type { LocalMesh } from '../harness.js';

/** Recorded is one request a backend received. */
export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** bodyBytes counts the body received so far; complete turns true when the body ended cleanly. */
  bodyBytes: number;
  complete: boolean;
  /** closed turns true once the request is over, whole or aborted (the connection under it was closed). */
  closed: boolean;
}

/**
 * RecordingBackend is an app that answers 200 `{pod, path, xfcc}` and records every request, CONNECT and Upgrade
 * requests too (Node hands those to the `connect` and `upgrade` events, not `request`): they are recorded, then
 * refused with 405 and the connection closed, so a tunnel the proxy should have refused still counts as arrived.
 */
export class RecordingBackend {
  readonly requests: Recorded[] = [];
  /** tunnels are the CONNECT and Upgrade connections being refused (the server no longer tracks them). */
  private readonly tunnels = new Set<Duplex>();

  private constructor(readonly server: http.Server) {}

  /** start listens on `host:port`. */
  static async start(host: string, port: number, pod: string): Promise<RecordingBackend> {
    const server = http.createServer();
    const b = new RecordingBackend(server);
    const openOnSocket = new WeakMap<net.Socket, Recorded[]>();
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const rec: Recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bodyBytes: 0,
        complete: false,
        closed: false,
      };
      b.requests.push(rec);
      req.on('data', (c: Buffer) => (rec.bodyBytes += c.length));
      req.on('end', () => (rec.complete = true));
      req.on('close', () => (rec.closed = true));
      // A request cut off mid-body by its connection closing does not always emit 'close' itself.
      const onSocket = openOnSocket.get(req.socket);
      if (onSocket) onSocket.push(rec);
      else {
        const recs = [rec];
        openOnSocket.set(req.socket, recs);
        req.socket.once('close', () => recs.forEach((r) => (r.closed = true)));
      }
      req.on('error', () => undefined);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ pod, path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
    });
    const refuseTunnel = (req: http.IncomingMessage, sock: Duplex): void => {
      b.requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bodyBytes: 0,
        complete: true,
        closed: true,
      });
      sock.on('error', () => undefined);
      b.tunnels.add(sock);
      sock.once('close', () => b.tunnels.delete(sock));
      sock.end('HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\n\r\n', () =>
        sock.destroy(),
      );
    };
    server.on('connect', refuseTunnel);
    server.on('upgrade', refuseTunnel);
    await new Promise<void>((r) => server.listen(port, host, () => r()));
    return b;
  }

  /** count is how many requests arrived so far. */
  get count(): number {
    return this.requests.length;
  }

  /** close stops the server and drops its connections. */
  close(): Promise<void> {
    this.server.closeAllConnections();
    for (const t of this.tunnels) t.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** RawResult is what came back on one raw connection: the bytes, the status codes in order, and whether it closed. */
export interface RawResult {
  text: string;
  statuses: number[];
  closed: boolean;
}

/** Dialer opens one connection and calls `ready` once bytes may be written (after the TLS handshake for TLS). */
export type Dialer = (ready: () => void) => net.Socket;

/**
 * rawExchange writes `bytes` on a fresh connection and collects what comes back until the peer closes, or until
 * `responses` responses arrived and the line stayed quiet for `quietMs`, or `timeoutMs` passed.
 */
export function rawExchange(
  dial: Dialer,
  bytes: string | Buffer,
  opts: { responses?: number; quietMs?: number; timeoutMs?: number } = {},
): Promise<RawResult> {
  const { responses = 1, quietMs = 300, timeoutMs = 10_000 } = opts;
  return new Promise((resolve) => {
    let text = '';
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const statuses = (): number[] => [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(limit);
      sock.destroy();
      resolve({ text, statuses: statuses(), closed });
    };
    const sock = dial(() => sock.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes));
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      clearTimeout(quiet);
      if (statuses().length >= responses) quiet = setTimeout(() => finish(false), quietMs);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => finish(true));
    const limit = setTimeout(() => finish(false), timeoutMs);
  });
}

/** plainDialer connects in plaintext to `host:port`. */
export function plainDialer(host: string, port: number): Dialer {
  return (ready) => net.connect({ host, port }, ready);
}

/** MeshIdentity is a workload certificate and key from the mesh CA, for raw mTLS clients. */
export interface MeshIdentity {
  certPem: string;
  keyPem: string;
  rootPem: string;
}

/** issueIdentity signs a client certificate for `ns/sa` with the mesh CA (what a sidecar would get). */
export async function issueIdentity(mesh: LocalMesh, namespace: string, serviceAccount: string): Promise<MeshIdentity> {
  const key = await generateKeyPair('ec-p256');
  const leaf = await mesh.istiod.ca.signWorkload({
    publicKey: key.publicKey,
    identity: { trustDomain: 'cluster.local', namespace, serviceAccount },
  });
  return { certPem: leaf.chainPem.join(''), keyPem: key.privateKeyPem, rootPem: mesh.rootCertPem() };
}

/**
 * mtlsDialer connects to a sidecar's inbound port with a mesh identity and the SNI a peer sidecar would send.
 * `alpn` are the application protocols offered (none by default: the server then picks the codec by the first bytes).
 */
export function mtlsDialer(host: string, port: number, sni: string, id: MeshIdentity, alpn?: string[]): Dialer {
  return (ready) => {
    const s = tls.connect({
      host,
      port,
      servername: sni,
      cert: id.certPem,
      key: id.keyPem,
      ca: id.rootPem,
      checkServerIdentity: () => undefined,
      ...(alpn ? { ALPNProtocols: alpn } : {}),
    });
    s.once('secureConnect', ready);
    return s;
  };
}

/** resourceKeys are the config store keys (`Kind/ns/name`) of parsed resources. */
function resourceKeys(resources: readonly MeshResource[]): string[] {
  return resources.map((r) => `${r.kind}/${r.metadata.namespace ?? 'default'}/${r.metadata.name}`);
}

/** applyYaml validates manifests and applies them to istiod's store; returns their keys for {@link removeKeys}. */
export function applyYaml(mesh: LocalMesh, yaml: string): string[] {
  const { resources, errors } = parseManifests(yaml, { file: 'test.yaml' });
  assert.deepEqual(
    errors.filter((e) => e.severity === 'error'),
    [],
    'test manifests must be valid',
  );
  mesh.istiod.store.apply(resources, 'test');
  return resourceKeys(resources);
}

/** removeKeys deletes config objects from istiod's store. */
export function removeKeys(mesh: LocalMesh, keys: readonly string[]): void {
  mesh.istiod.store.remove(keys);
}

/** request sends one HTTP/1.1 request through a sidecar's outbound listener; resolves status, body and headers. */
export function request(
  proxyAddr: string,
  host: string,
  pathName: string,
  headers: Record<string, string> = {},
  agent: http.Agent | false = false,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const [h, p] = proxyAddr.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: h, port: Number(p), path: pathName, headers: { host, ...headers }, agent, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}
