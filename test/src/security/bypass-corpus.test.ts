/**
 * Authorization bypass corpus: request targets and hosts that try to reach what a DENY `/admin` policy (on
 * reviews) or an ALLOW-only `/public` policy (on ratings) keeps out. Every case must reach the app 0 times.
 * Each case runs over every transport in TRANSPORTS: HTTP/1.1 from an app through its sidecar (the mesh path),
 * and HTTP/1.1 straight to the server sidecar's 15006 over mTLS with a valid mesh identity (a hostile peer). An
 * HTTP/2 transport slots into TRANSPORTS once the proxy speaks HTTP/2. Positive controls prove the policies
 * let the intended traffic through, so the corpus cannot pass by refusing everything.
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
  type MeshIdentity,
} from './fixture.js';

/** Case is one request: the raw request target and, optionally, the Host header (default `<service>:9080`). */
interface Case {
  target: string;
  host?: string;
}

/** Transport sends one request for a case to a service and returns the status the caller saw (0: none). */
interface Transport {
  name: string;
  send(service: 'reviews' | 'ratings', c: Case): Promise<number>;
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

const CONTROLS: { service: 'reviews' | 'ratings'; target: string; path: string }[] = [
  { service: 'reviews', target: '/reviews/1', path: '/reviews/1' },
  { service: 'reviews', target: '/administrator', path: '/administrator' },
  { service: 'reviews', target: '/a/./b/../c', path: '/a/c' },
  { service: 'ratings', target: '/public', path: '/public' },
  { service: 'ratings', target: '/public/a/../b', path: '/public/b' },
  { service: 'ratings', target: '/%70ublic/x', path: '/public/x' },
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
const apps: Record<'reviews' | 'ratings', RecordingBackend> = {} as Record<'reviews' | 'ratings', RecordingBackend>;
let sleepId: MeshIdentity;

function rawRequest(c: Case, service: string): string {
  return `GET ${c.target} HTTP/1.1\r\nHost: ${c.host ?? `${service}:9080`}\r\nConnection: close\r\n\r\n`;
}

const TRANSPORTS: Transport[] = [
  {
    name: 'HTTP/1.1 app → sidecar → mTLS → sidecar',
    async send(service, c) {
      return (await rawExchange(plainDialer(sleep.ip, 15001), rawRequest(c, service))).statuses[0] ?? 0;
    },
  },
  {
    name: 'HTTP/1.1 over mTLS straight to the inbound port',
    async send(service, c) {
      const pod = service === 'reviews' ? reviews : ratings;
      const sni = `outbound_.9080_._.${service}.default.svc.cluster.local`;
      return (await rawExchange(mtlsDialer(pod.ip, 15006, sni, sleepId), rawRequest(c, service))).statuses[0] ?? 0;
    },
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
      (await t.send('ratings', { target: '/private' })) === 403 &&
      (await t.send('reviews', { target: '/admin' })) === 403,
    20_000,
    'policies in force',
  );
});
after(async () => {
  await Promise.all(Object.values(apps).map((a) => a.close()));
  await mesh.close();
});

async function runCorpus(
  ctx: TestContext,
  t: Transport,
  service: 'reviews' | 'ratings',
  corpus: Case[],
): Promise<void> {
  const app = apps[service];
  const failures: string[] = [];
  const byStatus = new Map<number, number>();
  for (const c of corpus) {
    const before = app.count;
    const status = await t.send(service, c);
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    if (app.count !== before)
      failures.push(`${JSON.stringify(c)} reached the app as ${JSON.stringify(app.requests.at(-1)?.url)} (${status})`);
    else if (status >= 200 && status < 400) failures.push(`${JSON.stringify(c)} answered ${status} without the app`);
  }
  ctx.diagnostic(`answers: ${[...byStatus].map(([s, n]) => `${s === 0 ? 'closed' : s}×${n}`).join(', ')}`);
  assert.deepEqual(failures, [], `${t.name}: ${failures.length} of ${corpus.length} bypassed`);
}

for (const t of TRANSPORTS) {
  describe(t.name, () => {
    it(`positive controls reach the app with the normalized path (${CONTROLS.length} cases)`, async () => {
      for (const c of CONTROLS) {
        const app = apps[c.service];
        const before = app.count;
        assert.equal(await t.send(c.service, { target: c.target }), 200, c.target);
        assert.equal(app.count, before + 1, c.target);
        assert.equal(app.requests.at(-1)?.url, c.path, `${c.target} is forwarded as ${c.path}`);
      }
    });

    it(`DENY /admin corpus reaches the app 0 times (${DENY_CORPUS.length} cases)`, (ctx) =>
      runCorpus(ctx, t, 'reviews', DENY_CORPUS));

    it(`ALLOW-only /public corpus reaches the app 0 times (${ALLOW_CORPUS.length} cases)`, (ctx) =>
      runCorpus(ctx, t, 'ratings', ALLOW_CORPUS));
  });
}
