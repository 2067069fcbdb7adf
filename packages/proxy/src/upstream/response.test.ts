/**
 * H2UpstreamResponse against a real HTTP/2 server: bodies and trailers arrive, a response cut short resets its
 * stream, and a completed one never does (a RST_STREAM per completed stream made nghttp2 end the session with
 * INTERNAL_ERROR after about 1,000 of them, its stream-reset rate limit).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { H2UpstreamResponse } from './response.js';

let server: http2.Http2Server;
let client: http2.ClientHttp2Session;
let serverResets = 0;

before(async () => {
  server = http2.createServer((req, res) => {
    req.resume();
    if (req.url === '/slow') return void res.write('partial');
    res.writeHead(200, { 'content-type': 'application/grpc' });
    res.write('x'.repeat(400));
    setImmediate(() => {
      res.addTrailers({ 'grpc-status': '0' });
      res.end('y');
    });
  });
  server.on('stream', (s) => s.once('aborted', () => serverResets++));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.on('error', () => undefined);
});

after(async () => {
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

function fetchOne(path = '/'): Promise<{ res: H2UpstreamResponse; body: number }> {
  return new Promise((resolve, reject) => {
    const st = client.request({ ':path': path }, { endStream: true });
    st.on('error', reject);
    st.once('response', (h, flags) => {
      const res = new H2UpstreamResponse(st, h, (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0);
      let body = 0;
      res.pipe(new Writable({ write: (c: Buffer, _e, cb) => ((body += c.length), cb()) }));
      res.on('end', () => resolve({ res, body }));
      res.on('error', reject);
    });
  });
}

test('2,400 responses over one session: bodies and trailers arrive, the session is never ended', async () => {
  let goaway: number | undefined;
  client.on('goaway', (code: number) => (goaway = code));
  let n = 0;
  for (let i = 0; i < 300; i++) {
    const batch = await Promise.all(Array.from({ length: 8 }, () => fetchOne()));
    for (const { res, body } of batch) {
      assert.equal(res.statusCode, 200);
      assert.equal(body, 401);
      assert.equal(res.trailers['grpc-status'], '0');
      n++;
    }
  }
  assert.equal(n, 2400);
  assert.equal(goaway, undefined);
  assert.equal(client.destroyed, false);
  assert.equal(serverResets, 0);
});

test('destroying a response before its end resets the stream (RST_STREAM CANCEL)', async () => {
  const before = serverResets;
  const rstCode = await new Promise<number | undefined>((resolve) => {
    const st = client.request({ ':path': '/slow' }, { endStream: true });
    st.on('error', () => undefined);
    st.once('response', (h) => {
      const res = new H2UpstreamResponse(st, h, false);
      res.once('data', () => {
        res.destroy();
        st.once('close', () => resolve(st.rstCode));
      });
    });
  });
  assert.equal(rstCode, http2.constants.NGHTTP2_CANCEL);
  for (let i = 0; i < 100 && serverResets === before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(serverResets, before + 1);
});
