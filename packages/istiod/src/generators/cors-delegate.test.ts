/**
 * VirtualService `corsPolicy` and `delegate` as Istio users write them (Istio's own reference examples, on
 * Bookinfo): istiod's translation against golden files, the rules behind it (Istio's `TranslateCORSPolicy` and
 * `mergeHTTPRoute`), what the fedmesh proxy's decoders make of the output, and incremental generation re-running
 * a root's routes when its delegate changes. Golden files live in `testdata/golden/`; `UPDATE_GOLDEN=1` rewrites.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseManifests, type HTTPRoute } from '@fedmesh/api';
import { TypeUrl, decodeAny } from '@fedmesh/api/xds';
import { ListenerType, RouteConfigurationType, hcmOf } from '@fedmesh/proxy';
import type { ResourceEntry } from '@fedmesh/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { IncrementalGenerator } from '../incremental.js';
import type { VirtualServiceObject } from '../model/config.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext, type MeshSettings } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { corsPolicyConfig } from './cors.js';
import { effectiveHttpRoutes } from './delegate.js';
import { createGenerators } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TESTDATA = path.resolve(here, '../../testdata');
const GOLDEN = path.join(TESTDATA, 'golden');
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const BOOKINFO = path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml');
const DR_ALL = path.join(SAMPLES, 'bookinfo/networking/destination-rule-all.yaml');
const PODS = path.join(TESTDATA, 'bookinfo-pods.yaml');
const traffic = (f: string): string => path.join(TESTDATA, 'traffic', f);
const MESH: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};
const generators = createGenerators();

function storeOf(files: readonly string[], extra = ''): ConfigStore<StoredObject> {
  const store = new ConfigStore<StoredObject>();
  for (const f of files) {
    const res = loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
    assert.deepEqual(
      res.errors.filter((e) => e.severity === 'error'),
      [],
      `${path.basename(f)} loads`,
    );
  }
  if (extra) assert.deepEqual(loadManifestText(store, extra, 'api', false).errors, []);
  return store;
}

function pushOf(store: ConfigStore<StoredObject>, version = 1): PushContext {
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  return new PushContext(version, MESH, store, [registry], 'trust-bundle');
}

const PRODUCTPAGE: ProxyModel = parseProxyNode({
  id: 'sidecar~127.0.9.1~productpage-v1-7d9f8b6c5-x2k4p.default~default.svc.cluster.local',
  metadata: {
    NAMESPACE: 'default',
    SERVICE_ACCOUNT: 'bookinfo-productpage',
    LABELS: { app: 'productpage', version: 'v1' },
    INSTANCE_IPS: '127.0.9.1',
  },
});
const INGRESS: ProxyModel = parseProxyNode({
  id: 'router~127.0.9.201~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local',
  metadata: {
    NAMESPACE: 'istio-system',
    SERVICE_ACCOUNT: 'istio-ingressgateway-service-account',
    LABELS: { istio: 'ingressgateway', app: 'istio-ingressgateway' },
    FEDMESH_GATEWAY_MODE: 'ingress',
  },
});

function generate(typeUrl: string, push: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
  const g = generators.get(typeUrl);
  assert.ok(g, typeUrl);
  return g(push, proxy, warnings);
}

interface DecodedRoutes {
  virtual_hosts: { name: string; routes: Record<string, unknown>[] }[];
}

/** routeConfig returns one generated RouteConfiguration as the wire carries it, after the proxy accepted it. */
function routeConfig(push: PushContext, proxy: ProxyModel, name: string, warnings: string[] = []): DecodedRoutes {
  const r = generate(TypeUrl.RouteConfiguration, push, proxy, warnings).find((x) => x.name === name);
  assert.ok(r, `RouteConfiguration ${name}`);
  const accepted = RouteConfigurationType.decode(r.resource);
  assert.ok('value' in accepted, `${name} would be NACKed: ${'error' in accepted ? accepted.error : ''}`);
  return decodeAny(r.resource) as unknown as DecodedRoutes;
}

function vhostRoutes(rc: DecodedRoutes, name: string): Record<string, unknown>[] {
  const vh = rc.virtual_hosts.find((v) => v.name === name);
  assert.ok(vh, `virtual host ${name}`);
  return vh.routes;
}

