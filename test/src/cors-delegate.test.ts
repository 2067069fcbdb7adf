/**
 * VirtualService `corsPolicy` and `delegate` end to end: a real istiod, real sidecars with mTLS between them, and
 * Bookinfo's three reviews pods as counting apps. The sleep pod's sidecar answers CORS preflights itself (the apps'
 * request counts prove nothing reached them), and a root VirtualService hands /reviews-v2 to a delegate owned by
 * another namespace, re-routed live when the delegate changes.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FIXTURES, LocalMesh, waitUntil, type TestPod } from './harness.js';
import { applyYaml, removeKeys } from './security/fixture.js';

const mesh = new LocalMesh();
let sleep: TestPod;
const reviews: TestPod[] = [];

before(async () => {
  await mesh.start([
    path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
    path.join(FIXTURES, 'bookinfo/networking/destination-rule-all.yaml'),
  ]);
  for (const v of ['v1', 'v2', 'v3'])
    reviews.push(
      await mesh.addPod({
        name: `reviews-${v}-0`,
        serviceAccount: 'bookinfo-reviews',
        labels: { app: 'reviews', version: v },
        appPort: 9080,
      }),
    );
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  await waitUntil(async () => (await call('GET', '/')).status === 200, 20_000, 'sleep reaches reviews');
});
after(() => mesh.close());

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** pod is the reviews pod that answered (its app's JSON), or undefined for a reply the proxy made itself. */
  pod: string | undefined;
}

/** call sends one request to reviews:9080 through the sleep pod's outbound listener. */
function call(method: string, p: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: sleep.ip,
        port: 15001,
        method,
        path: p,
        headers: { host: 'reviews:9080', ...headers },
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          let pod: string | undefined;
          if (res.headers['content-type'] === 'application/json') pod = (JSON.parse(body) as { pod: string }).pod;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, pod });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** appRequests is how many requests the three reviews apps have received. */
function appRequests(): number {
  return reviews.reduce((n, p) => n + (p.backend?.requests.length ?? 0), 0);
}

const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-max-age',
  'access-control-expose-headers',
];
function corsHeaders(r: Reply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of CORS_HEADERS) {
    const v = r.headers[h];
    if (typeof v === 'string') out[h] = v;
  }
  return out;
}

// Istio's CorsPolicy example (virtual-service reference), on reviews, plus exposeHeaders and credentials.
const corsVs = (unmatched: 'FORWARD' | 'IGNORE'): string => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      allowMethods: [POST, GET]
      allowCredentials: true
      allowHeaders: [X-Foo-Bar]
      exposeHeaders: [x-request-id]
      maxAge: "24h"
      unmatchedPreflights: ${unmatched}
