// Root rotation with traffic flowing: add → distribute → re-issue → retire, driven by the same code as
// `fedmesh ca rotate-root`, from Istio's sample RSA root to a new self-signed P-256 root. Counts failed requests and
// failed mTLS handshakes between sidecars while it runs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { caStatus, rotateRoot, type RotationReport } from '@fedmesh/ctl';
import { CertificateAuthority, certificateFingerprint, chainRootIndex, generateKeyPair } from '@fedmesh/pki';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

const CERTS = path.join(FIXTURES, 'certs');
const SLEEP = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

const mesh = new LocalMesh();
let pods: TestPod[];
let sleep: TestPod;
let reviews: TestPod[];
let rotatedTo: string | undefined;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')], CERTS);
  reviews = [
    await mesh.addPod({
      name: 'reviews-v1-0',
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: 'v1' },
      appPort: 9080,
    }),
    await mesh.addPod({
      name: 'reviews-v2-0',
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: 'v2' },
      appPort: 9080,
    }),
  ];
  const ratings = await mesh.addPod({
    name: 'ratings-v1-0',
    serviceAccount: 'bookinfo-ratings',
    labels: { app: 'ratings', version: 'v1' },
    appPort: 9080,
  });
  sleep = await mesh.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  pods = [...reviews, ratings, sleep];
  for (const host of ['reviews:9080', 'ratings:9080'])
    await waitUntil(async () => (await get(`${sleep.ip}:15001`, host)).status === 200, 15_000, `route to ${host}`);
});
after(() => mesh.close());

/** handshakeFailures sums `fedmesh_tls_handshakes_total` by result over every sidecar of the mesh. */
async function handshakeCounts(): Promise<{ ok: number; failed: number }> {
  let ok = 0;
  let failed = 0;
  for (const p of pods)
    for (const v of (await p.sidecar.metrics.tlsHandshakes.get()).values)
      if (v.labels.result === 'ok') ok += v.value;
      else failed += v.value;
  return { ok, failed };
}

/** presentClientCert opens a fresh mTLS connection to reviews-v1's inbound port and sends one request. */
function presentClientCert(chainPem: string, keyPem: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: reviews[0]?.ip,
      port: 15006,
      servername: 'outbound_.9080_._.reviews.default.svc.cluster.local',
      cert: chainPem,
      key: keyPem,
      ca: mesh.istiod.trust.bundlePem(),
      checkServerIdentity: () => undefined,
    });
    let got = '';
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n'));
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('error', (e) => resolve(`error: ${e.message}`));
    s.on('close', () => resolve(got || 'closed without a response'));
    s.setTimeout(10_000, () => s.destroy());
  });
}

