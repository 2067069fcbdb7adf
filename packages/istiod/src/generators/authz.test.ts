/**
 * AuthorizationPolicy and PeerAuthentication as a Bookinfo user notices them in the generated config: which
 * policies select which workload, how Istio's fields translate (decided by the proxy's own decoder and RBAC
 * engine, not by field inspection), what fails closed, and how mTLS modes compose into inbound filter chains,
 * client clusters and endpoints.
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
  hcmOf,
  type RbacFilter,
  type RbacRequest,
} from '@fedmesh/proxy';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext, type MeshSettings } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { hardenedPathRegex, policiesForWorkload } from './authz.js';
import { generateClusters, generateEndpoints, generateListeners } from './index.js';
import { pathNormalizationFields } from './inbound.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../../testdata/bookinfo-pods.yaml');

function push(extra: string, mesh: Partial<MeshSettings> = {}): PushContext {
  const store = new ConfigStore<StoredObject>();
  for (const f of [path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'), PODS])
    loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
  if (extra) assert.deepEqual(loadManifestText(store, extra, 'api', false).errors, []);
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const settings: MeshSettings = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
    ...mesh,
  };
  return new PushContext(
    1,
    settings,
    store,
    [registry],
    fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8'),
  );
}

function sidecar(ip: string, sa: string, labels: Record<string, string>, ns = 'default'): ProxyModel {
  return parseProxyNode({
    id: `sidecar~${ip}~${labels.app ?? 'pod'}-0.${ns}~${ns}.svc.cluster.local`,
    metadata: { NAMESPACE: ns, SERVICE_ACCOUNT: sa, LABELS: labels },
  });
}

// The reviews-v2 pod of testdata/bookinfo-pods.yaml and the productpage pod.
const REVIEWS = sidecar('127.0.9.5', 'bookinfo-reviews', { app: 'reviews', version: 'v2' });
const PRODUCTPAGE = sidecar('127.0.9.1', 'bookinfo-productpage', { app: 'productpage', version: 'v1' });

/** inbound decodes the proxy's virtualInbound with the proxy's decoder (a NACK fails the test). */
function inbound(p: PushContext, proxy = REVIEWS, warnings: string[] = []) {
  const r = generateListeners(p, proxy, warnings).find((l) => l.name === 'virtualInbound');
  assert.ok(r, 'virtualInbound generated');
  const d = ListenerType.decode(r.resource);
  assert.ok('value' in d, 'error' in d ? d.error : '');
  return d.value;
}

/** rbacOf returns the RBAC filters of the inbound chain for 9080, compiled by the proxy. */
function rbacOf(p: PushContext, proxy = REVIEWS, warnings: string[] = []): RbacFilter[] {
  const l = inbound(p, proxy, warnings);
  const i = l.config.filter_chains.findIndex((c) => c.name === 'inbound|9080||');
  return l.security.get(i)?.rbac ?? [];
}

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';

/** allowed runs a request through the filters as the proxy's request guard does (LOG never refuses). */
function allowed(filters: RbacFilter[], over: Partial<RbacRequest> = {}): boolean {
  const r: RbacRequest = {
    method: 'GET',
    path: '/',
    authority: 'reviews:9080',
    scheme: 'http',
    headers: {},
    peerPrincipal: SLEEP,
    directRemoteIp: '127.0.9.9',
    remoteIp: '127.0.9.9',
    destinationIp: '127.0.9.5',
    destinationPort: 9080,
    requestedServerName: undefined,
    ...over,
  };
  return filters.every((f) => f.evaluate(r).allowed);
}

function ap(name: string, ns: string, spec: string, annotations = ''): string {
  return `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: ${ns}${annotations} }\nspec: ${spec}\n---\n`;
}

