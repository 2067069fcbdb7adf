// A corpus of bad peer certificates. Inbound: each is presented as a client certificate at a sidecar's mTLS port
// and must be refused with nothing reaching the app. Outbound: a server whose certificate is not an acceptable
// X509-SVID for the cluster must be refused by the calling sidecar (503) with nothing reaching that server's app.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { parseResource } from '@fedmesh/api';
import { ClusterType, istioNodeId } from '@fedmesh/proxy';
import { AdsClient } from '@fedmesh/xds';
import { CertificateAuthority, generateKeyPair, type GeneratedKeyPair } from '@fedmesh/pki';
import { issueTestCertificate, type TestCertificateOptions, type TestIssuer } from '@fedmesh/pki/testing';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

const CERTS = path.join(FIXTURES, 'certs');
const SLEEP_ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const RATINGS_ID = 'spiffe://cluster.local/ns/default/sa/bookinfo-ratings';
const INBOUND_SNI = 'outbound_.9080_._.reviews.default.svc.cluster.local';
const HOUR = 3_600_000;

const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;
let meshIssuer: TestIssuer;
let meshChainTail: string;
let foreignIssuer: TestIssuer;
let key: GeneratedKeyPair;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')], CERTS);
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
    appPort: 9080,
  });
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  meshIssuer = {
    certPem: fs.readFileSync(path.join(CERTS, 'ca-cert.pem'), 'utf8'),
    keyPem: fs.readFileSync(path.join(CERTS, 'ca-key.pem'), 'utf8'),
  };
  meshChainTail = mesh.istiod.ca.certChainPem.join('');
  const foreignDir = path.join(mesh.dir, 'foreign-ca');
  await CertificateAuthority.createSelfSigned({ stateDir: foreignDir, trustDomain: 'cluster.local' });
  foreignIssuer = {
    certPem: fs.readFileSync(path.join(foreignDir, 'ca-cert.pem'), 'utf8'),
    keyPem: fs.readFileSync(path.join(foreignDir, 'ca-key.pem'), 'utf8'),
  };
  key = await generateKeyPair('ec-p256');
});
after(() => mesh.close());

/** PeerCase is one certificate of the corpus: how it is issued and by whom. */
interface PeerCase {
  name: string;
  issuer: 'mesh' | 'foreign';
  options: Omit<TestCertificateOptions, 'issuer' | 'publicKey'>;
}

async function issue(c: PeerCase): Promise<string> {
  const issuer = c.issuer === 'mesh' ? meshIssuer : foreignIssuer;
  const leaf = await issueTestCertificate({ issuer, publicKey: key.publicKey, ...c.options });
  // Present the chain a real workload presents: leaf + the issuing CA (mesh: Istio's sample intermediate).
  return c.issuer === 'mesh' ? leaf + meshChainTail : leaf + foreignIssuer.certPem;
}

/** presentClientCert connects to reviews' inbound port with a client certificate and sends one request. */
function presentClientCert(chainPem: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: reviews.ip,
      port: 15006,
      servername: INBOUND_SNI,
      cert: chainPem,
      key: key.privateKeyPem,
      ca: mesh.rootCertPem(),
      checkServerIdentity: () => undefined,
    });
    let got = '';
    s.on('secureConnect', () => s.write('GET /reviews/1 HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', (e) => resolve(`error: ${e.message}`));
    s.on('close', () => resolve(got || 'closed without a response'));
    s.setTimeout(10_000, () => s.destroy());
  });
}

/** handshakes reads a sidecar's `fedmesh_tls_handshakes_total{direction}` by result. */
async function handshakes(
  pod: TestPod,
  direction: 'inbound' | 'outbound',
): Promise<Record<'ok' | 'error' | 'peer_refused', number>> {
  const out = { ok: 0, error: 0, peer_refused: 0 };
  for (const v of (await pod.sidecar.metrics.tlsHandshakes.get()).values) {
    const result = v.labels.result as keyof typeof out;
    if (v.labels.direction === direction && result in out) out[result] += v.value;
  }
  return out;
}

