import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { parseEndpointSlice, parseEndpoints } from './endpoint-kinds.js';
import { parseEndpointMode, type EndpointMode } from './endpoint-mode.js';
import { KubeConfigSource } from './source.js';
import {
  DEFAULT_FAKE_RESOURCES,
  fakePod,
  memoryLogger,
  startFakeApiServer,
  waitUntil,
  type FakeObject,
  type FakeResource,
  type RunningFakeApiServer,
} from './testing/index.js';

const HOST = 'reviews.default.svc.cluster.local';

function pod(name: string, ip: string, version: string): FakeObject {
  return fakePod(name, ip, { app: 'reviews', version }, { serviceAccount: 'bookinfo-reviews', image: 'reviews' });
}

interface SliceEndpoint {
  ip: string;
  pod?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}

/** slice builds an EndpointSlice of `reviews` whose port `http` is `port` (the workload port). */
function slice(
  name: string,
  endpoints: SliceEndpoint[],
  opts: { version?: 'v1' | 'v1beta1'; addressType?: string; port?: number } = {},
): FakeObject {
  const v1beta1 = opts.version === 'v1beta1';
  return {
    apiVersion: `discovery.k8s.io/${opts.version ?? 'v1'}`,
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': 'reviews' } },
    addressType: opts.addressType ?? 'IPv4',
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ...(e.ready !== undefined ? { ready: e.ready } : {}),
        ...(e.serving !== undefined ? { serving: e.serving } : {}),
        ...(e.terminating !== undefined ? { terminating: e.terminating } : {}),
      },
      ...(e.pod ? { targetRef: { kind: 'Pod', name: e.pod, namespace: 'default' } } : {}),
      ...(v1beta1 ? { topology: { 'topology.kubernetes.io/zone': 'zone-b' } } : { zone: 'zone-a' }),
    })),
    ports: [{ name: 'http', port: opts.port ?? 9081, protocol: 'TCP' }],
  };
}

function endpoints(addresses: string[], notReady: string[] = []): FakeObject {
  return {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'reviews', namespace: 'default' },
    subsets: [
      {
        addresses: addresses.map((ip) => ({ ip })),
        ...(notReady.length > 0 ? { notReadyAddresses: notReady.map((ip) => ({ ip })) } : {}),
        ports: [{ name: 'http', port: 9082, protocol: 'TCP' }],
      },
    ],
  };
}

function seed(fake: RunningFakeApiServer): void {
  const s = fake.server;
  s.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: { selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080, targetPort: 9080 }] },
  });
  s.apply(pod('reviews-v1-0', '10.1.0.1', 'v1'));
  s.apply(pod('reviews-v2-0', '10.1.0.2', 'v2'));
}

interface Harness {
  fake: RunningFakeApiServer;
  store: ConfigStore<StoredObject>;
  source: KubeConfigSource;
  registry: KubeObjectsRegistry;
  lines: Record<string, unknown>[];
  /** eps lists `address:targetPort:healthy[:serviceAccount]` of reviews:9080, sorted. */
  eps(): string[];
}

async function harness(
  t: { after: (fn: () => Promise<void>) => void },
  endpointMode: EndpointMode = 'auto',
  resources: readonly FakeResource[] = DEFAULT_FAKE_RESOURCES,
): Promise<Harness> {
  const fake = await startFakeApiServer({ resources });
  const store = new ConfigStore<StoredObject>();
  const { log, lines } = memoryLogger();
  const source = new KubeConfigSource({
    store,
    kubeConfig: fake.kubeConfig,
    log,
    endpointMode,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
  });
  t.after(async () => {
    await source.stop();
    await fake.close();
  });
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const eps = (): string[] =>
    registry
      .instances(HOST, 9080)
      .map(
        (i) => `${i.endpoint.address}:${i.servicePort.targetPort}:${i.endpoint.healthy}:${i.endpoint.serviceAccount}`,
      )
      .sort();
  return { fake, store, source, registry, lines, eps };
}

