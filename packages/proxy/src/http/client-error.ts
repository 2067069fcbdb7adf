import type net from 'node:net';
import type { Logger } from 'pino';

/** ClientErrorContext names where a parser error happened, for the access log line. */
export interface ClientErrorContext {
  accessLog: Logger;
  direction: 'inbound' | 'outbound';
  chain: string;
}

/**
 * clientErrorStatus maps a Node HTTP parser error to the status Node itself would answer: 431 for
 * `HPE_HEADER_OVERFLOW` (headers over `maxHeaderSize`), 408 for `ERR_HTTP_REQUEST_TIMEOUT` (`headersTimeout` or
 * `requestTimeout` ran out), 413 for `HPE_CHUNK_EXTENSIONS_OVERFLOW`, 400 for every other parse error.
 */
export function clientErrorStatus(err: NodeJS.ErrnoException): number {
  if (err.code === 'HPE_HEADER_OVERFLOW') return 431;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408;
  if (err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return 413;
  return 400;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  431: 'Request Header Fields Too Large',
};

/**
 * onClientError is an HTTP server's `clientError` handler: a request the parser refused (bad framing, oversize
 * headers, a timeout) is answered with {@link clientErrorStatus} and `Connection: close` when nothing was written
 * yet, the connection is closed, and one access log line records it with Envoy's `DPE` flag (downstream protocol
 * error) and the parser's code as response code details. Nothing after the refused bytes is parsed.
 */
export function onClientError(err: NodeJS.ErrnoException, sock: net.Socket, ctx: ClientErrorContext): void {
  const status = clientErrorStatus(err);
  // As Node's default handler: answer only when no response on this connection has started its headers.
  const pending = (sock as net.Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (err.code !== 'ECONNRESET' && sock.writable && !pending?.headersSent)
    sock.end(
      `HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
    );
  sock.destroySoon();
  ctx.accessLog.info(
    {
      start_time: new Date().toISOString(),
      direction: ctx.direction,
      filter_chain: ctx.chain,
      response_code: status,
      response_flags: 'DPE',
      response_code_details: `http1.codec_error{${err.code ?? 'unknown'}}`,
      downstream_remote_address: sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort ?? 0}` : null,
    },
    'access',
  );
}
