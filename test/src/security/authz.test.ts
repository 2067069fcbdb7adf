/**
 * AuthorizationPolicy end to end: istiod translates the policies, the reviews sidecar enforces them on requests
 * that arrived over mTLS from real client sidecars (sleep, productpage), and the app counts what reaches it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FIXTURES, LocalMesh, waitUntil, type TestPod } from '../harness.js';
import { RecordingBackend, applyYaml, removeKeys, request } from './fixture.js';

const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;
let productpage: TestPod;
let backend: RecordingBackend;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
  });
  backend = await RecordingBackend.start(reviews.ip, 9080, reviews.name);
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  productpage = await mesh.addPod({
    name: 'productpage-v1-0',
    serviceAccount: 'bookinfo-productpage',
    labels: { app: 'productpage', version: 'v1' },
  });
  await waitUntil(async () => (await call(sleep, '/health')).status === 200, 20_000, 'sleep reaches reviews');
});
after(async () => {
  await backend?.close();
  await mesh.close();
});

function call(from: TestPod, p: string, headers: Record<string, string> = {}) {
  return request(`${from.ip}:15001`, 'reviews:9080', p, headers);
}

/** withPolicy applies manifests, waits until `ready` holds (the push reached the sidecar), runs `fn`, removes them. */
async function withPolicy(yaml: string, ready: () => Promise<boolean>, fn: () => Promise<void>): Promise<void> {
  const keys = applyYaml(mesh, yaml);
  try {
    await waitUntil(ready, 20_000, 'policy applied');
    await fn();
  } finally {
    removeKeys(mesh, keys);
    await waitUntil(async () => (await call(sleep, '/health')).status === 200, 20_000, 'policy removed');
  }
}

function reached(p: string): number {
  return backend.requests.filter((r) => r.url === p).length;
}

async function metric(pod: TestPod, pattern: RegExp): Promise<number> {
  const text = await pod.sidecar.metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => pattern.test(l))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const DENY_ADMIN_ALLOW_SLEEP = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-sleep, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/sleep"] } }]
