import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatManifestError, parseManifests, type ManifestError } from './manifests.js';
import { isResourceKind, resourceKey } from './schemas/resource.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The Istio sample manifests: FEDMESH_ISTIO_SAMPLES, else the repo's samples/istio, else ../shared/fixtures. */
function samplesDir(): string {
  const candidates = [
    process.env.FEDMESH_ISTIO_SAMPLES,
    path.resolve(here, '../../../samples/istio'),
    path.resolve(here, '../../../../shared/fixtures/istio-samples'),
  ];
  for (const dir of candidates) {
    if (dir !== undefined && existsSync(path.join(dir, 'bookinfo/platform/kube/bookinfo.yaml'))) return dir;
  }
  throw new Error(`Istio samples not found; tried ${candidates.join(', ')}`);
}

const SAMPLES = samplesDir();

function parseSample(rel: string): ReturnType<typeof parseManifests> {
  return parseManifests(readFileSync(path.join(SAMPLES, rel), 'utf8'), { file: path.basename(rel) });
}

function errorsOnly(errors: readonly ManifestError[]): ManifestError[] {
  return errors.filter((e) => e.severity === 'error');
}

/** The errors as `path: message` strings, for exact comparison. */
function brief(errors: readonly ManifestError[]): string[] {
  return errors.map((e) => `[${e.index}] ${e.path}: ${e.message}`);
}

describe('parseManifests on the Istio samples', () => {
  const files = readdirSync(SAMPLES, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.yaml'))
    .sort();

  it('finds the sample files', () => {
    assert.ok(files.includes(path.join('bookinfo', 'platform', 'kube', 'bookinfo.yaml')));
    assert.ok(files.filter((f) => f.startsWith(path.join('bookinfo', 'networking'))).length >= 10);
    assert.ok(files.some((f) => f.startsWith('helloworld')));
    assert.ok(files.filter((f) => f.startsWith('multicluster')).length >= 2);
  });

  for (const file of files) {
    it(`loads ${file} with no errors`, () => {
      const { resources, errors } = parseSample(file);
      assert.deepEqual(errorsOnly(errors).map(formatManifestError), []);
      assert.ok(resources.length > 0);
    });
  }

  it('reads bookinfo.yaml as 4 Services, 4 ServiceAccounts and 6 Deployments with defaults applied', () => {
    const { resources } = parseSample('bookinfo/platform/kube/bookinfo.yaml');
    const count = (kind: string): number => resources.filter((r) => r.kind === kind).length;
    assert.equal(count('Service'), 4);
    assert.equal(count('ServiceAccount'), 4);
    assert.equal(count('Deployment'), 6);
    const reviewsV2 = resources.find((r) => resourceKey(r) === 'Deployment/default/reviews-v2');
    assert.ok(reviewsV2 && isResourceKind(reviewsV2, 'Deployment'));
    assert.equal(reviewsV2.spec.replicas, 1);
    assert.equal(reviewsV2.spec.template.spec.serviceAccountName, 'bookinfo-reviews');
    assert.deepEqual(reviewsV2.spec.template.metadata.labels, { app: 'reviews', version: 'v2' });
    const container = reviewsV2.spec.template.spec.containers[0];
    assert.equal(container?.ports?.[0]?.containerPort, 9080);
    assert.equal(container?.ports?.[0]?.protocol, 'TCP');
    assert.deepEqual(container?.env?.[0], { name: 'LOG_DIR', value: '/tmp/logs' });
    const svc = resources.find((r) => resourceKey(r) === 'Service/default/details');
    assert.ok(svc && isResourceKind(svc, 'Service'));
    assert.deepEqual(svc.spec.selector, { app: 'details' });
    assert.deepEqual(svc.spec.ports, [{ port: 9080, name: 'http', protocol: 'TCP' }]);
    assert.equal(svc.spec.type, 'ClusterIP');
  });

  it('reads the weighted reviews route and the east-west AUTO_PASSTHROUGH gateway', () => {
    const [vs] = parseSample('bookinfo/networking/virtual-service-reviews-80-20.yaml').resources;
    assert.ok(vs && isResourceKind(vs, 'VirtualService'));
    assert.deepEqual(
      vs.spec.http?.[0]?.route?.map((r) => [r.destination.subset, r.weight]),
      [
        ['v1', 80],
        ['v2', 20],
      ],
    );
    const [gw] = parseSample('multicluster/expose-services.yaml').resources;
    assert.ok(gw && isResourceKind(gw, 'Gateway'));
    assert.equal(gw.spec.servers[0]?.port.number, 15443);
    assert.equal(gw.spec.servers[0]?.tls?.mode, 'AUTO_PASSTHROUGH');
    assert.deepEqual(gw.spec.servers[0]?.hosts, ['*.local']);
  });
});

const GOOD_DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}`;

function reviewsVs(http: string, name = 'reviews'): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ${name}
spec:
  hosts:
  - reviews
  http:
${http}`;
}

