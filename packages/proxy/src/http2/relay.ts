import http from 'node:http';
import type { UpstreamResponse } from '../upstream/response.js';

/** isGrpcRequest reports whether a request is gRPC (`content-type: application/grpc…`). */
export function isGrpcRequest(headers: http.IncomingHttpHeaders): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && ct.toLowerCase().startsWith('application/grpc');
}

/** grpcStatusOf returns a response's `grpc-status`, from its trailers or else its headers (Trailers-Only). */
export function grpcStatusOf(res: UpstreamResponse): string | undefined {
  const t = res.trailers['grpc-status'];
  if (typeof t === 'string') return t.trim();
  const h = res.headers['grpc-status'];
  return typeof h === 'string' ? h.trim() : undefined;
}

/**
 * relayResponse writes an upstream response downstream: the status and `headers` (already filtered and mutated
 * by the router), the body with back-pressure (`onBytes` counts it; the upstream is paused while `res.write`
 * reports a full buffer, until 'drain'), then the upstream trailers, and ends the response. A gRPC Trailers-Only
 * response (status and metadata in the header block that ends the stream) becomes, for an HTTP/2 client, a header
 * block with only `content-type` and trailers holding the rest (status and metadata), since Node's compatibility
 * API cannot end a stream with its header block. Over HTTP/1.1, trailers go out only when the response is chunked
 * (Node drops them otherwise).
 */
export function relayResponse(
  res: http.ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  ures: UpstreamResponse,
  onBytes: (n: number) => void,
): void {
  const h2 = !(res instanceof http.ServerResponse);
  const moved: Record<string, string> = {};
  if (h2 && (ures as { trailersOnly?: boolean }).trailersOnly && typeof headers['grpc-status'] === 'string') {
    // Trailers-Only carries the status and all metadata as trailers: only content-type stays a header.
    for (const [k, v] of Object.entries(headers)) {
      if (k === 'content-type') continue;
      moved[k] = Array.isArray(v) ? v.join(', ') : v;
      delete headers[k];
    }
  }
  res.writeHead(status, headers);
  // A write loop rather than `pipe`: one 'data' listener instead of pipe's listeners on both sides, for the
  // same back-pressure (pause until 'drain'). A downstream that goes away is handled by the caller, which destroys
  // the upstream response on the response's 'close' (http-handler.ts), so no further 'data' arrives.
  const resume = (): void => void ures.resume();
  ures.on('data', (c: Buffer) => {
    onBytes(c.length);
    if (!res.write(c)) {
      ures.pause();
      res.once('drain', resume);
    }
  });
  ures.once('end', () => {
    const trailers: Record<string, string> = { ...moved };
    for (const [k, v] of Object.entries(ures.trailers)) if (v !== undefined) trailers[k] = v;
    if (Object.keys(trailers).length > 0 && !res.writableEnded) res.addTrailers(trailers);
    res.end();
  });
}
