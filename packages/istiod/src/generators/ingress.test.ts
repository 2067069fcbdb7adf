/**
 * The ingress gateway as a platform team coming from Istio notices it: Istio's own `bookinfo-gateway.yaml`,
 * unchanged, makes a gateway labelled `istio: ingressgateway` serve 8080 with `http.8080` routing the five
 * productpage paths to productpage over mTLS and nothing else; hosts intersect as Istio intersects them; a
 * Secret-backed SIMPLE or MUTUAL server terminates TLS with the Secret's certificate. The proxy's own decoders
 * and route table decide.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { issueTestCertificate } from '@fedmesh/pki/testing';
import {
  ClusterLoadAssignmentType,
  ClusterType,
  ListenerType,
  RouteConfigurationType,
  endpointsFromAssignment,
  hcmOf,
} from '@fedmesh/proxy';
import type { XdsResourceType } from '@fedmesh/xds';
import { TypeUrl, decodeAny } from '@fedmesh/api/xds';
import { analyze } from '../analyze/analyze.js';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { createGenerators } from './index.js';
import { boundHosts, intersectHosts } from './ingress-servers.js';
import { redactConfigObject, redactXdsResource, REDACTED } from './ingress-redact.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../../testdata/bookinfo-pods.yaml');
const BOOKINFO = path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml');
const GATEWAY = path.join(SAMPLES, 'bookinfo/networking/bookinfo-gateway.yaml');
const PRODUCTPAGE = 'outbound|9080||productpage.default.svc.cluster.local';
const generators = createGenerators();

function generate(typeUrl: string, p: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
  const g = generators.get(typeUrl);
  assert.ok(g);
  return g(p, proxy, warnings);
}

function accepted<T>(type: XdsResourceType<T>, r: GeneratedResource | undefined): T {
  assert.ok(r, 'resource generated');
  const res = type.decode(r.resource);
  assert.ok('value' in res, `${r.name} would be NACKed: ${'error' in res ? res.error : ''}`);
  return res.value;
}

function storeOf(files: string[], extra = ''): ConfigStore<StoredObject> {
  const s = new ConfigStore<StoredObject>();
  for (const f of files) loadManifestText(s, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
  if (extra) assert.deepEqual(loadManifestText(s, extra, 'api', false).errors, []);
  return s;
}

function pushOf(s: ConfigStore<StoredObject>): PushContext {
  const reg = new KubeObjectsRegistry(s, { cluster: 'Kubernetes', network: '', domainSuffix: 'cluster.local' });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
  };
  return new PushContext(1, mesh, s, [reg], fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8'));
}

function gatewayProxy(labels: Record<string, string>, mode: 'ingress' | 'east-west' = 'ingress'): ProxyModel {
  return parseProxyNode({
    id: 'router~127.0.9.201~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local',
    metadata: {
      NAMESPACE: 'istio-system',
      SERVICE_ACCOUNT: 'istio-ingressgateway-service-account',
      LABELS: labels,
      ...(mode === 'ingress' ? { FEDMESH_GATEWAY_MODE: mode } : {}),
    },
  });
}
const INGRESS = gatewayProxy({ istio: 'ingressgateway', app: 'istio-ingressgateway' });

function routeTable(p: PushContext, proxy: ProxyModel, name: string) {
  return accepted(
    RouteConfigurationType,
    generate(TypeUrl.RouteConfiguration, p, proxy).find((r) => r.name === name),
  );
}

/** serverCertificate issues a certificate for `dns` under Istio's sample CA (a stand-in for a public CA). */
async function serverCertificate(dns: string): Promise<{ certPem: string; keyPem: string; caPem: string }> {
  const caPem = fs.readFileSync(path.join(SAMPLES, 'certs/ca-cert.pem'), 'utf8');
  const issuer = { certPem: caPem, keyPem: fs.readFileSync(path.join(SAMPLES, 'certs/ca-key.pem'), 'utf8') };
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueTestCertificate({
    issuer,
    publicKey: privateKey,
    dns: [dns],
    extKeyUsage: ['serverAuth'],
  });
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), caPem };
}

function tlsSecretYaml(name: string, ns: string, m: { certPem: string; keyPem: string; caPem?: string }): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Secret',
    `metadata: { name: ${name}, namespace: ${ns} }`,
    'type: kubernetes.io/tls',
    'data:',
    `  tls.crt: ${b64(m.certPem)}`,
    `  tls.key: ${b64(m.keyPem)}`,
    ...(m.caPem ? [`  ca.crt: ${b64(m.caPem)}`] : []),
  ].join('\n');
}

