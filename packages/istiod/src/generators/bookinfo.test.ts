/**
 * What a Bookinfo user notices of the generators, independent of golden files: traffic splits, header matches,
 * mutual TLS to the right identity, SNI-selected inbound chains, subset endpoints, `exportTo` and `sourceLabels`.
 * Where it matters, the fedmesh proxy's own decoder and route table decide (the request lands on v2), not a field.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ClusterLoadAssignmentType,
  ClusterType,
  ListenerType,
  RouteConfigurationType,
  hcmOf,
  type EnvoyClusterLoadAssignment,
  type EnvoyRoute,
  type RouteTable,
} from '@fedmesh/proxy';
import type { XdsResourceType } from '@fedmesh/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { generateClusters, generateEndpoints, generateListeners, generateRoutes } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../../testdata/bookinfo-pods.yaml');
const REVIEWS = 'reviews.default.svc.cluster.local';
const v = (subset: string): string => `outbound|9080|${subset}|${REVIEWS}`;

/** bookinfoPush loads Bookinfo, its pods, the given networking samples and extra manifest text (`fedmesh apply`). */
function bookinfoPush(networking: readonly string[], extra = ''): PushContext {
  const store = new ConfigStore<StoredObject>();
  const files = [
    path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'),
    PODS,
    ...networking.map((f) => path.join(SAMPLES, 'bookinfo/networking', f)),
  ];
  for (const f of files) loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
  if (extra) assert.deepEqual(loadManifestText(store, extra, 'api', false).errors, []);
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
  };
  return new PushContext(
    1,
    mesh,
    store,
    [registry],
    fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8'),
  );
}

function sidecar(ip: string, sa: string, labels: Record<string, string>, ns = 'default'): ProxyModel {
  const pod = `${labels.app ?? 'pod'}-${labels.version ?? 'v1'}-0`;
  return parseProxyNode({
    id: `sidecar~${ip}~${pod}.${ns}~${ns}.svc.cluster.local`,
    metadata: { NAMESPACE: ns, SERVICE_ACCOUNT: sa, LABELS: labels },
  });
}

const PRODUCTPAGE = sidecar('127.0.9.1', 'bookinfo-productpage', { app: 'productpage', version: 'v1' });
const RATINGS = sidecar('127.0.9.3', 'bookinfo-ratings', { app: 'ratings', version: 'v1' });
const REVIEWS_V2 = sidecar('127.0.9.5', 'bookinfo-reviews', { app: 'reviews', version: 'v2' });

/** accepted decodes a resource with the proxy's own decoder, failing the test if the proxy would NACK it. */
function accepted<T>(type: XdsResourceType<T>, r: GeneratedResource | undefined): T {
  assert.ok(r, 'resource generated');
  const res = type.decode(r.resource);
  assert.ok('value' in res, `${r.name} would be NACKed: ${'error' in res ? res.error : ''}`);
  return res.value;
}

/** routeTable is the proxy's compiled `outbound` RouteConfiguration. */
function routeTable(push: PushContext, proxy: ProxyModel): RouteTable {
  return accepted(RouteConfigurationType, generateRoutes(push, proxy)[0]);
}

/** clustersFor is where the proxy sends `GET http://<authority>/reviews/0` with the given headers. */
function clustersFor(
  table: RouteTable,
  headers: Record<string, string> = {},
  authority = 'reviews:9080',
): { name: string; weight: number }[] {
  const hit = table.route({ method: 'GET', authority, path: '/reviews/0', scheme: 'http', headers });
  assert.ok(hit, `no route for ${authority}`);
  assert.equal(hit.route.action.kind, 'route');
  return hit.route.action.kind === 'route' ? hit.route.action.clusters : [];
}

/** lbEndpoints flattens a ClusterLoadAssignment's endpoints over localities. */
function lbEndpoints(
  cla: EnvoyClusterLoadAssignment | undefined,
): NonNullable<NonNullable<EnvoyClusterLoadAssignment['endpoints']>[number]['lb_endpoints']> {
  return (cla?.endpoints ?? []).flatMap((l) => l.lb_endpoints ?? []);
}

/** reviewsRoutes are the routes of the reviews virtual host, as the proxy decodes them. */
function reviewsRoutes(push: PushContext, proxy: ProxyModel): EnvoyRoute[] {
  const vh = routeTable(push, proxy).config.virtual_hosts?.find((h) => h.name === `${REVIEWS}:9080`);
  assert.ok(vh, 'no virtual host for reviews');
  return vh.routes ?? [];
}

