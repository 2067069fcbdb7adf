/**
 * Golden tests for the xDS generators, over Istio's own Bookinfo manifests and networking samples, plus a
 * cross-check that the fedmesh proxy's own decoders accept every resource istiod generates (what istiod emits is
 * what the proxy can apply, with no NACK). Golden files live in `testdata/golden/`; `UPDATE_GOLDEN=1` rewrites them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TypeUrl, decodeAny } from '@fedmesh/api/xds';
import {
  ClusterLoadAssignmentType,
  ClusterType,
  ListenerType,
  RouteConfigurationType,
  SecretType,
} from '@fedmesh/proxy';
import type { XdsResourceType } from '@fedmesh/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext, type MeshSettings } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { generateClusters, generateEndpoints, generateListeners, generateRoutes, generateSecrets } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TESTDATA = path.resolve(here, '../../testdata');
const GOLDEN = path.join(TESTDATA, 'golden');
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const MESH: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};

/** bookinfoPush loads Bookinfo, the given networking samples and the pods in testdata, as istiod would. */
function bookinfoPush(networking: readonly string[]): PushContext {
  const store = new ConfigStore<StoredObject>();
  const files = [
    path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'),
    ...networking.map((f) => path.join(SAMPLES, 'bookinfo/networking', f)),
    path.join(TESTDATA, 'bookinfo-pods.yaml'),
  ];
  for (const f of files) {
    const res = loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
    assert.deepEqual(
      res.errors.filter((e) => e.severity === 'error'),
      [],
      `${path.basename(f)} must load cleanly`,
    );
  }
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const root = fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8');
  return new PushContext(1, MESH, store, [registry], root);
}

/** sidecar builds a proxy the way istiod does, from the Node a fedmesh sidecar sends. */
function sidecar(pod: string, ip: string, sa: string, labels: Record<string, string>, ns = 'default'): ProxyModel {
  return parseProxyNode({
    id: `sidecar~${ip}~${pod}.${ns}~${ns}.svc.cluster.local`,
    metadata: { NAMESPACE: ns, SERVICE_ACCOUNT: sa, LABELS: labels, INSTANCE_IPS: ip, POD_NAME: pod },
  });
}

const PRODUCTPAGE = sidecar('productpage-v1-7d9f8b6c5-x2k4p', '127.0.9.1', 'bookinfo-productpage', {
  app: 'productpage',
  version: 'v1',
});
const REVIEWS_V2 = sidecar('reviews-v2-7c9e8a0d5-d3e4f', '127.0.9.5', 'bookinfo-reviews', {
  app: 'reviews',
  version: 'v2',
});

const TYPES = [
  { key: 'listeners', typeUrl: TypeUrl.Listener, validator: ListenerType as XdsResourceType<unknown> },
  { key: 'routes', typeUrl: TypeUrl.RouteConfiguration, validator: RouteConfigurationType as XdsResourceType<unknown> },
  { key: 'clusters', typeUrl: TypeUrl.Cluster, validator: ClusterType as XdsResourceType<unknown> },
  {
    key: 'endpoints',
    typeUrl: TypeUrl.ClusterLoadAssignment,
    validator: ClusterLoadAssignmentType as XdsResourceType<unknown>,
  },
  { key: 'secrets', typeUrl: TypeUrl.Secret, validator: SecretType as XdsResourceType<unknown> },
] as const;
type TypeKey = (typeof TYPES)[number]['key'];

/** generateAll runs every generator for one proxy, as a push does. */
function generateAll(
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[] = [],
): Record<TypeKey, GeneratedResource[]> {
  return {
    listeners: generateListeners(push, proxy),
    routes: generateRoutes(push, proxy, warnings),
    clusters: generateClusters(push, proxy, warnings),
    endpoints: generateEndpoints(push, proxy),
    secrets: generateSecrets(push),
  };
}

/** decoded turns generated resources back into plain objects, as a client sees them on the wire. */
function decoded(resources: readonly GeneratedResource[]): Record<string, unknown>[] {
  return resources.map((r) => decodeAny(r.resource));
}

/**
 * inGolden keeps golden files readable: clusters and endpoints of one service (reviews, the one with subsets the
 * samples route between) plus the proxy's own inbound cluster; the other services' are built the same way.
 */
function inGolden(r: GeneratedResource): boolean {
  return (
    !r.name.includes('|') || r.name.startsWith('inbound|') || r.name.endsWith('|reviews.default.svc.cluster.local')
  );
}

