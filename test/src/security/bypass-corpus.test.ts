/**
 * Authorization bypass corpus: request targets and hosts that try to reach what a DENY `/admin` policy (on
 * reviews) or an ALLOW-only `/public` policy (on ratings) keeps out. Every case must reach the app 0 times (the
 * RecordingBackend counts every request, CONNECT and Upgrade included). Each case runs over every transport in
 * TRANSPORTS:
 * - HTTP/1.1 from an app through its sidecar (15001, the mesh path: sidecar → mTLS → sidecar);
 * - HTTP/1.1 straight to the server sidecar's 15006 over mTLS with a valid mesh identity (a hostile peer);
 * - HTTP/2 with prior knowledge (h2c) from the app's network position to its sidecar's 15001;
 * - HTTP/2 over mTLS (ALPN `h2`, checked) straight to the server sidecar's 15006 with a valid mesh identity.
 * Over HTTP/2 a case's target is sent as `:path` and its host as `:authority`, byte for byte: the raw client
 * (`h2-raw.ts`) HPACK-encodes literals without Huffman coding or lowercasing, so every value of the corpus goes on
 * the wire, including those Node's `http2` client would refuse; the proxy's HTTP/2 codec (nghttp2) resets the
 * streams whose `:path` is not origin-form (`%2Fadmin`, `\admin`, absolute-form targets, which HTTP/2 carries in
 * `:scheme` and `:authority` instead). HTTP/2 transports also run H2_DENY_CORPUS and H2_ALLOW_CORPUS, tricks only
 * HTTP/2 can play: `:authority` and `host` disagreeing, repeated and uppercase pseudo-headers, a `:path` without
 * its leading slash, CONNECT and extended CONNECT with a tunnelled request, header names with uppercase letters.
 * Positive controls over every transport prove the policies let the intended traffic through, so the corpus cannot
 * pass by refusing everything.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { FIXTURES, LocalMesh, waitUntil, type TestPod } from '../harness.js';
import {
  RecordingBackend,
  applyYaml,
  issueIdentity,
  mtlsDialer,
  plainDialer,
  rawExchange,
  type Dialer,
  type MeshIdentity,
} from './fixture.js';
import { h2Exchange, type H2Answer, type H2Field, type H2Request } from './h2-raw.js';

type Service = 'reviews' | 'ratings';

/** Case is one request: the raw request target and, optionally, the Host header (default `<service>:9080`). */
interface Case {
  target: string;
  host?: string;
}

/** Answer is what the caller saw: the status (0: none) and how the exchange ended (`403`, `RST_STREAM …`, `closed`). */
interface Answer {
  status: number;
  how: string;
}

/** Transport sends one request for a case to a service; HTTP/2 transports also send raw HTTP/2 requests. */
interface Transport {
  name: string;
  send(service: Service, c: Case): Promise<Answer>;
  h2?: (service: Service, req: H2Request) => Promise<Answer>;
}

/** H2Case is an HTTP/2-only trick: a name and the stream sent for it. */
interface H2Case {
  name: string;
  req: H2Request;
}

/** DENY_CORPUS attacks `DENY paths: ["/admin", "/admin/*"]` and `DENY hosts: ["internal.reviews"]` on reviews. */
export const DENY_CORPUS: Case[] = [
  { target: '//admin' },
  { target: '/a/../admin' },
  { target: '/%61dmin' },
  { target: '%2Fadmin' },
  { target: '%5Cadmin' },
  { target: '\\admin' },
  { target: '/ADMIN' },
  { target: '/admin?x' },
  { target: '/admin#x' },
  { target: '/admin%00' },
  { target: '/admin;x' },
  { target: '/admin', host: 'REVIEWS:9080' },
  { target: '/admin', host: 'Reviews.Default.Svc.Cluster.Local:9080' },
  { target: '/admin', host: 'reviews.:9080' },
  { target: '/x', host: 'INTERNAL.REVIEWS' },
  { target: '/x', host: 'internal.reviews.' },
  { target: '/x', host: 'Internal.Reviews:9080' },
  { target: 'http://INTERNAL.reviews/x' },
  { target: '/x', host: 'x@internal.reviews' },
  { target: '/x', host: 'reviews:9080@internal.reviews' },
  { target: '/./admin' },
  { target: '/%2Fadmin' },
  { target: '/%5Cadmin' },
  { target: '/%2e%2e/admin' },
  { target: '/x/%2E%2E/%41DMIN' },
  { target: '/admin/' },
  { target: '/Admin/users' },
  { target: '///admin//users' },
  { target: '/admin;jsessionid=1/users' },
  { target: '/admin%2Fusers' },
  { target: '/admin/..;/admin' },
  { target: 'http://reviews:9080/admin' },
  { target: 'http://reviews:9080//ADMIN' },
];

