// Hot swap: a sidecar's new certificate goes into its listeners (setSecureContext) and pools (new agents) without
// dropping open connections; new handshakes present the new certificate.
import assert from 'node:assert/strict';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { generateKeyPair } from '@fedmesh/pki';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

const INBOUND_SNI = 'outbound_.9080_._.reviews.default.svc.cluster.local';

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
  await waitUntil(
    async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200,
    15_000,
    'route to reviews',
  );
});
after(() => mesh.close());

interface Answer {
  status: number;
  reused: boolean;
  localPort: number;
  serverSerial: string;
}

/** call sends one request to reviews' inbound port through `agent` and reports which connection carried it. */
function call(agent: https.Agent | false, client: { cert: string; key: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: reviews.ip,
        port: 15006,
        path: '/reviews/1',
        headers: { host: 'reviews' },
        servername: INBOUND_SNI,
        ca: mesh.rootCertPem(),
        cert: client.cert,
        key: client.key,
        checkServerIdentity: () => undefined,
        agent,
        timeout: 10_000,
      },
      (res) => {
        const sock = res.socket as TLSSocket;
        const answer = {
          status: res.statusCode ?? 0,
          reused: req.reusedSocket,
          localPort: sock.localPort ?? 0,
          serverSerial: sock.getPeerCertificate().serialNumber.toUpperCase(),
        };
        res.resume();
        res.on('end', () => resolve(answer));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('a keep-alive connection opened before a certificate swap keeps working; new handshakes get the new certificate', async () => {
  const key = await generateKeyPair('ec-p256');
  const leaf = await mesh.istiod.ca.signWorkload({
    publicKey: key.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' },
  });
  const client = { cert: leaf.chainPem.join(''), key: key.privateKeyPem };
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const oldSerial = reviews.sidecar.certificate()?.serialNumber;
    assert.ok(oldSerial);
    const first = await call(agent, client);
    assert.equal(first.status, 200);
    assert.equal(first.serverSerial, oldSerial);

    const renewed = await reviews.sidecar.renewCertificate('test: hot swap');
    assert.notEqual(renewed.serialNumber, oldSerial);

    const before = reviews.backend?.requests.length ?? 0;
    const second = await call(agent, client);
    assert.equal(second.status, 200, 'the open connection still serves after the swap');
    assert.equal(second.reused, true, 'the request went over the connection opened before the swap');
    assert.equal(second.localPort, first.localPort);
    assert.equal(second.serverSerial, oldSerial, 'an open connection keeps the certificate it was opened with');
    assert.equal(reviews.backend?.requests.length, before + 1);

    const fresh = await call(false, client);
    assert.equal(fresh.status, 200);
    assert.equal(fresh.serverSerial, renewed.serialNumber, 'a new handshake presents the new certificate');
  } finally {
    agent.destroy();
  }
});

test('traffic through both sidecars keeps flowing while each renews its certificate several times', async () => {
  const before = reviews.backend?.requests.length ?? 0;
  const serials = new Set([sleep.sidecar.certificate()?.serialNumber, reviews.sidecar.certificate()?.serialNumber]);
  let ok = 0;
  const statuses: number[] = [];
  for (let i = 0; i < 30; i++) {
    // Requests in flight while a renewal lands on one side or the other.
    const inflight = [0, 1, 2].map(() => get(`${sleep.ip}:15001`, 'reviews:9080', '/reviews/1'));
    if (i % 5 === 0) {
      const renewed = await (i % 10 === 0 ? sleep : reviews).sidecar.renewCertificate('test: renew under traffic');
      serials.add(renewed.serialNumber);
    }
    for (const r of await Promise.all(inflight)) {
      statuses.push(r.status);
      if (r.status === 200) ok++;
    }
  }
  assert.equal(ok, 90, `failed requests: ${statuses.filter((s) => s !== 200).join(', ')}`);
  assert.equal(reviews.backend?.requests.length, before + 90);
  assert.ok(serials.size >= 8, `expected 6 renewals on top of 2 certificates, saw ${serials.size} serials`);
});