/** expectGolden compares `actual` with `testdata/golden/<name>.json` (semantically), or rewrites it under UPDATE_GOLDEN=1. */
async function expectGolden(name: string, actual: unknown): Promise<void> {
  const file = path.join(GOLDEN, `${name}.json`);
  const normalized: unknown = JSON.parse(JSON.stringify(actual));
  if (process.env.UPDATE_GOLDEN === '1') {
    let text = `${JSON.stringify(normalized, null, 2)}\n`;
    try {
      // Format as the repository's Prettier config would, so that `pnpm lint` passes on regenerated files.
      const prettier = await import('prettier');
      text = await prettier.format(text, { ...(await prettier.resolveConfig(file)), filepath: file });
    } catch {
      // Prettier is a root dev dependency; without it the plain JSON is still a valid golden.
    }
    fs.mkdirSync(GOLDEN, { recursive: true });
    fs.writeFileSync(file, text);
    return;
  }
  assert.ok(fs.existsSync(file), `golden ${file} is missing; run with UPDATE_GOLDEN=1 and review it`);
  const want: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.deepEqual(
    normalized,
    want,
    `${name}: output differs from ${file}; if intended, rerun with UPDATE_GOLDEN=1 and review the diff`,
  );
}

/** Scenarios: Istio's samples as users apply them, one at a time on top of Bookinfo. */
const SCENARIOS: { name: string; networking: string[]; golden?: TypeKey[] }[] = [
  {
    name: 'all-v1-mtls',
    networking: ['destination-rule-all-mtls.yaml', 'virtual-service-all-v1.yaml'],
    golden: ['listeners', 'routes', 'clusters', 'endpoints', 'secrets'],
  },
  {
    name: 'reviews-90-10',
    networking: ['destination-rule-all-mtls.yaml', 'virtual-service-reviews-90-10.yaml'],
    golden: ['routes'],
  },
  {
    name: 'reviews-test-v2',
    networking: ['destination-rule-all-mtls.yaml', 'virtual-service-reviews-test-v2.yaml'],
    golden: ['routes'],
  },
  {
    name: 'fault-details',
    networking: ['destination-rule-all-mtls.yaml', 'virtual-service-all-v1.yaml', 'fault-injection-details-v1.yaml'],
    golden: ['routes'],
  },
  { name: 'no-networking', networking: [] },
  { name: 'reviews-80-20', networking: ['destination-rule-all-mtls.yaml', 'virtual-service-reviews-80-20.yaml'] },
  { name: 'reviews-50-v3', networking: ['destination-rule-all.yaml', 'virtual-service-reviews-50-v3.yaml'] },
  { name: 'reviews-v3', networking: ['destination-rule-reviews.yaml', 'virtual-service-reviews-v3.yaml'] },
  { name: 'gateway', networking: ['bookinfo-gateway.yaml', 'destination-rule-all.yaml'] },
];

describe('xDS generators against golden files (productpage sidecar)', () => {
  for (const sc of SCENARIOS.filter((s) => s.golden)) {
    it(`${sc.name}: ${sc.networking.join(' + ')}`, async () => {
      const all = generateAll(bookinfoPush(sc.networking), PRODUCTPAGE);
      const picked = Object.fromEntries((sc.golden ?? []).map((k) => [k, decoded(all[k].filter(inGolden))]));
      await expectGolden(`productpage-${sc.name}`, picked);
    });
  }
});

describe('the fedmesh proxy accepts everything istiod generates', () => {
  for (const sc of SCENARIOS) {
    for (const proxy of [PRODUCTPAGE, REVIEWS_V2]) {
      it(`${sc.name}, ${proxy.workloadName}`, () => {
        const all = generateAll(bookinfoPush(sc.networking), proxy);
        for (const { key, typeUrl, validator } of TYPES) {
          assert.ok(all[key].length > 0, `${key}: nothing generated`);
          for (const r of all[key]) {
            assert.equal(r.resource.type_url, typeUrl, `${key} ${r.name}: type URL`);
            const res = validator.decode(r.resource);
            assert.ok(!('error' in res), `${key} ${r.name} would be NACKed: ${'error' in res ? res.error : ''}`);
            assert.equal(res.name, r.name, `${key}: decoded name matches the resource name`);
          }
        }
      });
    }
  }

  it('generating twice from the same push gives identical bytes (no hidden state)', () => {
    const push = bookinfoPush(['destination-rule-all-mtls.yaml', 'virtual-service-reviews-90-10.yaml']);
    const a = generateAll(push, PRODUCTPAGE);
    const b = generateAll(push, PRODUCTPAGE);
    for (const { key } of TYPES)
      assert.deepEqual(
        a[key].map((r) => Buffer.from(r.resource.value).toString('base64')),
        b[key].map((r) => Buffer.from(r.resource.value).toString('base64')),
        key,
      );
  });
});
