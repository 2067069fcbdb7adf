import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { KUBE_OWNER, KubeConfigSource, loadKubeConfig, type KubeConfigSourceOptions } from './source.js';
import {
  DEFAULT_FAKE_RESOURCES,
  fakePod,
  memoryLogger,
  startFakeApiServer,
  waitUntil,
  type FakeObject,
  type RunningFakeApiServer,
} from './testing/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pod(name: string, ip: string, labels: Record<string, string>): FakeObject {
  return fakePod(name, ip, labels, { serviceAccount: 'bookinfo-reviews', image: 'reviews:v1' });
}

function virtualService(weights: [number, number]): FakeObject {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      hosts: ['reviews'],
      http: [
        {
          route: [
            { destination: { host: 'reviews', subset: 'v1' }, weight: weights[0] },
            { destination: { host: 'reviews', subset: 'v2' }, weight: weights[1] },
          ],
        },
      ],
    },
  };
}

function seed(fake: RunningFakeApiServer): void {
  const s = fake.server;
  s.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', labels: { team: 'a' } } });
  s.apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'bookinfo-reviews', namespace: 'default' } });
  s.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'reviews', namespace: 'default', labels: { app: 'reviews' } },
    spec: { selector: { app: 'reviews' }, ports: [{ name: 'http', port: 9080 }] },
  });
  s.apply(pod('reviews-v1-0', '127.0.0.11', { app: 'reviews', version: 'v1' }));
  s.apply(virtualService([90, 10]));
}

interface Harness {
  fake: RunningFakeApiServer;
  store: ConfigStore<StoredObject>;
  source: KubeConfigSource;
  lines: Record<string, unknown>[];
}

async function harness(
  t: { after: (fn: () => Promise<void>) => void },
  opts: Partial<KubeConfigSourceOptions> = {},
  fakeOpts: Parameters<typeof startFakeApiServer>[0] = {},
): Promise<Harness> {
  const fake = await startFakeApiServer(fakeOpts);
  const store = new ConfigStore<StoredObject>();
  const { log, lines } = memoryLogger();
  const source = new KubeConfigSource({
    store,
    kubeConfig: fake.kubeConfig,
    log,
    backoffInitialMs: 100,
    backoffMaxMs: 400,
    ...opts,
  });
  t.after(async () => {
    await source.stop();
    await fake.close();
  });
  return { fake, store, source, lines };
}

const vsWeights = (store: ConfigStore<StoredObject>): unknown =>
  (
    store.get('VirtualService/default/reviews') as unknown as { spec: { http: { route: { weight: number }[] }[] } }
  )?.spec.http[0]?.route.map((r) => r.weight);