const inboundCorpus: PeerCase[] = [
  {
    name: 'expired',
    issuer: 'mesh',
    options: { uris: [SLEEP_ID], notBefore: new Date(Date.now() - 2 * HOUR), notAfter: new Date(Date.now() - HOUR) },
  },
  {
    name: 'not yet valid',
    issuer: 'mesh',
    options: { uris: [SLEEP_ID], notBefore: new Date(Date.now() + HOUR), notAfter: new Date(Date.now() + 2 * HOUR) },
  },
  { name: 'foreign root', issuer: 'foreign', options: { uris: [SLEEP_ID] } },
  { name: 'another trust domain', issuer: 'mesh', options: { uris: ['spiffe://other.example/ns/default/sa/sleep'] } },
  {
    name: 'two URI SANs',
    issuer: 'mesh',
    options: { uris: [SLEEP_ID, 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage'] },
  },
  { name: 'CA certificate used as a leaf', issuer: 'mesh', options: { uris: [SLEEP_ID], ca: true } },
  { name: 'no clientAuth EKU', issuer: 'mesh', options: { uris: [SLEEP_ID], extKeyUsage: ['serverAuth'] } },
  { name: 'no URI SAN', issuer: 'mesh', options: { dns: ['sleep.default.svc.cluster.local'] } },
  { name: 'URI SAN that is not a SPIFFE ID', issuer: 'mesh', options: { uris: ['https://sleep.example/'] } },
  {
    name: 'SPIFFE ID not of the form ns/<ns>/sa/<sa>',
    issuer: 'mesh',
    options: { uris: ['spiffe://cluster.local/workload/sleep'] },
  },
];

test('the corpus helper issues a good client certificate that is served (control for the refusals below)', async () => {
  await waitUntil(
    async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200,
    15_000,
    'route to reviews',
  );
  const before = reviews.backend?.requests.length ?? 0;
  const outcome = await presentClientCert(await issue({ name: 'good', issuer: 'mesh', options: { uris: [SLEEP_ID] } }));
  assert.match(outcome, /^HTTP\/1\.1 200/);
  assert.equal(reviews.backend?.requests.length, before + 1);
});

test(`${inboundCorpus.length} bad client certificates are each refused at the inbound port, nothing reaches the app`, async (t) => {
  const refused: string[] = [];
  for (const c of inboundCorpus) {
    const before = reviews.backend?.requests.length ?? 0;
    const counted = await handshakes(reviews, 'inbound');
    const outcome = await presentClientCert(await issue(c));
    // The refusal must be the proxy's: its TLS handshake failed, or verifySpiffePeer refused the peer.
    let now = await handshakes(reviews, 'inbound');
    await waitUntil(
      async () => {
        now = await handshakes(reviews, 'inbound');
        return now.error + now.peer_refused > counted.error + counted.peer_refused;
      },
      10_000,
      `${c.name}: the sidecar counts the refusal`,
    );
    const layer = now.error > counted.error ? 'TLS handshake' : 'SPIFFE check (verifySpiffePeer)';
    t.diagnostic(`${c.name}: refused at the ${layer}; client saw: ${outcome.split('\r\n')[0] ?? ''}`);
    assert.doesNotMatch(outcome, /HTTP\/1\.1/, `${c.name}: got an HTTP answer`);
    assert.equal(reviews.backend?.requests.length, before, `${c.name}: a request reached the app`);
    refused.push(c.name);
  }
  assert.equal(refused.length, inboundCorpus.length);
  t.diagnostic(`inbound corpus: ${refused.length} of ${inboundCorpus.length} refused`);
});

// Outbound: an impostor answers at a ratings endpoint's mTLS port. The calling sidecar must refuse its certificate.
test('a server certificate not acceptable for the cluster is refused by the caller (503) and nothing reaches the server', async (t) => {
  const ip = `127.0.${mesh.subnet}.200`;
  const received: string[] = [];
  const good = await issue({ name: 'ratings', issuer: 'mesh', options: { uris: [RATINGS_ID] } });
  const impostor = https.createServer(
    { cert: good, key: key.privateKeyPem, handshakeTimeout: 10_000, requestTimeout: 10_000 },
    (req, res) => {
      received.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'text/plain' }).end('impostor\n');
    },
  );
  await new Promise<void>((r) => impostor.listen(15006, ip, () => r()));
  t.after(() => {
    impostor.closeAllConnections();
    impostor.close();
  });
  mesh.istiod.store.apply(
    [
      parseResource({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'ratings-v1-0',
          namespace: 'default',
          labels: { app: 'ratings', version: 'v1' },
          ownerReferences: [{ kind: 'Deployment', name: 'ratings-v1' }],
        },
        spec: {
          serviceAccountName: 'bookinfo-ratings',
          containers: [{ name: 'app', image: 'fedmesh/echo', ports: [{ containerPort: 9080 }] }],
        },
        status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
      }),
    ],
    'test',
  );
  const cluster = 'outbound|9080||ratings.default.svc.cluster.local';
  await waitUntil(
    () =>
      sleep.sidecar.clusters.get(cluster)?.mtls?.allowedSans.includes(RATINGS_ID) === true &&
      (sleep.sidecar.clusters.get(cluster)?.endpoints.length ?? 0) > 0,
    15_000,
    'sleep sees the ratings endpoint',
  );
  const serverCorpus: PeerCase[] = [
    {
      name: 'SPIFFE ID not in the cluster SANs',
      issuer: 'mesh',
      options: { uris: ['spiffe://cluster.local/ns/default/sa/impostor'] },
    },
    { name: 'foreign root', issuer: 'foreign', options: { uris: [RATINGS_ID] } },
    {
      name: 'another trust domain',
      issuer: 'mesh',
      options: { uris: ['spiffe://other.example/ns/default/sa/bookinfo-ratings'] },
    },
    { name: 'two URI SANs', issuer: 'mesh', options: { uris: [RATINGS_ID, SLEEP_ID] } },
    { name: 'CA certificate used as a leaf', issuer: 'mesh', options: { uris: [RATINGS_ID], ca: true } },
    { name: 'no serverAuth EKU', issuer: 'mesh', options: { uris: [RATINGS_ID], extKeyUsage: ['clientAuth'] } },
    {
      name: 'expired',
      issuer: 'mesh',
      options: {
        uris: [RATINGS_ID],
        notBefore: new Date(Date.now() - 2 * HOUR),
        notAfter: new Date(Date.now() - HOUR),
      },
    },
  ];
  for (const c of serverCorpus) {
    impostor.setSecureContext({ cert: await issue(c), key: key.privateKeyPem });
    impostor.closeAllConnections();
    const counted = await handshakes(sleep, 'outbound');
    const res = await get(`${sleep.ip}:15001`, 'ratings:9080', '/ratings/0');
    const now = await handshakes(sleep, 'outbound');
    assert.ok(
      now.error + now.peer_refused > counted.error + counted.peer_refused,
      `${c.name}: the calling sidecar did not count a refused handshake`,
    );
    const layer = now.error > counted.error ? 'TLS handshake' : 'SPIFFE check (verifySpiffePeer)';
    t.diagnostic(`${c.name}: refused at the ${layer}; caller answered ${res.status} ${res.body.trim()}`);
    assert.equal(res.status, 503, `${c.name}: expected 503, got ${res.status}`);
    assert.match(res.body, /upstream connect error/, `${c.name}: not refused at connect`);
    assert.deepEqual(received, [], `${c.name}: a request reached the impostor`);
  }
  t.diagnostic(`outbound corpus: ${serverCorpus.length} of ${serverCorpus.length} refused`);

  // Control: the same server with the certificate the cluster expects is served.
  impostor.setSecureContext({ cert: good, key: key.privateKeyPem });
  impostor.closeAllConnections();
  const ok = await get(`${sleep.ip}:15001`, 'ratings:9080', '/ratings/0');
  assert.equal(ok.status, 200);
  assert.equal(received.length, 1);
});