describe("Istio's bookinfo-gateway.yaml, unchanged, on an ingress gateway", () => {
  const p = pushOf(storeOf([BOOKINFO, PODS, GATEWAY]));

  it('serves 0.0.0.0_8080 on the gateway address with one HCM on RDS http.8080', () => {
    const lds = generate(TypeUrl.Listener, p, INGRESS);
    assert.deepEqual(
      lds.map((l) => l.name),
      ['0.0.0.0_8080'],
    );
    const l = accepted(ListenerType, lds[0]).config;
    assert.deepEqual(l.address.socket_address, { address: '127.0.9.201', port_value: 8080 });
    assert.equal(l.filter_chains.length, 1);
    const chain = l.filter_chains[0];
    assert.ok(chain);
    assert.equal(chain.transport_socket, undefined, 'plain HTTP');
    assert.equal(hcmOf(chain)?.rds?.route_config_name, 'http.8080');
    assert.equal(hcmOf(chain)?.strip_any_host_port, true, 'the Host port is stripped before routing');
  });

  it('http.8080 routes the five productpage paths to productpage:9080 and nothing else (404 NR)', () => {
    const rt = routeTable(p, INGRESS, 'http.8080');
    for (const path of ['/productpage', '/static/css/x.css', '/login', '/logout', '/api/v1/products/0']) {
      const hit = rt.route({ method: 'GET', authority: 'anything.example:8080', path, scheme: 'http', headers: {} });
      assert.ok(hit, path);
      assert.equal(hit.route.action.kind === 'route' && hit.route.action.clusters[0]?.name, PRODUCTPAGE, path);
    }
    for (const path of ['/', '/reviews/0', '/productpage/x', '/loginx'])
      assert.equal(
        rt.route({ method: 'GET', authority: 'a', path, scheme: 'http', headers: {} }),
        undefined,
        `${path} is not in the VirtualService`,
      );
  });

  it('has exactly the productpage cluster, over mTLS to its sidecar identity, and its endpoints', () => {
    const cds = generate(TypeUrl.Cluster, p, INGRESS).map((r) => accepted(ClusterType, r));
    assert.deepEqual(
      cds.map((c) => c.name),
      [PRODUCTPAGE],
    );
    const tls = cds[0]?.transport_socket?.typed_config;
    assert.ok(tls, 'auto mTLS: productpage runs a sidecar');
    assert.deepEqual(
      tls.common_tls_context.combined_validation_context?.default_validation_context.match_typed_subject_alt_names?.map(
        (s) => s.matcher,
      ),
      [{ exact: 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage' }],
    );
    const eds = generate(TypeUrl.ClusterLoadAssignment, p, INGRESS);
    assert.deepEqual(
      eds.map((e) => e.name),
      [PRODUCTPAGE],
    );
    assert.deepEqual(
      endpointsFromAssignment(accepted(ClusterLoadAssignmentType, eds[0])).map((e) => `${e.address}:${e.port}`),
      ['127.0.9.1:9080'],
    );
  });

  it('SDS holds only the trust bundle when no server terminates TLS', () => {
    assert.deepEqual(
      generate(TypeUrl.Secret, p, INGRESS).map((s) => s.name),
      ['ROOTCA'],
    );
  });

  it('the VirtualService bound to bookinfo-gateway (not mesh) changes nothing for sidecars', () => {
    const sleep = parseProxyNode({
      id: 'sidecar~127.0.9.100~sleep-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', LABELS: { app: 'sleep' } },
    });
    const withGw = generate(TypeUrl.RouteConfiguration, p, sleep);
    const without = generate(TypeUrl.RouteConfiguration, pushOf(storeOf([BOOKINFO, PODS])), sleep);
    assert.deepEqual(
      withGw.map((r) => decodeAny(r.resource)),
      without.map((r) => decodeAny(r.resource)),
    );
  });

  it('a gateway whose labels the selector does not match gets nothing; an east-west gateway keeps to 15443', () => {
    assert.deepEqual(generate(TypeUrl.Listener, p, gatewayProxy({ istio: 'other' })), []);
    const warnings: string[] = [];
    const eastWest = gatewayProxy({ istio: 'ingressgateway' }, 'east-west');
    assert.deepEqual(generate(TypeUrl.Listener, p, eastWest, warnings), []);
    assert.match(warnings.join('\n'), /ingress-mode gateways serve HTTP/);
  });
});

describe('host intersection between Gateway servers and VirtualServices (Istio rules)', () => {
  it('keeps the narrower host when one covers the other, none otherwise', () => {
    const cases: [string, string, string | undefined][] = [
      ['*', '*', '*'],
      ['*', 'bookinfo.example.com', 'bookinfo.example.com'],
      ['bookinfo.example.com', '*', 'bookinfo.example.com'],
      ['*.example.com', 'api.example.com', 'api.example.com'],
      ['api.example.com', '*.example.com', 'api.example.com'],
      ['*.example.com', '*.api.example.com', '*.api.example.com'],
      ['*.example.com', 'example.com', undefined],
      ['a.example.com', 'b.example.com', undefined],
      ['*.a.com', '*.b.com', undefined],
      ['Bookinfo.Example.com', 'bookinfo.example.com', 'bookinfo.example.com'],
    ];
    for (const [vs, gw, want] of cases) assert.equal(intersectHosts(vs, gw), want, `${vs} ∩ ${gw}`);
  });

  it('applies the namespace part of server hosts: */, ./ (the Gateway namespace), ns/ and ~/', () => {
    const vs = (ns: string, hosts: string[]) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'v', namespace: ns },
      spec: { hosts },
    });
    assert.deepEqual(boundHosts(vs('web', ['a.com', 'b.com']), ['*/a.com'], 'istio-system'), ['a.com']);
    assert.deepEqual(boundHosts(vs('web', ['a.com']), ['web/*'], 'istio-system'), ['a.com']);
    assert.deepEqual(boundHosts(vs('shop', ['a.com']), ['web/*'], 'istio-system'), []);
    assert.deepEqual(boundHosts(vs('web', ['a.com']), ['./*'], 'web'), ['a.com']);
    assert.deepEqual(boundHosts(vs('web', ['a.com']), ['./*'], 'istio-system'), []);
    assert.deepEqual(boundHosts(vs('web', ['a.com']), ['~/*'], 'web'), []);
    assert.deepEqual(boundHosts(vs('web', ['*']), ['x.com', 'web/y.com'], 'gw'), ['x.com', 'y.com']);
  });

  it('virtual hosts follow the intersection, and gateways bind by <ns>/<name> or a short name in the VS namespace', () => {
    const extra = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: shop-gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8081, name: http-shop, protocol: HTTP }
    hosts: ["*.shop.example.com", "default/ratings.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/shop-gw]
  http:
  - match: [{ uri: { prefix: /ratings }, gateways: [istio-system/shop-gw] }]
    route: [{ destination: { host: ratings, port: { number: 9080 } } }]
  - match: [{ uri: { prefix: /mesh-only }, gateways: [mesh] }]
    route: [{ destination: { host: details, port: { number: 9080 } } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: short-name, namespace: default }
spec:
  hosts: [short.shop.example.com]
  gateways: [shop-gw]
  http: [{ route: [{ destination: { host: details } }] }]
`;
    const p = pushOf(storeOf([BOOKINFO, PODS], extra));
    const rc = decodeAny(
      generate(TypeUrl.RouteConfiguration, p, INGRESS).find((r) => r.name === 'http.8081')?.resource ?? {
        type_url: '',
        value: new Uint8Array(),
      },
    ) as { virtual_hosts?: { name: string; domains: string[] }[] };
    assert.deepEqual(
      rc.virtual_hosts?.map((v) => [v.name, v.domains]),
      [
        ['*.shop.example.com:8081', ['*.shop.example.com']],
        ['ratings.example.com:8081', ['ratings.example.com', 'ratings.example.com:*']],
      ],
      'short name shop-gw in default is default/shop-gw, not istio-system/shop-gw',
    );
    const rt = routeTable(p, INGRESS, 'http.8081');
    const at = (authority: string, path: string) =>
      rt.route({ method: 'GET', authority, path, scheme: 'http', headers: {} });
    assert.ok(at('ratings.example.com:8081', '/ratings/1'));
    assert.ok(at('a.shop.example.com', '/ratings/1'));
    assert.equal(at('a.shop.example.com', '/mesh-only'), undefined, 'a match bound to mesh only is not served');
    assert.equal(at('other.example.com', '/ratings/1'), undefined, 'no common host');
    assert.deepEqual(
      generate(TypeUrl.Cluster, p, INGRESS)
        .map((c) => c.name)
        .sort(),
      ['outbound|9080||ratings.default.svc.cluster.local'],
    );
  });

  it('httpsRedirect answers every request with 301 to https', () => {
    const extra = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: redirect, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8082, name: http-redirect, protocol: HTTP }
    hosts: ["default/bookinfo.example.com"]
    tls: { httpsRedirect: true }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: bookinfo-secure, namespace: default }
spec:
  hosts: [bookinfo.example.com]
  gateways: [istio-system/redirect]
  http: [{ route: [{ destination: { host: productpage } }] }]
`;
    const rt = routeTable(pushOf(storeOf([BOOKINFO, PODS], extra)), INGRESS, 'http.8082');
    const hit = rt.route({ method: 'GET', authority: 'bookinfo.example.com', path: '/x', scheme: 'http', headers: {} });
    assert.equal(hit?.route.action.kind, 'redirect');
    assert.deepEqual(hit.route.action.kind === 'redirect' && [hit.route.action.scheme, hit.route.action.status], [
      'https',
      301,
    ]);
  });
});