`;

describe('AuthorizationPolicy through real sidecars', () => {
  it('DENY is evaluated before ALLOW, ALLOW-only admits just its principal, and refusals never reach the app', async () => {
    await withPolicy(
      DENY_ADMIN_ALLOW_SLEEP,
      async () => (await call(productpage, '/reviews/1')).status === 403,
      async () => {
        const before = backend.count;
        const ok = await call(sleep, '/reviews/1');
        assert.equal(ok.status, 200);
        assert.match(JSON.parse(ok.body).xfcc as string, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
        const admin = await call(sleep, '/admin');
        assert.deepEqual([admin.status, admin.body], [403, 'RBAC: access denied']);
        const other = await call(productpage, '/reviews/1');
        assert.deepEqual([other.status, other.body], [403, 'RBAC: access denied']);
        assert.equal(backend.count, before + 1, 'only the allowed request reached the app');
        assert.equal(reached('/admin'), 0);
      },
    );
  });

  it('a denial shows in Istio metrics (403, flags "-"), in the RBAC counters and in the access log with the policy', async () => {
    await withPolicy(
      DENY_ADMIN_ALLOW_SLEEP,
      async () => (await call(productpage, '/reviews/1')).status === 403,
      async () => {
        const denied = await metric(reviews, /^envoy_http_rbac_denied\{/);
        const m403 = await metric(
          reviews,
          /^istio_requests_total\{.*reporter="destination".*response_code="403".*response_flags="-"/,
        );
        assert.equal((await call(sleep, '/admin/users')).status, 403);
        assert.equal(await metric(reviews, /^envoy_http_rbac_denied\{/), denied + 1);
        assert.equal(
          await metric(
            reviews,
            /^istio_requests_total\{.*reporter="destination".*response_code="403".*response_flags="-"/,
          ),
          m403 + 1,
        );
        assert.ok((await metric(reviews, /^envoy_http_rbac_allowed\{/)) > 0);
        await waitUntil(
          () =>
            fs
              .readFileSync(path.join(mesh.dir, `${reviews.name}.log`), 'utf8')
              .includes('rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]'),
          10_000,
          'access log line with the matched policy',
        );
      },
    );
  });

  it('when conditions, namespaces and ports: the destination port is the inbound port the request routes to', async () => {
    const yaml = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: token-from-default, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  rules:
  - from: [{ source: { namespaces: ["default"] } }]
    to: [{ operation: { ports: ["9080"], methods: ["GET"] } }]
    when:
    - key: request.headers[x-token]
      values: ["s3cret", "prefix-*"]
    - key: destination.port
      values: ["9080"]
`;
    await withPolicy(
      yaml,
      async () => (await call(sleep, '/health')).status === 403,
      async () => {
        assert.equal((await call(sleep, '/r', { 'x-token': 's3cret' })).status, 200);
        assert.equal((await call(productpage, '/r', { 'x-token': 'prefix-abc' })).status, 200);
        assert.equal((await call(sleep, '/r', { 'x-token': 'wrong' })).status, 403);
        assert.equal((await call(sleep, '/r')).status, 403);
      },
    );
  });

  it('AUDIT only logs and a dry-run DENY only shadows: neither refuses', async () => {
    const yaml = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: audit-get, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: AUDIT
  rules: [{ to: [{ operation: { methods: ["GET"], paths: ["/audited/*"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-deny-all
  namespace: default
  annotations: { "istio.io/dry-run": "true" }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules: [{}]
`;
    await withPolicy(
      yaml,
      () => Promise.resolve(hasConfig(reviews, 'dry-deny-all') && hasConfig(reviews, 'audit-get')),
      async () => {
        const shadowBefore = await metric(reviews, /^envoy_http_rbac_shadow_denied\{/);
        const res = await call(sleep, '/audited/1');
        assert.equal(res.status, 200);
        assert.equal(reached('/audited/1'), 1);
        assert.equal(await metric(reviews, /^envoy_http_rbac_shadow_denied\{/), shadowBefore + 1);
        await waitUntil(
          () => {
            const log = fs.readFileSync(path.join(mesh.dir, `${reviews.name}.log`), 'utf8');
            return (
              log.includes('"policy":"ns[default]-policy[audit-get]-rule[0]"') &&
              log.includes('"shadow_effective_policy_id":"ns[default]-policy[dry-deny-all]-rule[0]"')
            );
          },
          10_000,
          'audit and shadow log lines',
        );
      },
    );
  });

  it('an ALLOW policy without rules denies everything until it is removed; a mesh-wide root policy applies too', async () => {
    await withPolicy(
      `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-nothing, namespace: default }
spec: { selector: { matchLabels: { app: reviews } } }
`,
      async () => (await call(sleep, '/health')).status === 403,
      async () => {
        assert.equal((await call(productpage, '/reviews/1')).status, 403);
      },
    );
    assert.equal((await call(sleep, '/reviews/1')).status, 200, 'access is back once the policy is gone');
    await withPolicy(
      `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mesh-deny-delete, namespace: istio-system }
spec:
  action: DENY
  rules: [{ to: [{ operation: { methods: ["DELETE"] } }] }]
`,
      async () => (await deleteStatus()) === 403,
      async () => {
        assert.equal(await deleteStatus(), 403);
        assert.equal((await call(sleep, '/reviews/2')).status, 200);
      },
    );
  });
});

function deleteStatus(): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: sleep.ip,
        port: 15001,
        method: 'DELETE',
        path: '/reviews/1',
        headers: { host: 'reviews:9080' },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** hasConfig reports whether a sidecar's accepted listeners mention `text` (a policy name reached it). */
function hasConfig(pod: TestPod, text: string): boolean {
  return JSON.stringify(pod.sidecar.configDump().listeners).includes(text);
}