describe('which AuthorizationPolicies apply to a sidecar', () => {
  it('root namespace (mesh-wide, or by selector in any namespace), own namespace, selector, Service targetRefs', () => {
    const p = push(
      ap('mesh', 'istio-system', '{}') +
        ap('mesh-sel', 'istio-system', '{ selector: { matchLabels: { app: reviews } } }') +
        ap('ns', 'default', '{}') +
        ap('sel', 'default', '{ selector: { matchLabels: { app: reviews, version: v2 } } }') +
        ap('sel-v1', 'default', '{ selector: { matchLabels: { app: reviews, version: v1 } } }') +
        ap('other-ns', 'foo', '{}') +
        ap('svc', 'default', '{ targetRefs: [{ kind: Service, group: "", name: reviews }] }') +
        ap('svc-ratings', 'default', '{ targetRefs: [{ kind: Service, name: ratings }] }') +
        ap('gw', 'default', '{ targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: gw }] }'),
    );
    const warnings: string[] = [];
    const names = policiesForWorkload(p, REVIEWS, warnings)
      .map((x) => x.metadata.name)
      .sort();
    assert.deepEqual(names, ['mesh', 'mesh-sel', 'ns', 'sel', 'svc']);
    assert.match(warnings.join('\n'), /targetRef Gateway does not attach to sidecars/);
  });
});

