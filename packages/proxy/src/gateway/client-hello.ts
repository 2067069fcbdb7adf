/**
 * A bounded parser of the TLS ClientHello, enough to route a connection by SNI without terminating TLS: what
 * Envoy's `envoy.filters.listener.tls_inspector` does (source/extensions/filters/listener/tls_inspector), written
 * against RFC 8446 §4.1.2 (ClientHello), §5.1 (record layer) and RFC 6066 §3 (server_name).
 */

/** TLS_MAX_RECORD_BYTES is the largest TLSPlaintext fragment a peer may send (2^14, RFC 8446 §5.1). */
export const TLS_MAX_RECORD_BYTES = 16_384;

/** DEFAULT_MAX_CLIENT_HELLO_BYTES bounds the ClientHello handshake message (Envoy's tls_inspector reads at most 64 KiB; 16 KiB covers post-quantum key shares). */
export const DEFAULT_MAX_CLIENT_HELLO_BYTES = 16_384;

/** ClientHelloFailure names why bytes are not an acceptable ClientHello (a stable value for logs and metrics). */
export type ClientHelloFailure =
  | 'not_tls'
  | 'record_too_large'
  | 'client_hello_too_large'
  | 'not_client_hello'
  | 'malformed'
  | 'bad_server_name'
  | 'duplicate_extension';

/**
 * ClientHelloResult is the outcome of parsing the first bytes of a connection:
 * - `incomplete`: a valid prefix of a ClientHello; read more bytes;
 * - `done`: a whole ClientHello; `serverName` is its `host_name` (lowercased) if it sent one, `alpn` its ALPN
 *   protocols, `bytes` how many bytes of input the records holding it took;
 * - `error`: not an acceptable ClientHello, with `reason`.
 */
export type ClientHelloResult =
  | { state: 'incomplete' }
  | { state: 'done'; serverName: string | undefined; alpn: string[]; bytes: number }
  | { state: 'error'; reason: ClientHelloFailure; detail: string };

