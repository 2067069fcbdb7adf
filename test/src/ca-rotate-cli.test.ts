// `fedmesh ca status` and `fedmesh ca rotate-root` against a `fedmesh up` mesh (real processes), with traffic
// flowing from the sleep client while the root is rotated.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { readState, type MeshState, type RotationReport } from '@fedmesh/ctl';
import type { CaStatus } from '@fedmesh/istiod';
import { CertificateAuthority, certificateFingerprint, splitPemBundle } from '@fedmesh/pki';
import { fedmesh } from './cli.js';
import { FIXTURES, get, waitUntil } from './harness.js';

const CERTS = path.join(FIXTURES, 'certs');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-rotate-'));
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-rotate-ca-'));
let state: MeshState;

const MANIFEST = `apiVersion: v1
kind: ServiceAccount
metadata: { name: bookinfo-reviews }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, labels: { app: reviews } }
spec:
  ports: [{ port: 9080, name: http }]
  selector: { app: reviews }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: reviews-v1, labels: { app: reviews, version: v1 } }
spec:
  replicas: 2
  selector: { matchLabels: { app: reviews, version: v1 } }
  template:
    metadata: { labels: { app: reviews, version: v1 } }
    spec:
      serviceAccountName: bookinfo-reviews
      containers: [{ name: reviews, image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3, ports: [{ containerPort: 9080 }] }]
`;

before(async () => {
  const manifest = path.join(workDir, 'reviews.yaml');
  fs.writeFileSync(manifest, MANIFEST);
  const up = await fedmesh(['up', '-f', manifest, '--ca-dir', CERTS, '--state-dir', stateDir]);
  assert.equal(up.code, 0, up.stderr);
  state = readState(stateDir);
  await waitUntil(
    async () => (await get(state.sleep.outbound, 'reviews:9080').catch(() => ({ status: 0 }))).status === 200,
    20_000,
    'route to reviews',
  );
});

after(async () => {
  const down = await fedmesh(['down', '--state-dir', stateDir]);
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.rmSync(workDir, { recursive: true, force: true });
  assert.equal(down.code, 0, down.stderr);
});

async function status(): Promise<CaStatus> {
  const r = await fedmesh(['ca', 'status', '--state-dir', stateDir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as CaStatus;
}

test('ca status lists the root and every workload of the mesh on it', async () => {
  const sampleRoot = certificateFingerprint(fs.readFileSync(path.join(CERTS, 'root-cert.pem'), 'utf8'));
  const s = await status();
  assert.deepEqual(
    s.roots.map((r) => [r.fingerprint, r.primary, r.signing]),
    [[sampleRoot, true, true]],
  );
  assert.deepEqual(s.workloads.map((w) => w.nodeId.split('~')[2]).sort(), [
    'reviews-v1-0.default',
    'reviews-v1-1.default',
    'sleep-0.default',
  ]);
  for (const w of s.workloads) {
    assert.equal(w.rootFingerprint, sampleRoot);
    assert.match(w.spiffeId ?? '', /^spiffe:\/\/cluster\.local\/ns\/default\/sa\/(bookinfo-reviews|sleep)$/);
    assert.ok(Date.parse(w.notAfter ?? '') > Date.now());
  }
  const text = await fedmesh(['ca', 'status', '--state-dir', stateDir]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /workloads: 3 connected, 3 on the signing root, 3 holding the current bundle/);
  assert.match(text.stdout, /reviews-v1-0\.default +spiffe:\/\/cluster\.local\/ns\/default\/sa\/bookinfo-reviews/);
});

test('ca rotate-root refuses a directory that is not a CA, and the mesh keeps its root', async () => {
  const before = await status();
  const r = await fedmesh(['ca', 'rotate-root', '--state-dir', stateDir, '--new-ca', path.join(workDir, 'nope')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /fedmesh: new CA .*nope: cannot read ca-cert\.pem .*\(CA_FILES_MISSING\)/);
  assert.deepEqual((await status()).roots, before.roots);
});

test('ca rotate-root moves every workload to the new root with traffic flowing, and prints its progress', async (t) => {
  const newCaDir = path.join(workDir, 'new-ca');
  const newCa = await CertificateAuthority.createSelfSigned({ stateDir: newCaDir, trustDomain: 'cluster.local' });
  const newRoot = certificateFingerprint(newCa.rootCertPem);
  let flowing = true;
  let sent = 0;
  const failures: string[] = [];
  const deadline = Date.now() + 120_000;
  const traffic = (async () => {
    while (flowing && Date.now() < deadline) {
      sent++;
      const r = await get(state.sleep.outbound, 'reviews:9080').catch((e: Error) => ({ status: 0, body: e.message }));
      if (r.status !== 200) failures.push(`${r.status} ${r.body}`);
      await new Promise((res) => setTimeout(res, 25));
    }
  })();
  let r: Awaited<ReturnType<typeof fedmesh>>;
  try {
    r = await fedmesh(['ca', 'rotate-root', '--state-dir', stateDir, '--new-ca', newCaDir, '--json']);
  } finally {
    flowing = false;
    await traffic;
  }
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as RotationReport;
  for (const line of r.stderr.trim().split('\n')) t.diagnostic(line);
  t.diagnostic(`${sent} requests during the command, ${failures.length} failed; report ${JSON.stringify(report)}`);
  for (const step of ['add:', 'distribute:', 'activate:', 're-issue:', 'retire:', 'done in'])
    assert.ok(r.stderr.includes(step), `progress shows ${step}`);
  assert.deepEqual(failures, []);
  assert.equal(report.newRoot, newRoot);
  assert.equal(report.workloads, 3);

  const s = await status();
  assert.deepEqual(
    s.roots.map((x) => x.fingerprint),
    [newRoot],
  );
  for (const w of s.workloads) assert.equal(w.rootFingerprint, newRoot, `${w.nodeId} on the new root`);
  // A proxy restarted now must trust istiod, whose serving certificate comes from the new CA.
  const rootFile = splitPemBundle(fs.readFileSync(path.join(stateDir, 'root-cert.pem'), 'utf8'));
  assert.deepEqual(rootFile.map(certificateFingerprint), [newRoot]);
});