/** ALLOW_CORPUS attacks `ALLOW paths: ["/public", "/public/*"]` (any source) on ratings. */
export const ALLOW_CORPUS: Case[] = [
  { target: '/admin' },
  { target: '/public/../admin' },
  { target: '/public/%2e%2e/admin' },
  { target: '/public/..%2Fadmin' },
  { target: '/public%2F..%2Fadmin' },
  { target: '/public/..;/admin' },
  { target: '/public/.;/../admin' },
  { target: '/PUBLIC/x' },
  { target: '/publicity' },
  { target: '/public%00' },
  { target: '/%70ublic/../admin' },
  { target: '//public/../admin' },
  { target: '/public#/../admin' },
  { target: '\\public\\..\\admin' },
  { target: 'http://ratings:9080/public/../admin' },
];

const get = (authority: string, target: string): H2Field[] => [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':authority', authority],
  [':path', target],
];

/** CONNECT_TUNNEL opens a CONNECT stream to `authority` and sends, inside it, an HTTP/1.1 request for `target`. */
const connectTunnel = (authority: string, target: string): H2Request => ({
  fields: [
    [':method', 'CONNECT'],
    [':authority', authority],
  ],
  data: [`GET ${target} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`],
  endStream: false,
});

/** EXTENDED_CONNECT is RFC 8441's WebSocket bootstrap, which the proxy never enabled (no SETTINGS_ENABLE_CONNECT_PROTOCOL). */
const extendedConnect = (authority: string, target: string): H2Request => ({
  fields: [
    [':method', 'CONNECT'],
    [':protocol', 'websocket'],
    [':scheme', 'http'],
    [':authority', authority],
    [':path', target],
  ],
  data: [`GET /admin HTTP/1.1\r\nHost: ${authority}\r\n\r\n`],
  endStream: false,
});