/** adsClusters opens an ADS stream to istiod's 15012 as sleep with `creds` and counts CDS updates in `waitMs`. */
async function adsClusters(creds: grpc.ChannelCredentials, waitMs: number): Promise<number> {
  let updates = 0;
  const ads = new AdsClient({
    address: mesh.istiod.addresses.xdsTls,
    credentials: creds,
    channelOptions: {
      'grpc.ssl_target_name_override': 'istiod.istio-system.svc',
      'grpc.default_authority': 'istiod.istio-system.svc',
    },
    node: {
      id: istioNodeId(`127.0.${mesh.subnet}.250`, 'sleep-impostor', 'default'),
      cluster: 'sleep.default',
      metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', LABELS: { app: 'sleep' }, CLUSTER_ID: 'Kubernetes' },
    },
  });
  ads.subscribe(ClusterType, [], () => updates++);
  ads.start();
  try {
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && updates === 0) await new Promise((r) => setTimeout(r, 50));
    return updates;
  } finally {
    ads.close();
  }
}

test('an ADS stream on 15012 without a verified client certificate gets no config; with one it does', async () => {
  const root = Buffer.from(mesh.rootCertPem());
  assert.equal(await adsClusters(grpc.credentials.createSsl(root), 3_000), 0, 'no client certificate');
  const foreign = await issue({ name: 'foreign', issuer: 'foreign', options: { uris: [SLEEP_ID] } });
  assert.equal(
    await adsClusters(grpc.credentials.createSsl(root, Buffer.from(key.privateKeyPem), Buffer.from(foreign)), 3_000),
    0,
    'a client certificate from a foreign root',
  );
  const good = await issue({ name: 'good', issuer: 'mesh', options: { uris: [SLEEP_ID] } });
  assert.ok(
    (await adsClusters(grpc.credentials.createSsl(root, Buffer.from(key.privateKeyPem), Buffer.from(good)), 15_000)) >
      0,
    'a mesh certificate for the node identity gets clusters (control)',
  );
});
