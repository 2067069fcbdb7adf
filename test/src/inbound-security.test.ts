import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

// Bookinfo's reviews service with one reviews pod (its backend counts requests) and a sleep client.
const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')], path.join(FIXTURES, 'certs'));
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
    appPort: 9080,
  });
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
});
after(() => mesh.close());

/** mtlsRequest sends one HTTP/1.1 request to reviews' inbound port over TLS with a client certificate and returns
 * what came back (`error: …` or `closed` when the connection was refused). */
function mtlsRequest(servername: string, certPem: string, keyPem: string): Promise<string> {
  return new Promise<string>((resolve) => {
    const s = tls.connect({
      host: reviews.ip,
      port: 15006,
      servername,
      cert: certPem,
      key: keyPem,
      ca: mesh.rootCertPem(),
      checkServerIdentity: () => undefined,
    });
    let got = '';
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', (e) => resolve(`error: ${e.message}`));
    s.on('close', () => resolve(got || 'closed'));
    s.setTimeout(5_000, () => s.destroy());
  });
}

function inboundSni(): string {
  return 'outbound_.9080_._.reviews.default.svc.cluster.local';
}

test("a call through the mesh arrives over mTLS with the caller's SPIFFE ID (Istio's sample root as mesh root)", async () => {
  await waitUntil(
    async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200,
    10_000,
    'route to reviews',
  );
  const before = reviews.backend?.requests.length ?? 0;
  const res = await get(`${sleep.ip}:15001`, 'reviews:9080', '/reviews/1');
  assert.equal(res.status, 200);
  const body = JSON.parse(res.body) as { xfcc: string };
  assert.match(body.xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
  assert.equal(reviews.backend?.requests.length, before + 1);
});

test('a plaintext connection to the inbound port is refused and nothing reaches the app', async () => {
  const before = reviews.backend?.requests.length ?? 0;
  const answer = await new Promise<string>((resolve) => {
    const s = net.connect({ host: reviews.ip, port: 15006 }, () => s.write('GET / HTTP/1.1\r\nHost: reviews\r\n\r\n'));
    let got = '';
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', () => undefined);
    s.setTimeout(5_000, () => s.destroy());
  });
  assert.doesNotMatch(answer, /HTTP\/1\.1 200/);
  assert.equal(reviews.backend?.requests.length, before);
});

test('a client certificate from a foreign root is refused at the inbound port and nothing reaches the app', async () => {
  const foreignDir = path.join(mesh.dir, 'foreign-ca');
  const foreign = await CertificateAuthority.createSelfSigned({ stateDir: foreignDir, trustDomain: 'cluster.local' });
  const key = await generateKeyPair('ec-p256');
  const leaf = await foreign.signWorkload({
    publicKey: key.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' },
  });
  const before = reviews.backend?.requests.length ?? 0;
  const outcome = await mtlsRequest(inboundSni(), leaf.chainPem.join(''), key.privateKeyPem);
  assert.doesNotMatch(outcome, /HTTP\/1\.1 200/);
  assert.equal(reviews.backend?.requests.length, before);
  fs.rmSync(foreignDir, { recursive: true, force: true });
});

test('a mesh certificate with a wrong SNI finds no filter chain and nothing reaches the app', async () => {
  const key = await generateKeyPair('ec-p256');
  const leaf = await mesh.istiod.ca.signWorkload({
    publicKey: key.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' },
  });
  const before = reviews.backend?.requests.length ?? 0;
  const outcome = await mtlsRequest(
    'outbound_.9999_._.other.default.svc.cluster.local',
    leaf.chainPem.join(''),
    key.privateKeyPem,
  );
  assert.doesNotMatch(outcome, /HTTP\/1\.1 200/);
  assert.equal(reviews.backend?.requests.length, before);
});

test('the same mesh certificate with the right SNI is served (the refusals above are not a broken listener)', async () => {
  const key = await generateKeyPair('ec-p256');
  const leaf = await mesh.istiod.ca.signWorkload({
    publicKey: key.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' },
  });
  const before = reviews.backend?.requests.length ?? 0;
  const outcome = await mtlsRequest(inboundSni(), leaf.chainPem.join(''), key.privateKeyPem);
  assert.match(outcome, /HTTP\/1\.1 200/);
  assert.equal(reviews.backend?.requests.length, before + 1);
});
