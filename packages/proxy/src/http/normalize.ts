/**
 * Request-target normalization of Envoy's HTTP connection manager (`normalize_path`, `merge_slashes`,
 * `path_with_escaped_slashes_action`, `strip_trailing_host_dot`, `strip_any_host_port`), applied before any filter or route sees the
 * request, so that the path RBAC authorizes is the path the router forwards. Envoy's order
 * (`ConnectionManagerUtility::maybeNormalizePath`): escaped slashes first, then RFC 3986 normalization, then
 * slash merging. fedmesh is stricter than Envoy on input Envoy would repair: a raw `\`, a fragment, `%00` or a
 * malformed percent-escape is refused rather than rewritten (docs/adr/0011-authorization-and-path-safety.md).
 */

/** EscapedSlashesAction is Envoy's `HttpConnectionManager.PathWithEscapedSlashesAction`. */
export type EscapedSlashesAction =
  | 'IMPLEMENTATION_SPECIFIC_DEFAULT'
  | 'KEEP_UNCHANGED'
  | 'REJECT_REQUEST'
  | 'UNESCAPE_AND_REDIRECT'
  | 'UNESCAPE_AND_FORWARD';

/** PathNormalizationOptions are the HCM's path settings (Envoy defaults: all off, escaped slashes kept). */
export interface PathNormalizationOptions {
  /** normalizePath: RFC 3986 §6.2.2 normalization: decode unreserved `%XX`, upper-case other escapes, drop dot segments. */
  normalizePath: boolean;
  /** mergeSlashes collapses runs of `/` into one. */
  mergeSlashes: boolean;
  /** escapedSlashes is what to do with `%2F`, `%2f`, `%5C`, `%5c` in the path. */
  escapedSlashes: EscapedSlashesAction;
}

/**
 * NormalizeResult is the outcome for one request target: the path (query kept as received) and whether the
 * client must be redirected to it (UNESCAPE_AND_REDIRECT), or a refusal with Envoy-style response code details
 * and a human-readable reason.
 */
export type NormalizeResult =
  { ok: true; path: string; redirect: boolean } | { ok: false; details: string; reason: string };

const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /[A-Za-z0-9\-._~]/;
const ESCAPED_SLASH = /%(2f|5c)/i;
const ESCAPED_SLASHES = /%(2f|5c)/gi;

function refuse(details: string, reason: string): NormalizeResult {
  return { ok: false, details, reason };
}

/**
 * removeDotSegments is RFC 3986 §5.2.4 for an absolute path: `.` segments vanish, `..` removes the previous
 * segment and never climbs above the root. The result always starts with `/`.
 */
export function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  // segments[0] is the empty string before the leading '/'.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] ?? '';
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  }
  return `/${out.join('/')}`;
}

/**
 * decodeUnreserved decodes `%XX` escapes of unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) and
 * upper-cases the hex digits of every other escape (RFC 3986 §6.2.2.1-2). Escapes must already be valid.
 */
export function decodeUnreserved(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
}

function checkEscapes(s: string, part: string): NormalizeResult | undefined {
  for (let i = s.indexOf('%'); i >= 0; i = s.indexOf('%', i + 1)) {
    const hex = s.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return refuse('path_normalization_failed', `invalid percent-encoding in the ${part}`);
    if (hex === '00') return refuse('path_normalization_failed', `%00 in the ${part}`);
  }
  return undefined;
}

/**
 * normalizeRequestPath applies the HCM's path rules to a request target (origin-form `path?query`, or `*`).
 * Refused (400 in the caller): a target not starting with `/`, a fragment (`#`), a raw `\`, control or
 * non-ASCII characters, `%00` anywhere, a malformed escape in the path, and escaped slashes when the action is
 * REJECT_REQUEST, and (with normalization on) a dot segment carrying path parameters (`/..;/`). Escaped slashes are unescaped to `/` by UNESCAPE_AND_FORWARD and UNESCAPE_AND_REDIRECT (a
 * `%5C` becomes `/`, as Envoy's canonicalizer turns `\` into `/`). The query is never rewritten.
 */
export function normalizeRequestPath(target: string, opts: PathNormalizationOptions): NormalizeResult {
  if (target === '*') return { ok: true, path: target, redirect: false };
  if (!target.startsWith('/')) return refuse('http1.invalid_url', 'request target must start with /');
  if (target.includes('#')) return refuse('path_normalization_failed', 'fragment in request target');
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused here
  if (/[\x00-\x20\x7f-\uffff]/.test(target)) return refuse('path_normalization_failed', 'invalid character');
  const q = target.indexOf('?');
  let path = q >= 0 ? target.slice(0, q) : target;
  const query = q >= 0 ? target.slice(q) : '';
  if (path.includes('\\')) return refuse('path_normalization_failed', 'backslash in path');
  const bad = checkEscapes(path, 'path');
  if (bad) return bad;
  if (query.includes('%00')) return refuse('path_normalization_failed', '%00 in the query');
  let redirect = false;
  const action = opts.escapedSlashes;
  if (action !== 'KEEP_UNCHANGED' && action !== 'IMPLEMENTATION_SPECIFIC_DEFAULT' && ESCAPED_SLASH.test(path)) {
    if (action === 'REJECT_REQUEST') return refuse('path_normalization_failed', 'escaped slash in path');
    path = path.replace(ESCAPED_SLASHES, '/');
    redirect = action === 'UNESCAPE_AND_REDIRECT';
  }
  if (opts.normalizePath) {
    path = decodeUnreserved(path);
    // `..;x` is no dot segment to RFC 3986 but is `..` to servers that strip path parameters (Tomcat, Jetty).
    if (path.split('/').some((seg) => seg.includes(';') && /^\.{1,2}$/.test(seg.slice(0, seg.indexOf(';')))))
      return refuse('path_normalization_failed', 'dot segment with path parameters');
    path = removeDotSegments(path);
  }
  if (opts.mergeSlashes) path = path.replace(/\/{2,}/g, '/');
  return { ok: true, path: path + query, redirect };
}

/**
 * stripTrailingHostDot removes one trailing `.` from the host part of an authority (`reviews.:9080` →
 * `reviews:9080`), Envoy's `strip_trailing_host_dot`; an IPv6 literal is left alone.
 */
export function stripTrailingHostDot(authority: string): string {
  if (authority.startsWith('[')) return authority;
  const colon = authority.lastIndexOf(':');
  const host = colon >= 0 ? authority.slice(0, colon) : authority;
  const port = colon >= 0 ? authority.slice(colon) : '';
  return host.endsWith('.') ? host.slice(0, -1) + port : authority;
}

/**
 * stripHostPort removes the port from an authority (`bookinfo.example.com:8080` → `bookinfo.example.com`,
 * `[::1]:8080` → `[::1]`), Envoy's HCM `strip_any_host_port` (`HeaderUtility::stripPortFromHost`): the port starts
 * at the last `:` that is not inside an IPv6 literal's brackets and must be a decimal number below 2^32; anything
 * else (no port, an empty port `host:`, a bare IPv6 literal) is returned unchanged.
 */
export function stripHostPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon < 0 || authority.lastIndexOf(']') > colon) return authority;
  const port = authority.slice(colon + 1);
  if (!/^[0-9]{1,10}$/.test(port) || Number(port) > 0xffffffff) return authority;
  return authority.slice(0, colon);
}
