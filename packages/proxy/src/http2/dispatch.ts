/**
 * Codec selection for an HTTP connection manager whose `codec_type` is AUTO (Envoy's default): a TLS connection
 * uses the protocol ALPN negotiated (`h2` or `http/1.1`); a plaintext connection, or a TLS one without an HTTP
 * ALPN result, is HTTP/2 when it opens with the client connection preface (h2c with prior knowledge) and
 * HTTP/1.1 otherwise.
 */
import type http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import type { HcmCodec } from './chain-codecs.js';
import type { DownstreamHttp2 } from './h2-server.js';

/** H2_PREFACE is the HTTP/2 client connection preface (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** HTTP_ALPN are the application protocols the proxy speaks over TLS, in its order of preference. */
export const HTTP_ALPN: readonly string[] = ['h2', 'http/1.1'];

/**
 * selectAlpn is a TLS server's ALPN choice (Node's `ALPNCallback`): the first protocol of `serverProtocols` (the
 * filter chain's `alpn_protocols`; {@link HTTP_ALPN} when it has none) that the proxy implements and the client
 * offers. When there is none (a client offering only Istio's `istio-peer-exchange`/`istio` markers), Envoy
 * acknowledges no protocol and goes on; Node must name one of the client's, so the client's own `istio` marker
 * (else its first protocol) is returned: it selects nothing in the proxy, whose codec is then chosen by preface.
 */
export function selectAlpn(serverProtocols: readonly string[] | undefined, offered: readonly string[]): string {
  const mine = serverProtocols && serverProtocols.length > 0 ? serverProtocols : HTTP_ALPN;
  for (const p of mine) if (HTTP_ALPN.includes(p) && offered.includes(p)) return p;
  return offered.includes('istio') ? 'istio' : (offered[0] ?? 'http/1.1');
}

/**
 * sniffPreface waits for a connection's first bytes: `h2` when they start the HTTP/2 preface (`PRI `), `http1`
 * otherwise, undefined when nothing arrives within `timeoutMs` or the peer leaves. The bytes read are pushed
 * back and the socket is left paused, so the chosen server reads the connection from its start.
 */
export function sniffPreface(sock: net.Socket, timeoutMs: number): Promise<'h2' | 'http1' | undefined> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const finish = (v: 'h2' | 'http1' | undefined): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onEnd);
      sock.off('end', onEnd);
      sock.pause();
      if (buf.length > 0) sock.unshift(buf);
      resolve(v);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const n = Math.min(buf.length, 4);
      if (!buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return finish('http1');
      if (n === 4) finish('h2');
    };
    const onEnd = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onEnd);
    sock.once('end', onEnd);
    sock.resume();
  });
}

/** HttpChainServers are a filter chain's two codecs, the HTTP/1 server and the HTTP/2 server, and its `codec_type`. */
export interface HttpChainServers {
  http: http.Server;
  h2: DownstreamHttp2;
  codec: HcmCodec;
}

/**
 * serveHttpConnection hands an accepted connection to the codec it speaks (see the module comment; a chain whose
 * `codec_type` is HTTP1 or HTTP2 takes only that one). A connection that sends nothing within `sniffTimeoutMs` is
 * closed. For TLS connections `sock` is the TLS socket, after the
 * handshake and the peer checks.
 */
export function serveHttpConnection(servers: HttpChainServers, sock: net.Socket, sniffTimeoutMs: number): void {
  const alpn = (sock as Partial<tls.TLSSocket>).alpnProtocol;
  if (servers.codec === 'HTTP2' || (servers.codec === 'AUTO' && alpn === 'h2')) return servers.h2.accept(sock);
  if (servers.codec === 'HTTP1' || alpn === 'http/1.1') {
    servers.http.emit('connection', sock);
    if (sock.isPaused()) sock.resume(); // paused by a tls_inspector peek
    return;
  }
  void sniffPreface(sock, sniffTimeoutMs).then((kind) => {
    if (kind === undefined) return void sock.destroy();
    if (kind === 'h2') return servers.h2.accept(sock);
    servers.http.emit('connection', sock);
    sock.resume();
  });
}
