import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ClusterType } from '@fedmesh/proxy';
import { loadManifestText } from './config/file-source.js';
import { ConfigStore, type StoredObject } from './config/store.js';
import { captureOutboundChains, generateClusters } from './generators/index.js';
import { Istiod } from './istiod.js';
import { memoryLogger, startFakeApiServer, waitUntil, type FakeObject } from './kube/testing/index.js';
import { meshSettingsFrom, parseMeshConfig } from './mesh-config.js';
import { parseProxyNode } from './model/proxy.js';
import { PushContext, type MeshSettings } from './push-context.js';
import { KubeObjectsRegistry } from './registry/kube-objects.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../testdata/bookinfo-pods.yaml');
const BASE: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};

/** bookinfoPush is a push of Bookinfo and its pods (no DestinationRule) under the given mesh config YAML. */
function bookinfoPush(meshYaml: string): PushContext {
  const parsed = parseMeshConfig(meshYaml);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  const store = new ConfigStore<StoredObject>();
  for (const f of [path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'), PODS])
    loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  return new PushContext(1, meshSettingsFrom(BASE, parsed.config), store, [registry], '');
}

const PRODUCTPAGE = parseProxyNode({
  id: 'sidecar~127.0.9.1~productpage-v1-0.default~default.svc.cluster.local',
  metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'bookinfo-productpage', LABELS: { app: 'productpage' } },
});

/** reviewsSans are the SANs productpage's reviews cluster accepts (decoded as the proxy does); undefined: plaintext. */
function reviewsSans(push: PushContext): string[] | undefined {
  const r = generateClusters(push, PRODUCTPAGE).find(
    (c) => c.name === 'outbound|9080||reviews.default.svc.cluster.local',
  );
  assert.ok(r, 'reviews cluster');
  const decoded = ClusterType.decode(r.resource);
  assert.ok('value' in decoded, 'the proxy accepts the cluster');
  const tls = decoded.value.transport_socket?.typed_config;
  if (!tls) return undefined;
  return (
    tls.common_tls_context.combined_validation_context?.default_validation_context.match_typed_subject_alt_names ?? []
  ).map((m) => m.matcher.exact ?? '');
}

describe('parseMeshConfig', () => {
  it("reads deploy/k8s's ConfigMap, warns about unknown and not-honoured fields, rejects wrong types with paths", () => {
    const cm = fs.readFileSync(path.resolve(here, '../../../deploy/k8s/30-mesh-config.yaml'), 'utf8');
    const mesh = /^ {2}mesh: \|-\n((?: {4}.*\n?)*)/m.exec(cm)?.[1]?.replace(/^ {4}/gm, '') ?? '';
    const good = parseMeshConfig(mesh);
    assert.ok(good.ok, JSON.stringify(good));
    assert.equal(good.config.trustDomain, 'cluster.local');
    assert.deepEqual(good.warnings, []);

    const lenient = parseMeshConfig(
      'trustDomain: td\nfutureField: {a: 1}\naccessLogFile: /dev/stdout\ndefaultConfig: {concurrency: 2, proxyMetadata: {A: b}}\n',
    );
    assert.ok(lenient.ok);
    assert.deepEqual(
      lenient.warnings.map((w) => `${w.path}: ${w.message}`),
      [
        'defaultConfig.concurrency: unknown field (not read by fedmesh); ignored',
        'futureField: unknown field (not read by fedmesh); ignored',
        'accessLogFile: not honoured by fedmesh; ignored',
        'defaultConfig.proxyMetadata: not honoured by fedmesh; ignored',
      ],
    );
    assert.equal(lenient.config.trustDomain, 'td');

    const bad = parseMeshConfig(
      'enableAutoMtls: "yes"\ndefaultServiceExportTo: [Foo]\noutboundTrafficPolicy: {mode: OPEN}\nbogus: 1\n',
    );
    assert.ok(!bad.ok);
    assert.deepEqual(bad.errors.map((e) => e.path).sort(), [
      'defaultServiceExportTo[0]',
      'enableAutoMtls',
      'outboundTrafficPolicy.mode',
    ]);
    assert.match(
      bad.errors.find((e) => e.path === 'enableAutoMtls')?.message ?? '',
      /must be a boolean, got string "yes"/,
    );
    assert.ok(!parseMeshConfig('[1, 2]').ok, 'a list is not a MeshConfig');
    assert.ok(parseMeshConfig('').ok, 'empty is the defaults');
  });
});

describe('mesh config in generated config', () => {
  it('outboundTrafficPolicy picks where a capture-mode sidecar sends unknown destinations', () => {
    const sleep = parseProxyNode({
      id: 'sidecar~127.0.9.2~sleep-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', INTERCEPTION_MODE: 'REDIRECT' },
    });
    const catchAll = (mesh: string): unknown => {
      const chains = captureOutboundChains(bookinfoPush(mesh), sleep, undefined, []);
      return (chains.at(-1)?.filters as { typed_config: { cluster: string } }[] | undefined)?.[0]?.typed_config.cluster;
    };
    assert.equal(catchAll(''), 'PassthroughCluster');
    assert.equal(catchAll('outboundTrafficPolicy: {mode: ALLOW_ANY}'), 'PassthroughCluster');
    assert.equal(catchAll('outboundTrafficPolicy: {mode: REGISTRY_ONLY}'), 'BlackHoleCluster');
  });

  it('enableAutoMtls: false leaves plaintext to sidecars without a DestinationRule', () => {
    assert.deepEqual(reviewsSans(bookinfoPush('')), ['spiffe://cluster.local/ns/default/sa/bookinfo-reviews']);
    assert.equal(reviewsSans(bookinfoPush('enableAutoMtls: false')), undefined);
  });

  it('trustDomainAliases widen the SANs a client cluster accepts', () => {
    assert.deepEqual(reviewsSans(bookinfoPush('trustDomainAliases: [old.example]')), [
      'spiffe://cluster.local/ns/default/sa/bookinfo-reviews',
      'spiffe://old.example/ns/default/sa/bookinfo-reviews',
    ]);
  });

  it('defaultServiceExportTo applies to Services without their own exportTo', () => {
    const open = bookinfoPush('')
      .servicesFor('other')
      .map((s) => s.name);
    assert.ok(open.includes('reviews'));
    assert.deepEqual(bookinfoPush('defaultServiceExportTo: ["."]').servicesFor('other'), []);
    assert.ok(
      bookinfoPush('defaultServiceExportTo: ["."]')
        .servicesFor('default')
        .some((s) => s.name === 'reviews'),
    );
  });
});

