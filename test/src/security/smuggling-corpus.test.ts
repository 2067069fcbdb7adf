/**
 * Request smuggling corpus: each case is one connection carrying a request with ambiguous or malformed framing
 * followed by a second request, `GET /smuggled`, hidden where a differently-parsing hop would find it (CL.TE,
 * TE.CL, TE.TE obfuscations, duplicate Content-Length, header injection through obs-fold, bad chunking, a
 * framing error followed by a pipelined request). Against the app's own sidecar (15001, plaintext) and a
 * server sidecar's 15006 (mTLS with a mesh identity), every case must be refused with a 4xx, the connection
 * closed, and the app must see no request at all, so 0 second requests get through. A positive control proves
 * well-framed pipelining still works.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { FIXTURES, LocalMesh, waitUntil, type TestPod } from '../harness.js';
import {
  RecordingBackend,
  issueIdentity,
  mtlsDialer,
  plainDialer,
  rawExchange,
  request,
  type Dialer,
} from './fixture.js';

const HOST = 'reviews:9080';
const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;

function chunk(s: string): string {
  return `${Buffer.byteLength(s, 'latin1').toString(16)}\r\n${s}\r\n`;
}

function post(headers: string, body: string, version = 'HTTP/1.1'): string {
  return `POST /first ${version}\r\nHost: ${HOST}\r\n${headers}\r\n${body}`;
}

/** SMUGGLING_CORPUS maps a case name to the bytes sent on one connection. */
export const SMUGGLING_CORPUS: Record<string, string> = {
  'CL.TE': post(`Content-Length: 6\r\nTransfer-Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.CL': post(`Transfer-Encoding: chunked\r\nContent-Length: 4\r\n`, `${chunk(SMUGGLED)}0\r\n\r\n`),
  'TE.TE xchunked + CL': post(`Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n`, `${chunk(SMUGGLED)}0\r\n\r\n`),
  'TE.TE space before colon': post(
    `Transfer-Encoding : chunked\r\nContent-Length: 4\r\n`,
    `${chunk(SMUGGLED)}0\r\n\r\n`,
  ),
  'TE.TE chunked then x': post(`Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE x then chunked': post(`Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE identity, chunked': post(`Transfer-Encoding: identity, chunked\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE chunked, identity': post(`Transfer-Encoding: chunked, identity\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE vertical tab': post(`Transfer-Encoding:\x0bchunked\r\nContent-Length: 4\r\n`, `${chunk(SMUGGLED)}0\r\n\r\n`),
  'TE.TE NUL': post(`Transfer-Encoding: chunked\x00\r\nContent-Length: 4\r\n`, `${chunk(SMUGGLED)}0\r\n\r\n`),
  'TE.TE quoted': post(`Transfer-Encoding: "chunked"\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE folded value': post(`Transfer-Encoding:\r\n chunked\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE.TE CHUNKED + CL': post(`Transfer-Encoding: CHUNKED\r\nContent-Length: 4\r\n`, `${chunk(SMUGGLED)}0\r\n\r\n`),
  'TE.TE Transfer_Encoding': post(`Content-Length: 5\r\nTransfer_Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`),
  'TE in HTTP/1.0': post(`Transfer-Encoding: chunked\r\n`, `0\r\n\r\n${SMUGGLED}`, 'HTTP/1.0'),
  'duplicate Content-Length, different': post(`Content-Length: 5\r\nContent-Length: 40\r\n`, `hello${SMUGGLED}`),
  'duplicate Content-Length, same': post(`Content-Length: 5\r\nContent-Length: 5\r\n`, `hello${SMUGGLED}`),
  'Content-Length list': post(`Content-Length: 5, 40\r\n`, `hello${SMUGGLED}`),
  'Content-Length +5': post(`Content-Length: +5\r\n`, `hello${SMUGGLED}`),
  'Content-Length_ alias': post(`Content-Length: 40\r\nContent_Length: 5\r\n`, `hello${SMUGGLED}`),
  'obs-fold injects Transfer-Encoding': post(
    `X-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 4\r\n`,
    `${chunk(SMUGGLED)}0\r\n\r\n`,
  ),
  'obs-fold injects Host': `GET /first HTTP/1.1\r\nHost: ${HOST}\r\nX-A: b\r\n\tHost: evil\r\n\r\n${SMUGGLED}`,
  'bare LF line endings': `POST /first HTTP/1.1\nHost: ${HOST}\nTransfer-Encoding: chunked\nContent-Length: 4\n\n${chunk(SMUGGLED)}0\r\n\r\n`,
  'bare CR in a header': `GET /first HTTP/1.1\r\nHost: ${HOST}\rX: y\r\n\r\n${SMUGGLED}`,
  'chunk size not hex': post(`Transfer-Encoding: chunked\r\n`, `zz\r\n${SMUGGLED}\r\n0\r\n\r\n`),
  'chunk size 0x prefix': post(`Transfer-Encoding: chunked\r\n`, `0x2c\r\n${SMUGGLED}\r\n0\r\n\r\n`),
  'chunk data overruns its size': post(`Transfer-Encoding: chunked\r\n`, `3\r\nabc${SMUGGLED}\r\n0\r\n\r\n`),
  'chunk size overflow': post(`Transfer-Encoding: chunked\r\n`, `FFFFFFFFFFFFFFFFF1\r\n${SMUGGLED}\r\n0\r\n\r\n`),
  'chunk lines with bare LF': post(`Transfer-Encoding: chunked\r\n`, `2c\n${SMUGGLED}\n0\n\n`),
  'duplicate Host, then a pipelined request': `GET /first HTTP/1.1\r\nHost: ${HOST}\r\nHost: other\r\n\r\n${SMUGGLED}`,
  'HTTP/2.0 over the HTTP/1 parser, then a pipelined request': `GET /first HTTP/2.0\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}`,
  'too many headers, then a pipelined request': `GET /first HTTP/1.1\r\nHost: ${HOST}\r\n${Array.from({ length: 120 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n${SMUGGLED}`,
};

/**
 * BODY_ERROR_CASES have valid headers and a body that turns out malformed: a streaming proxy may already have
 * passed the first request's headers on (as Envoy does); the app must then see that request aborted, never
 * completed, and never the smuggled one.
 */
const BODY_ERROR_CASES = new Set([
  'chunk size not hex',
  'chunk size 0x prefix',
  'chunk data overruns its size',
  'chunk size overflow',
  'chunk lines with bare LF',
]);

const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;
let app: RecordingBackend;
const entries: { name: string; dial: () => Dialer }[] = [];

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
  });
  app = await RecordingBackend.start(reviews.ip, 9080, reviews.name);
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  const id = await issueIdentity(mesh, 'default', 'sleep');
  entries.push(
    { name: "the app's sidecar (15001, plaintext)", dial: () => plainDialer(sleep.ip, 15001) },
    {
      name: "the server sidecar's 15006 (mTLS)",
      dial: () => mtlsDialer(reviews.ip, 15006, 'outbound_.9080_._.reviews.default.svc.cluster.local', id),
    },
  );
  await waitUntil(async () => (await request(`${sleep.ip}:15001`, HOST, '/ready')).status === 200, 20_000, 'route');
});
after(async () => {
  await app?.close();
  await mesh.close();
});

