import type net from 'node:net';
import { DEFAULT_MAX_CLIENT_HELLO_BYTES, parseClientHello, type ClientHelloFailure } from './client-hello.js';

/** PeekOptions bound how long and how much {@link peekClientHello} reads. */
export interface PeekOptions {
  /** timeoutMs is how long the client has to send its whole ClientHello (Envoy's `listener_filters_timeout`, 15 s). */
  timeoutMs: number;
  /** maxHelloBytes bounds the ClientHello message (default {@link DEFAULT_MAX_CLIENT_HELLO_BYTES}). */
  maxHelloBytes?: number;
}

/**
 * PeekResult is what the first bytes of a connection said. On `ok`, `buffered` holds every byte read so far (the
 * ClientHello records and anything after them), to be written upstream first; the socket is paused with no
 * `data` listener left, ready to be piped.
 */
export type PeekResult =
  | { ok: true; serverName: string | undefined; alpn: string[]; buffered: Buffer }
  | { ok: false; reason: ClientHelloFailure | 'timeout' | 'closed'; detail: string };

/**
 * peekClientHello reads a connection's first bytes until they hold a whole TLS ClientHello, without answering it
 * (the TLS session stays end to end: no byte is written to the client). Resolves once: with the SNI and the
 * buffered bytes, or with why the connection is not acceptable (not TLS, malformed, too large, no ClientHello
 * within `timeoutMs`, closed early). Never rejects; the caller closes the socket on failure.
 */
export function peekClientHello(sock: net.Socket, opts: PeekOptions): Promise<PeekResult> {
  const max = opts.maxHelloBytes ?? DEFAULT_MAX_CLIENT_HELLO_BYTES;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (r: PeekResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onClosed);
      sock.off('close', onClosed);
      sock.off('error', onClosed);
      sock.pause();
      resolve(r);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks, size);
      if (chunks.length > 1) chunks.splice(0, chunks.length, all);
      const r = parseClientHello(all, max);
      if (r.state === 'incomplete') return;
      if (r.state === 'error') return finish({ ok: false, reason: r.reason, detail: r.detail });
      finish({ ok: true, serverName: r.serverName, alpn: r.alpn, buffered: all });
    };
    const onClosed = (): void =>
      finish({ ok: false, reason: 'closed', detail: 'connection closed before a ClientHello' });
    const timer = setTimeout(
      () => finish({ ok: false, reason: 'timeout', detail: `no ClientHello within ${opts.timeoutMs} ms` }),
      opts.timeoutMs,
    );
    sock.on('data', onData);
    sock.once('end', onClosed);
    sock.once('close', onClosed);
    sock.once('error', onClosed);
    sock.resume();
  });
}
