/**
 * DownstreamHttp2 behind a real TCP listener: a request whose stream nghttp2 resets because its content-length
 * disagrees with its DATA frames never ends (Node's compat request would emit 'end' after 'aborted'), so whatever
 * it is piped into is never ended as if the body were whole; a well-framed request still ends.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { DownstreamHttp2 } from './h2-server.js';
import { DEFAULT_HTTP2_LIMITS } from './limits.js';

/** Seen is what the handler observed of one request: body bytes piped on, and whether the sink was ended. */
interface Seen {
  bytes: number;
  sinkEnded: boolean;
  reqEnded: boolean;
  closed: Promise<void>;
}

const seen = new Map<string, Seen>();
const h2 = new DownstreamHttp2(
  (req: http.IncomingMessage) => {
    let closed!: () => void;
    const s: Seen = { bytes: 0, sinkEnded: false, reqEnded: false, closed: new Promise((r) => (closed = r)) };
    seen.set(req.url ?? '', s);
    req.once('end', () => (s.reqEnded = true));
    req.once('close', () => setTimeout(closed, 50)); // 'end' would follow 'close' within a tick or two
    req.pipe(
      new Writable({
        write(c: Buffer, _e, cb) {
          s.bytes += c.length;
          cb();
        },
        final(cb) {
          s.sinkEnded = true;
          cb();
        },
      }),
    );
  },
  { limits: DEFAULT_HTTP2_LIMITS, firstStreamTimeoutMs: 10_000 },
);
const listener = net.createServer((sock) => h2.accept(sock));
let client: http2.ClientHttp2Session;

before(async () => {
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  client = http2.connect(`http://127.0.0.1:${(listener.address() as net.AddressInfo).port}`);
  client.on('error', () => undefined);
});

after(async () => {
  client.destroy();
  h2.close();
  await new Promise<void>((r) => listener.close(() => r()));
});

/** post sends a body with the content-length given and resolves with how the stream ended (its rstCode). */
function post(path: string, contentLength: number, body: string): Promise<number> {
  return new Promise((resolve) => {
    const s = client.request({ ':method': 'POST', ':path': path, 'content-length': String(contentLength) });
    s.on('error', () => undefined);
    s.on('close', () => resolve(s.rstCode ?? 0));
    s.resume();
    s.end(body);
  });
}

test('a stream reset for a content-length longer than its DATA: the request never ends, its sink is never ended', async () => {
  const rst = await post('/short', 200, 'GET /smuggled HTTP/1.1\r\n\r\n');
  assert.equal(rst, http2.constants.NGHTTP2_PROTOCOL_ERROR);
  const s = seen.get('/short');
  assert.ok(s, 'the handler saw the request');
  await s.closed;
  assert.equal(s.bytes, 26, 'the DATA received before the reset was passed on');
  assert.equal(s.reqEnded, false, "no 'end' after the reset");
  assert.equal(s.sinkEnded, false, 'the truncated body is never ended as whole');
});

test('a stream reset for DATA beyond its content-length: the request never ends', async () => {
  const rst = await post('/long', 5, 'helloGET /smuggled HTTP/1.1\r\n\r\n');
  assert.equal(rst, http2.constants.NGHTTP2_PROTOCOL_ERROR);
  const s = seen.get('/long');
  assert.ok(s);
  await s.closed;
  assert.equal(s.reqEnded, false);
  assert.equal(s.sinkEnded, false);
});

test('a well-framed request body ends and its sink is ended', async () => {
  // The handler never answers, so the stream stays open after the body: wait for the sink rather than the stream.
  const s = client.request({ ':method': 'POST', ':path': '/ok', 'content-length': '5' });
  s.on('error', () => undefined);
  s.end('hello');
  const deadline = Date.now() + 5_000;
  while (!seen.get('/ok')?.sinkEnded && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const got = seen.get('/ok');
  assert.deepEqual([got?.bytes, got?.reqEnded, got?.sinkEnded], [5, true, true]);
  s.close(http2.constants.NGHTTP2_CANCEL);
});