describe('routing from Istio networking samples', () => {
  it('virtual-service-reviews-90-10 splits reviews 90/10 between subsets v1 and v2', () => {
    const push = bookinfoPush(['destination-rule-all-mtls.yaml', 'virtual-service-reviews-90-10.yaml']);
    const routes = reviewsRoutes(push, PRODUCTPAGE);
    assert.equal(routes.length, 1);
    assert.deepEqual(routes[0]?.route?.weighted_clusters?.clusters, [
      { name: v('v1'), weight: { value: 90 } },
      { name: v('v2'), weight: { value: 10 } },
    ]);
    assert.deepEqual(clustersFor(routeTable(push, PRODUCTPAGE)), [
      { name: v('v1'), weight: 90 },
      { name: v('v2'), weight: 10 },
    ]);
  });

  it('virtual-service-reviews-test-v2 sends end-user jason to v2, before the default route to v1', () => {
    const push = bookinfoPush(['destination-rule-all-mtls.yaml', 'virtual-service-reviews-test-v2.yaml']);
    assert.deepEqual(
      reviewsRoutes(push, PRODUCTPAGE).map((r) => [r.match, r.route?.cluster]),
      [
        [{ prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] }, v('v2')],
        [{ prefix: '/' }, v('v1')],
      ],
    );
    const table = routeTable(push, PRODUCTPAGE);
    assert.deepEqual(clustersFor(table, { 'end-user': 'jason' }), [{ name: v('v2'), weight: 1 }]);
    assert.deepEqual(clustersFor(table, { 'end-user': 'json' }), [{ name: v('v1'), weight: 1 }]);
    assert.deepEqual(clustersFor(table), [{ name: v('v1'), weight: 1 }]);
  });

  it('without a VirtualService, reviews gets one default route to the whole service', () => {
    const push = bookinfoPush(['destination-rule-all-mtls.yaml']);
    assert.deepEqual(clustersFor(routeTable(push, PRODUCTPAGE)), [{ name: v(''), weight: 1 }]);
  });

  it("exportTo '.' keeps a VirtualService from proxies in other namespaces", () => {
    const push = bookinfoPush(
      ['destination-rule-all-mtls.yaml'],
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews-team-b, namespace: team-b }
spec:
  hosts: [${REVIEWS}]
  exportTo: ['.']
  http:
  - route:
    - destination: { host: ${REVIEWS}, subset: v3 }
`,
    );
    const teamB = sidecar('127.0.9.20', 'sleep', { app: 'sleep' }, 'team-b');
    assert.deepEqual(clustersFor(routeTable(push, teamB), {}, 'reviews.default:9080'), [{ name: v('v3'), weight: 1 }]);
    assert.equal(
      routeTable(push, teamB).route({
        method: 'GET',
        authority: 'reviews:9080',
        path: '/',
        scheme: 'http',
        headers: {},
      }),
      undefined,
      'the short name resolves only in its own namespace',
    );
    assert.deepEqual(clustersFor(routeTable(push, PRODUCTPAGE)), [{ name: v(''), weight: 1 }]);
  });

  it('sourceLabels restricts a route to the proxies whose labels match', () => {
    const push = bookinfoPush(
      ['destination-rule-all-mtls.yaml'],
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
  - match: [{ sourceLabels: { app: productpage } }]
    route: [{ destination: { host: reviews, subset: v2 } }]
  - route: [{ destination: { host: reviews, subset: v1 } }]
`,
    );
    assert.deepEqual(clustersFor(routeTable(push, PRODUCTPAGE)), [{ name: v('v2'), weight: 1 }]);
    assert.deepEqual(clustersFor(routeTable(push, RATINGS)), [{ name: v('v1'), weight: 1 }]);
    assert.deepEqual(
      reviewsRoutes(push, RATINGS).map((r) => r.route?.cluster),
      [v('v1')],
      'the productpage-only route is left out for ratings',
    );
  });
});

