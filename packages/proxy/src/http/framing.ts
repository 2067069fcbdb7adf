/**
 * HTTP/1.1 request framing checks on top of Node's llhttp parser (which runs with `insecureHTTPParser` off).
 * llhttp already refuses, with 400 and a closed connection: Transfer-Encoding together with Content-Length,
 * repeated or malformed Content-Length, bad chunk sizes and chunk terminators, obs-fold continuation lines,
 * bare LF or CR line endings, whitespace before a header colon, and control characters in names, values and
 * the request target. What it lets through, and this module refuses (RFC 9112 §6.1, §6.3 and §3.2): a
 * Transfer-Encoding other than exactly `chunked` (`identity, chunked`, two Transfer-Encoding lines), a
 * Transfer-Encoding on an HTTP/1.0 request, more than one Host header, a protocol version other than HTTP/1.0
 * and HTTP/1.1 (HTTP/0.9 and `HTTP/2.0` spoken over the HTTP/1 parser), more header lines than the listener
 * allows (Node silently drops the extra ones from `req.headers`; Envoy answers 431), and `Transfer_Encoding`,
 * `Content_Length` or `Host` spelled with underscores, which a backend that maps `_` to `-` (CGI, WSGI) would
 * read as framing or routing headers the proxy never saw.
 */
import http from 'node:http';

const UNDERSCORE_ALIASES = new Set(['transfer-encoding', 'content-length', 'host']);

/** FramingProblem is why a request's framing is refused: HTTP status, response code details and a reason. */
export interface FramingProblem {
  status: 400 | 431;
  details: string;
  reason: string;
}

/** FramingLimits are the limits the check enforces: `maxHeadersCount` header lines (Envoy's default is 100). */
export interface FramingLimits {
  maxHeadersCount: number;
}

/**
 * checkRequestFraming inspects a request the HTTP/1 parser accepted and returns the first framing problem, or
 * undefined when the framing is unambiguous. Requests that did not come through the HTTP/1 parser (HTTP/2
 * compatibility requests are not `http.IncomingMessage`s) are not checked here.
 */
export function checkRequestFraming(req: http.IncomingMessage, limits: FramingLimits): FramingProblem | undefined {
  if (!(req instanceof http.IncomingMessage)) return undefined;
  if (req.httpVersion !== '1.1' && req.httpVersion !== '1.0')
    return {
      status: 400,
      details: 'http1.codec_error',
      reason: `unsupported protocol version HTTP/${req.httpVersion}`,
    };
  const raw = req.rawHeaders;
  if (raw.length / 2 > limits.maxHeadersCount)
    return { status: 431, details: 'http1.too_many_headers', reason: `more than ${limits.maxHeadersCount} headers` };
  let hosts = 0;
  let contentLengths = 0;
  const te: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    if (name.includes('_') && UNDERSCORE_ALIASES.has(name.replaceAll('_', '-')))
      return { status: 400, details: 'http1.invalid_characters', reason: `header ${raw[i] ?? ''} not allowed` };
    if (name === 'host') hosts++;
    else if (name === 'content-length') contentLengths++;
    else if (name === 'transfer-encoding') te.push(raw[i + 1] ?? '');
  }
  if (hosts > 1) return { status: 400, details: 'http1.codec_error', reason: 'more than one Host header' };
  if (contentLengths > 1)
    return { status: 400, details: 'http1.content_length_not_allowed', reason: 'more than one Content-Length' };
  if (te.length === 0) return undefined;
  if (req.httpVersion === '1.0')
    return { status: 400, details: 'http1.invalid_transfer_encoding', reason: 'Transfer-Encoding in HTTP/1.0' };
  if (contentLengths > 0)
    return {
      status: 400,
      details: 'http1.content_length_and_chunked_not_allowed',
      reason: 'Content-Length with Transfer-Encoding',
    };
  const codings = te
    .join(',')
    .split(',')
    .map((c) => c.trim().toLowerCase());
  if (codings.length !== 1 || codings[0] !== 'chunked')
    return {
      status: 400,
      details: 'http1.invalid_transfer_encoding',
      reason: `Transfer-Encoding must be exactly "chunked", got ${JSON.stringify(te.join(', '))}`,
    };
  return undefined;
}