/** Parses `[GOOD_DR, broken, GOOD_DR']` and checks that both good documents still load. */
function withSiblings(broken: string): ManifestError[] {
  const text = [GOOD_DR, broken, GOOD_DR.replace('name: reviews', 'name: reviews-2')].join('\n---\n');
  const { resources, errors } = parseManifests(text, { file: 'bad.yaml' });
  assert.deepEqual(resources.map(resourceKey), [
    'DestinationRule/default/reviews',
    'DestinationRule/default/reviews-2',
  ]);
  return errors;
}

describe('parseManifests on broken documents', () => {
  it('reports a weight above 100 at its path, and formats it for humans', () => {
    const errors = withSiblings(
      reviewsVs(`  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 150`),
    );
    assert.deepEqual(brief(errors), ['[1] spec.http[0].route[1].weight: must be ≤ 100']);
    const [e] = errors;
    assert.ok(e);
    assert.equal(e.kind, 'VirtualService');
    assert.equal(e.name, 'reviews');
    assert.equal(e.namespace, 'default');
    assert.equal(e.code, 'FEDMESH_ERR_INVALID_CONFIG');
    assert.equal(e.severity, 'error');
    assert.equal(e.line, 23, 'the line of `weight: 150`, counted from the start of the text');
    assert.equal(e.column, 7);
    assert.equal(
      formatManifestError(e),
      'bad.yaml[1] VirtualService default/reviews: spec.http[0].route[1].weight: must be ≤ 100',
    );
  });

  it('reports a non-numeric weight', () => {
    const errors = withSiblings(
      reviewsVs(`  - route:
    - destination: {host: reviews}
      weight: abc`),
    );
    assert.deepEqual(brief(errors), ['[1] spec.http[0].route[0].weight: must be an integer, got string "abc"']);
  });

  it('reports a misspelt field as unknown, and only that', () => {
    const errors = withSiblings(
      reviewsVs(`  - rout:
    - destination: {host: reviews}`),
    );
    assert.deepEqual(brief(errors), ['[1] spec.http[0].rout: unknown field']);
  });

  it('reports a StringMatch with both exact and prefix', () => {
    const errors = withSiblings(
      reviewsVs(`  - match:
    - uri: {exact: /a, prefix: /b}
    route:
    - destination: {host: reviews}`),
    );
    assert.deepEqual(brief(errors), [
      '[1] spec.http[0].match[0].uri: must set exactly one of exact, prefix, regex (got exact, prefix)',
    ]);
  });

  it('reports a regex that does not compile, and RE2-only lookaround', () => {
    const errors = withSiblings(
      reviewsVs(`  - match:
    - uri: {regex: "/api/(v1|v2"}
    - headers:
        end-user: {regex: "^(?!admin).*"}
        x-ok: {regex: "(?i)^jason$"}
    route:
    - destination: {host: reviews}`),
    );
    assert.deepEqual(brief(errors), [
      '[1] spec.http[0].match[0].uri.regex: invalid regex: Unterminated group',
      '[1] spec.http[0].match[1].headers["end-user"].regex: invalid regex: lookaround is not supported by RE2',
    ]);
  });

  it('reports bad durations', () => {
    const errors = withSiblings(
      reviewsVs(`  - timeout: 10 seconds
    retries: {attempts: 3, perTryTimeout: -2s}
    route:
    - destination: {host: reviews}`),
    );
    assert.deepEqual(brief(errors), [
      '[1] spec.http[0].timeout: must be a duration such as 10s, 1.5s or 100ms',
      '[1] spec.http[0].retries.perTryTimeout: must be a duration such as 10s, 1.5s or 100ms',
    ]);
  });

  it('reports a missing metadata.name', () => {
    const errors = withSiblings(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}`);
    assert.deepEqual(brief(errors), ['[1] metadata.name: required']);
    assert.equal(errors[0]?.name, undefined);
    assert.equal(
      formatManifestError(errors[0] as ManifestError),
      'bad.yaml[1] VirtualService: metadata.name: required',
    );
  });

  it('reports a YAML syntax error with its line, and loads the other documents', () => {
    const errors = withSiblings(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken
spec:
  hosts: [reviews]`);
    assert.equal(errors.length, 1);
    const [e] = errors;
    assert.ok(e);
    assert.equal(e.index, 1);
    assert.equal(e.path, '');
    assert.equal(e.code, 'FEDMESH_ERR_INVALID_CONFIG');
    assert.equal(
      e.message,
      'YAML syntax error: Flow map in block collection must be sufficiently indented and end with a }',
    );
    assert.ok(e.line !== undefined && e.line >= 10 + 3, `line ${e.line} is in the broken document`);
  });

  it('reports duplicate keys, as strict field validation does', () => {
    const errors = withSiblings(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dup}
spec:
  hosts: [reviews]
  hosts: [ratings]`);
    assert.deepEqual(brief(errors), ['[1] : YAML syntax error: Map keys must be unique']);
    assert.equal(errors[0]?.line, 16);
  });

  it('reports every problem of a document, and cross-field rules once the fields are valid', () => {
    const { errors } = parseManifests(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUNDROBIN}
    outlierDetection: {consecutive5xxErrors: -1, maxEjectionPercent: 101, interval: 1m}
    tls: {mode: MUTUAL}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}`);
    assert.deepEqual(brief(errors), [
      '[0] spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST, got "ROUNDROBIN"',
      '[0] spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be ≥ 0',
      '[0] spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be ≤ 100',
      '[0] spec.trafficPolicy.tls.clientCertificate: required when mode is MUTUAL',
      '[0] spec.trafficPolicy.tls.privateKey: required when mode is MUTUAL',
    ]);
  });
});