describe('TLS termination with a credentialName Secret', () => {
  const gateway = (mode: string, port = 8443) => `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: secure, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: ${port}, name: https, protocol: HTTPS }
    hosts: [bookinfo.example.com]
    tls: { mode: ${mode}, credentialName: bookinfo-credential }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: secure, namespace: default }
spec:
  hosts: [bookinfo.example.com]
  gateways: [secure]
  http: [{ route: [{ destination: { host: productpage, port: { number: 9080 } } }] }]
`;

  it('SIMPLE: an SNI-matched chain terminates TLS with kubernetes://<credentialName> from SDS', async () => {
    const m = await serverCertificate('bookinfo.example.com');
    const p = pushOf(
      storeOf(
        [BOOKINFO, PODS],
        `${gateway('SIMPLE')}\n---\n${tlsSecretYaml('bookinfo-credential', 'istio-system', m)}`,
      ),
    );
    const l = accepted(ListenerType, generate(TypeUrl.Listener, p, INGRESS)[0]).config;
    assert.equal(l.name, '0.0.0.0_8443');
    assert.equal(l.listener_filters?.[0]?.name, 'envoy.filters.listener.tls_inspector');
    const chain = l.filter_chains[0];
    assert.deepEqual(chain?.filter_chain_match?.server_names, ['bookinfo.example.com']);
    const ctx = chain?.transport_socket?.typed_config;
    assert.equal(
      ctx?.common_tls_context.tls_certificate_sds_secret_configs?.[0]?.name,
      'kubernetes://bookinfo-credential',
    );
    assert.equal(ctx?.require_client_certificate, undefined);
    assert.ok(chain);
    assert.equal(hcmOf(chain)?.rds?.route_config_name, 'https.8443.https.secure.default');
    assert.equal(hcmOf(chain)?.strip_any_host_port, true);
    assert.ok(routeTable(p, INGRESS, 'https.8443.https.secure.default'));
    const sds = generate(TypeUrl.Secret, p, INGRESS);
    assert.deepEqual(
      sds.map((s) => s.name),
      ['ROOTCA', 'kubernetes://bookinfo-credential', 'kubernetes://bookinfo-credential-cacert'],
    );
    const secret = decodeAny(sds[1]?.resource ?? { type_url: '', value: new Uint8Array() }) as {
      tls_certificate: { certificate_chain: { inline_string: string }; private_key: { inline_string: string } };
    };
    assert.equal(secret.tls_certificate.certificate_chain.inline_string, m.certPem);
    assert.equal(secret.tls_certificate.private_key.inline_string, m.keyPem);
    const shown = JSON.stringify(redactXdsResource(secret));
    assert.ok(!shown.includes('PRIVATE KEY') && shown.includes(REDACTED), 'debug output hides the key');
  });

  it('MUTUAL requires client certificates verified against the Secret ca.crt', async () => {
    const m = await serverCertificate('bookinfo.example.com');
    const p = pushOf(
      storeOf(
        [BOOKINFO, PODS],
        `${gateway('MUTUAL')}\n---\n${tlsSecretYaml('bookinfo-credential', 'istio-system', m)}`,
      ),
    );
    const ctx = accepted(ListenerType, generate(TypeUrl.Listener, p, INGRESS)[0]).config.filter_chains[0]
      ?.transport_socket?.typed_config;
    assert.deepEqual(ctx?.require_client_certificate, { value: true });
    assert.equal(
      ctx?.common_tls_context.validation_context_sds_secret_config?.name,
      'kubernetes://bookinfo-credential-cacert',
    );
  });

  it('a server whose Secret is missing (or, MUTUAL, has no ca.crt) is left out with a warning', async () => {
    const warnings: string[] = [];
    const p = pushOf(storeOf([BOOKINFO, PODS], gateway('SIMPLE')));
    assert.deepEqual(generate(TypeUrl.Listener, p, INGRESS, warnings), []);
    assert.match(
      warnings.join('\n'),
      /credentialName bookinfo-credential: no kubernetes.io\/tls Secret in namespace istio-system/,
    );
    const { caPem: _ca, ...noCa } = await serverCertificate('bookinfo.example.com');
    const w2: string[] = [];
    const p2 = pushOf(
      storeOf(
        [BOOKINFO, PODS],
        `${gateway('MUTUAL')}\n---\n${tlsSecretYaml('bookinfo-credential', 'istio-system', noCa)}`,
      ),
    );
    assert.deepEqual(generate(TypeUrl.Listener, p2, INGRESS, w2), []);
    assert.match(w2.join('\n'), /has no ca.crt/);
  });

  it('configz shows which keys a Secret has, never their values', async () => {
    const m = await serverCertificate('bookinfo.example.com');
    const s = storeOf([], tlsSecretYaml('bookinfo-credential', 'istio-system', m));
    const shown = JSON.stringify(s.list().map(redactConfigObject));
    assert.ok(shown.includes('tls.key') && !shown.includes(Buffer.from(m.keyPem).toString('base64').slice(0, 40)));
  });
});

