import type http from 'node:http';
import http2 from 'node:http2';
import { Readable } from 'node:stream';

/**
 * UpstreamResponse is what the router relays of an upstream response, whichever codec carried it: status,
 * headers (no pseudo-headers), the body as a stream, and trailers (filled in by the time the body ends).
 * `http.IncomingMessage` is one; {@link H2UpstreamResponse} is the HTTP/2 one.
 */
export interface UpstreamResponse extends Readable {
  statusCode?: number | undefined;
  headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string>;
  httpVersion: string;
}

/** withoutPseudoHeaders copies an HTTP/2 header block without its pseudo-headers (`:status`, …). */
export function withoutPseudoHeaders(h: http2.IncomingHttpHeaders): http.IncomingHttpHeaders {
  const out: http.IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) out[k] = v;
  return out;
}

/**
 * H2UpstreamResponse is the response of one upstream HTTP/2 stream as an {@link UpstreamResponse}: the stream's
 * data with back-pressure (the stream is paused while this is), its trailers, and a reset of the stream
 * (RST_STREAM CANCEL) when this is destroyed before the end. An upstream reset after the headers surfaces as an
 * 'error'.
 */
export class H2UpstreamResponse extends Readable implements UpstreamResponse {
  readonly statusCode: number;
  readonly headers: http.IncomingHttpHeaders;
  trailers: NodeJS.Dict<string> = {};
  readonly httpVersion = '2.0';
  /** trailersOnly is set when the response ended with its header block (gRPC's Trailers-Only form). */
  readonly trailersOnly: boolean;
  /** complete turns true when the upstream ended the response (END_STREAM received). */
  complete = false;

  /** constructor wires the stream whose response `headers` (with `:status`) just arrived. */
  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader,
    endStream: boolean,
  ) {
    super();
    this.statusCode = Number(headers[':status'] ?? 502);
    this.headers = withoutPseudoHeaders(headers);
    this.trailersOnly = endStream;
    stream.on('data', (c: Buffer) => {
      if (!this.push(c)) stream.pause();
    });
    stream.once('trailers', (t: http2.IncomingHttpHeaders) => {
      const out: NodeJS.Dict<string> = {};
      for (const [k, v] of Object.entries(withoutPseudoHeaders(t))) out[k] = Array.isArray(v) ? v.join(', ') : v;
      this.trailers = out;
    });
    stream.once('end', () => {
      this.complete = true;
      this.push(null);
    });
    stream.once('error', (err) => this.destroy(err));
    stream.once('close', () => {
      if (!this.readableEnded && !this.destroyed && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR)
        this.destroy(new Error(`upstream stream reset (code ${stream.rstCode})`));
    });
  }

  override _read(): void {
    this.stream.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Only a response cut short is reset: after its end the stream closes by itself, and a RST_STREAM for it would
    // count against the peer's stream-reset rate limit (nghttp2 ends the session past 1,000).
    if (!this.complete && !this.stream.closed && !this.stream.destroyed)
      this.stream.close(http2.constants.NGHTTP2_CANCEL);
    cb(err);
  }
}