describe('parseManifests document handling', () => {
  it('skips empty documents and separators but counts them in the index', () => {
    const text = `---\n# only a comment\n---\n${GOOD_DR}\n---\n---\n${reviewsVs('  - route:\n    - destination: {host: reviews}\n      weight: 101')}\n---\n`;
    const { resources, errors } = parseManifests(text);
    assert.deepEqual(resources.map(resourceKey), ['DestinationRule/default/reviews']);
    assert.deepEqual(brief(errors), ['[3] spec.http[0].route[0].weight: must be ≤ 100']);
    assert.equal(
      formatManifestError(errors[0] as ManifestError),
      '<input>[3] VirtualService default/reviews: spec.http[0].route[0].weight: must be ≤ 100',
    );
    assert.deepEqual(parseManifests(''), { resources: [], errors: [] });
  });

  it('reads the items of a kind: List, with item paths', () => {
    const { resources, errors } = parseManifests(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: bookinfo-details}
- apiVersion: networking.istio.io/v1beta1
  kind: Gateway
  metadata: {name: gw, namespace: istio-system}
  spec:
    selector: {istio: ingressgateway}
    servers:
    - port: {number: 443, name: https, protocol: HTTPS}
      hosts: ["*"]
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm}`);
    assert.deepEqual(resources.map(resourceKey), ['ServiceAccount/default/bookinfo-details']);
    assert.deepEqual(
      errors.map((e) => [e.severity, e.kind, e.path, e.message]),
      [
        ['error', 'Gateway', 'items[1].spec.servers[0].tls', 'required when port protocol is HTTPS'],
        ['warning', 'ConfigMap', 'items[2]', 'unsupported kind ConfigMap (apiVersion v1); skipped'],
      ],
    );
  });

  it('warns about and skips kinds it does not handle, including Gateway API Gateways', () => {
    const { resources, errors } = parseManifests(`apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: foo}
spec: {gatewayClassName: istio-waypoint}
---
${GOOD_DR}`);
    assert.deepEqual(resources.map(resourceKey), ['DestinationRule/default/reviews']);
    assert.deepEqual(
      errors.map((e) => [e.severity, e.code, formatManifestError(e)]),
      [
        [
          'warning',
          'FEDMESH_ERR_UNSUPPORTED',
          '<input>[0] Namespace istio-system: warning: unsupported kind Namespace (apiVersion v1); skipped',
        ],
        [
          'warning',
          'FEDMESH_ERR_UNSUPPORTED',
          '<input>[1] Gateway foo/waypoint: warning: unsupported kind Gateway (apiVersion gateway.networking.k8s.io/v1); skipped',
        ],
      ],
    );
  });

  it('rejects documents that are not objects or lack apiVersion/kind', () => {
    const { errors } = parseManifests(
      `- a\n- b\n---\nkind: VirtualService\nmetadata: {name: x}\n---\napiVersion: 3\nkind: [x]`,
    );
    assert.deepEqual(brief(errors), [
      '[0] : must be a mapping (a Kubernetes object), got a list',
      '[1] apiVersion: required',
      '[2] apiVersion: must be a string, got number 3',
      '[2] kind: must be a string, got a list',
    ]);
  });

  it('treats null-valued fields as absent, as Kubernetes does', () => {
    const { resources, errors } = parseManifests(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa
  labels:
  annotations:`);
    assert.deepEqual(errors, []);
    assert.deepEqual(resources[0]?.metadata, { name: 'sa', namespace: 'default' });
  });

  it('rejects an unsupported apiVersion of a known kind', () => {
    const { errors } = parseManifests(GOOD_DR.replace('networking.istio.io/v1', 'networking.istio.io/v2'));
    assert.deepEqual(brief(errors), [
      '[0] apiVersion: must be one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3, got "networking.istio.io/v2"',
    ]);
  });
});