function meshConfigMap(mesh: string): FakeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'istio', namespace: 'istio-system' },
    data: { mesh },
  };
}

describe('istiod reads the mesh config', () => {
  it('from the istio ConfigMap: trustDomain at start, live changes pushed, bad ones refused', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-meshcfg-'));
    const fake = await startFakeApiServer();
    const { log, lines } = memoryLogger();
    fake.server.apply(meshConfigMap('trustDomain: example.org\nenableAutoMtls: true\n'));
    fake.server.apply({
      ...meshConfigMap('trustDomain: decoy.org\n'),
      metadata: { name: 'other', namespace: 'istio-system' },
    });
    fs.writeFileSync(path.join(dir, 'kubeconfig'), fake.kubeconfigYaml, { mode: 0o600 });
    const istiod = new Istiod({
      host: '127.0.0.1',
      xdsPlainPort: 0,
      xdsTlsPort: 0,
      monitoringPort: 0,
      stateDir: path.join(dir, 'state'),
      configFiles: [],
      kubeconfig: path.join(dir, 'kubeconfig'),
      log,
    });
    t.after(async () => {
      await istiod.stop();
      await fake.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await istiod.start();
    assert.equal(istiod.ca.trustDomain, 'example.org', 'the CA is made in the mesh config trust domain');
    await istiod.kube?.waitForSync(10_000);
    assert.ok(istiod.store.get('ConfigMap/istio-system/istio'));
    assert.equal(istiod.store.get('ConfigMap/istio-system/other'), undefined, 'only the mesh ConfigMap is watched');
    assert.ok(
      fake.server.requests.some((r) => r.watch && r.path === '/api/v1/namespaces/istio-system/configmaps'),
      'watched in istio-system only',
    );

    const push = (): MeshSettings => istiod.discovery.pushContext().mesh;
    const pushes = istiod.discovery.pushContext().version;
    fake.server.apply(meshConfigMap('trustDomain: example.org\nenableAutoMtls: false\ntrustDomainAliases: [a.org]\n'));
    await waitUntil(() => push().enableAutoMtls === false, 10_000, 'enableAutoMtls: false pushed');
    assert.ok(istiod.discovery.pushContext().version > pushes);
    assert.deepEqual(push().trustDomainAliases, ['a.org']);

    fake.server.apply(meshConfigMap('trustDomain: example.org\nenableAutoMtls: "no"\n'));
    await waitUntil(() => lines.some((l) => l['path'] === 'enableAutoMtls' && l['level'] === 50), 10_000, 'error');
    assert.match(
      String(lines.find((l) => l['path'] === 'enableAutoMtls')?.['msg']),
      /invalid mesh config ConfigMap\/istio-system\/istio: enableAutoMtls: must be a boolean, got string "no"; keeping the last good one/,
    );
    assert.equal(push().enableAutoMtls, false, 'the last good mesh config keeps serving');
    assert.deepEqual(push().trustDomainAliases, ['a.org']);

    fake.server.apply(meshConfigMap('trustDomain: changed.org\n'));
    await waitUntil(() => push().enableAutoMtls === undefined, 10_000, 'fields removed return to defaults');
    assert.equal(push().trustDomain, 'example.org', 'the trust domain needs a restart');
    assert.ok(
      lines.some((l) => String(l['msg']).includes('trustDomain change to changed.org needs an istiod restart')),
    );
  });

  it('from --mesh-config FILE, watched', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-meshcfg-'));
    const file = path.join(dir, 'mesh');
    fs.writeFileSync(file, 'defaultServiceExportTo: ["."]\n');
    const istiod = new Istiod({
      host: '127.0.0.1',
      xdsPlainPort: 0,
      xdsTlsPort: 0,
      monitoringPort: 0,
      stateDir: path.join(dir, 'state'),
      configFiles: [],
      meshConfigFile: file,
      log: memoryLogger().log,
    });
    t.after(async () => {
      await istiod.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await istiod.start();
    assert.deepEqual(istiod.discovery.pushContext().mesh.defaultServiceExportTo, ['.']);
    fs.writeFileSync(file, 'defaultServiceExportTo: ["*"]\nrootNamespace: mesh-root\n');
    await waitUntil(
      () => istiod.discovery.pushContext().mesh.rootNamespace === 'mesh-root',
      10_000,
      'file change pushed',
    );
    assert.deepEqual(istiod.discovery.pushContext().mesh.defaultServiceExportTo, ['*']);

    // defaultConfig.discoveryAddress is the istiod address VM bootstrap bundles name.
    istiod.store.apply(
      [
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadGroup',
          metadata: { name: 'vm', namespace: 'default' },
          spec: { template: { serviceAccount: 'vm' } },
        } as StoredObject,
      ],
      'test',
    );
    const bootstrap = async (): Promise<string> => {
      const res = await fetch(`http://${istiod.addresses.monitoring}/v1/vm/bootstrap`, {
        method: 'POST',
        headers: { authorization: `Bearer ${fs.readFileSync(path.join(dir, 'state', 'admin-token'), 'utf8')}` },
        body: JSON.stringify({ namespace: 'default', workloadGroup: 'vm' }),
      });
      assert.equal(res.status, 200);
      return ((await res.json()) as { discoveryAddress: string }).discoveryAddress;
    };
    assert.equal(await bootstrap(), istiod.addresses.xdsTls);
    fs.writeFileSync(file, 'defaultConfig: {discoveryAddress: istiod.istio-system.svc:15012}\n');
    await waitUntil(() => istiod.mesh.defaultConfig !== undefined, 10_000, 'defaultConfig applied');
    assert.equal(await bootstrap(), 'istiod.istio-system.svc:15012');

    const bad = path.join(dir, 'bad');
    fs.writeFileSync(bad, 'trustDomainAliases: example.org\n');
    const refused = new Istiod({
      host: '127.0.0.1',
      xdsPlainPort: 0,
      xdsTlsPort: 0,
      monitoringPort: 0,
      stateDir: path.join(dir, 'state2'),
      configFiles: [],
      meshConfigFile: bad,
      log: memoryLogger().log,
    });
    await assert.rejects(refused.start(), /mesh config .*bad is invalid/);
    await refused.stop();
  });
});