describe('clusters, endpoints and listeners from destination-rule-all-mtls', () => {
  const push = bookinfoPush(['destination-rule-all-mtls.yaml']);

  it('each subset is an outbound cluster using mutual TLS that accepts only the reviews identity', () => {
    const clusters = new Map(generateClusters(push, PRODUCTPAGE).map((c) => [c.name, accepted(ClusterType, c)]));
    for (const subset of ['', 'v1', 'v2', 'v3']) {
      const c = clusters.get(v(subset));
      assert.ok(c, `missing cluster ${v(subset)}`);
      assert.equal(c.type, 'EDS');
      assert.equal(c.eds_cluster_config?.service_name, v(subset));
      const tls = c.transport_socket?.typed_config;
      assert.ok(tls, `${v(subset)} uses TLS`);
      assert.equal(tls.sni, `outbound_.9080_.${subset}_.${REVIEWS}`);
      const ctx = tls.common_tls_context;
      assert.deepEqual(ctx.combined_validation_context?.default_validation_context.match_typed_subject_alt_names, [
        { san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews' } },
      ]);
      assert.equal(ctx.tls_certificate_sds_secret_configs?.[0]?.name, 'default');
      assert.equal(ctx.combined_validation_context.validation_context_sds_secret_config.name, 'ROOTCA');
    }
    assert.ok(!clusters.has(`outbound|9080|v4|${REVIEWS}`));
  });

  it('EDS for subset v2 holds only the v2 pod; the service holds all three', () => {
    const cla = new Map(
      generateEndpoints(push, PRODUCTPAGE).map((e) => [e.name, accepted(ClusterLoadAssignmentType, e)]),
    );
    const addresses = (name: string): string[] =>
      lbEndpoints(cla.get(name)).map((e) => e.endpoint.address.socket_address.address);
    assert.deepEqual(addresses(v('v2')), ['127.0.9.5']);
    assert.deepEqual(addresses(v('v1')), ['127.0.9.4']);
    assert.deepEqual(addresses(v('')), ['127.0.9.4', '127.0.9.5', '127.0.9.6']);
    const [ep] = lbEndpoints(cla.get(v('v2')));
    assert.equal(ep?.endpoint.address.socket_address.port_value, 9080);
    assert.equal(ep.health_status, 'HEALTHY');
    const md = ep.metadata as { filter_metadata?: { istio?: { fields?: Record<string, unknown> } } } | undefined;
    assert.deepEqual(md?.filter_metadata?.istio?.fields?.workload, {
      stringValue: 'reviews-v2;default;reviews;v2;Kubernetes',
    });
  });

  it('an unready pod stays in EDS but is marked unhealthy', () => {
    const notReady = `apiVersion: v1
kind: Pod
metadata: { name: reviews-v2-7c9e8a0d5-d3e4f, namespace: default, labels: { app: reviews, version: v2 } }
spec: { serviceAccountName: bookinfo-reviews, containers: [{ name: reviews, image: fedmesh/echo }] }
status: { phase: Running, podIP: 127.0.9.5, conditions: [{ type: Ready, status: 'False' }] }
`;
    const generated = generateEndpoints(bookinfoPush(['destination-rule-all-mtls.yaml'], notReady), PRODUCTPAGE);
    const cla = accepted(
      ClusterLoadAssignmentType,
      generated.find((e) => e.name === v('v2')),
    );
    assert.deepEqual(
      lbEndpoints(cla).map((e) => [e.endpoint.address.socket_address.address, e.health_status]),
      [['127.0.9.5', 'UNHEALTHY']],
    );
  });

  it('the inbound listener picks its filter chain by the SNI peers send for the service and its subsets', () => {
    const inbound = generateListeners(push, REVIEWS_V2).find((l) => l.name === 'virtualInbound');
    const l = accepted(ListenerType, inbound).config;
    assert.deepEqual(l.address.socket_address, { address: '127.0.9.5', port_value: 15006 });
    assert.equal(l.filter_chains.length, 1);
    const [chain] = l.filter_chains;
    assert.equal(chain?.filter_chain_match?.transport_protocol, 'tls');
    assert.deepEqual(chain.filter_chain_match.server_names, [
      `outbound_.9080_._.${REVIEWS}`,
      `outbound_.9080_.v2_.${REVIEWS}`,
    ]);
    assert.equal(chain.transport_socket?.typed_config.require_client_certificate?.value, true);
    const vh = hcmOf(chain)?.route_config?.virtual_hosts?.[0];
    assert.equal(vh?.routes?.[0]?.route?.cluster, 'inbound|9080||');
    const local = accepted(
      ClusterType,
      generateClusters(push, REVIEWS_V2).find((c) => c.name === 'inbound|9080||'),
    );
    assert.deepEqual(
      lbEndpoints(local.load_assignment).map((e) => e.endpoint.address.socket_address),
      [{ address: '127.0.9.5', port_value: 9080 }],
      'the inbound cluster forwards to the app on its own pod IP',
    );
  });

  it('a proxy with no workload behind a service gets no inbound listener', () => {
    const sleep = sidecar('127.0.9.30', 'sleep', { app: 'sleep' });
    assert.deepEqual(
      generateListeners(push, sleep).map((l) => l.name),
      ['virtualOutbound'],
    );
  });
});
