/**
 * A raw HTTP/2 client for the security suites: it writes the client preface, SETTINGS and one request stream whose
 * header block holds exactly the fields it is given, in order and byte for byte (HPACK literals without Huffman
 * coding, from `hpack.js`), so tests can send what Node's `http2` client refuses or rewrites: uppercase or
 * repeated pseudo-headers, a `:path` without its leading slash, connection-specific headers, CR/LF or NUL in
 * values, a `content-length` that disagrees with the DATA frames. It reads back the frames of that stream and
 * reports how it ended: a response (`:status`), RST_STREAM or GOAWAY with its error code, or the connection closing.
 */
import type net from 'node:net';
import type tls from 'node:tls';
import hpack from 'hpack.js';
import type { Dialer } from './fixture.js';

/** H2Field is one header field as it goes on the wire: name and value in latin1, one octet per character. */
export type H2Field = readonly [name: string, value: string];

/**
 * H2Request is one stream: its header fields, then optional DATA frames, then an optional trailer block;
 * `endStream: false` leaves it open.
 */
export interface H2Request {
  fields: readonly H2Field[];
  data?: readonly (string | Buffer)[];
  trailers?: readonly H2Field[];
  /** endStream: the last frame (HEADERS, the last DATA or the trailers) carries END_STREAM (default true). */
  endStream?: boolean;
}

/**
 * H2Answer is how the stream ended. `outcome` is `response` (the stream ended with a response), `RST_STREAM <code>`,
 * `GOAWAY <code>`, `closed` (the connection closed first) or `timeout`. `status` is the response's `:status` (0: no
 * response headers came). `alpn` is the protocol TLS negotiated (undefined for plaintext).
 */
export interface H2Answer {
  outcome: string;
  status: number;
  headers: Record<string, string>;
  body: string;
  alpn: string | false | undefined;
}

/** H2_ERROR_CODES names the HTTP/2 error codes (RFC 9113 §7). */
export const H2_ERROR_CODES: readonly string[] = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const STREAM = 1;

/** frame encodes one HTTP/2 frame (RFC 9113 §4.1). */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/**
 * encodeHeaderBlock HPACK-encodes fields as literals never indexed, names and values as they are (no Huffman, no
 * lowercasing, no table lookups), so the peer decodes exactly these octets.
 */
export function encodeHeaderBlock(fields: readonly H2Field[]): Buffer {
  const c = hpack.compressor.create({ table: { maxSize: 4096 } });
  c.write(fields.map(([name, value]) => ({ name, value, huffman: false, neverIndex: true })));
  return c.read() ?? Buffer.alloc(0);
}

function errorName(code: number): string {
  return H2_ERROR_CODES[code] ?? `0x${code.toString(16)}`;
}

/** requestFrames are the frames of stream 1 for a request. */
function requestFrames(req: H2Request): Buffer[] {
  const data = (req.data ?? []).map((d) => (typeof d === 'string' ? Buffer.from(d, 'latin1') : d));
  const trailers = req.trailers;
  const end = req.endStream !== false && !trailers;
  const out = [
    frame(HEADERS, END_HEADERS | (end && data.length === 0 ? END_STREAM : 0), STREAM, encodeHeaderBlock(req.fields)),
  ];
  data.forEach((d, i) => out.push(frame(DATA, end && i === data.length - 1 ? END_STREAM : 0, STREAM, d)));
  if (trailers)
    out.push(
      frame(HEADERS, END_HEADERS | (req.endStream !== false ? END_STREAM : 0), STREAM, encodeHeaderBlock(trailers)),
    );
  return out;
}

/**
 * h2Exchange opens a connection with `dial` (plaintext h2c with prior knowledge, or TLS that negotiated `h2`),
 * sends one request on stream 1 and resolves with how that stream ended, or `timeout` after `timeoutMs`.
 */
export function h2Exchange(dial: Dialer, req: H2Request, opts: { timeoutMs?: number } = {}): Promise<H2Answer> {
  const { timeoutMs = 10_000 } = opts;
  return new Promise((resolve) => {
    const decomp = hpack.decompressor.create({ table: { maxSize: 4096 } });
    const headers: Record<string, string> = {};
    let status = 0;
    let body = '';
    let buf: Buffer = Buffer.alloc(0);
    let block: Buffer[] | undefined;
    let blockEnds = false;
    let done = false;
    const finish = (outcome: string): void => {
      if (done) return;
      done = true;
      clearTimeout(limit);
      const alpn = (sock as Partial<tls.TLSSocket>).alpnProtocol ?? undefined;
      sock.destroy();
      resolve({ outcome, status, headers, body, alpn });
    };
    const onHeaderBlock = (parts: Buffer[], ends: boolean): void => {
      try {
        decomp.write(Buffer.concat(parts));
        decomp.execute();
      } catch (err) {
        return finish(`undecodable header block: ${String(err)}`);
      }
      for (let f = decomp.read(); f; f = decomp.read()) {
        if (f.name === ':status' && status === 0) status = Number(f.value);
        else headers[f.name] = f.value;
      }
      if (ends) finish('response');
    };
    const onFrame = (type: number, flags: number, id: number, payload: Buffer): void => {
      if (type === SETTINGS && id === 0 && !(flags & ACK)) sock.write(frame(SETTINGS, ACK, 0));
      else if (type === PING && !(flags & ACK)) sock.write(frame(PING, ACK, 0, payload));
      else if (type === GOAWAY) {
        const last = payload.readUInt32BE(0) & 0x7fffffff;
        const code = payload.readUInt32BE(4);
        if (code !== 0 || last < STREAM) finish(`GOAWAY ${errorName(code)}`);
      } else if (id !== STREAM) return;
      else if (type === RST_STREAM) finish(`RST_STREAM ${errorName(payload.readUInt32BE(0))}`);
      else if (type === HEADERS) {
        let p = payload;
        if (flags & PADDED) p = p.subarray(1, p.length - (p[0] ?? 0));
        if (flags & PRIORITY) p = p.subarray(5);
        block = [p];
        blockEnds = (flags & END_STREAM) !== 0;
        if (flags & END_HEADERS) onHeaderBlock(block, blockEnds);
      } else if (type === CONTINUATION && block) {
        block.push(payload);
        if (flags & END_HEADERS) onHeaderBlock(block, blockEnds);
      } else if (type === DATA) {
        const p = flags & PADDED ? payload.subarray(1, payload.length - (payload[0] ?? 0)) : payload;
        body += p.toString('latin1');
        if (flags & END_STREAM) finish('response');
      }
    };
    const sock: net.Socket = dial(() =>
      sock.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), ...requestFrames(req)])),
    );
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (!done && buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        onFrame(buf.readUInt8(3), buf.readUInt8(4), buf.readUInt32BE(5) & 0x7fffffff, buf.subarray(9, 9 + len));
        buf = buf.subarray(9 + len);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => finish('closed'));
    const limit = setTimeout(() => finish('timeout'), timeoutMs);
  });
}