describe('KubeConfigSource against a fake API server', () => {
  it('mirrors objects as they appear, change and disappear', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    assert.equal(h.source.synced(), false, 'not synced before start');
    h.source.start();
    await h.source.waitForSync(10_000);
    assert.equal(h.source.synced(), true);
    for (const key of [
      'Namespace/default/default',
      'ServiceAccount/default/bookinfo-reviews',
      'Service/default/reviews',
      'Pod/default/reviews-v1-0',
      'VirtualService/default/reviews',
    ]) {
      assert.ok(h.store.get(key), `${key} mirrored`);
      assert.equal(h.store.ownerOf(key), KUBE_OWNER);
    }
    assert.deepEqual(vsWeights(h.store), [90, 10]);
    assert.equal(
      (h.store.get('Pod/default/reviews-v1-0')?.metadata as { resourceVersion?: string }).resourceVersion,
      undefined,
      'resourceVersion is not stored (it changes on every write)',
    );

    h.fake.server.apply(virtualService([0, 100]));
    h.fake.server.apply(pod('reviews-v2-0', '127.0.0.12', { app: 'reviews', version: 'v2' }));
    await waitUntil(() => JSON.stringify(vsWeights(h.store)) === '[0,100]', 10_000, 'VirtualService update');
    await waitUntil(() => h.store.get('Pod/default/reviews-v2-0') !== undefined, 10_000, 'new pod');

    h.fake.server.delete('v1', 'Pod', 'reviews-v1-0', 'default');
    await waitUntil(() => h.store.get('Pod/default/reviews-v1-0') === undefined, 10_000, 'pod deletion');
    assert.ok(h.store.get('Pod/default/reviews-v2-0'), 'other pods stay');
  });

  it('keeps the last good version of an object that turns invalid and logs the field path', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    h.fake.server.apply(virtualService([200, 10]));
    await waitUntil(() => h.lines.some((l) => l['path'] === 'spec.http[0].route[0].weight'), 10_000, 'warning');
    const line = h.lines.find((l) => l['path'] === 'spec.http[0].route[0].weight');
    assert.match(
      String(line?.['msg']),
      /invalid VirtualService default\/reviews: spec\.http\[0\]\.route\[0\]\.weight: .*keeping its last good version/,
    );
    assert.deepEqual(vsWeights(h.store), [90, 10], 'last good version kept');

    // A brand-new invalid object is ignored; the rest keeps flowing.
    h.fake.server.apply({
      ...virtualService([1, 2]),
      metadata: { name: 'bad', namespace: 'default' },
      spec: { hosts: [], bogus: 1 },
    });
    h.fake.server.apply(pod('reviews-v3-0', '127.0.0.13', { app: 'reviews', version: 'v3' }));
    await waitUntil(() => h.store.get('Pod/default/reviews-v3-0') !== undefined, 10_000, 'later pod');
    assert.equal(h.store.get('VirtualService/default/bad'), undefined);
    assert.ok(
      h.lines.some((l) => String(l['msg']).includes('VirtualService default/bad: spec.bogus: unknown field; ignored')),
    );

    // Deleting the object removes its last good version too.
    h.fake.server.delete('networking.istio.io/v1', 'VirtualService', 'reviews', 'default');
    await waitUntil(() => h.store.get('VirtualService/default/reviews') === undefined, 10_000, 'deletion');
  });

  it('relists after 410 Gone and sees what changed', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    const lists = h.fake.server.listCount('pods');
    assert.equal(lists, 1);
    h.fake.server.expireWatches();
    await waitUntil(() => h.fake.server.listCount('pods') === lists + 1, 10_000, 'relist of pods');
    await waitUntil(() => h.source.status().find((s) => s.kind === 'Pod')?.lists === 2, 10_000, 'relist applied');
    assert.ok(h.store.get('Pod/default/reviews-v1-0'), 'state kept through the relist');

    // A watch that resumes from a compacted resourceVersion gets 410 too: stop watches, change, compact, resume.
    await h.fake.server.stop();
    h.fake.server.delete('v1', 'Pod', 'reviews-v1-0', 'default');
    h.fake.server.apply(pod('reviews-v2-0', '127.0.0.12', { app: 'reviews', version: 'v2' }));
    h.fake.server.expireWatches();
    await h.fake.server.start();
    await waitUntil(() => h.store.get('Pod/default/reviews-v2-0') !== undefined, 15_000, 'pod added while away');
    await waitUntil(() => h.store.get('Pod/default/reviews-v1-0') === undefined, 15_000, 'pod deleted while away');
    assert.ok(h.fake.server.listCount('pods') >= lists + 2, 'relisted after the resumed watch got 410');
    assert.ok(
      h.fake.server.requests.some(
        (r) => r.watch && r.path === '/api/v1/pods' && r.resourceVersion !== '' && r.status === 200,
      ),
      'watches resume from a resourceVersion',
    );
  });

  it('resumes a dropped watch from its resourceVersion without relisting', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    const watches = h.fake.server.watchCount('virtualservices');
    const lists = h.fake.server.listCount('virtualservices');
    h.fake.server.dropConnections();
    h.fake.server.apply(virtualService([50, 50]));
    await waitUntil(() => JSON.stringify(vsWeights(h.store)) === '[50,50]', 15_000, 'change made while dropped');
    assert.ok(h.fake.server.watchCount('virtualservices') > watches, 'a new watch was opened');
    assert.equal(h.fake.server.listCount('virtualservices'), lists, 'no relist: the event came from watch replay');
    await waitUntil(() => h.source.status().every((s) => s.watching), 10_000, 'all kinds watching again');
  });

  it('keeps the last known state while the API server is down and catches up when it returns', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    await h.fake.server.stop();
    const changesBefore = h.store.revision;
    await waitUntil(() => h.source.status().every((s) => !s.watching && (s.restarts ?? 0) >= 2), 15_000, 'retries');
    assert.equal(h.store.revision, changesBefore, 'nothing removed or changed while the API server is down');
    assert.ok(h.store.get('Pod/default/reviews-v1-0'));
    assert.equal(h.source.synced(), true, 'synced stays true after the first sync');
    const pods = h.source.status().find((s) => s.kind === 'Pod');
    assert.match(pods?.lastError ?? '', /ECONNREFUSED|socket hang up|ECONNRESET/);
    h.fake.server.apply(virtualService([10, 90]));
    await h.fake.server.start();
    await waitUntil(() => JSON.stringify(vsWeights(h.store)) === '[10,90]', 15_000, 'change made while down');
    await waitUntil(() => h.source.status().every((s) => s.watching), 15_000, 'watching again');
  });

  it('is not synced until the API server answers, and says why', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    await h.fake.server.stop();
    h.source.start();
    await waitUntil(() => h.source.status().every((s) => s.lastError !== undefined), 10_000, 'first failures');
    await assert.rejects(h.source.waitForSync(300), /Kubernetes not synced after 300 ms: Service \(.*ECONNREFUSED/);
    assert.equal(h.source.synced(), false);
    await h.fake.server.start();
    await h.source.waitForSync(15_000);
    assert.ok(h.store.get('Service/default/reviews'));
  });

  it('restarts an informer the library stopped after a 500 on its list', async (t) => {
    const h = await harness(t);
    seed(h.fake);
    h.fake.server.failNext(3, 500, (m, p) => m === 'GET' && p === '/api/v1/services');
    h.source.start();
    await h.source.waitForSync(15_000);
    const svc = h.source.status().find((s) => s.kind === 'Service');
    assert.equal(svc?.restarts, 3);
    assert.match(svc?.lastError ?? '', /HTTP 500/);
    assert.ok(h.store.get('Service/default/reviews'));
  });

  it('treats a kind the server does not serve (CRD not installed) as empty and synced', async (t) => {
    const resources = DEFAULT_FAKE_RESOURCES.filter((r) => r.group !== 'security.istio.io');
    const h = await harness(t, {}, { resources });
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    const pa = h.source.status().find((s) => s.kind === 'PeerAuthentication');
    assert.equal(pa?.served, false);
    assert.ok(h.store.get('VirtualService/default/reviews'));
  });

  it('reads every page of a paged list', async (t) => {
    const h = await harness(t, { pageSize: 2 });
    seed(h.fake);
    for (let i = 0; i < 5; i++) h.fake.server.apply(pod(`p-${i}`, `127.0.0.${20 + i}`, { app: 'x' }));
    h.source.start();
    await h.source.waitForSync(10_000);
    assert.equal(h.store.list('Pod').length, 6);
    assert.ok(h.fake.server.requests.filter((r) => r.path === '/api/v1/pods' && !r.watch).length >= 3);
  });

  it('leaves no watch open when stopped while watches are still connecting', async (t) => {
    const h = await harness(t, {}, { watchHeadersDelayMs: 300 });
    seed(h.fake);
    h.source.start();
    await h.source.waitForSync(10_000);
    await waitUntil(() => h.fake.server.delayedWatches > 0, 10_000, 'watches still connecting');
    await h.source.stop();
    await waitUntil(() => h.fake.server.delayedWatches === 0, 15_000, 'the held watches answered');
    // Without the abort, these watches would stay open for good (timeoutSeconds is 300).
    await waitUntil(() => h.fake.server.openWatches === 0, 15_000, 'no open watch after stop');
    assert.ok(h.fake.server.watchCount('pods') >= 1, 'the watches did reach the server');
  });

  it('aborts a silent watch after the idle timeout, and bookmarks keep a quiet one alive', async (t) => {
    const quiet = await harness(t, { idleTimeoutMs: 300 });
    seed(quiet.fake);
    quiet.source.start();
    await quiet.source.waitForSync(10_000);
    await waitUntil(() => (quiet.source.status()[0]?.restarts ?? 0) >= 1, 10_000, 'idle restart');

    const alive = await harness(t, { idleTimeoutMs: 2500 }, { bookmarkIntervalMs: 100 });
    seed(alive.fake);
    alive.source.start();
    await alive.source.waitForSync(10_000);
    await sleep(4000);
    assert.ok(
      alive.source.status().every((s) => s.restarts === 0),
      'bookmarks count as activity',
    );
  });
});