`;

const PREFLIGHT = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-foo-bar' };

describe('corsPolicy through real sidecars', () => {
  it('a preflight from an allowed origin is answered by the sidecar; the app never sees it', async () => {
    const keys = applyYaml(mesh, corsVs('FORWARD'));
    try {
      await waitUntil(
        async () =>
          (await call('GET', '/', { origin: 'https://example.com' })).headers['access-control-allow-origin'] !==
          undefined,
        20_000,
        'corsPolicy in effect',
      );
      const before = appRequests();
      const pre = await call('OPTIONS', '/reviews/1', { origin: 'https://example.com', ...PREFLIGHT });
      assert.equal(pre.status, 200);
      assert.equal(pre.pod, undefined, 'answered by the proxy');
      assert.deepEqual(corsHeaders(pre), {
        'access-control-allow-origin': 'https://example.com',
        'access-control-allow-credentials': 'true',
        'access-control-allow-methods': 'POST,GET',
        'access-control-allow-headers': 'X-Foo-Bar',
        'access-control-max-age': '86400',
      });
      assert.equal(appRequests(), before, 'no request reached an app');

      // An actual request from the allowed origin reaches v1 and carries allow-origin, credentials, expose-headers.
      const ok = await call('GET', '/reviews/1', { origin: 'https://example.com' });
      assert.equal(ok.pod, 'reviews-v1-0');
      assert.deepEqual(corsHeaders(ok), {
        'access-control-allow-origin': 'https://example.com',
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': 'x-request-id',
      });
      assert.equal(appRequests(), before + 1);
    } finally {
      removeKeys(mesh, keys);
    }
  });

  it('a disallowed origin gets no CORS headers; its preflight is forwarded (FORWARD) or answered bare (IGNORE)', async () => {
    let keys = applyYaml(mesh, corsVs('FORWARD'));
    try {
      await waitUntil(
        async () =>
          (await call('GET', '/', { origin: 'https://example.com' })).headers['access-control-allow-origin'] !==
          undefined,
        20_000,
        'corsPolicy in effect',
      );
      let before = appRequests();
      const actual = await call('GET', '/reviews/1', { origin: 'https://evil.example' });
      assert.equal(actual.pod, 'reviews-v1-0');
      assert.deepEqual(corsHeaders(actual), {});
      const forwarded = await call('OPTIONS', '/reviews/1', { origin: 'https://evil.example', ...PREFLIGHT });
      assert.equal(forwarded.pod, 'reviews-v1-0', 'the app answered the unmatched preflight');
      assert.deepEqual(corsHeaders(forwarded), {});
      assert.equal(appRequests(), before + 2);

      removeKeys(mesh, keys);
      keys = applyYaml(mesh, corsVs('IGNORE'));
      await waitUntil(
        async () => (await call('OPTIONS', '/', { origin: 'https://evil.example', ...PREFLIGHT })).pod === undefined,
        20_000,
        'unmatchedPreflights IGNORE in effect',
      );
      before = appRequests();
      const bare = await call('OPTIONS', '/reviews/1', { origin: 'https://evil.example', ...PREFLIGHT });
      assert.equal(bare.status, 200);
      assert.equal(bare.pod, undefined);
      assert.equal(bare.headers['access-control-allow-origin'], undefined, 'the browser will refuse the request');
      assert.equal(appRequests(), before, 'the unmatched preflight was not forwarded');
    } finally {
      removeKeys(mesh, keys);
    }
  });
});

const ROOT = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: reviews-v2
    match: [{uri: {prefix: /reviews-v2}}]
    delegate: {name: reviews-v2, namespace: reviews-team}
  - route: [{destination: {host: reviews, subset: v1}}]
`;
const delegateTo = (subset: string): string => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-v2, namespace: reviews-team}
spec:
  exportTo: [default]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: ${subset}}}]
`;

describe('delegate through real sidecars', () => {
  it("routes /reviews-v2/* by the delegate, the root's other routes keep working, and a delegate change re-routes live", async () => {
    const keys = [...applyYaml(mesh, ROOT), ...applyYaml(mesh, delegateTo('v2'))];
    try {
      await waitUntil(async () => (await call('GET', '/reviews-v2/1')).pod === 'reviews-v2-0', 20_000, 'delegate');
      for (let i = 0; i < 10; i++) {
        assert.equal((await call('GET', `/reviews-v2/${i}`)).pod, 'reviews-v2-0');
        assert.equal((await call('GET', `/reviews/${i}`)).pod, 'reviews-v1-0');
      }
      applyYaml(mesh, delegateTo('v3'));
      await waitUntil(async () => (await call('GET', '/reviews-v2/1')).pod === 'reviews-v3-0', 20_000, 'delegate v3');
      for (let i = 0; i < 10; i++) {
        assert.equal((await call('GET', `/reviews-v2/${i}`)).pod, 'reviews-v3-0');
        assert.equal((await call('GET', `/ratings/${i}`)).pod, 'reviews-v1-0');
      }
      // Without the delegate its route is left out: /reviews-v2 falls through to the root's catch-all.
      removeKeys(mesh, keys.slice(1));
      await waitUntil(async () => (await call('GET', '/reviews-v2/1')).pod === 'reviews-v1-0', 20_000, 'no delegate');
    } finally {
      removeKeys(mesh, keys);
    }
  });
});