/** httpFilters returns the `http_filters` names of a generated Listener's first HTTP connection manager. */
function httpFilters(push: PushContext, proxy: ProxyModel, listener: string): string[] {
  const l = generate(TypeUrl.Listener, push, proxy).find((x) => x.name === listener);
  assert.ok(l, `Listener ${listener}`);
  const decoded = ListenerType.decode(l.resource);
  assert.ok('value' in decoded, `${listener} would be NACKed: ${'error' in decoded ? decoded.error : ''}`);
  const chain = decoded.value.config.filter_chains.find((c) => hcmOf(c));
  return (chain ? (hcmOf(chain)?.http_filters ?? []) : []).map((f) => f.name);
}

/** expectGolden compares `actual` with `testdata/golden/<name>.json`, or rewrites it under UPDATE_GOLDEN=1. */
async function expectGolden(name: string, actual: unknown): Promise<void> {
  const file = path.join(GOLDEN, `${name}.json`);
  const normalized: unknown = JSON.parse(JSON.stringify(actual));
  if (process.env.UPDATE_GOLDEN === '1') {
    const prettier = await import('prettier');
    const text = await prettier.format(JSON.stringify(normalized), {
      ...(await prettier.resolveConfig(file)),
      filepath: file,
    });
    fs.writeFileSync(file, text);
    return;
  }
  assert.ok(fs.existsSync(file), `golden ${file} is missing; run with UPDATE_GOLDEN=1 and review it`);
  assert.deepEqual(normalized, JSON.parse(fs.readFileSync(file, 'utf8')), `${name}: differs from ${file}`);
}

const RATINGS = 'ratings.default.svc.cluster.local:9080';
const REVIEWS = 'reviews.default.svc.cluster.local:9080';

describe('corsPolicy', () => {
  it("Istio's CorsPolicy example: the route's typed_per_filter_config, and the filter after fault, before the router", async () => {
    const push = pushOf(storeOf([BOOKINFO, DR_ALL, traffic('cors-ratings.yaml'), PODS]));
    const warnings: string[] = [];
    const routes = vhostRoutes(routeConfig(push, PRODUCTPAGE, 'outbound', warnings), RATINGS);
    assert.deepEqual(warnings, []);
    await expectGolden('productpage-cors-ratings', routes);
    assert.deepEqual(httpFilters(push, PRODUCTPAGE, 'virtualOutbound'), [
      'envoy.filters.http.fault',
      'envoy.filters.http.cors',
      'envoy.filters.http.router',
    ]);
  });

  it('the proxy compiles it: example.com is allowed, example.org is not, maxAge 24h is 86400 s', () => {
    const push = pushOf(storeOf([BOOKINFO, DR_ALL, traffic('cors-ratings.yaml'), PODS]));
    const r = generate(TypeUrl.RouteConfiguration, push, PRODUCTPAGE).find((x) => x.name === 'outbound');
    assert.ok(r);
    const table = RouteConfigurationType.decode(r.resource);
    assert.ok('value' in table);
    const cors = table.value.virtualHost(RATINGS)?.routes[0]?.cors;
    assert.ok(cors, 'the ratings route carries a CORS policy');
    assert.deepEqual(
      [cors.allowMethods, cors.allowHeaders, cors.maxAge, cors.allowCredentials, cors.forwardNotMatchingPreflights],
      ['POST,GET', 'X-Foo-Bar', '86400', false, true],
    );
    assert.deepEqual(
      ['https://example.com', 'https://example.org', 'https://example.com.evil'].map((o) =>
        cors.allowOrigin.some((m) => m(o)),
      ),
      [true, false, false],
    );
    // Routes without corsPolicy carry none.
    assert.equal(table.value.virtualHost(REVIEWS)?.routes[0]?.cors, undefined);
  });

  it("TranslateCORSPolicy's rules: origin kinds, the deprecated allowOrigin, unmatchedPreflights, durations", () => {
    assert.deepEqual(
      corsPolicyConfig({
        allowOrigins: [{ exact: 'https://a.example' }, { prefix: 'https://b.' }, { regex: 'https://.*\\.c\\.example' }],
        allowOrigin: ['https://ignored.example'],
        exposeHeaders: ['x-request-id', 'x-b3-traceid'],
        allowCredentials: true,
        maxAge: '1.5m',
        unmatchedPreflights: 'IGNORE',
      }),
      {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
        allow_origin_string_match: [
          { exact: 'https://a.example' },
          { prefix: 'https://b.' },
          { safe_regex: { regex: 'https://.*\\.c\\.example' } },
        ],
        expose_headers: 'x-request-id,x-b3-traceid',
        max_age: '90',
        allow_credentials: { value: true },
        filter_enabled: { default_value: { numerator: 100, denominator: 'HUNDRED' } },
        forward_not_matching_preflights: { value: false },
      },
    );
    const legacy = corsPolicyConfig({ allowOrigin: ['https://old.example'], unmatchedPreflights: 'FORWARD' });
    assert.deepEqual(legacy.allow_origin_string_match, [{ exact: 'https://old.example' }]);
    assert.deepEqual(legacy.forward_not_matching_preflights, { value: true });
    assert.deepEqual(corsPolicyConfig({}).forward_not_matching_preflights, { value: true });
    assert.equal(corsPolicyConfig({}).allow_credentials, undefined);
  });
});

