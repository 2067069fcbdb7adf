/**
 * Request smuggling corpus: each case is one connection carrying a request with ambiguous or malformed framing
 * followed by a second request, `GET /smuggled`, hidden where a differently-parsing hop would find it (CL.TE,
 * TE.CL, TE.TE obfuscations, duplicate Content-Length, header injection through obs-fold, bad chunking, a
 * framing error followed by a pipelined request). Against the app's own sidecar (15001, plaintext) and a
 * server sidecar's 15006 (mTLS with a mesh identity), every case must be refused with a 4xx, the connection
 * closed, and the app must see no request at all, so 0 second requests get through. A positive control proves
 * well-framed pipelining still works.
 *
 * HTTP/2 downgrade corpus: the app's hop is HTTP/1.1 (the inbound sidecar forwards to the app over HTTP/1.1), so a
 * request that came in over HTTP/2, h2c to the app's sidecar's 15001 (then HTTP/2 between the sidecars) or h2 by
 * ALPN over mTLS to 15006, is re-framed as HTTP/1.1. H2_SMUGGLING_CORPUS sends, with the raw client of `h2-raw.ts`,
 * what would smuggle `GET /smuggled` across that downgrade: a `content-length` that disagrees with the DATA frames
 * (H2.CL), `transfer-encoding` in HTTP/2 (H2.TE), connection-specific headers, CR, LF or NUL in header values,
 * names and pseudo-headers (H2.CRLF), framing fields in request trailers. 0 second requests may reach the app: it
 * must never see `/smuggled`, nor a field with CR, LF or NUL, nor a complete request whose framing was ambiguous;
 * and a request sent through the same entry afterwards must arrive intact (no upstream connection left with half
 * a body). Node's HTTP/2 binding ignores a regular field whose name or value is invalid (its nghttp2
 * on_invalid_header callback returns 0), where RFC 9113 §8.2.1 calls the request malformed: such a request reaches
 * the app without the field, and those cases (FIELD_DROPPED) check exactly that.
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
  type Recorded,
} from './fixture.js';
import { h2Exchange, type H2Field, type H2Request } from './h2-raw.js';

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

const h2Post = (extra: H2Field[] = [], pseudo: Partial<Record<string, string>> = {}): H2Field[] => [
  [':method', pseudo[':method'] ?? 'POST'],
  [':scheme', 'http'],
  [':authority', pseudo[':authority'] ?? HOST],
  [':path', pseudo[':path'] ?? '/first'],
  ...extra,
];

/** H2_SMUGGLING_CORPUS maps a case name to the HTTP/2 stream sent for it. */
export const H2_SMUGGLING_CORPUS: Record<string, H2Request> = {
  'H2.CL content-length 0 with a body': { fields: h2Post([['content-length', '0']]), data: [SMUGGLED] },
  'H2.CL content-length shorter than DATA': { fields: h2Post([['content-length', '5']]), data: [`hello${SMUGGLED}`] },
  'H2.CL overrun in a second DATA frame': {
    fields: h2Post([['content-length', '5']]),
    data: ['hel', `lo${SMUGGLED}`],
  },
  'H2.CL content-length longer than DATA': { fields: h2Post([['content-length', '200']]), data: [SMUGGLED] },
  'H2.CL content-length +5': { fields: h2Post([['content-length', '+5']]), data: [`hello${SMUGGLED}`] },
  'H2.CL content-length list': { fields: h2Post([['content-length', '5, 5']]), data: [`hello${SMUGGLED}`] },
  'H2.CL two content-length': {
    fields: h2Post([
      ['content-length', '5'],
      ['content-length', '48'],
    ]),
    data: [`hello${SMUGGLED}`],
  },
  'H2.TE transfer-encoding chunked': {
    fields: h2Post([['transfer-encoding', 'chunked']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'H2.TE transfer-encoding with content-length': {
    fields: h2Post([
      ['content-length', '48'],
      ['transfer-encoding', 'chunked'],
    ]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'H2.TE Transfer-Encoding (uppercase name)': {
    fields: h2Post([['Transfer-Encoding', 'chunked']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'te: chunked': { fields: h2Post([['te', 'chunked']]), data: [`0\r\n\r\n${SMUGGLED}`] },
  'connection: keep-alive': { fields: h2Post([['connection', 'keep-alive']]), data: [SMUGGLED] },
  'upgrade: websocket tunnel': {
    fields: h2Post(
      [
        ['connection', 'upgrade'],
        ['upgrade', 'websocket'],
      ],
      { ':method': 'GET' },
    ),
    data: [SMUGGLED],
  },
  'keep-alive header': { fields: h2Post([['keep-alive', 'timeout=5']]), data: [SMUGGLED] },
  'H2.CRLF value ends the header block': {
    fields: h2Post([['x-a', `b\r\n\r\n${SMUGGLED}`]], { ':method': 'GET' }),
  },
  'H2.CRLF value injects Transfer-Encoding': {
    fields: h2Post([['x-a', 'b\r\nTransfer-Encoding: chunked']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'H2.CRLF value injects Content-Length': {
    fields: h2Post([['x-a', 'b\r\nContent-Length: 0']]),
    data: [SMUGGLED],
  },
  'LF in a value injects Transfer-Encoding': {
    fields: h2Post([['x-a', 'b\nTransfer-Encoding: chunked']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'CR in a value': { fields: h2Post([['x-a', 'b\rTransfer-Encoding: chunked']]), data: [`0\r\n\r\n${SMUGGLED}`] },
  'NUL in a value': { fields: h2Post([['x-a', 'b\x00c']]), data: ['hello'] },
  'CRLF in a header name': {
    fields: h2Post([['x-a\r\ntransfer-encoding', 'chunked']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'colon in a header name': {
    fields: h2Post([['transfer-encoding:chunked\r\nx-a', 'b']]),
    data: [`0\r\n\r\n${SMUGGLED}`],
  },
  'H2.CRLF in :path': {
    fields: h2Post([], { ':method': 'GET', ':path': `/first HTTP/1.1\r\nHost: ${HOST}\r\n\r\n${SMUGGLED}` }),
  },
  'space in :path': { fields: h2Post([], { ':method': 'GET', ':path': '/first HTTP/1.1' }) },
  'H2.CRLF in :method': {
    fields: h2Post([], { ':method': `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\nGET` }),
  },
  'H2.CRLF in :authority': { fields: h2Post([], { ':method': 'GET', ':authority': `${HOST}\r\n\r\n${SMUGGLED}` }) },
  'trailer with transfer-encoding': {
    fields: h2Post(),
    data: ['hello'],
    trailers: [['transfer-encoding', 'chunked']],
  },
  'trailer with content-length': { fields: h2Post(), data: ['hello'], trailers: [['content-length', '0']] },
  'trailer with a pseudo-header': { fields: h2Post(), data: ['hello'], trailers: [[':path', '/smuggled']] },
  'trailer with CRLF in a value': {
    fields: h2Post(),
    data: ['hello'],
    trailers: [['x-t', `a\r\n\r\n${SMUGGLED}`]],
  },
};

/**
 * FIELD_DROPPED are the cases whose only fault is a regular field with an invalid name or value, which Node's
 * HTTP/2 binding drops before the proxy sees the request: the request may reach the app, without that field.
 */
const FIELD_DROPPED = new Set([
  'H2.CRLF value ends the header block',
  'H2.CRLF value injects Transfer-Encoding',
  'H2.CRLF value injects Content-Length',
  'LF in a value injects Transfer-Encoding',
  'CR in a value',
  'NUL in a value',
  'CRLF in a header name',
  'colon in a header name',
  'trailer with CRLF in a value',
]);

/**
 * HEADERS_FIRST are cases whose headers alone are a complete request (`content-length: 0`): a streaming proxy
 * forwards them before the DATA frame that breaks the framing arrives (as Envoy does), so the app may see that
 * empty request, never the DATA.
 */
const HEADERS_FIRST = new Set(['H2.CL content-length 0 with a body']);

const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;
let app: RecordingBackend;
const entries: { name: string; dial: () => Dialer }[] = [];
const h2Entries: { name: string; dial: () => Dialer; alpn: string | undefined }[] = [];

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
  h2Entries.push(
    { name: "h2c to the app's sidecar (15001)", dial: () => plainDialer(sleep.ip, 15001), alpn: undefined },
    {
      name: "h2 over mTLS to the server sidecar's 15006",
      dial: () => mtlsDialer(reviews.ip, 15006, 'outbound_.9080_._.reviews.default.svc.cluster.local', id, ['h2']),
      alpn: 'h2',
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

// eslint-disable-next-line no-control-regex -- CR, LF and NUL are exactly what must not reach the app
const FORBIDDEN = /[\r\n\x00]/;

/** badFields lists the fields of a request at the app that carry CR, LF or NUL in a name or a value. */
function badFields(r: Recorded): string[] {
  return Object.entries(r.headers)
    .filter(([k, v]) => FORBIDDEN.test(k) || [v ?? ''].flat().some((x) => FORBIDDEN.test(x)))
    .map(([k]) => k);
}

/** judgeH2 returns what is wrong with one HTTP/2 case's outcome (undefined: nothing). */
function judgeH2(name: string, how: string, status: number, seen: Recorded[]): string | undefined {
  const urls = seen.map((x) => `${x.method} ${x.url}`);
  if (seen.some((x) => x.url.includes('/smuggled'))) return `the smuggled request reached the app: ${urls.join(', ')}`;
  const bad = seen.flatMap(badFields);
  if (bad.length > 0) return `fields with CR, LF or NUL reached the app: ${bad.join(', ')}`;
  if (seen.some((x) => x.url !== '/first')) return `the app saw ${JSON.stringify(urls)}`;
  if (FIELD_DROPPED.has(name)) {
    if (seen.length > 1) return `the app saw ${seen.length} requests`;
    if (seen.some((x) => 'x-a' in x.headers || 'x-t' in x.headers)) return 'the invalid field reached the app';
    return undefined;
  }
  if (seen.some((x) => x.complete && !(HEADERS_FIRST.has(name) && x.bodyBytes === 0)))
    return `the app got a complete request (${how})`;
  if (status >= 200 && status < 400) return `answered ${status}`;
  return undefined;
}

/** settle waits (bounded) until the app's requests since `from` are all over and none arrived for 300 ms. */
async function settle(from: number): Promise<boolean> {
  let count = -1;
  let quietSince = Date.now();
  return waitUntil(
    () => {
      const seen = app.requests.slice(from);
      if (seen.length !== count) [count, quietSince] = [seen.length, Date.now()];
      return seen.every((x) => x.closed) && Date.now() - quietSince >= 300;
    },
    5_000,
    'the app to settle',
  ).then(
    () => true,
    () => false,
  );
}

async function runH2Corpus(ctx: TestContext, e: (typeof h2Entries)[number]): Promise<void> {
  const failures: string[] = [];
  const answers = new Map<string, number>();
  let n = 0;
  for (const [name, req] of Object.entries(H2_SMUGGLING_CORPUS)) {
    const before = app.count;
    const a = await h2Exchange(e.dial(), req);
    assert.equal(a.alpn, e.alpn, 'negotiated application protocol');
    const how = a.outcome === 'response' ? String(a.status) : a.outcome;
    answers.set(how, (answers.get(how) ?? 0) + 1);
    // The next request through the same entry, sent at once as another client's would be, must arrive intact:
    // no upstream connection went back to the pool owing body bytes that this request would pay.
    const after = app.count;
    const follow = `/after-${++n}`;
    const f = await h2Exchange(e.dial(), {
      fields: [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':authority', HOST],
        [':path', follow],
      ],
    });
    // A request whose headers were forwarded before its stream was reset must be cut at the app too.
    if (!(await settle(before))) failures.push(`${name}: a request was left open at the app`);
    const later = app.requests.slice(after);
    const followed = later.filter((x) => x.url === follow);
    if (f.status !== 200 || followed.length !== 1 || !followed[0]?.complete)
      failures.push(
        `${name}: the next request answered ${f.outcome} ${f.status}; the app saw ${JSON.stringify(later.map((x) => x.url))}`,
      );
    // Whatever of the case reached the app late (forwarded headers race the reset across two sidecars) is the case's.
    const problem = judgeH2(name, how, a.status, [
      ...app.requests.slice(before, after),
      ...later.filter((x) => x.url !== follow),
    ]);
    if (problem) failures.push(`${name}: ${problem}`);
  }
  ctx.diagnostic(`answers: ${[...answers].map(([s, k]) => `${s}×${k}`).join(', ')}`);
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
  it(`${Object.keys(H2_SMUGGLING_CORPUS).length} HTTP/2 → HTTP/1.1 cases over h2c to the app's sidecar: 0 second requests`, (ctx) =>
    runH2Corpus(ctx, h2Entries[0] ?? assert.fail('no entry')));

  it(`${Object.keys(H2_SMUGGLING_CORPUS).length} HTTP/2 → HTTP/1.1 cases over h2 (ALPN) to the server sidecar: 0 second requests`, (ctx) =>
    runH2Corpus(ctx, h2Entries[1] ?? assert.fail('no entry')));

  it('control: well-framed HTTP/2 bodies (content-length over two DATA frames, none, trailers) reach the app whole', async () => {
    for (const e of h2Entries) {
      const cases: { req: H2Request; bytes: number }[] = [
        { req: { fields: h2Post([['content-length', '10']]), data: ['hello', 'world'] }, bytes: 10 },
        { req: { fields: h2Post(), data: ['hello', 'world!'] }, bytes: 11 },
        { req: { fields: h2Post(), data: ['hello'], trailers: [['x-checksum', 'abc']] }, bytes: 5 },
      ];
      for (const c of cases) {
        const before = app.count;
        const a = await h2Exchange(e.dial(), c.req);
        assert.equal(a.status, 200, `${e.name}: ${a.outcome}`);
        const seen = app.requests.slice(before);
        assert.deepEqual(
          seen.map((x) => [x.url, x.bodyBytes, x.complete]),
          [['/first', c.bytes, true]],
          e.name,
        );
      }
    }
  });
});
