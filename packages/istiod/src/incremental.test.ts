/**
 * Skipping work must never change what a proxy gets: over a seeded random sequence of config and endpoint changes
 * on Bookinfo plus extra services, pods, policies and proxies in two namespaces, every proxy's output of every
 * generator (sidecar and proxyless maps) from IncrementalGenerator is byte-for-byte what running the generator
 * afresh gives. And the skipping really happens: an endpoint added to one service re-runs no proxy's listeners
 * except the one at the new pod's address.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '@fedmesh/api/xds';
import type { ResourceEntry } from '@fedmesh/xds';
import { loadManifestText } from './config/file-source.js';
import { ConfigStore, type StoredObject } from './config/store.js';
import { createGenerators, type ResourceGenerator } from './generators/index.js';
import { createProxylessGenerators } from './generators/proxyless.js';
import { IncrementalGenerator } from './incremental.js';
import { parseProxyNode, type ProxyModel } from './model/proxy.js';
import { PushContext, type MeshSettings } from './push-context.js';
import { KubeObjectsRegistry } from './registry/kube-objects.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = path.resolve(here, '../../../samples/istio');
const PODS = path.resolve(here, '../testdata/bookinfo-pods.yaml');
const MESH: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};

function pod(name: string, ns: string, app: string, version: string, ip: string, zone = 'z1'): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {app: ${app}, version: ${version}, topology.kubernetes.io/region: r1, topology.kubernetes.io/zone: ${zone}}}
spec: {serviceAccountName: ${app}, containers: [{name: app, image: fedmesh/echo, ports: [{containerPort: 9080}]}]}
status: {phase: Running, podIP: ${ip}, conditions: [{type: Ready, status: 'True'}]}`;
}

function service(name: string, ns: string, port: number): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec: {selector: {app: ${name}}, ports: [{name: http, port: ${port}, targetPort: 9080}]}`;
}

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface World {
  store: ConfigStore<StoredObject>;
  registry: KubeObjectsRegistry;
  proxies: { proxy: ProxyModel; generators: Map<string, ResourceGenerator> }[];
}

function world(): World {
  const store = new ConfigStore<StoredObject>();
  for (const f of [
    path.join(SAMPLES, 'bookinfo.yaml'),
    path.join(SAMPLES, 'destination-rule-all-mtls.yaml'),
    path.join(SAMPLES, 'virtual-service-reviews-90-10.yaml'),
    PODS,
  ])
    loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, false);
  const docs = [service('extra', 'default', 8080), service('other', 'team', 8080)];
  for (let i = 0; i < 3; i++) docs.push(pod(`extra-${i}`, 'default', 'extra', 'v1', `10.1.0.${i + 1}`));
  for (let i = 0; i < 2; i++) docs.push(pod(`other-${i}`, 'team', 'other', 'v1', `10.2.0.${i + 1}`));
  loadManifestText(store, docs.join('\n---\n'), 'test', false);
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const sidecar = createGenerators();
  const proxyless = createProxylessGenerators();
  const node = (ip: string, podName: string, ns: string, labels: Record<string, string>, grpc = false) => ({
    proxy: parseProxyNode({
      id: `sidecar~${ip}~${podName}.${ns}~${ns}.svc.cluster.local`,
      metadata: {
        NAMESPACE: ns,
        SERVICE_ACCOUNT: labels.app ?? 'default',
        LABELS: labels,
        ...(grpc ? { GENERATOR: 'grpc' } : {}),
      },
      locality: { region: 'r1', zone: ip.endsWith('1') ? 'z1' : 'z2' },
    }),
    generators: grpc ? proxyless : sidecar,
  });
  const proxies = [
    node('127.0.9.1', 'productpage-v1-0', 'default', { app: 'productpage', version: 'v1' }),
    node('10.1.0.1', 'extra-0', 'default', { app: 'extra', version: 'v1' }),
    node('10.1.0.2', 'extra-1', 'default', { app: 'extra', version: 'v1' }),
    node('10.9.0.1', 'sleep-0', 'default', { app: 'sleep', version: 'v1' }),
    node('10.9.0.2', 'sleep-1', 'default', { app: 'sleep', version: 'v2' }),
    node('10.2.0.1', 'other-0', 'team', { app: 'other', version: 'v1' }),
    node('10.9.0.3', 'grpc-0', 'default', { app: 'grpc-client' }, true),
    node('10.9.0.4', 'grpc-1', 'team', { app: 'grpc-client' }, true),
  ];
  return { store, registry, proxies };
}

const CHANGES: ((w: World, r: () => number, step: number) => void)[] = [
  // an endpoint added to reviews (sometimes at an address a proxy has)
  (w, r, step) => {
    const ip = r() < 0.3 ? '10.9.0.1' : `10.3.${step}.1`;
    loadManifestText(w.store, pod(`reviews-x${step}`, 'default', 'reviews', r() < 0.5 ? 'v1' : 'v3', ip), 't', false);
  },
  // an endpoint removed
  (w, r) => {
    const pods = w.store.list('Pod');
    const victim = pods[Math.floor(r() * pods.length)];
    if (victim) w.store.remove([`Pod/${victim.metadata.namespace ?? 'default'}/${victim.metadata.name}`]);
  },
  // a pod's labels change (another subset, another zone)
  (w, r, step) =>
    loadManifestText(
      w.store,
      pod('extra-2', 'default', 'extra', r() < 0.5 ? 'v1' : 'v2', '10.1.0.3', `z${step % 2}`),
      't',
      false,
    ),
  // the reviews VirtualService changes weights, or routes by source labels
  (w, r) => {
    const w1 = Math.floor(r() * 100);
    const bySource = r() < 0.5;
    loadManifestText(
      w.store,
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
${bySource ? '  - match: [{sourceLabels: {version: v2}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n' : ''}  - route:
    - {destination: {host: reviews, subset: v1}, weight: ${w1}}
    - {destination: {host: reviews, subset: v3}, weight: ${100 - w1}}`,
      't',
      false,
    );
  },
  // a DestinationRule for extra: subsets, circuit breaking, locality failover
  (w, r) =>
    loadManifestText(
      w.store,
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: extra, namespace: default}
spec:
  host: extra
  trafficPolicy:
    connectionPool: {http: {http2MaxRequests: ${1 + Math.floor(r() * 10)}}}
    outlierDetection: {consecutive5xxErrors: 3}
  subsets: [{name: v1, labels: {version: v1}}${r() < 0.5 ? ', {name: v2, labels: {version: v2}}' : ''}]`,
      't',
      false,
    ),
  // a new service, or the team service's port changes
  (w, r, step) =>
    loadManifestText(
      w.store,
      r() < 0.5 ? service(`new-${step}`, 'team', 7000) : service('other', 'team', 8080 + step),
      't',
      false,
    ),
  // an AuthorizationPolicy on extra
  (w, r) =>
    loadManifestText(
      w.store,
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: extra, namespace: default}
spec:
  selector: {matchLabels: {app: extra}}
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/${r() < 0.5 ? 'sleep' : 'productpage'}"]}}]}]`,
      't',
      false,
    ),
];

function bytes(entries: readonly ResourceEntry[]): string[] {
  return entries.map((e) => `${e.name}=${Buffer.from(e.resource.value).toString('base64')}`).sort();
}

describe('IncrementalGenerator', () => {
  it('gives every proxy exactly what fresh generation gives, over 40 random changes', () => {
    const w = world();
    const inc = new IncrementalGenerator();
    const r = rng(20261122);
    for (let step = 0; step <= 40; step++) {
      if (step > 0) CHANGES[Math.floor(r() * CHANGES.length)]?.(w, r, step);
      const push = new PushContext(step, MESH, w.store, [w.registry], 'trust-bundle');
      for (const { proxy, generators } of w.proxies)
        for (const [typeUrl, gen] of generators) {
          const fresh = gen(push, proxy, []);
          const got = inc.generate(gen, push, proxy, []);
          assert.deepEqual(bytes(got), bytes(fresh), `step ${step} ${proxy.podName} ${typeUrl}`);
        }
    }
    const s = inc.stats();
    assert.ok(s.reused > 100, `outputs were reused across pushes (${JSON.stringify(s)})`);
    assert.ok(s.memoHits > 100, `outputs were shared within pushes (${JSON.stringify(s)})`);
  });

  it('re-runs listeners after an endpoint change only for the proxy at the new address', () => {
    const w = world();
    const inc = new IncrementalGenerator();
    const lds = createGenerators().get(TypeUrl.Listener);
    assert.ok(lds);
    const sidecars = w.proxies.filter((p) => p.proxy.labels.app !== 'grpc-client').map((p) => p.proxy);
    const run = (version: number): Map<string, readonly ResourceEntry[]> => {
      const push = new PushContext(version, MESH, w.store, [w.registry], 'trust-bundle');
      return new Map(sidecars.map((p) => [p.podName, inc.generate(lds, push, p, [])]));
    };
    const before = run(1);
    // sleep-0 (10.9.0.1) becomes an endpoint of reviews: only its listeners can change.
    loadManifestText(w.store, pod('sleep-0', 'default', 'reviews', 'v1', '10.9.0.1'), 't', false);
    const generatedBefore = inc.stats().generated;
    const after = run(2);
    assert.equal(inc.stats().generated - generatedBefore, 1, 'one proxy re-generated');
    for (const p of sidecars)
      if (p.podName === 'sleep-0') assert.notEqual(after.get(p.podName), before.get(p.podName));
      else assert.equal(after.get(p.podName), before.get(p.podName), `${p.podName} reused`);
    assert.ok(
      after.get('sleep-0')?.some((e) => e.name === 'virtualInbound'),
      'the new endpoint now has an inbound listener',
    );
  });
});
