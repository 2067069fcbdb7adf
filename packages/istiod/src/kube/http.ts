import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** KubeRequestOptions bound one request to the Kubernetes API. */
export interface KubeRequestOptions {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH';
  /** path is the API path with its query string, e.g. `/api/v1/pods?limit=500`. */
  path: string;
  /** body is sent as JSON. */
  body?: unknown;
  /** contentType of the body. Default `application/json` (use `application/merge-patch+json` for a merge PATCH). */
  contentType?: string;
  /** timeoutMs bounds the whole request, from connect to the last byte, in ms. */
  timeoutMs: number;
  /** maxBytes bounds the response body; a longer body fails the request. */
  maxBytes: number;
  signal?: AbortSignal;
}

/** KubeResponse is a decoded JSON answer: the HTTP status and the parsed body (undefined when not JSON). */
export interface KubeResponse {
  status: number;
  body: unknown;
}

/**
 * kubeRequestJson sends one request to the current cluster of `kc` with its credentials (client certificate,
 * bearer token, CA: `KubeConfig.applyToHTTPSOptions`, the same settings the client's own calls use) and returns the
 * status and JSON body. It resolves for any HTTP status; it rejects on a network error, on `timeoutMs`, on a body
 * over `maxBytes`, on abort, or when the kubeconfig has no current cluster.
 */
export async function kubeRequestJson(kc: KubeConfig, opts: KubeRequestOptions): Promise<KubeResponse> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + opts.path);
  const reqOpts: https.RequestOptions = { headers: { accept: 'application/json' } };
  await kc.applyToHTTPSOptions(reqOpts);
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  const headers = { ...(reqOpts.headers as Record<string, string>) };
  if (payload) {
    headers['content-type'] = opts.contentType ?? 'application/json';
    headers['content-length'] = String(payload.length);
  }
  const mod = url.protocol === 'http:' ? http : https;
  return new Promise<KubeResponse>((resolve, reject) => {
    const req = mod.request(url, { ...reqOpts, method: opts.method, headers, signal: opts.signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > opts.maxBytes) {
          req.destroy(new Error(`response from ${url.pathname} exceeds ${opts.maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text === '' ? undefined : (JSON.parse(text) as unknown);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`${opts.method} ${url.pathname} timed out after ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(payload);
  });
}

/** statusMessage extracts a Kubernetes `Status` object's message (`{kind: 'Status', message}`), if any. */
export function statusMessage(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const m = (body as { message?: unknown }).message;
  return typeof m === 'string' ? m.slice(0, 300) : undefined;
}