describe('loadKubeConfig', () => {
  it('loads the in-cluster config from a ServiceAccount mount and syncs with its token', async (t) => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const root = mkdtempSync('/tmp/fedmesh-sa-');
    const saDir = `${root}/var/run/secrets/kubernetes.io/serviceaccount`;
    mkdirSync(saDir, { recursive: true });
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    t.after(() => {
      rmSync(root, { recursive: true, force: true });
      for (const [k, v] of [
        ['KUBERNETES_SERVICE_HOST', saved.host],
        ['KUBERNETES_SERVICE_PORT', saved.port],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    });
    writeFileSync(`${saDir}/ca.crt`, fake.caPem);
    assert.throws(() => loadKubeConfig(saDir), /ENOENT.*token/);
    writeFileSync(`${saDir}/token`, fake.token);
    writeFileSync(`${saDir}/namespace`, 'istio-system');
    delete process.env.KUBERNETES_SERVICE_HOST;
    assert.throws(() => loadKubeConfig(saDir), /needs KUBERNETES_SERVICE_HOST/);
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = new URL(fake.server.url).port;
    const kc = loadKubeConfig(saDir);
    assert.equal(kc.getCurrentCluster()?.server, fake.server.url);
    fake.server.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'in-cluster' } });
    const store = new ConfigStore<StoredObject>();
    const source = new KubeConfigSource({ store, kubeConfig: kc, log: memoryLogger().log });
    t.after(() => source.stop());
    source.start();
    await source.waitForSync(10_000);
    assert.ok(store.get('Namespace/default/in-cluster'), 'listed with the token read from the mount');
  });

  let fake: RunningFakeApiServer;
  before(async () => (fake = await startFakeApiServer()));
  after(() => fake.close());

  it('names the file when it cannot be used', async () => {
    assert.throws(() => loadKubeConfig('/nonexistent/kubeconfig'), /kubeconfig \/nonexistent\/kubeconfig: .*ENOENT/);
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/fedmesh-kc-');
    try {
      writeFileSync(`${dir}/empty`, 'apiVersion: v1\nkind: Config\n');
      assert.throws(() => loadKubeConfig(`${dir}/empty`), /no current context with a cluster server/);
      writeFileSync(`${dir}/good`, fake.kubeconfigYaml);
      assert.equal(loadKubeConfig(`${dir}/good`).getCurrentCluster()?.server, fake.server.url);
      assert.throws(() => loadKubeConfig(dir), /a directory must be a ServiceAccount mount/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