describe('translation, decided by the proxy RBAC engine', () => {
  it('no policy: no RBAC filter; an ALLOW policy without rules denies everything', () => {
    assert.equal(rbacOf(push('')).length, 0);
    const f = rbacOf(push(ap('nothing', 'default', '{ selector: { matchLabels: { app: reviews } } }')));
    assert.equal(allowed(f), false);
    assert.equal(allowed(rbacOf(push(ap('all', 'default', '{ rules: [{}] }')))), true);
  });

  it('DENY before ALLOW; principals with * forms; notPrincipals; namespaces; serviceAccounts; ipBlocks', () => {
    const f = rbacOf(
      push(
        ap('deny', 'default', '{ action: DENY, rules: [{ from: [{ source: { ipBlocks: ["127.0.66.0/24"] } }] }] }') +
          ap(
            'allow',
            'default',
            `{ rules: [
              { from: [{ source: { principals: ["cluster.local/ns/default/sa/sl*"], notPrincipals: ["*/sa/sleepy"] } }] },
              { from: [{ source: { namespaces: ["prod-*"] } }] },
              { from: [{ source: { serviceAccounts: ["ops/runner"] } }] } ] }`,
          ),
      ),
    );
    assert.equal(allowed(f), true);
    assert.equal(allowed(f, { directRemoteIp: '127.0.66.7' }), false, 'DENY wins over a matching ALLOW');
    assert.equal(allowed(f, { peerPrincipal: 'spiffe://cluster.local/ns/default/sa/sleepy' }), false);
    assert.equal(allowed(f, { peerPrincipal: 'spiffe://cluster.local/ns/prod-eu/sa/x' }), true);
    assert.equal(allowed(f, { peerPrincipal: 'spiffe://cluster.local/ns/ops/sa/runner' }), true);
    assert.equal(allowed(f, { peerPrincipal: 'spiffe://cluster.local/ns/dev/sa/x' }), false);
    assert.equal(allowed(f, { peerPrincipal: undefined }), false, 'plaintext has no principal');
  });

  it('operations: hosts (case-insensitive, any port), methods, ports, paths, and when conditions', () => {
    const f = rbacOf(
      push(
        ap(
          'allow',
          'default',
          `{ rules: [{ to: [{ operation: { hosts: ["reviews.default.svc.cluster.local", "*.example.com"], methods: ["GET"], ports: ["9080"], paths: ["/api/*", "*.json"] } }],
             when: [{ key: "request.headers[X-Env]", values: ["prod"] }, { key: source.principal, notValues: ["*/sa/evil"] }, { key: destination.port, values: ["9080"] }] }] }`,
        ),
      ),
    );
    const ok: Partial<RbacRequest> = {
      authority: 'Reviews.Default.Svc.Cluster.Local:9080',
      path: '/api/v1?q=1',
      headers: { 'x-env': 'prod' },
    };
    assert.equal(allowed(f, ok), true);
    assert.equal(allowed(f, { ...ok, authority: 'a.EXAMPLE.com' }), true);
    assert.equal(allowed(f, { ...ok, path: '/x/data.json' }), true);
    assert.equal(allowed(f, { ...ok, authority: 'reviews' }), false);
    assert.equal(allowed(f, { ...ok, method: 'POST' }), false);
    assert.equal(allowed(f, { ...ok, destinationPort: 9081 }), false);
    assert.equal(allowed(f, { ...ok, path: '/API/v1' }), false, 'ALLOW paths stay case-sensitive');
    assert.equal(allowed(f, { ...ok, headers: {} }), false);
    assert.equal(allowed(f, { ...ok, peerPrincipal: 'spiffe://cluster.local/ns/x/sa/evil' }), false);
  });

  it('DENY paths are hardened (case, slashes, ;parameters, trailing slash); DENY notPaths stay strict', () => {
    assert.equal(hardenedPathRegex('/admin'), '(?i)/+admin(?:;[^/]*)?/*');
    const f = rbacOf(
      push(
        ap(
          'deny',
          'default',
          '{ action: DENY, rules: [{ to: [{ operation: { paths: ["/admin", "/admin/*", "*.bak"] } }] }] }',
        ) + ap('deny-not', 'default', '{ action: DENY, rules: [{ to: [{ operation: { notPaths: ["/ok"] } }] }] }'),
      ),
    );
    for (const p of ['/admin', '/ADMIN', '//admin', '/admin;x', '/admin/', '/Admin/x', '/a/b.BAK', '/ok/', '/OK'])
      assert.equal(allowed(f, { path: p }), false, p);
    assert.equal(allowed(f, { path: '/ok' }), true);
  });

  it('AUDIT never refuses; dry-run policies only shadow; CUSTOM is enforced as DENY', () => {
    const dry = ', annotations: { "istio.io/dry-run": "true" }';
    const f = rbacOf(
      push(
        ap('audit', 'default', '{ action: AUDIT, rules: [{}] }') +
          ap('dry', 'default', '{ action: DENY, rules: [{}] }', dry) +
          ap('dry-allow', 'default', '{ rules: [{ to: [{ operation: { paths: ["/x"] } }] }] }', dry),
      ),
    );
    assert.equal(allowed(f), true);
    assert.deepEqual(
      f.map((x) => [x.rules?.action, x.shadow?.action]),
      [
        ['LOG', undefined],
        [undefined, 'DENY'],
        [undefined, 'ALLOW'],
      ],
    );
    const warnings: string[] = [];
    const custom = rbacOf(
      push(
        ap(
          'ext',
          'default',
          '{ action: CUSTOM, provider: { name: ext-authz }, rules: [{ to: [{ operation: { paths: ["/x"] } }] }] }',
        ),
      ),
      REVIEWS,
      warnings,
    );
    assert.equal(allowed(custom, { path: '/x' }), false);
    assert.equal(allowed(custom, { path: '/y' }), true);
    assert.match(warnings.join('\n'), /CUSTOM has no provider in fedmesh; enforced as DENY/);
  });

  it('what cannot be translated fails closed: an ALLOW rule is dropped, a DENY part matches; JWT attributes are absent', () => {
    const warnings: string[] = [];
    const f = rbacOf(
      push(
        ap(
          'allow',
          'default',
          `{ rules: [
            { to: [{ operation: { paths: ["/t/{*}"] } }] },
            { when: [{ key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["x"] }] },
            { from: [{ source: { requestPrincipals: ["*"] } }] },
            { to: [{ operation: { paths: ["/open"] } }] } ] }`,
        ) +
          ap(
            'deny',
            'default',
            `{ action: DENY, rules: [
              { to: [{ operation: { paths: ["/d/{**}"] } }], when: [{ key: "request.headers[x-deny]", values: ["1"] }] },
              { from: [{ source: { notRequestPrincipals: ["*"] } }], to: [{ operation: { paths: ["/jwt-only"] } }] } ] }`,
          ),
      ),
      REVIEWS,
      warnings,
    );
    assert.equal(allowed(f, { path: '/open' }), true);
    assert.equal(allowed(f, { path: '/t/x' }), false, 'dropped ALLOW rule allows nothing');
    assert.equal(allowed(f, { path: '/anything' }), false, 'requestPrincipals never match without JWT');
    assert.equal(
      allowed(f, { path: '/open', headers: { 'x-deny': '1' } }),
      false,
      'DENY rule with a template denies wider',
    );
    assert.equal(allowed(f, { path: '/jwt-only' }), false, 'no request principal: notRequestPrincipals matches');
    assert.equal(warnings.length, 3, warnings.join('\n'));
  });
});

function pa(name: string, ns: string, spec: string): string {
  return `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ${name}, namespace: ${ns} }\nspec: ${spec}\n---\n`;
}

