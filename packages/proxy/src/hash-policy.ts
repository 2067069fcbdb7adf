import { randomBytes } from 'node:crypto';
import { murmur3 } from './lb/hash.js';
import { durationMs, type EnvoyHashPolicy } from './xds/envoy-schemas.js';

/** HashInput is what a route's hash policies may read of a request. */
export interface HashInput {
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** query is the request's query string parameters. */
  query: URLSearchParams;
  /** sourceIp is the downstream peer address. */
  sourceIp: string;
}

/** HashResult is a request's hash (undefined when no policy found its key) and a cookie to set on the response. */
export interface HashResult {
  hash: number | undefined;
  setCookie?: string;
}

function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  const all = Array.isArray(header) ? header.join('; ') : (header ?? '');
  for (const part of all.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name)
      return part
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

/**
 * computeHash evaluates a route's Envoy `hash_policy` list (`config.route.v3.RouteAction.HashPolicy`) in order:
 * `header` hashes the header's values (sorted, joined), `cookie` the named cookie, `connection_properties.source_ip`
 * the downstream address, `query_parameter` the first value of the parameter. Hashes of several policies are
 * combined (rotate left by one, xor), and a `terminal` policy that produced a hash ends the evaluation. A cookie
 * policy with a `ttl` whose cookie is absent generates a value, hashes it and returns the `Set-Cookie` to add to
 * the response (`Max-Age` unless the ttl is 0, `Path` when set, `HttpOnly`), so that later requests stick.
 */
export function computeHash(policies: readonly EnvoyHashPolicy[] | undefined, req: HashInput): HashResult {
  let hash: number | undefined;
  let setCookie: string | undefined;
  for (const p of policies ?? []) {
    let key: string | undefined;
    if (p.header) {
      const v = req.headers[p.header.header_name.toLowerCase()];
      if (v !== undefined) key = Array.isArray(v) ? [...v].sort().join(',') : v;
    } else if (p.cookie) {
      key = cookieValue(req.headers.cookie, p.cookie.name);
      if (key === undefined && p.cookie.ttl !== undefined) {
        key = randomBytes(8).toString('hex');
        const ttl = Math.floor(durationMs(p.cookie.ttl) / 1000);
        setCookie = `${p.cookie.name}="${key}"${ttl > 0 ? `; Max-Age=${ttl}` : ''}${
          p.cookie.path ? `; Path=${p.cookie.path}` : ''
        }; HttpOnly`;
      }
    } else if (p.connection_properties?.source_ip) {
      key = req.sourceIp || undefined;
    } else if (p.query_parameter) {
      key = req.query.get(p.query_parameter.name) ?? undefined;
    }
    if (key === undefined) continue;
    const h = murmur3(key);
    hash = hash === undefined ? h : (((hash << 1) | (hash >>> 31)) ^ h) >>> 0;
    if (p.terminal) break;
  }
  return setCookie !== undefined ? { hash, setCookie } : { hash };
}
