import type net from 'node:net';

/** TLS_HANDSHAKE_RECORD is the first byte of every TLS connection: a handshake record (RFC 8446 §5.1, type 22). */
export const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * inspectTransport is Envoy's `tls_inspector` reduced to what filter chain matching needs: it waits for the
 * first bytes of a connection and reports `tls` when they start a TLS handshake record (0x16), `raw_buffer`
 * otherwise. The bytes read are pushed back (`unshift`) and the socket is left paused, so whoever takes the
 * connection next reads it from the start. Resolves undefined when the peer sends nothing within `timeoutMs`,
 * closes, or errors: the caller then drops the connection.
 */
export function inspectTransport(sock: net.Socket, timeoutMs: number): Promise<'tls' | 'raw_buffer' | undefined> {
  return new Promise((resolve) => {
    const finish = (v: 'tls' | 'raw_buffer' | undefined): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onEnd);
      sock.off('end', onEnd);
      resolve(v);
    };
    const onData = (chunk: Buffer): void => {
      sock.pause();
      sock.unshift(chunk);
      finish(chunk[0] === TLS_HANDSHAKE_RECORD ? 'tls' : 'raw_buffer');
    };
    const onEnd = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onEnd);
    sock.once('end', onEnd);
  });
}
