/**
 * kubernetes.io/tls Secrets from the Kubernetes API reach an ingress gateway's SDS as file Secrets do: created,
 * updated and deleted with kubectl-like writes on the fake API server, the gateway's `kubernetes://<credentialName>`
 * follows; a Secret of another type never leaves the API server (field selector `type=kubernetes.io/tls`); a
 * malformed one is refused with its field path, never its value, and the last good one keeps serving; a 410 relist
 * catches up; only the gateway workload's namespace is read.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { issueTestCertificate } from '@fedmesh/pki/testing';
import { TypeUrl, decodeAny } from '@fedmesh/api/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { createGenerators } from '../generators/index.js';
import { parseProxyNode } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { TlsSecretKind } from './kinds.js';
import { KubeConfigSource } from './source.js';
import { memoryLogger, startFakeApiServer, waitUntil, type FakeObject } from './testing/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../../testdata/bookinfo-pods.yaml');
const BOOKINFO = path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml');
const CREDENTIAL = 'kubernetes://bookinfo-credential';
const sds = createGenerators().get(TypeUrl.Secret);

const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: secure, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [bookinfo.example.com]
    tls: { mode: SIMPLE, credentialName: bookinfo-credential }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: secure, namespace: default }
spec:
  hosts: [bookinfo.example.com]
  gateways: [secure]
  http: [{ route: [{ destination: { host: productpage, port: { number: 9080 } } }] }]
`;

const INGRESS = parseProxyNode({
  id: 'router~127.0.9.201~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local',
  metadata: {
    NAMESPACE: 'istio-system',
    SERVICE_ACCOUNT: 'istio-ingressgateway-service-account',
    LABELS: { istio: 'ingressgateway', app: 'istio-ingressgateway' },
    FEDMESH_GATEWAY_MODE: 'ingress',
  },
});

interface Material {
  certPem: string;
  keyPem: string;
}

async function serverCertificate(dns: string): Promise<Material> {
  const issuer = {
    certPem: fs.readFileSync(path.join(SAMPLES, 'certs/ca-cert.pem'), 'utf8'),
    keyPem: fs.readFileSync(path.join(SAMPLES, 'certs/ca-key.pem'), 'utf8'),
  };
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueTestCertificate({
    issuer,
    publicKey: privateKey,
    dns: [dns],
    extKeyUsage: ['serverAuth'],
  });
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function tlsSecret(namespace: string, m: Material, extra: Record<string, unknown> = {}): FakeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'bookinfo-credential', namespace },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64(m.certPem), 'tls.key': b64(m.keyPem) },
    ...extra,
  };
}

/** servedCertificate is the certificate chain the ingress gateway gets as SDS kubernetes://bookinfo-credential. */
function servedCertificate(store: ConfigStore<StoredObject>): string | undefined {
  const reg = new KubeObjectsRegistry(store, { cluster: 'Kubernetes', network: '', domainSuffix: 'cluster.local' });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
  };
  const root = fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8');
  assert.ok(sds);
  const r = sds(new PushContext(store.revision, mesh, store, [reg], root), INGRESS, []).find(
    (s) => s.name === CREDENTIAL,
  );
  if (!r) return undefined;
  const secret = decodeAny(r.resource) as { tls_certificate: { certificate_chain: { inline_string: string } } };
  return secret.tls_certificate.certificate_chain.inline_string;
}

describe('kubernetes.io/tls Secrets from the Kubernetes API', () => {
  it("follow create, update, 410 relist and delete into the ingress gateway's SDS; other Secrets never arrive", async (t) => {
    const fake = await startFakeApiServer();
    const store = new ConfigStore<StoredObject>();
    for (const f of [BOOKINFO, PODS]) loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, f);
    assert.deepEqual(loadManifestText(store, GATEWAY, 'api', false).errors, []);
    const { log, lines } = memoryLogger();
    const source = new KubeConfigSource({
      store,
      kubeConfig: fake.kubeConfig,
      log,
      kinds: [TlsSecretKind],
      endpointMode: 'none',
      backoffInitialMs: 100,
      backoffMaxMs: 400,
    });
    t.after(async () => {
      await source.stop();
      await fake.close();
    });
    const [m1, m2, m3] = await Promise.all([1, 2, 3].map(() => serverCertificate('bookinfo.example.com')));
    assert.ok(m1 && m2 && m3);
    const s = fake.server;
    // Same name in the Gateway resource's namespace: Istio reads credentials in the gateway workload's only.
    s.apply(tlsSecret('default', m1));
    s.apply({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'db-password', namespace: 'istio-system' },
      type: 'Opaque',
      data: { password: b64('hunter2') },
    });
    source.start();
    await source.waitForSync(10_000);
    assert.ok(store.get('Secret/default/bookinfo-credential'), 'the TLS Secret is mirrored');
    assert.equal(servedCertificate(store), undefined, 'a Secret outside the gateway namespace is not served');

    s.apply(tlsSecret('istio-system', m1));
    await waitUntil(() => servedCertificate(store) === m1.certPem, 10_000, 'created Secret served');
    s.apply(tlsSecret('istio-system', m2));
    await waitUntil(() => servedCertificate(store) === m2.certPem, 10_000, 'updated Secret served');

    // A key that does not match the certificate: refused with its field path, the last good one keeps serving.
    const bad = { ...m2, keyPem: m3.keyPem };
    s.apply(tlsSecret('istio-system', bad));
    await waitUntil(() => lines.some((l) => l['name'] === 'bookinfo-credential'), 10_000, 'refusal logged');
    const refusal = lines.find((l) => l['name'] === 'bookinfo-credential');
    assert.match(String(refusal?.['path']), /data.*tls\.key/);
    assert.match(String(refusal?.['msg']), /does not match the first certificate.*keeping its last good version/);
    assert.equal(servedCertificate(store), m2.certPem);

    // kubectl apply's last-applied annotation repeats data: it is not stored.
    s.apply(
      tlsSecret('istio-system', m3, {
        metadata: {
          name: 'bookinfo-credential',
          namespace: 'istio-system',
          annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(tlsSecret('x', m3)) },
        },
      }),
    );
    await waitUntil(() => servedCertificate(store) === m3.certPem, 10_000, 'fixed Secret served');
    assert.deepEqual(
      (store.get('Secret/istio-system/bookinfo-credential')?.metadata as { annotations?: unknown }).annotations,
      {},
    );

    // 410 Gone: a watch resuming from a compacted resourceVersion relists and sees the change made meanwhile.
    const lists = s.listCount('secrets');
    await s.stop();
    s.apply(tlsSecret('istio-system', m1));
    s.expireWatches();
    await s.start();
    await waitUntil(() => s.listCount('secrets') > lists, 15_000, 'relist after 410');
    await waitUntil(() => servedCertificate(store) === m1.certPem, 15_000, 'change made while away served');

    s.delete('v1', 'Secret', 'bookinfo-credential', 'istio-system');
    await waitUntil(() => servedCertificate(store) === undefined, 10_000, 'deleted Secret no longer served');

    assert.equal(store.get('Secret/istio-system/db-password'), undefined);
    const logged = JSON.stringify(lines);
    assert.ok(!logged.includes('db-password'), 'the Opaque Secret never reached istiod (not even as a warning)');
    for (const m of [m1, m2, m3]) {
      assert.ok(!logged.includes(m.keyPem) && !logged.includes(b64(m.keyPem)), 'no key material in the logs');
    }
    assert.ok(!logged.includes('PRIVATE KEY'));
  });
});