const withoutSlices = DEFAULT_FAKE_RESOURCES.filter((r) => r.kind !== 'EndpointSlice');
const v1beta1Only: FakeResource[] = [
  ...withoutSlices,
  { group: 'discovery.k8s.io', version: 'v1beta1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
];

describe('EndpointSlices from the Kubernetes API', () => {
  it('merges every slice of a Service, honours ready/terminating, skips FQDN slices and ignores Endpoints', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.fake.server.apply(endpoints(['10.9.9.9']));
    h.fake.server.apply(slice('reviews-a', [{ ip: '10.1.0.1', pod: 'reviews-v1-0', ready: true }]));
    h.fake.server.apply(
      slice('reviews-b', [
        { ip: '10.1.0.2', pod: 'reviews-v2-0', ready: false, serving: true, terminating: true },
        { ip: '10.1.0.7' }, // no pod behind it (conditions unknown: ready)
      ]),
    );
    h.fake.server.apply(slice('reviews-fqdn', [{ ip: 'reviews.example.com' }], { addressType: 'FQDN' }));
    h.source.start();
    await h.source.waitForSync(10_000);
    assert.deepEqual(h.source.endpointSource(), { kind: 'EndpointSlice', version: 'v1' });
    assert.equal(h.store.list('Endpoints').length, 0, 'Endpoints are not mirrored when slices are');
    assert.ok(h.fake.server.listCount('endpointslices') >= 1);
    assert.equal(h.fake.server.listCount('endpoints'), 0);
    // The workload port is the slice's (9081), not the Service's targetPort; the pod gives the service account.
    assert.deepEqual(h.eps(), [
      '10.1.0.1:9081:true:bookinfo-reviews',
      '10.1.0.2:9081:false:bookinfo-reviews',
      '10.1.0.7:9081:true:',
    ]);
    const bare = h.registry.instances(HOST, 9080).find((i) => i.endpoint.address === '10.1.0.7');
    assert.equal(bare?.endpoint.tlsMode, 'disabled', 'an address with no pod has no sidecar');
    assert.equal(h.registry.instances(HOST, 9080)[0]?.endpoint.locality.zone, 'zone-a', 'zone from the slice');

    // An endpoint listed in two slices (the controller moving it) is kept once, ready when any copy is.
    h.fake.server.apply(slice('reviews-c', [{ ip: '10.1.0.2', pod: 'reviews-v2-0', ready: true }]));
    await waitUntil(() => h.eps().includes('10.1.0.2:9081:true:bookinfo-reviews'), 10_000, 'overlapping slice');
    assert.equal(h.eps().length, 3);
  });

  it('follows slice changes through watches, 410 Gone relists and dropped connections', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.fake.server.apply(slice('reviews-a', [{ ip: '10.1.0.1', pod: 'reviews-v1-0', ready: false }]));
    h.source.start();
    await h.source.waitForSync(10_000);
    assert.deepEqual(h.eps(), ['10.1.0.1:9081:false:bookinfo-reviews']);

    h.fake.server.apply(slice('reviews-a', [{ ip: '10.1.0.1', pod: 'reviews-v1-0', ready: true }]));
    await waitUntil(() => h.eps()[0] === '10.1.0.1:9081:true:bookinfo-reviews', 10_000, 'ready by watch');

    const lists = h.fake.server.listCount('endpointslices');
    h.fake.server.expireWatches();
    h.fake.server.apply(slice('reviews-b', [{ ip: '10.1.0.2', pod: 'reviews-v2-0' }]));
    await waitUntil(() => h.fake.server.listCount('endpointslices') > lists, 10_000, 'relist after 410');
    await waitUntil(() => h.eps().length === 2, 10_000, 'second slice after the relist');

    // Changes made while every connection is down arrive once the watch resumes.
    h.fake.server.dropConnections();
    h.fake.server.delete('discovery.k8s.io/v1', 'EndpointSlice', 'reviews-a', 'default');
    await waitUntil(() => h.eps().join() === '10.1.0.2:9081:true:bookinfo-reviews', 10_000, 'deletion seen');
    const status = h.source.status().find((s) => s.kind === 'EndpointSlice');
    assert.ok(status?.synced && status.lists >= 2, JSON.stringify(status));

    // With its last slice gone, the Service's endpoints are its selected pods again (no controller wrote any).
    h.fake.server.delete('discovery.k8s.io/v1', 'EndpointSlice', 'reviews-b', 'default');
    await waitUntil(() => h.eps().length === 2 && h.eps()[0]?.startsWith('10.1.0.1:9080:') === true, 10_000, 'pods');
  });

  it('watches discovery.k8s.io/v1beta1 on a server without v1 (Kubernetes 1.20) and reads its topology', async (t) => {
    const h = await harness(t, 'auto', v1beta1Only);
    seed(h.fake);
    h.fake.server.apply(
      slice('reviews-a', [{ ip: '10.1.0.1', pod: 'reviews-v1-0', ready: true }], { version: 'v1beta1' }),
    );
    h.source.start();
    await h.source.waitForSync(10_000);
    assert.deepEqual(h.source.endpointSource(), { kind: 'EndpointSlice', version: 'v1beta1' });
    assert.ok(h.fake.server.requests.some((r) => r.path === '/apis/discovery.k8s.io/v1beta1/endpointslices'));
    assert.ok(!h.fake.server.requests.some((r) => r.path === '/apis/discovery.k8s.io/v1/endpointslices'));
    assert.deepEqual(h.eps(), ['10.1.0.1:9081:true:bookinfo-reviews']);
    assert.equal(h.registry.instances(HOST, 9080)[0]?.endpoint.locality.zone, 'zone-b');
    const stored = h.store.list('EndpointSlice')[0];
    assert.equal(stored?.apiVersion, 'discovery.k8s.io/v1', 'stored in the v1 shape');
  });

  it('falls back to Endpoints when the server has no discovery.k8s.io, and with PILOT_USE_ENDPOINT_SLICE=false', async (t) => {
    for (const [mode, resources] of [
      ['auto', withoutSlices],
      [parseEndpointMode('false'), DEFAULT_FAKE_RESOURCES],
    ] as const) {
      const h = await harness(t, mode, resources);
      seed(h.fake);
      h.fake.server.apply(endpoints(['10.1.0.1'], ['10.1.0.2']));
      if (resources === DEFAULT_FAKE_RESOURCES)
        h.fake.server.apply(slice('reviews-a', [{ ip: '10.1.0.9', ready: true }]));
      h.source.start();
      await h.source.waitForSync(10_000);
      assert.deepEqual(h.source.endpointSource(), { kind: 'Endpoints' }, mode);
      assert.equal(h.fake.server.listCount('endpointslices'), 0, mode);
      assert.deepEqual(h.eps(), ['10.1.0.1:9082:true:bookinfo-reviews', '10.1.0.2:9082:false:bookinfo-reviews']);
      h.fake.server.apply(endpoints(['10.1.0.1', '10.1.0.2']));
      await waitUntil(() => h.eps().every((e) => e.includes(':true:')), 10_000, `Endpoints update (${mode})`);
    }
  });

  it('retries API discovery until it answers; not synced meanwhile', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.fake.server.failNext(3, 503, (m, p) => p === '/apis/discovery.k8s.io');
    h.source.start();
    await waitUntil(() => h.fake.server.requests.some((r) => r.status === 503), 10_000, 'a failed discovery');
    assert.equal(h.source.synced(), false, 'not synced before the endpoint source is known');
    assert.equal(h.source.status().find((s) => s.kind === 'EndpointSlice')?.synced, false);
    await h.source.waitForSync(10_000);
    assert.deepEqual(h.source.endpointSource(), { kind: 'EndpointSlice', version: 'v1' });
    const asked = h.fake.server.requests.filter((r) => r.path === '/apis/discovery.k8s.io').map((r) => r.status);
    assert.deepEqual(asked, [503, 503, 503, 200]);
    assert.ok(h.lines.some((l) => String(l['msg']).includes('discovery of discovery.k8s.io failed')));
  });

  it('keeps the last good slice when one turns invalid, naming the field', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.fake.server.apply(slice('reviews-a', [{ ip: '10.1.0.1', pod: 'reviews-v1-0' }]));
    h.source.start();
    await h.source.waitForSync(10_000);
    h.fake.server.apply(slice('reviews-a', [{ ip: 'fe80::1', pod: 'reviews-v1-0' }]));
    await waitUntil(() => h.lines.some((l) => l['path'] === 'endpoints[0].addresses[0]'), 10_000, 'warning');
    assert.match(
      String(h.lines.find((l) => l['path'] === 'endpoints[0].addresses[0]')?.['msg']),
      /invalid EndpointSlice default\/reviews-a: endpoints\[0\]\.addresses\[0\]: must be an IPv4 address; keeping its last good version/,
    );
    assert.deepEqual(h.eps(), ['10.1.0.1:9081:true:bookinfo-reviews']);
  });

  it("prefers a Service's slices over its Endpoints when a store holds both", () => {
    const store = new ConfigStore<StoredObject>();
    const objects = [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'reviews', namespace: 'default' },
        spec: { ports: [{ name: 'http', port: 9080 }] },
      },
      parseEndpoints(endpoints(['10.9.9.9'])),
      parseEndpointSlice(slice('reviews-a', [{ ip: '10.1.0.1' }])),
    ].map((o) => ('ok' in o ? (o.ok ? o.object : assert.fail(JSON.stringify(o.issues))) : (o as StoredObject)));
    store.apply(objects, 'test');
    const registry = new KubeObjectsRegistry(store, { cluster: 'c', network: '', domainSuffix: 'cluster.local' });
    assert.deepEqual(
      registry.instances(HOST, 9080).map((i) => `${i.endpoint.address}:${i.servicePort.targetPort}`),
      ['10.1.0.1:9081'],
    );
    store.remove(['EndpointSlice/default/reviews-a']);
    assert.deepEqual(
      registry.instances(HOST, 9080).map((i) => `${i.endpoint.address}:${i.servicePort.targetPort}`),
      ['10.9.9.9:9082'],
    );
  });

  it('parses PILOT_USE_ENDPOINT_SLICE as Istio does', () => {
    assert.equal(parseEndpointMode(undefined), 'auto');
    assert.equal(parseEndpointMode('true'), 'EndpointSlice');
    assert.equal(parseEndpointMode('0'), 'Endpoints');
    assert.throws(() => parseEndpointMode('yes'), /PILOT_USE_ENDPOINT_SLICE: must be true or false, got "yes"/);
  });
});