describe('bad config', () => {
  it('an invalid Gateway is refused with its field path and the last good one keeps serving', () => {
    const s = storeOf([BOOKINFO, PODS, GATEWAY]);
    const vs = fs.readFileSync(GATEWAY, 'utf8').split(/^---$/m)[1] ?? '';
    const gw = (server: string): string =>
      `apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: { name: bookinfo-gateway }\n` +
      `spec:\n  selector: { istio: ingressgateway }\n  servers:\n  - ${server}\n---${vs}`;
    const bad = gw('hosts: ["*"]');
    const res = loadManifestText(s, bad, `file:${GATEWAY}`, true, 'bookinfo-gateway.yaml');
    assert.ok(
      res.errors.some((e) => e.path === 'spec.servers[0].port' && e.severity === 'error'),
      JSON.stringify(res.errors),
    );
    const simple = gw('{ port: { number: 8443, name: https, protocol: HTTPS }, hosts: ["*"], tls: { mode: SIMPLE } }');
    const res2 = loadManifestText(s, simple, `file:${GATEWAY}`, true, 'bookinfo-gateway.yaml');
    assert.ok(
      res2.errors.some((e) => e.path.startsWith('spec.servers[0].tls.')),
      JSON.stringify(res2.errors),
    );
    assert.deepEqual(
      generate(TypeUrl.Listener, pushOf(s), INGRESS).map((l) => l.name),
      ['0.0.0.0_8080'],
      'the last good Gateway keeps serving',
    );
  });

  it('a VirtualService naming a Gateway that does not exist: an analyzer message, and no listener, no crash', () => {
    const vs = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: orphan, namespace: default }
spec:
  hosts: ["*"]
  gateways: [no-such-gateway, istio-system/missing]
  http: [{ route: [{ destination: { host: productpage, port: { number: 9080 } } }] }]
`;
    const msgs = analyze([
      { file: 'bookinfo.yaml', text: fs.readFileSync(BOOKINFO, 'utf8') },
      { file: 'orphan.yaml', text: vs },
    ]).filter((m) => m.code === 'IST0101');
    assert.deepEqual(
      msgs.map((m) => m.message),
      ['Referenced gateway not found: "no-such-gateway"', 'Referenced gateway not found: "istio-system/missing"'],
    );
    const p = pushOf(storeOf([BOOKINFO, PODS], vs));
    assert.deepEqual(generate(TypeUrl.Listener, p, INGRESS), []);
    assert.deepEqual(generate(TypeUrl.Cluster, p, INGRESS), []);
  });

  it('a Secret whose key does not match its certificate is refused with the field path, without the value', async () => {
    const a = await serverCertificate('a.example.com');
    const b = await serverCertificate('b.example.com');
    const s = new ConfigStore<StoredObject>();
    const res = loadManifestText(
      s,
      tlsSecretYaml('mixed', 'istio-system', { certPem: a.certPem, keyPem: b.keyPem }),
      'api',
      false,
    );
    assert.equal(res.errors[0]?.path, 'data["tls.key"]');
    assert.match(res.errors[0]?.message ?? '', /does not match/);
    assert.ok(!JSON.stringify(res.errors).includes(Buffer.from(b.keyPem).toString('base64').slice(0, 30)));
    const opaque = loadManifestText(
      s,
      'apiVersion: v1\nkind: Secret\nmetadata: { name: o }\ntype: Opaque\ndata: { password: cGFzcw== }',
      'api',
      false,
    );
    assert.equal(opaque.errors[0]?.severity, 'warning', 'other Secret types are skipped, not errors');
    assert.equal(s.list('Secret').length, 0);
  });
});