describe('PeerAuthentication in the generated config', () => {
  function chains(p: PushContext, proxy = REVIEWS) {
    return inbound(p, proxy).config.filter_chains.map((c) => ({
      name: c.name,
      transport: c.filter_chain_match?.transport_protocol,
      domains: hcmOf(c)?.route_config?.virtual_hosts?.flatMap((v) => v.domains.filter((d) => d.includes('9080'))) ?? [],
    }));
  }

  it('default STRICT: TLS chains only; PERMISSIVE adds a plaintext chain routed by Host port; DISABLE drops the TLS chain', () => {
    assert.deepEqual(
      chains(push('')).map((c) => c.transport),
      ['tls'],
    );
    const permissive = chains(push(pa('mesh', 'istio-system', '{ mtls: { mode: PERMISSIVE } }')));
    assert.deepEqual(
      permissive.map((c) => [c.name, c.transport]),
      [
        ['inbound|9080||', 'tls'],
        ['virtualInbound-plaintext', 'raw_buffer'],
      ],
    );
    assert.ok(permissive[1]?.domains.includes('*:9080'));
    assert.ok(permissive[1]?.domains.includes('reviews.default.svc.cluster.local:9080'));
    const disabled = chains(
      push(pa('w', 'default', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: DISABLE } }')),
    );
    assert.deepEqual(
      disabled.map((c) => c.transport),
      ['raw_buffer'],
    );
    assert.deepEqual(
      chains(
        push(pa('w', 'default', '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: DISABLE } }')),
        PRODUCTPAGE,
      ).map((c) => c.transport),
      ['tls'],
    );
  });

  it('most specific wins: port over workload over namespace over mesh; UNSET inherits', () => {
    const p = push(
      pa('mesh', 'istio-system', '{ mtls: { mode: DISABLE } }') +
        pa('ns', 'default', '{ mtls: { mode: STRICT } }') +
        pa(
          'w',
          'default',
          '{ selector: { matchLabels: { app: reviews } }, mtls: { mode: UNSET }, portLevelMtls: { "9080": { mode: PERMISSIVE } } }',
        ),
    );
    assert.deepEqual(
      chains(p).map((c) => c.transport),
      ['tls', 'raw_buffer'],
    );
    assert.deepEqual(
      chains(p, PRODUCTPAGE).map((c) => c.transport),
      ['tls'],
    );
  });

  it('client side: a DISABLE server gets a plaintext cluster, sidecar endpoints carry tlsMode istio', () => {
    const p = push(pa('w', 'default', '{ selector: { matchLabels: { app: ratings } }, mtls: { mode: DISABLE } }'));
    const cluster = (name: string) => {
      const r = generateClusters(p, PRODUCTPAGE).find((c) => c.name === name);
      assert.ok(r);
      const d = ClusterType.decode(r.resource);
      assert.ok('value' in d);
      return d.value;
    };
    assert.equal(cluster('outbound|9080||ratings.default.svc.cluster.local').transport_socket, undefined);
    assert.ok(cluster('outbound|9080||reviews.default.svc.cluster.local').transport_socket);
    const cla = generateEndpoints(p, PRODUCTPAGE).find(
      (e) => e.name === 'outbound|9080||ratings.default.svc.cluster.local',
    );
    assert.ok(cla);
    const d = ClusterLoadAssignmentType.decode(cla.resource);
    assert.ok('value' in d);
    assert.match(
      JSON.stringify(d.value.endpoints),
      /"envoy\.transport_socket_match":\{"fields":\{"tlsMode":\{"stringValue":"istio"\}\}\}/,
    );
  });
});

describe('meshConfig.pathNormalization', () => {
  it('maps NONE, BASE (default), MERGE_SLASHES and DECODE_AND_MERGE_SLASHES to HCM fields the proxy accepts', () => {
    assert.deepEqual(pathNormalizationFields('NONE'), {});
    assert.equal(pathNormalizationFields(undefined).path_with_escaped_slashes_action, 'REJECT_REQUEST');
    assert.equal(pathNormalizationFields('MERGE_SLASHES').merge_slashes, true);
    assert.equal(
      pathNormalizationFields('DECODE_AND_MERGE_SLASHES').path_with_escaped_slashes_action,
      'UNESCAPE_AND_FORWARD',
    );
    for (const level of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
      const l = inbound(push(ap('x', 'default', '{ rules: [{}] }'), { pathNormalization: level }));
      const n = l.security.get(0)?.normalization;
      assert.equal(n?.mergeSlashes, level === 'MERGE_SLASHES' || level === 'DECODE_AND_MERGE_SLASHES', level);
      assert.equal(n?.normalizePath, level !== 'NONE', level);
    }
  });
});