const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const HOST_NAME_RE = /^[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$/;

class Malformed extends Error {
  constructor(
    readonly reason: ClientHelloFailure,
    message: string,
  ) {
    super(message);
  }
}

/** A cursor over the handshake body that throws {@link Malformed} instead of reading past its end. */
class Reader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly end = buf.length,
  ) {}

  remaining(): number {
    return this.end - this.pos;
  }

  skip(n: number, what: string): void {
    if (n > this.remaining()) throw new Malformed('malformed', `${what} runs past the ClientHello`);
    this.pos += n;
  }

  u8(what: string): number {
    if (this.remaining() < 1) throw new Malformed('malformed', `${what} runs past the ClientHello`);
    return this.buf.readUInt8(this.pos++);
  }

  u16(what: string): number {
    if (this.remaining() < 2) throw new Malformed('malformed', `${what} runs past the ClientHello`);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  /** sub returns a reader over the next `n` bytes and advances past them. */
  sub(n: number, what: string): Reader {
    if (n > this.remaining()) throw new Malformed('malformed', `${what} runs past the ClientHello`);
    const r = new Reader(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return r;
  }

  bytes(n: number, what: string): Buffer {
    if (n > this.remaining()) throw new Malformed('malformed', `${what} runs past the ClientHello`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}

/**
 * collectHandshake walks the TLS records at the start of `input` and concatenates their handshake fragments until
 * the first handshake message is whole. Returns the message (header included) and the input bytes it took, or
 * `undefined` when more input is needed. Throws {@link Malformed} on a bad record or an oversized message.
 */
function collectHandshake(input: Buffer, maxHelloBytes: number): { message: Buffer; bytes: number } | undefined {
  const fragments: Buffer[] = [];
  let have = 0;
  let pos = 0;
  let want: number | undefined;
  while (pos + 5 <= input.length) {
    const type = input.readUInt8(pos);
    const major = input.readUInt8(pos + 1);
    const minor = input.readUInt8(pos + 2);
    const len = input.readUInt16BE(pos + 3);
    if (type !== CONTENT_HANDSHAKE) throw new Malformed('not_tls', `record content type ${type}, want 22 (handshake)`);
    if (major !== 3 || minor > 4) throw new Malformed('not_tls', `record version ${major}.${minor}`);
    if (len === 0) throw new Malformed('malformed', 'empty handshake record');
    if (len > TLS_MAX_RECORD_BYTES) throw new Malformed('record_too_large', `record of ${len} bytes > 2^14`);
    const partial = pos + 5 + len > input.length;
    const frag = input.subarray(pos + 5, Math.min(pos + 5 + len, input.length));
    // Check the handshake header as soon as its four bytes are here, even in a record still arriving.
    if (want === undefined && have + frag.length >= 4)
      want = handshakeLength(Buffer.concat([...fragments, frag]), maxHelloBytes);
    if (partial) return undefined;
    fragments.push(frag);
    have += len;
    pos += 5 + len;
    if (want !== undefined && have >= want) return { message: Buffer.concat(fragments).subarray(0, want), bytes: pos };
    if (have > maxHelloBytes + 4)
      throw new Malformed('client_hello_too_large', `more than ${maxHelloBytes} bytes of handshake`);
  }
  // Reject a bad first record header as soon as its first bytes arrive, not after waiting for five.
  if (pos < input.length) {
    const type = input.readUInt8(pos);
    if (type !== CONTENT_HANDSHAKE) throw new Malformed('not_tls', `record content type ${type}, want 22 (handshake)`);
    if (pos + 1 < input.length && input.readUInt8(pos + 1) !== 3)
      throw new Malformed('not_tls', `record version ${input.readUInt8(pos + 1)}.x`);
  }
  return undefined;
}

/** handshakeLength checks the first handshake header (a ClientHello within the limit) and returns its total size. */
function handshakeLength(head: Buffer, maxHelloBytes: number): number {
  if (head.readUInt8(0) !== HANDSHAKE_CLIENT_HELLO)
    throw new Malformed('not_client_hello', `handshake type ${head.readUInt8(0)}, want 1 (ClientHello)`);
  const len = head.readUIntBE(1, 3);
  if (len > maxHelloBytes)
    throw new Malformed('client_hello_too_large', `ClientHello of ${len} bytes > ${maxHelloBytes}`);
  return 4 + len;
}

function parseServerName(r: Reader): string {
  const list = r.sub(r.u16('server_name list length'), 'server_name list');
  let name: string | undefined;
  while (list.remaining() > 0) {
    const type = list.u8('server_name type');
    const value = list.bytes(list.u16('server_name length'), 'server_name');
    if (type !== 0) continue; // only host_name (0) is defined; skip others as RFC 6066 allows
    if (name !== undefined) throw new Malformed('bad_server_name', 'more than one host_name');
    if (value.length === 0 || value.length > 255)
      throw new Malformed('bad_server_name', `host_name of ${value.length} bytes`);
    const text = value.toString('latin1').toLowerCase();
    if (!HOST_NAME_RE.test(text)) throw new Malformed('bad_server_name', 'host_name is not a DNS name');
    name = text;
  }
  if (name === undefined) throw new Malformed('bad_server_name', 'server_name extension without a host_name');
  return name;
}

function parseAlpn(r: Reader): string[] {
  const list = r.sub(r.u16('ALPN list length'), 'ALPN list');
  const out: string[] = [];
  while (list.remaining() > 0) {
    const p = list.bytes(list.u8('ALPN protocol length'), 'ALPN protocol');
    if (p.length === 0) throw new Malformed('malformed', 'empty ALPN protocol');
    out.push(p.toString('latin1'));
  }
  return out;
}

function parseBody(message: Buffer): { serverName: string | undefined; alpn: string[] } {
  const r = new Reader(message);
  r.skip(4, 'handshake header');
  r.skip(2, 'legacy_version');
  r.skip(32, 'random');
  const sessionId = r.u8('session_id length');
  if (sessionId > 32) throw new Malformed('malformed', `session_id of ${sessionId} bytes > 32`);
  r.skip(sessionId, 'session_id');
  const suites = r.u16('cipher_suites length');
  if (suites < 2 || suites % 2 !== 0) throw new Malformed('malformed', `cipher_suites of ${suites} bytes`);
  r.skip(suites, 'cipher_suites');
  const compression = r.u8('compression_methods length');
  if (compression < 1) throw new Malformed('malformed', 'no compression method');
  r.skip(compression, 'compression_methods');
  let serverName: string | undefined;
  let alpn: string[] = [];
  if (r.remaining() === 0) return { serverName, alpn }; // no extensions (TLS 1.0-1.2 allow it)
  const exts = r.sub(r.u16('extensions length'), 'extensions');
  if (r.remaining() !== 0) throw new Malformed('malformed', 'bytes after the extensions');
  const seen = new Set<number>();
  while (exts.remaining() > 0) {
    const type = exts.u16('extension type');
    const body = exts.sub(exts.u16('extension length'), `extension ${type}`);
    if (seen.has(type)) throw new Malformed('duplicate_extension', `extension ${type} appears twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      serverName = parseServerName(body);
      if (body.remaining() !== 0) throw new Malformed('malformed', 'bytes after the server_name list');
    } else if (type === EXT_ALPN) {
      alpn = parseAlpn(body);
      if (body.remaining() !== 0) throw new Malformed('malformed', 'bytes after the ALPN list');
    }
  }
  return { serverName, alpn };
}

/**
 * parseClientHello inspects the first bytes a client sent. It never reads past `input`, allocates at most the
 * ClientHello itself, and refuses records over 2^14 bytes and ClientHellos over `maxHelloBytes` (default
 * {@link DEFAULT_MAX_CLIENT_HELLO_BYTES}). A ClientHello split over several records is reassembled. Pure: call it
 * again with more bytes while it answers `incomplete`.
 */
export function parseClientHello(
  input: Buffer,
  maxHelloBytes: number = DEFAULT_MAX_CLIENT_HELLO_BYTES,
): ClientHelloResult {
  try {
    const hs = collectHandshake(input, maxHelloBytes);
    if (!hs) return { state: 'incomplete' };
    const { serverName, alpn } = parseBody(hs.message);
    return { state: 'done', serverName, alpn, bytes: hs.bytes };
  } catch (err) {
    if (err instanceof Malformed) return { state: 'error', reason: err.reason, detail: err.message };
    throw err;
  }
}