/** H2_DENY_CORPUS attacks the DENY policy on reviews with what only HTTP/2 can say. */
export const H2_DENY_CORPUS: H2Case[] = [
  {
    name: ':authority reviews, host internal.reviews',
    req: { fields: [...get('reviews:9080', '/x'), ['host', 'internal.reviews']] },
  },
  {
    name: ':authority internal.reviews, host reviews',
    req: { fields: [...get('internal.reviews', '/x'), ['host', 'reviews:9080']] },
  },
  {
    name: ':authority INTERNAL.REVIEWS, host reviews',
    req: { fields: [...get('INTERNAL.REVIEWS:9080', '/x'), ['host', 'reviews:9080']] },
  },
  {
    name: 'no :authority, host internal.reviews',
    req: {
      fields: [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/x'],
        ['host', 'Internal.Reviews'],
      ],
    },
  },
  {
    name: 'two :authority, the second denied',
    req: { fields: [...get('reviews:9080', '/x'), [':authority', 'internal.reviews']] },
  },
  {
    name: 'two host headers, the second denied',
    req: { fields: [...get('reviews:9080', '/x'), ['host', 'reviews:9080'], ['host', 'internal.reviews']] },
  },
  {
    name: 'Host (uppercase name) internal.reviews',
    req: { fields: [...get('reviews:9080', '/x'), ['Host', 'internal.reviews']] },
  },
  { name: ':authority with userinfo x@internal.reviews', req: { fields: get('x@internal.reviews', '/x') } },
  { name: 'two :path, /x then /admin', req: { fields: [...get('reviews:9080', '/x'), [':path', '/admin']] } },
  { name: 'two :path, /admin then /x', req: { fields: [...get('reviews:9080', '/admin'), [':path', '/x']] } },
  {
    name: ':PATH /admin without :path',
    req: {
      fields: [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':authority', 'reviews:9080'],
        [':PATH', '/admin'],
      ],
    },
  },
  { name: ':path /x and :PATH /admin', req: { fields: [...get('reviews:9080', '/x'), [':PATH', '/admin']] } },
  {
    name: ':AUTHORITY internal.reviews without :authority',
    req: {
      fields: [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':AUTHORITY', 'internal.reviews'],
        [':path', '/x'],
      ],
    },
  },
  { name: ':path admin (no leading slash)', req: { fields: get('reviews:9080', 'admin') } },
  { name: ':path admin/../x (no leading slash)', req: { fields: get('reviews:9080', 'x/../admin') } },
  {
    name: 'pseudo-header after a regular one',
    req: { fields: [...get('reviews:9080', '/x'), ['x-a', '1'], [':path', '/admin']] },
  },
  { name: 'Path (uppercase name) /admin', req: { fields: [...get('reviews:9080', '/x'), ['Path', '/admin']] } },
  { name: 'CONNECT reviews:9080 tunnelling GET /admin', req: connectTunnel('reviews:9080', '/admin') },
  { name: 'CONNECT internal.reviews:9080 tunnelling GET /x', req: connectTunnel('internal.reviews:9080', '/x') },
  { name: 'extended CONNECT (websocket) /admin', req: extendedConnect('reviews:9080', '/admin') },
];

/** H2_ALLOW_CORPUS attacks the ALLOW-only policy on ratings with what only HTTP/2 can say. */
export const H2_ALLOW_CORPUS: H2Case[] = [
  { name: 'two :path, /public then /admin', req: { fields: [...get('ratings:9080', '/public'), [':path', '/admin']] } },
  { name: 'two :path, /admin then /public', req: { fields: [...get('ratings:9080', '/admin'), [':path', '/public']] } },
  { name: ':path /admin and :PATH /public', req: { fields: [...get('ratings:9080', '/admin'), [':PATH', '/public']] } },
  { name: ':path public/../admin (no leading slash)', req: { fields: get('ratings:9080', 'public/../admin') } },
  { name: ':path public (no leading slash)', req: { fields: get('ratings:9080', 'public') } },
  { name: 'Path (uppercase name) /public', req: { fields: [...get('ratings:9080', '/admin'), ['Path', '/public']] } },
  { name: 'CONNECT ratings:9080 tunnelling GET /admin', req: connectTunnel('ratings:9080', '/admin') },
  { name: 'extended CONNECT (websocket) /public', req: extendedConnect('ratings:9080', '/public') },
];

const CONTROLS: { service: Service; target: string; path: string }[] = [
  { service: 'reviews', target: '/reviews/1', path: '/reviews/1' },
  { service: 'reviews', target: '/administrator', path: '/administrator' },
  { service: 'reviews', target: '/a/./b/../c', path: '/a/c' },
  { service: 'ratings', target: '/public', path: '/public' },
  { service: 'ratings', target: '/public/a/../b', path: '/public/b' },
  { service: 'ratings', target: '/%70ublic/x', path: '/public/x' },
];

/** H2_CONTROLS are HTTP/2 requests the policies allow: each must reach the app once, with the path given. */
const H2_CONTROLS: { service: Service; name: string; req: H2Request; path: string }[] = [
  { service: 'reviews', name: '/x', req: { fields: get('reviews:9080', '/x') }, path: '/x' },
  {
    service: 'reviews',
    name: 'host equal to :authority',
    req: { fields: [...get('reviews:9080', '/x'), ['host', 'reviews:9080']] },
    path: '/x',
  },
  {
    service: 'reviews',
    name: 'host without :authority',
    req: {
      fields: [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/y'],
        ['host', 'reviews:9080'],
      ],
    },
    path: '/y',
  },
  {
    service: 'ratings',
    name: 'POST /public with a body',
    req: {
      fields: [
        [':method', 'POST'],
        [':scheme', 'http'],
        [':authority', 'ratings:9080'],
        [':path', '/public'],
        ['content-length', '5'],
      ],
      data: ['hello'],
    },
    path: '/public',
  },
];

