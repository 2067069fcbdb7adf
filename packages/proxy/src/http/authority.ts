/**
 * The authority a request names, which RBAC `hosts`, the route table's virtual hosts and the forwarded Host all
 * use: the Host header for HTTP/1.x (the handler takes it from an absolute-form target instead), `:authority` for
 * HTTP/2 (RFC 9113 §8.3.1). Two checks sit on top: an HTTP/2 request whose `host` header names another host than
 * its `:authority` is malformed, and an authority must be `uri-host [":" port]` (RFC 9110 §7.2), so a userinfo
 * prefix (`x@internal.reviews`) that RBAC would not match but a URL parser behind the proxy would strip is refused.
 */

/** AuthorityResult is the authority to route and authorize, or a refusal with Envoy response code details. */
export type AuthorityResult = { ok: true; authority: string } | { ok: false; details: string; reason: string };

/**
 * AUTHORITY is RFC 3986's authority without userinfo: an IP literal or a reg-name (unreserved, sub-delims,
 * percent-escapes), then an optional port. Empty is valid (an HTTP/1.0 request without Host).
 */
const AUTHORITY = /^(?:\[[0-9A-Za-z:.%_~-]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?$/;

function hostPart(authority: string): string {
  if (authority.startsWith('[')) return authority.slice(0, authority.indexOf(']') + 1).toLowerCase();
  const colon = authority.lastIndexOf(':');
  return (colon >= 0 ? authority.slice(0, colon) : authority).toLowerCase();
}

/**
 * http2Authority picks an HTTP/2 request's authority (RFC 9113 §8.3.1): `:authority` when present, else the `host`
 * header, else empty. A request carrying both is malformed (details `http2.violation.of.messaging.rule`) unless
 * they name the same host and port, host names compared without case: the RFC lets a server refuse it, and
 * fedmesh does, where Envoy discards the Host header (`envoy.reloadable_features.http2_discard_host_header`), so
 * that no hop can authorize one host and another hop serve the other.
 */
export function http2Authority(pseudo: string | undefined, host: string | undefined): AuthorityResult {
  if (pseudo === undefined) return { ok: true, authority: host ?? '' };
  if (host === undefined) return { ok: true, authority: pseudo };
  const portOf = (a: string): string => a.slice(hostPart(a).length);
  if (hostPart(pseudo) !== hostPart(host) || portOf(pseudo) !== portOf(host))
    return {
      ok: false,
      details: 'http2.violation.of.messaging.rule',
      reason: `host ${JSON.stringify(host)} differs from :authority ${JSON.stringify(pseudo)}`,
    };
  return { ok: true, authority: pseudo };
}

/**
 * checkAuthority refuses an authority that is not `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2): userinfo
 * (`user@host`, deprecated and forbidden in `:authority` by RFC 9113 §8.3.1), spaces, slashes, control characters,
 * a port that is not digits. Details are Envoy's `http.invalid_authority`.
 */
export function checkAuthority(authority: string): AuthorityResult {
  if (AUTHORITY.test(authority)) return { ok: true, authority };
  return {
    ok: false,
    details: 'http.invalid_authority',
    reason: authority.includes('@') ? 'userinfo in the authority' : 'invalid authority',
  };
}