test(
  'rotating the root while traffic flows fails no request and no handshake; the old root is then refused',
  { timeout: 300_000 },
  async (t) => {
    const newCaDir = path.join(mesh.dir, 'new-ca');
    const newCa = await CertificateAuthority.createSelfSigned({ stateDir: newCaDir, trustDomain: 'cluster.local' });
    const oldCa = await CertificateAuthority.loadPluggedCa(CERTS);
    const token = fs.readFileSync(path.join(mesh.dir, 'istiod', 'admin-token'), 'utf8').trim();

    // Traffic: two loops sleep → reviews and sleep → ratings through the sidecars until the rotation ends (bounded).
    let rotating = true;
    let sent = 0;
    const failures: string[] = [];
    const deadline = Date.now() + 240_000;
    const loop = async (host: string): Promise<void> => {
      while (rotating && Date.now() < deadline) {
        sent++;
        try {
          const r = await get(`${sleep.ip}:15001`, host, '/');
          if (r.status !== 200) failures.push(`${host}: ${r.status} ${r.body.trim()}`);
        } catch (err) {
          failures.push(`${host}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const handshakesBefore = await handshakeCounts();
    const renewalsBefore = pods.map((p) => p.sidecar.certificateRenewals());
    const traffic = Promise.all([loop('reviews:9080'), loop('reviews:9080'), loop('ratings:9080')]);
    await new Promise((r) => setTimeout(r, 2_000)); // traffic flowing before the first step
    const progress: string[] = [];
    let report: RotationReport;
    try {
      report = await rotateRoot({
        admin: { monitoring: mesh.istiod.addresses.monitoring, token },
        newCaDir,
        phaseTimeoutMs: 60_000,
        log: (line) => progress.push(line),
      });
      await new Promise((r) => setTimeout(r, 2_000)); // and still flowing after the last step
    } finally {
      rotating = false;
      await traffic;
    }
    const handshakes = await handshakeCounts();
    const reissued = pods.map((p, i) => p.sidecar.certificateRenewals() - (renewalsBefore[i] ?? 0));
    for (const line of progress) t.diagnostic(line);
    t.diagnostic(
      `${sent} requests during the rotation, ${failures.length} failed; ` +
        `${handshakes.ok - handshakesBefore.ok} mTLS handshakes between sidecars, ` +
        `${handshakes.failed - handshakesBefore.failed} failed; rotation took ${report.totalMs} ms ` +
        `(phases: ${JSON.stringify(report.phases)}); certificates re-issued per pod: ${reissued.join(', ')}`,
    );
    assert.deepEqual(failures, [], 'no request failed');
    assert.equal(handshakes.failed - handshakesBefore.failed, 0, 'no mTLS handshake failed');
    assert.ok(sent >= 30, `enough traffic to mean something (${sent})`);
    assert.ok(handshakes.ok > handshakesBefore.ok, 'new handshakes happened during the rotation');

    // Every workload now chains to the new root, by istiod's record and by its own certificate.
    assert.equal(report.workloads, pods.length);
    const newRoot = certificateFingerprint(newCa.rootCertPem);
    assert.equal(report.newRoot, newRoot);
    rotatedTo = newRoot;
    assert.deepEqual(
      mesh.istiod.trust.describe().map((r) => r.fingerprint),
      [newRoot],
      'the bundle holds only the new root',
    );
    const status = await caStatus({ monitoring: mesh.istiod.addresses.monitoring, token });
    assert.equal(status.workloads.length, pods.length);
    for (const w of status.workloads)
      assert.equal(w.rootFingerprint, newRoot, `istiod places ${w.nodeId} on the new root`);
    pods.forEach((p, i) => {
      const c = p.sidecar.certificate();
      assert.ok(c, `${p.name} has a certificate`);
      assert.equal(chainRootIndex(c.chainPem, newCa.rootCertPem), 0, `${p.name} chains to the new root`);
      assert.ok((reissued[i] ?? 0) >= 1, `${p.name} re-issued`);
    });

    // A certificate from the old root is now refused at an inbound port; one from the new root is served.
    const key = await generateKeyPair('ec-p256');
    const before = reviews[0]?.backend?.requests.length ?? 0;
    const oldLeaf = await oldCa.signWorkload({ publicKey: key.publicKey, identity: SLEEP });
    const refused = await presentClientCert(oldLeaf.chainPem.join(''), key.privateKeyPem);
    assert.doesNotMatch(refused, /HTTP\/1\.1/, 'the old root is refused');
    assert.equal(reviews[0]?.backend?.requests.length, before, 'nothing reached the app');
    const newLeaf = await newCa.signWorkload({ publicKey: key.publicKey, identity: SLEEP });
    assert.match(await presentClientCert(newLeaf.chainPem.join(''), key.privateKeyPem), /^HTTP\/1\.1 200/);
    assert.equal(reviews[0]?.backend?.requests.length, before + 1);
  },
);

test(
  'after the rotation istiod restarts from its state dir and every proxy reconnects with its new certificate',
  { timeout: 120_000 },
  async () => {
    assert.ok(rotatedTo, 'the rotation test ran first');
    await mesh.restartIstiod();
    // The rotation survived the restart: the new CA signs and the old root is gone.
    assert.deepEqual(
      mesh.istiod.trust.describe().map((r) => [r.fingerprint, r.signing]),
      [[rotatedTo, true]],
    );
    // Each proxy's ADS reconnect must present its new-root certificate and trust istiod's new serving certificate
    // (istiod verifies clients against the bundle, now only the new root).
    await waitUntil(
      () => mesh.istiod.discovery.status().length === pods.length,
      60_000,
      'every proxy reconnected over ADS',
    );
    const token = fs.readFileSync(path.join(mesh.dir, 'istiod', 'admin-token'), 'utf8').trim();
    const status = await caStatus({ monitoring: mesh.istiod.addresses.monitoring, token });
    assert.deepEqual(
      status.workloads.map((w) => [w.nodeId.split('~')[2], w.rootFingerprint, w.source]).sort(),
      pods.map((p) => [`${p.name}.default`, rotatedTo, 'ads']).sort(),
    );
    await waitUntil(async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200, 15_000, 'traffic');
  },
);