function vsOf(yaml: string): VirtualServiceObject[] {
  const { resources, errors } = parseManifests(yaml);
  assert.deepEqual(errors, []);
  return resources as unknown as VirtualServiceObject[];
}

describe('delegate', () => {
  it('a sidecar gets the delegate routes under the root match, ANDed; a conflicting one is left out', async () => {
    const push = pushOf(storeOf([BOOKINFO, DR_ALL, traffic('delegate-reviews.yaml'), PODS]));
    const warnings: string[] = [];
    const routes = vhostRoutes(routeConfig(push, PRODUCTPAGE, 'outbound', warnings), REVIEWS);
    await expectGolden('productpage-delegate-reviews', routes);
    assert.deepEqual(
      routes.map((r) => [r.name, (r.route as { cluster: string }).cluster]),
      [
        ['reviews-v2-jason', 'outbound|9080|v3|reviews.default.svc.cluster.local'],
        ['reviews-v2', 'outbound|9080|v2|reviews.default.svc.cluster.local'],
        ['reviews.default.1', 'outbound|9080|v1|reviews.default.svc.cluster.local'],
      ],
    );
    assert.deepEqual(
      [...new Set(warnings)],
      [
        "reviews.default http[0]: delegate reviews-team/reviews-v2 http[1] matches conflict with the root's; route left out",
      ],
    );
  });

  it("Istio's Delegate example on an ingress gateway: /productpage and /reviews handed to nsa and nsb", async () => {
    const push = pushOf(storeOf([traffic('delegate-istio-docs.yaml')]));
    const warnings: string[] = [];
    const routes = vhostRoutes(routeConfig(push, INGRESS, 'http.80', warnings), 'bookinfo.com:80');
    assert.deepEqual(warnings, []);
    await expectGolden('ingress-delegate-istio-docs', routes);
    assert.deepEqual(
      routes.map((r) => [r.match, (r.route as { cluster: string }).cluster]),
      [
        [{ prefix: '/productpage/v1/' }, 'outbound|80||productpage-v1.nsa.svc.cluster.local'],
        [{ prefix: '/productpage' }, 'outbound|80||productpage.nsa.svc.cluster.local'],
        [{ prefix: '/reviews' }, 'outbound|80||reviews.nsb.svc.cluster.local'],
      ],
    );
    assert.deepEqual(httpFilters(push, INGRESS, '0.0.0.0_80').slice(-2), [
      'envoy.filters.http.cors',
      'envoy.filters.http.router',
    ]);
  });

  it('a missing delegate, one with hosts, or one not exported to the root namespace leaves only its route out', () => {
    const [root, ...rest] = vsOf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - {match: [{uri: {prefix: /a}}], delegate: {name: nowhere}}
  - {match: [{uri: {prefix: /b}}], delegate: {name: ratings, namespace: default}}
  - {match: [{uri: {prefix: /c}}], delegate: {name: private, namespace: team}}
  - {match: [{uri: {prefix: /d}}], delegate: {name: public, namespace: team}}
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  exportTo: ["."]
  http: [{route: [{destination: {host: details}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: public, namespace: team}
spec:
  http: [{route: [{destination: {host: details}}]}]
`);
    assert.ok(root);
    const store = new ConfigStore<StoredObject>();
    store.apply([root, ...rest], 'test');
    const warnings: string[] = [];
    const out = effectiveHttpRoutes(pushOf(store), root, warnings);
    assert.deepEqual(
      out.map((r) => [r.index, r.route.match?.[0]?.uri?.prefix, r.route.route?.[0]?.destination.host]),
      [
        ['3.0', '/d', 'details.team.svc.cluster.local'],
        ['4', undefined, 'reviews'],
      ],
    );
    assert.deepEqual(warnings, [
      'root.default http[0]: delegate VirtualService default/nowhere not found; route left out',
      'root.default http[1]: delegate VirtualService default/ratings has hosts; route left out',
      'root.default http[2]: delegate VirtualService team/private not exported; route left out',
    ]);
  });

  it("Istio's match merging: nested string matches, ANDed maps, several root matches, inherited fields, joined names", () => {
    const [root, leaf] = vsOf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: api
    match:
    - {name: m1, uri: {prefix: /api}, headers: {x-team: {exact: a}}}
    - {name: m2, uri: {prefix: /v2/api}}
    retries: {attempts: 5}
    headers: {request: {set: {x-root: "1"}}}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    delegate: {name: leaf}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: default}
spec:
  http:
  - name: exact
    match: [{uri: {exact: /api/health}, headers: {x-user: {exact: u}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: both
    match: [{method: {exact: GET}}]
    retries: {attempts: 1}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: outside
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews}}]
  - name: regex
    match: [{uri: {regex: "/api/.*"}}]
    route: [{destination: {host: reviews}}]
  - name: case
    match: [{uri: {prefix: /api/x}, ignoreUriCase: true}]
    route: [{destination: {host: reviews}}]
`);
    assert.ok(root && leaf);
    const store = new ConfigStore<StoredObject>();
    store.apply([root, leaf], 'test');
    const warnings: string[] = [];
    const out = effectiveHttpRoutes(pushOf(store), root, warnings).map((r) => r.route);
    const want: HTTPRoute[] = [
      {
        name: 'api-exact',
        match: [
          {
            name: 'm1',
            uri: { exact: '/api/health' },
            headers: { 'x-team': { exact: 'a' }, 'x-user': { exact: 'u' } },
          },
        ],
        route: [{ destination: { host: 'reviews.default.svc.cluster.local', subset: 'v2' } }],
        retries: { attempts: 5 },
        headers: { request: { set: { 'x-root': '1' } } },
        corsPolicy: { allowOrigins: [{ exact: 'https://a.example' }] },
      },
      {
        name: 'api-both',
        match: [
          { name: 'm1', uri: { prefix: '/api' }, method: { exact: 'GET' }, headers: { 'x-team': { exact: 'a' } } },
          { name: 'm2', uri: { prefix: '/v2/api' }, method: { exact: 'GET' } },
        ],
        retries: { attempts: 1 },
        route: [{ destination: { host: 'reviews.default.svc.cluster.local', subset: 'v3' } }],
        headers: { request: { set: { 'x-root': '1' } } },
        corsPolicy: { allowOrigins: [{ exact: 'https://a.example' }] },
      },
    ];
    assert.deepEqual(out, want);
    assert.deepEqual(
      warnings.map((w) => /http\[(\d)\] matches conflict/.exec(w)?.[1]),
      ['2', '3', '4'],
      'outside the root prefix, a regex, and ignoreUriCase that differs conflict',
    );
  });

  it('incremental generation re-runs the root when its delegate changes, and only then', () => {
    const store = storeOf([BOOKINFO, DR_ALL, traffic('delegate-reviews.yaml'), PODS]);
    const rds = generators.get(TypeUrl.RouteConfiguration);
    assert.ok(rds);
    const inc = new IncrementalGenerator();
    const bytes = (e: readonly ResourceEntry[]): string[] =>
      e.map((x) => Buffer.from(x.resource.value).toString('hex'));
    const first = inc.generate(rds, pushOf(store, 1), PRODUCTPAGE, []);
    // A change RDS does not read (a Pod's labels): the output is reused, not generated again.
    loadManifestText(
      store,
      `apiVersion: v1
kind: Pod
metadata: {name: sleep-x, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: app, image: fedmesh/echo}]}
status: {phase: Running, podIP: 10.9.9.9, conditions: [{type: Ready, status: 'True'}]}`,
      'test',
      false,
    );
    const generated = inc.stats().generated;
    assert.equal(inc.generate(rds, pushOf(store, 2), PRODUCTPAGE, []), first, 'reused');
    assert.equal(inc.stats().generated, generated);
    // The delegate (in another namespace, bound to no host) now sends everything to v1.
    loadManifestText(
      store,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-v2, namespace: reviews-team}
spec:
  exportTo: [default]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]}]`,
      'test',
      false,
    );
    const push3 = pushOf(store, 3);
    const third = inc.generate(rds, push3, PRODUCTPAGE, []);
    assert.equal(inc.stats().generated, generated + 1, 'generated again');
    assert.deepEqual(bytes(third), bytes(rds(push3, PRODUCTPAGE, [])), 'as fresh generation gives');
    const rc = decodeAny(third[0]?.resource ?? assert.fail()) as unknown as DecodedRoutes;
    assert.deepEqual(
      vhostRoutes(rc, REVIEWS).map((r) => (r.route as { cluster: string }).cluster),
      ['outbound|9080|v1|reviews.default.svc.cluster.local', 'outbound|9080|v1|reviews.default.svc.cluster.local'],
    );
  });
});