const POLICIES = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
  - to: [{ operation: { hosts: ["internal.reviews"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: public-only, namespace: default }
spec:
  selector: { matchLabels: { app: ratings } }
  action: ALLOW
  rules:
  - to: [{ operation: { paths: ["/public", "/public/*"] } }]
`;

const mesh = new LocalMesh();
let reviews: TestPod;
let ratings: TestPod;
let sleep: TestPod;
const apps: Record<Service, RecordingBackend> = {} as Record<Service, RecordingBackend>;
let sleepId: MeshIdentity;

function rawRequest(c: Case, service: Service): string {
  return `GET ${c.target} HTTP/1.1\r\nHost: ${c.host ?? `${service}:9080`}\r\nConnection: close\r\n\r\n`;
}

/** inboundDialer dials the server sidecar's 15006 as a peer sidecar would (SNI of the service's cluster). */
function inboundDialer(service: Service, alpn?: string[]): Dialer {
  const pod = service === 'reviews' ? reviews : ratings;
  return mtlsDialer(pod.ip, 15006, `outbound_.9080_._.${service}.default.svc.cluster.local`, sleepId, alpn);
}

async function http1(dial: Dialer, c: Case, service: Service): Promise<Answer> {
  const r = await rawExchange(dial, rawRequest(c, service));
  const status = r.statuses[0] ?? 0;
  return { status, how: status ? String(status) : 'closed' };
}

/** h2 sends one raw HTTP/2 stream; `alpn` is the protocol TLS must have negotiated (undefined: h2c). */
async function h2(dial: Dialer, req: H2Request, alpn: string | undefined): Promise<Answer> {
  const a: H2Answer = await h2Exchange(dial, req);
  assert.equal(a.alpn, alpn, 'negotiated application protocol');
  return { status: a.status, how: a.outcome === 'response' ? String(a.status) : a.outcome };
}

const caseFields = (c: Case, service: Service): H2Request => ({ fields: get(c.host ?? `${service}:9080`, c.target) });

const TRANSPORTS: Transport[] = [
  {
    name: 'HTTP/1.1 app → sidecar → mTLS → sidecar',
    send: (service, c) => http1(plainDialer(sleep.ip, 15001), c, service),
  },
  {
    name: 'HTTP/1.1 over mTLS straight to the inbound port',
    send: (service, c) => http1(inboundDialer(service), c, service),
  },
  {
    name: "HTTP/2 (h2c) app → sidecar's 15001 → mTLS → sidecar",
    send: (service, c) => h2(plainDialer(sleep.ip, 15001), caseFields(c, service), undefined),
    h2: (_service, req) => h2(plainDialer(sleep.ip, 15001), req, undefined),
  },
  {
    name: 'HTTP/2 over mTLS (ALPN h2) straight to the inbound port',
    send: (service, c) => h2(inboundDialer(service, ['h2']), caseFields(c, service), 'h2'),
    h2: (service, req) => h2(inboundDialer(service, ['h2']), req, 'h2'),
  },
];

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
  });
  ratings = await mesh.addPod({
    name: 'ratings-v1-0',
    serviceAccount: 'bookinfo-ratings',
    labels: { app: 'ratings', version: 'v1' },
  });
  apps.reviews = await RecordingBackend.start(reviews.ip, 9080, reviews.name);
  apps.ratings = await RecordingBackend.start(ratings.ip, 9080, ratings.name);
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  sleepId = await issueIdentity(mesh, 'default', 'sleep');
  applyYaml(mesh, POLICIES);
  const t = TRANSPORTS[0];
  assert.ok(t);
  await waitUntil(
    async () =>
      (await t.send('ratings', { target: '/private' })).status === 403 &&
      (await t.send('reviews', { target: '/admin' })).status === 403,
    20_000,
    'policies in force',
  );
});
after(async () => {
  await Promise.all(Object.values(apps).map((a) => a.close()));
  await mesh.close();
});

/** runCorpus sends every case and fails with each one that reached the app or was answered 2xx/3xx without it. */
async function runCorpus<C>(
  ctx: TestContext,
  t: Transport,
  service: Service,
  corpus: readonly C[],
  send: (c: C) => Promise<Answer>,
  label: (c: C) => string,
): Promise<void> {
  const app = apps[service];
  const failures: string[] = [];
  const byHow = new Map<string, number>();
  for (const c of corpus) {
    const before = app.count;
    const a = await send(c);
    byHow.set(a.how, (byHow.get(a.how) ?? 0) + 1);
    if (app.count !== before) {
      const r = app.requests.at(-1);
      failures.push(`${label(c)} reached the app as ${r?.method ?? ''} ${JSON.stringify(r?.url)} (${a.how})`);
    } else if (a.status >= 200 && a.status < 400) failures.push(`${label(c)} answered ${a.status} without the app`);
  }
  ctx.diagnostic(`answers: ${[...byHow].map(([how, n]) => `${how}×${n}`).join(', ')}`);
  assert.deepEqual(failures, [], `${t.name}: ${failures.length} of ${corpus.length} bypassed`);
}

const sendCase = (t: Transport, service: Service) => (c: Case) => t.send(service, c);
const caseLabel = (c: Case): string => JSON.stringify(c);

for (const t of TRANSPORTS) {
  describe(t.name, () => {
    it(`positive controls reach the app with the normalized path (${CONTROLS.length} cases)`, async () => {
      for (const c of CONTROLS) {
        const app = apps[c.service];
        const before = app.count;
        assert.equal((await t.send(c.service, { target: c.target })).how, '200', c.target);
        assert.equal(app.count, before + 1, c.target);
        assert.equal(app.requests.at(-1)?.url, c.path, `${c.target} is forwarded as ${c.path}`);
      }
    });

    it(`DENY /admin corpus reaches the app 0 times (${DENY_CORPUS.length} cases)`, (ctx) =>
      runCorpus(ctx, t, 'reviews', DENY_CORPUS, sendCase(t, 'reviews'), caseLabel));

    it(`ALLOW-only /public corpus reaches the app 0 times (${ALLOW_CORPUS.length} cases)`, (ctx) =>
      runCorpus(ctx, t, 'ratings', ALLOW_CORPUS, sendCase(t, 'ratings'), caseLabel));

    const h2Send = t.h2;
    if (!h2Send) return;

    it(`HTTP/2 positive controls reach the app (${H2_CONTROLS.length} cases)`, async () => {
      for (const c of H2_CONTROLS) {
        const app = apps[c.service];
        const before = app.count;
        assert.equal((await h2Send(c.service, c.req)).how, '200', c.name);
        assert.equal(app.count, before + 1, c.name);
        const got = app.requests.at(-1);
        assert.equal(got?.url, c.path, `${c.name} is forwarded as ${c.path}`);
        assert.equal(got?.headers.host, `${c.service}:9080`, `${c.name}: Host at the app`);
      }
    });

    it(`HTTP/2 tricks against DENY /admin reach the app 0 times (${H2_DENY_CORPUS.length} cases)`, (ctx) =>
      runCorpus(
        ctx,
        t,
        'reviews',
        H2_DENY_CORPUS,
        (c) => h2Send('reviews', c.req),
        (c) => c.name,
      ));

    it(`HTTP/2 tricks against ALLOW-only /public reach the app 0 times (${H2_ALLOW_CORPUS.length} cases)`, (ctx) =>
      runCorpus(
        ctx,
        t,
        'ratings',
        H2_ALLOW_CORPUS,
        (c) => h2Send('ratings', c.req),
        (c) => c.name,
      ));
  });
}