async function runCorpus(ctx: TestContext, dial: Dialer): Promise<void> {
  const failures: string[] = [];
  const answers = new Map<string, number>();
  for (const [name, bytes] of Object.entries(SMUGGLING_CORPUS)) {
    const before = app.count;
    const r = await rawExchange(dial, bytes, { responses: 2, quietMs: 500 });
    const first = r.statuses[0] ?? 0;
    answers.set(String(first || 'none'), (answers.get(String(first || 'none')) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, BODY_ERROR_CASES.has(name) ? 500 : 0));
    const seen = app.requests.slice(before);
    const reached = seen.map((x) => x.url);
    if (reached.includes('/smuggled')) failures.push(`${name}: the smuggled request reached the app`);
    else if (seen.some((x) => x.complete)) failures.push(`${name}: the app got a complete request`);
    else if (reached.length > 0 && !BODY_ERROR_CASES.has(name))
      failures.push(`${name}: the app saw ${JSON.stringify(reached)}`);
    else if (first < 400 || first > 499) failures.push(`${name}: answered ${first || 'nothing'}, want a 4xx`);
    else if (r.statuses.length > 1) failures.push(`${name}: answered ${r.statuses.length} responses`);
    else if (!r.closed) failures.push(`${name}: connection left open`);
  }
  ctx.diagnostic(`first answers: ${[...answers].map(([s, n]) => `${s}×${n}`).join(', ')}`);
  assert.deepEqual(failures, []);
}

describe('request smuggling corpus', () => {
  it(`${Object.keys(SMUGGLING_CORPUS).length} cases through the app's sidecar: refused, closed, 0 second requests`, (ctx) =>
    runCorpus(ctx, entries[0]?.dial() ?? assert.fail('no entry')));

  it(`${Object.keys(SMUGGLING_CORPUS).length} cases over mTLS to the server sidecar: refused, closed, 0 second requests`, (ctx) =>
    runCorpus(ctx, entries[1]?.dial() ?? assert.fail('no entry')));

  it('control: well-framed chunked and Content-Length requests pipelined on one connection all reach the app', async () => {
    for (const e of entries) {
      const before = app.count;
      const bytes =
        post('Transfer-Encoding: chunked\r\n', `${chunk('hello')}0\r\n\r\n`) +
        post('Content-Length: 5\r\n', 'hello') +
        `GET /third HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`;
      const r = await rawExchange(e.dial(), bytes, { responses: 3 });
      assert.deepEqual(r.statuses, [200, 200, 200], e.name);
      // Pipelined requests are forwarded concurrently (pooled or multiplexed upstreams), so their arrival order at
      // the app is not defined; every one of them must arrive, and nothing else.
      assert.deepEqual(
        app.requests
          .slice(before)
          .map((x) => x.url)
          .sort(),
        ['/first', '/first', '/third'],
        e.name,
      );
    }
  });
});
