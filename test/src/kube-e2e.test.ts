/**
 * fedmesh against a real kube-apiserver v1.20.2 (with etcd and kube-controller-manager; no scheduler, no kubelet):
 * `kubectl apply -f deploy/k8s/`, Bookinfo applied with kubectl, pods bound to a fake node and made Ready, istiod
 * reading the cluster with its own ServiceAccount, real sidecars bootstrapped with Kubernetes ServiceAccount tokens,
 * and traffic following each step. Skipped only when the kube-apiserver binary is absent.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createCsr, generateKeyPair, isPkiError, requestCertificate } from '@fedmesh/pki';
import { Istiod } from '@fedmesh/istiod';
import { Sidecar } from '@fedmesh/proxy';
import { FIXTURES, freeSubnet, get, startBackend, testLogger, waitUntil, type CountingBackend } from './harness.js';
import { KUBE_APISERVER, KubeCluster } from './kube-cluster.js';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy/k8s');
const BOOKINFO = path.join(FIXTURES, 'bookinfo');
const skip = fs.existsSync(KUBE_APISERVER)
  ? false
  : `kube-apiserver v1.20.2 not found at ${KUBE_APISERVER}: set FEDMESH_KUBE_BIN, or run .ci/run, which builds it`;

const SLEEP = `apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep, labels: {app: sleep}}
spec:
  serviceAccountName: sleep
  automountServiceAccountToken: false
  containers: [{name: sleep, image: curlimages/curl, command: [/bin/sleep, infinity]}]
`;

interface KubePod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { serviceAccountName?: string };
}

describe('fedmesh on a real kube-apiserver v1.20.2', { skip, timeout: 600_000 }, () => {
  let cluster: KubeCluster;
  let istiod: Istiod;
  let subnet = 0;
  const sidecars: Sidecar[] = [];
  const backends: CountingBackend[] = [];
  const started = Date.now();
  const ip = (n: number): string => `127.0.${subnet}.${n}`;

  before(async () => {
    cluster = new KubeCluster();
    subnet = await freeSubnet();
    await cluster.start();
  });

  after(async () => {
    for (const s of sidecars) await s.stop().catch(() => undefined);
    for (const b of backends) {
      b.server.closeAllConnections();
      b.server.close();
    }
    await istiod?.stop();
    await cluster?.stop();
    console.log(`# kube-e2e: whole suite ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  const pods = async (): Promise<KubePod[]> =>
    ((await cluster.api('GET', '/api/v1/namespaces/default/pods')) as { items: KubePod[] }).items;
  const podOf = async (app: string, version?: string): Promise<KubePod | undefined> =>
    (await pods()).find((p) => p.metadata.labels?.app === app && (!version || p.metadata.labels.version === version));

  it('takes kubectl apply -f deploy/k8s/ cleanly; the Istio CRDs are established with v1 stored', async (t) => {
    const t0 = Date.now();
    const out = await cluster.kubectl(['apply', '-f', DEPLOY]);
    for (const line of [
      'namespace/istio-system created',
      'customresourcedefinition.apiextensions.k8s.io/virtualservices.networking.istio.io created',
      'customresourcedefinition.apiextensions.k8s.io/authorizationpolicies.security.istio.io created',
      'serviceaccount/istiod created',
      'clusterrole.rbac.authorization.k8s.io/istiod created',
      'clusterrolebinding.rbac.authorization.k8s.io/istiod created',
      'configmap/istio created',
      'deployment.apps/istiod created',
      'service/istiod created',
    ])
      assert.ok(out.includes(line), `${line} in:\n${out}`);
    await cluster.kubectl(['wait', '--for=condition=established', '--timeout=60s', 'crd', '--all']);
    const crd = JSON.parse(
      await cluster.kubectl(['get', 'crd', 'virtualservices.networking.istio.io', '-o', 'json']),
    ) as {
      spec: { names: { shortNames: string[] }; versions: { name: string; served: boolean; storage: boolean }[] };
      status: { conditions: { type: string; status: string }[] };
    };
    assert.deepEqual(
      crd.spec.versions.map((v) => `${v.name}:${v.served}:${v.storage}`),
      ['v1:true:true', 'v1beta1:true:false', 'v1alpha3:true:false'],
    );
    assert.deepEqual(crd.spec.names.shortNames, ['vs']);
    assert.ok(!crd.status.conditions.some((c) => c.type === 'NonStructuralSchema' && c.status === 'True'));
    const again = await cluster.kubectl(['apply', '-f', DEPLOY]);
    assert.doesNotMatch(again, /created|configured/, 'a second apply changes nothing');
    t.diagnostic(`deploy/k8s applied in ${Date.now() - t0} ms`);
  });

  it('applies Bookinfo with kubectl; the controller-manager creates its pods, Pending without a scheduler', async () => {
    await cluster.kubectl(['apply', '-f', path.join(BOOKINFO, 'platform/kube/bookinfo.yaml')]);
    await cluster.kubectl(['apply', '-f', '-'], SLEEP);
    await waitUntil(
      async () => (await pods()).length === 7,
      60_000,
      'six Bookinfo pods from the Deployments and sleep',
    );
    const reviews = await podOf('reviews', 'v1');
    assert.match(reviews?.metadata.name ?? '', /^reviews-v1-[a-z0-9]+-[a-z0-9]{5}$/, 'a ReplicaSet-made pod');
  });

  it("syncs istiod with deploy/k8s's istiod ServiceAccount and RBAC; /ready turns true", async (t) => {
    const t0 = Date.now();
    const token = (await cluster.kubectl(['create', 'token', 'istiod', '-n', 'istio-system', '--duration=1h'])).trim();
    const kubeconfig = path.join(cluster.dir, 'istiod.kubeconfig');
    fs.writeFileSync(kubeconfig, cluster.kubeconfigFor(token), { mode: 0o600 });
    istiod = new Istiod({
      host: ip(1),
      xdsPlainPort: 15010,
      xdsTlsPort: 15012,
      monitoringPort: 15014,
      stateDir: path.join(cluster.dir, 'istiod'),
      configFiles: [],
      kubeconfig,
      log: testLogger(cluster.dir, 'istiod'),
    });
    await istiod.start();
    await waitUntil(
      async () => (await fetch(`http://${istiod.addresses.monitoring}/ready`).catch(() => undefined))?.status === 200,
      60_000,
      'istiod /ready',
    );
    t.diagnostic(`istiod synced ${Date.now() - t0} ms after start`);
    for (const key of [
      'Service/default/reviews',
      'ServiceAccount/default/bookinfo-reviews',
      'Namespace/default/istio-system',
      'Service/istio-system/istiod',
    ])
      assert.ok(istiod.store.get(key), `${key} mirrored`);
    assert.equal(istiod.store.list('Pod', 'default').length, 7, 'six Bookinfo pods and sleep');
    assert.ok(istiod.kube?.status().every((s) => s.synced && s.served));
  });

  it('routes to pods once they are bound to a node and Ready; sidecars bootstrap with ServiceAccount tokens', async (t) => {
    const t0 = Date.now();
    await cluster.api('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'fake-node' } });
    const wanted = [
      await podOf('sleep'),
      await podOf('reviews', 'v1'),
      await podOf('reviews', 'v2'),
      await podOf('reviews', 'v3'),
    ];
    const addresses = new Map<string, string>();
    for (const [i, pod] of wanted.entries()) {
      assert.ok(pod);
      const name = pod.metadata.name;
      const podIp = ip(10 + i);
      addresses.set(name, podIp);
      podAddresses.set(name, podIp);
      const app = pod.metadata.labels?.app ?? '';
      if (app === 'reviews') backends.push(await startBackend(podIp, 9080, name));
      const sa = pod.spec.serviceAccountName ?? 'default';
      const token = (await cluster.kubectl(['create', 'token', sa, '--audience', 'istio-ca'])).trim();
      const log = testLogger(cluster.dir, name);
      const sidecar = new Sidecar({
        ip: podIp,
        podName: name,
        namespace: 'default',
        serviceAccount: sa,
        labels: pod.metadata.labels ?? {},
        workloadName: app,
        clusterId: 'Kubernetes',
        discoveryAddress: istiod.addresses.xdsTls,
        rootCertPem: istiod.ca.rootCertsPem.join(''),
        token,
        adminPort: 15000,
        mtlsPort: 15006,
        log,
        accessLog: log.child({ scope: 'access' }),
      });
      sidecars.push(sidecar);
      await sidecar.start();
    }
    await waitUntil(() => sidecars.every((s) => s.ready()), 60_000, 'sidecars ready (certificates from TokenReview)');
    const sleepAddr = `${ip(10)}:15001`;
    const before = await get(sleepAddr, 'reviews:9080');
    assert.notEqual(before.status, 200, 'no endpoints while the pods are Pending');

    const t1 = Date.now();
    for (const [name, podIp] of addresses) {
      const base = `/api/v1/namespaces/default/pods/${name}`;
      await cluster.api('POST', `${base}/binding`, {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name },
        target: { apiVersion: 'v1', kind: 'Node', name: 'fake-node' },
      });
      await cluster.api('PATCH', `${base}/status`, {
        status: {
          phase: 'Running',
          hostIP: '127.0.0.1',
          podIP: podIp,
          podIPs: [{ ip: podIp }],
          conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({
            type,
            status: 'True',
          })),
        },
      });
    }
    await waitUntil(
      async () => (await get(sleepAddr, 'reviews:9080')).status === 200,
      60_000,
      'sleep → reviews routed',
    );
    t.diagnostic(
      `4 sidecars started and ready in ${t1 - t0} ms; pods bound and Ready → first routed request in ${Date.now() - t1} ms`,
    );
    const seen = new Set<string>();
    for (let i = 0; i < 60 && seen.size < 3; i++) seen.add(await versionOf(sleepAddr));
    assert.deepEqual([...seen].sort(), ['v1', 'v2', 'v3'], 'all three versions serve without a VirtualService');
  });

  it('takes endpoints from discovery.k8s.io/v1beta1 EndpointSlices once a Service has them (pods no longer selected)', async (t) => {
    assert.deepEqual(istiod.kube?.endpointSource(), { kind: 'EndpointSlice', version: 'v1beta1' });
    const sleepAddr = `${ip(10)}:15001`;
    const reviews = await Promise.all(['v1', 'v2', 'v3'].map((v) => podOf('reviews', v)));
    // No endpointslice controller runs here (kube-controller-manager has only the Deployment and token
    // controllers), so the slices are written as that controller would: one per address family, Pod targetRefs.
    const sliceOf = (name: string, eps: { pod: KubePod | undefined; ready: boolean }[]): string =>
      JSON.stringify({
        apiVersion: 'discovery.k8s.io/v1beta1',
        kind: 'EndpointSlice',
        metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': 'reviews' } },
        addressType: 'IPv4',
        endpoints: eps.map(({ pod, ready }) => ({
          addresses: [addressOf(pod)],
          conditions: { ready },
          targetRef: { kind: 'Pod', namespace: 'default', name: pod?.metadata.name },
          topology: { 'kubernetes.io/hostname': 'fake-node' },
        })),
        ports: [{ name: 'http', port: 9080, protocol: 'TCP' }],
      });
    const t0 = Date.now();
    await cluster.kubectl(['apply', '-f', '-'], sliceOf('reviews-a', [{ pod: reviews[0], ready: true }]));
    await cluster.kubectl(['apply', '-f', '-'], sliceOf('reviews-b', [{ pod: reviews[2], ready: true }]));
    await waitUntil(() => istiod.store.list('EndpointSlice', 'default').length === 2, 30_000, 'slices mirrored');
    await waitUntil(
      async () =>
        Object.keys(await split(sleepAddr, 20))
          .sort()
          .join() === 'v1,v3',
      60_000,
      'only the pods in the slices (v1, v3) serve',
    );
    t.diagnostic(`kubectl apply of 2 EndpointSlices → traffic follows them in ${Date.now() - t0} ms`);
    await cluster.kubectl(
      ['apply', '-f', '-'],
      sliceOf('reviews-b', [
        { pod: reviews[2], ready: true },
        { pod: reviews[1], ready: false },
      ]),
    );
    await waitUntil(() => registryHealth(istiod, addressOf(reviews[1])) === false, 30_000, 'v2 listed but not ready');
    assert.equal((await split(sleepAddr, 30)).v2 ?? 0, 0, 'a not-ready endpoint gets no traffic');
    await cluster.kubectl(
      ['apply', '-f', '-'],
      sliceOf('reviews-b', [
        { pod: reviews[2], ready: true },
        { pod: reviews[1], ready: true },
      ]),
    );
    const seen = new Set<string>();
    await waitUntil(
      async () => {
        for (let i = 0; i < 10; i++) seen.add(await versionOf(sleepAddr));
        return seen.has('v2');
      },
      60_000,
      'v2 serves once Ready in its slice',
    );
  });

  it('carries VirtualService changes made with kubectl to the proxies: 90-10, then all v1', async (t) => {
    const sleepAddr = `${ip(10)}:15001`;
    let t0 = Date.now();
    let rds = routeAck();
    await cluster.kubectl([
      'apply',
      '-f',
      path.join(BOOKINFO, 'networking/destination-rule-all-mtls.yaml'),
      '-f',
      path.join(BOOKINFO, 'networking/virtual-service-reviews-90-10.yaml'),
    ]);
    await waitUntil(() => routeAck() !== rds && routeAck() !== '', 60_000, 'sleep ACKs the 90-10 routes');
    t.diagnostic(`kubectl apply 90-10 → RDS ACKed by sleep in ${Date.now() - t0} ms`);
    const counts = await split(sleepAddr, 200);
    assert.equal(counts.v3 ?? 0, 0, `no v3 under 90-10: ${JSON.stringify(counts)}`);
    // 200 draws at p = 0.1: mean 20, sd 4.2; [4, 40] is about ±3.8 sd.
    assert.ok((counts.v2 ?? 0) >= 4 && (counts.v2 ?? 0) <= 40, `v2 share ${JSON.stringify(counts)}`);

    t0 = Date.now();
    rds = routeAck();
    await cluster.kubectl(['apply', '-f', path.join(BOOKINFO, 'networking/virtual-service-all-v1.yaml')]);
    await waitUntil(() => routeAck() !== rds && routeAck() !== '', 60_000, 'sleep ACKs the all-v1 routes');
    t.diagnostic(`kubectl apply all-v1 → RDS ACKed by sleep in ${Date.now() - t0} ms`);
    assert.deepEqual(await split(sleepAddr, 100), { v1: 100 });
  });

  it('keeps routing while the API server is down, and takes kubectl changes again once it is back', async (t) => {
    const sleepAddr = `${ip(10)}:15001`;
    await cluster.stopApiServer();
    let t0 = Date.now();
    try {
      await waitUntil(() => !(istiod.kube?.status().some((s) => s.watching) ?? true), 30_000, 'watches broken');
      assert.ok(istiod.kube?.synced(), 'still synced: the last known state is kept');
      assert.equal((await fetch(`http://${istiod.addresses.monitoring}/ready`)).status, 200);
      assert.deepEqual(await split(sleepAddr, 20), { v1: 20 }, 'traffic keeps following the last known config');
      assert.ok(istiod.store.get('VirtualService/default/reviews'));
    } finally {
      t0 = Date.now();
      await cluster.restartApiServer();
    }
    t.diagnostic(`kube-apiserver restarted in ${Date.now() - t0} ms`);
    t0 = Date.now();
    const rds = routeAck();
    await cluster.kubectl(['apply', '-f', path.join(BOOKINFO, 'networking/virtual-service-reviews-v3.yaml')]);
    await waitUntil(() => routeAck() !== rds && routeAck() !== '', 90_000, 'sleep ACKs the v3 routes');
    t.diagnostic(`after the restart: kubectl apply v3 → RDS ACKed by sleep in ${Date.now() - t0} ms`);
    assert.deepEqual(await split(sleepAddr, 50), { v3: 50 });
    const restarts = istiod.kube?.status().reduce((n, s) => n + s.restarts, 0) ?? 0;
    assert.ok(restarts >= 12, `every informer was restarted (${restarts} restarts)`);
  });

  it('issues spiffe://cluster.local/ns/default/sa/bookinfo-reviews for an istio-ca token; refuses another audience', async () => {
    const ask = async (token: string) => {
      const key = await generateKeyPair('ec-p256');
      const csrPem = createCsr({ privateKey: key.privateKey });
      return requestCertificate({
        address: istiod.addresses.xdsTls,
        rootCertsPem: istiod.ca.rootCertsPem,
        serverName: 'localhost',
        csrPem,
        token,
      });
    };
    const good = (await cluster.kubectl(['create', 'token', 'bookinfo-reviews', '--audience', 'istio-ca'])).trim();
    const { certChainPem } = await ask(good);
    assert.equal(
      new X509Certificate(certChainPem[0] ?? '').subjectAltName,
      'URI:spiffe://cluster.local/ns/default/sa/bookinfo-reviews',
    );
    const wrong = (await cluster.kubectl(['create', 'token', 'bookinfo-reviews'])).trim();
    await assert.rejects(ask(wrong), (err: unknown) => isPkiError(err, 'CA_REFUSED'));
    const log = fs.readFileSync(path.join(cluster.dir, 'istiod.log'), 'utf8');
    assert.match(log, /"reason":"TOKEN_WRONG_AUDIENCE"/);
    assert.ok(!log.includes(good) && !log.includes(wrong), 'tokens never logged');
  });

  it('follows the istio ConfigMap (kubectl patch) with a push; a wrong type is refused and the last good kept', async (t) => {
    assert.equal(istiod.ca.trustDomain, 'cluster.local');
    const t0 = Date.now();
    const patch = (mesh: string): Promise<string> =>
      cluster.kubectl([
        '-n',
        'istio-system',
        'patch',
        'configmap',
        'istio',
        '--type=merge',
        '-p',
        JSON.stringify({ data: { mesh } }),
      ]);
    const mesh = (): { trustDomainAliases?: readonly string[] | undefined } => istiod.discovery.pushContext().mesh;
    await patch('trustDomain: cluster.local\ntrustDomainAliases: [old.example]\n');
    await waitUntil(() => mesh().trustDomainAliases?.[0] === 'old.example', 30_000, 'aliases pushed');
    t.diagnostic(`kubectl patch of the mesh ConfigMap → in the push context in ${Date.now() - t0} ms`);
    await patch('trustDomain: cluster.local\ntrustDomainAliases: old.example\n');
    await waitUntil(
      () =>
        fs.readFileSync(path.join(cluster.dir, 'istiod.log'), 'utf8').includes('trustDomainAliases: must be a list'),
      30_000,
      'refusal logged',
    );
    assert.deepEqual(mesh().trustDomainAliases, ['old.example'], 'last good mesh config kept');
    assert.equal((await split(`${ip(10)}:15001`, 10)).v3, 10, 'traffic unaffected');
  });

  it('mirrors kubernetes.io/tls Secrets made with kubectl create secret tls, and no other Secret', async (t) => {
    const certs = path.join(FIXTURES, 'certs');
    const [cert, key] = [path.join(certs, 'ca-cert.pem'), path.join(certs, 'ca-key.pem')];
    const t0 = Date.now();
    await cluster.kubectl([
      '-n',
      'istio-system',
      'create',
      'secret',
      'tls',
      'bookinfo-credential',
      '--cert',
      cert,
      '--key',
      key,
    ]);
    await cluster.kubectl([
      '-n',
      'istio-system',
      'create',
      'secret',
      'generic',
      'db-password',
      '--from-literal=p=hunter2',
    ]);
    const push = (): ReturnType<Istiod['discovery']['pushContext']> => istiod.discovery.pushContext();
    await waitUntil(() => push().tlsSecret('istio-system', 'bookinfo-credential') !== undefined, 30_000, 'TLS Secret');
    t.diagnostic(`kubectl create secret tls → in the push context in ${Date.now() - t0} ms`);
    assert.equal(istiod.store.get('Secret/istio-system/db-password'), undefined, 'the generic Secret is not read');
    await cluster.kubectl(['-n', 'istio-system', 'delete', 'secret', 'bookinfo-credential']);
    await waitUntil(() => push().tlsSecret('istio-system', 'bookinfo-credential') === undefined, 30_000, 'deletion');
    const log = fs.readFileSync(path.join(cluster.dir, 'istiod.log'), 'utf8');
    const keyB64 = Buffer.from(fs.readFileSync(key, 'utf8')).toString('base64');
    assert.ok(!log.includes('PRIVATE KEY') && !log.includes(keyB64.slice(0, 40)), 'no key material logged');
    assert.ok(!log.includes('db-password'), 'the generic Secret never reached istiod');
  });

  /**
   * routeAck is the RDS version the sleep proxy last ACKed, once every type pushed to it is ACKed (so new subset
   * clusters have their endpoints too); '' while anything is unsent or stale.
   */
  function routeAck(): string {
    const s = istiod.discovery.status().find((p) => p.serviceAccount === 'sleep');
    if (!s || !Object.values(s.types).every((v) => v.status === 'SYNCED')) return '';
    return s.types['RDS']?.acked ?? '';
  }
});

/** addressOf is a bound pod's IP as its status says (set by the routing test). */
function addressOf(pod: KubePod | undefined): string {
  const a = podAddresses.get(pod?.metadata.name ?? '');
  assert.ok(a, `address of ${pod?.metadata.name}`);
  return a;
}

const podAddresses = new Map<string, string>();

/** registryHealth is whether istiod's registry has the reviews:9080 endpoint at `address` healthy (undefined: absent). */
function registryHealth(istiod: Istiod, address: string): boolean | undefined {
  const push = istiod.discovery.pushContext();
  return push.instances('reviews.default.svc.cluster.local', 9080).find((i) => i.endpoint.address === address)?.endpoint
    .healthy;
}

async function versionOf(proxy: string): Promise<string> {
  const res = await get(proxy, 'reviews:9080');
  assert.equal(res.status, 200, res.body);
  const pod = (JSON.parse(res.body) as { pod: string }).pod;
  return /^reviews-(v\d)-/.exec(pod)?.[1] ?? pod;
}

async function split(proxy: string, n: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const v = await versionOf(proxy);
    counts[v] = (counts[v] ?? 0) + 1;
  }
  return counts;
}
