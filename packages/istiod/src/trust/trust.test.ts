import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { CertificateAuthority, certificateFingerprint, generateKeyPair, type CaMaterialPem } from '@fedmesh/pki';
import type { DiscoveryServer, ProxyStatus } from '../discovery.js';
import { createTrustAdmin, type CaStatus } from './admin.js';
import { TrustError, TrustManager, readCaMaterialDir } from './trust-manager.js';
import { WorkloadCertificates } from './workload-certs.js';

const SAMPLES = path.resolve(import.meta.dirname, '../../../../../shared/fixtures/istio-samples/certs');
const log = pino({ level: 'silent' });
const ID = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

let dir: string;
let initial: CertificateAuthority;
let next: CaMaterialPem;
let nextCa: CertificateAuthority;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-trust-'));
  initial = await CertificateAuthority.loadPluggedCa(SAMPLES);
  nextCa = await CertificateAuthority.createSelfSigned({
    stateDir: path.join(dir, 'next'),
    trustDomain: 'cluster.local',
  });
  next = readCaMaterialDir(path.join(dir, 'next'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

async function leafOf(ca: CertificateAuthority): Promise<X509Certificate> {
  const key = await generateKeyPair('ec-p256');
  return new X509Certificate((await ca.signWorkload({ publicKey: key.publicKey, identity: ID })).certPem);
}

function refusal(status: number): (err: unknown) => boolean {
  return (err) => err instanceof TrustError && err.status === status;
}

test('add → activate → retire moves the signer and the primary root, and each step emits the bundle', async () => {
  const stateDir = fs.mkdtempSync(path.join(dir, 'steps-'));
  const trust = await TrustManager.load({ initial, stateDir, log });
  const oldRoot = certificateFingerprint(initial.rootCertPem);
  const newRoot = certificateFingerprint(nextCa.rootCertPem);
  const changes: string[] = [];
  trust.on('changed', (c: { step: string; bundle: readonly string[] }) =>
    changes.push(`${c.step}:${c.bundle.map(certificateFingerprint).join('|')}`),
  );

  assert.equal(await trust.addCa(next), newRoot);
  assert.deepEqual(
    trust.describe().map((r) => [r.fingerprint, r.primary, r.signing, r.staged]),
    [
      [oldRoot, true, true, false],
      [newRoot, false, false, true],
    ],
  );
  assert.equal(trust.signer(), initial, 'adding does not change the signer');

  assert.equal(trust.activate(), newRoot);
  assert.deepEqual(
    trust.describe().map((r) => [r.fingerprint, r.primary, r.signing, r.staged]),
    [
      [newRoot, true, true, false],
      [oldRoot, false, false, false],
    ],
  );
  assert.equal(certificateFingerprint(trust.signer().rootCertPem), newRoot);

  trust.retire(oldRoot);
  assert.deepEqual(
    trust.describe().map((r) => r.fingerprint),
    [newRoot],
  );
  assert.deepEqual(changes, [`added:${oldRoot}|${newRoot}`, `activated:${newRoot}|${oldRoot}`, `retired:${newRoot}`]);
  // A leaf of either CA is still attributed to its root (for `ca status`).
  assert.equal(trust.rootOf(await leafOf(initial)), oldRoot);
  assert.equal(trust.rootOf(await leafOf(trust.signer())), newRoot);
});

test('refused steps change nothing: bad material, a second staged CA, retiring the signing, staged or last root', async () => {
  const stateDir = fs.mkdtempSync(path.join(dir, 'refusals-'));
  const trust = await TrustManager.load({ initial, stateDir, log });
  const oldRoot = certificateFingerprint(initial.rootCertPem);
  const bundleBefore = trust.bundlePem();
  await assert.rejects(trust.addCa({ ...next, caKeyPem: initial.caCertPem }), refusal(400));
  await assert.rejects(trust.addCa({ ...next, rootCertPem: '' }), refusal(400));
  await assert.rejects(trust.addCa(readCaMaterialDir(SAMPLES)), refusal(409), 'a root already in the bundle');
  assert.throws(() => trust.activate(), refusal(409), 'nothing staged');
  assert.throws(() => trust.retire(oldRoot), refusal(409), 'the last root');
  assert.throws(() => trust.retire('00:11'), refusal(404));
  assert.equal(trust.bundlePem(), bundleBefore);
  assert.equal(fs.existsSync(path.join(stateDir, 'trust', 'state.json')), false, 'nothing persisted');

  const newRoot = await trust.addCa(next);
  const other = await CertificateAuthority.createSelfSigned({
    stateDir: path.join(stateDir, 'other'),
    trustDomain: 'cluster.local',
  });
  await assert.rejects(trust.addCa(readCaMaterialDir(path.join(stateDir, 'other'))), refusal(409), 'already staged');
  assert.throws(() => trust.retire(newRoot), refusal(409), 'the staged root');
  assert.throws(() => trust.retire(oldRoot), refusal(409), 'the signing root');
  assert.equal(trust.describe().length, 2);
  void other;
});

test('a restart resumes the rotation from <stateDir>/trust (signer, bundle order, staged CA)', async () => {
  const stateDir = fs.mkdtempSync(path.join(dir, 'resume-'));
  const first = await TrustManager.load({ initial, stateDir, log });
  const newRoot = await first.addCa(next);
  const keyMode = fs.statSync(path.join(stateDir, 'trust', 'ca-1', 'ca-key.pem')).mode & 0o777;
  assert.equal(keyMode, 0o600);

  const staged = await TrustManager.load({ initial, stateDir, log });
  assert.deepEqual(
    staged.describe().map((r) => [r.primary, r.signing, r.staged]),
    [
      [true, true, false],
      [false, false, true],
    ],
  );
  staged.activate();
  const activated = await TrustManager.load({ initial, stateDir, log });
  assert.equal(certificateFingerprint(activated.signer().rootCertPem), newRoot);
  assert.equal(activated.describe()[0]?.fingerprint, newRoot);
});

test('the admin routes: status per workload, and retire refused while a workload still holds the old root', async () => {
  const stateDir = fs.mkdtempSync(path.join(dir, 'admin-'));
  const trust = await TrustManager.load({ initial, stateDir, log });
  const records = new WorkloadCertificates();
  const nodeId = 'sidecar~127.0.0.10~sleep-0.default~default.svc.cluster.local';
  const proxies: ProxyStatus[] = [
    {
      id: nodeId,
      namespace: 'default',
      serviceAccount: 'sleep',
      connectedAt: '',
      types: { SDS: { status: 'SYNCED' } },
    },
  ];
  const discovery = {
    status: () => proxies,
    pushAll: () => undefined,
    pushContext: () => ({ trustBundlePem: trust.bundlePem() }),
  } as unknown as DiscoveryServer;
  const admin = createTrustAdmin({ trust, records, discovery, log });
  const call = async (route: string, body = ''): Promise<{ status: number; body: Record<string, unknown> }> => {
    const r = await admin.handle(route, () => Promise.resolve(body));
    assert.ok(r, `${route} is a trust route`);
    return r as { status: number; body: Record<string, unknown> };
  };
  assert.equal(await admin.handle('GET /v1/other', () => Promise.resolve('')), undefined);

  const oldLeaf = await leafOf(initial);
  records.record({
    nodeId,
    namespace: 'default',
    serviceAccount: 'sleep',
    spiffeId: 'spiffe://cluster.local/ns/default/sa/sleep',
    serialNumber: oldLeaf.serialNumber,
    notBefore: new Date(oldLeaf.validFrom).toISOString(),
    notAfter: new Date(oldLeaf.validTo).toISOString(),
    rootFingerprint: trust.rootOf(oldLeaf),
    source: 'ads',
  });
  const status = await call('GET /v1/ca/status');
  assert.equal(status.status, 200);
  const workloads = status.body.workloads as { rootFingerprint: string; bundleSynced: boolean }[];
  assert.deepEqual(
    workloads.map((w) => [w.rootFingerprint, w.bundleSynced]),
    [[certificateFingerprint(initial.rootCertPem), true]],
  );

  assert.equal((await call('POST /v1/ca/roots', '{"caDir": "relative/dir"}')).status, 400);
  assert.equal((await call('POST /v1/ca/roots', 'not json')).status, 400);
  assert.equal((await call('POST /v1/ca/roots', JSON.stringify({ caDir: path.join(dir, 'next') }))).status, 200);
  assert.equal((await call('POST /v1/ca/activate')).status, 200);
  const oldRoot = certificateFingerprint(initial.rootCertPem);
  const refused = await call('POST /v1/ca/retire', JSON.stringify({ fingerprint: oldRoot }));
  assert.equal(refused.status, 409);
  assert.match(String(refused.body.error), /1 workload\(s\) still hold/);
  assert.equal(trust.describe().length, 2, 'nothing retired');

  // Once the workload's renewed certificate is recorded under the new root, the old root can go.
  const newLeaf = await leafOf(trust.signer());
  records.record({
    nodeId,
    namespace: 'default',
    serviceAccount: 'sleep',
    spiffeId: 'spiffe://cluster.local/ns/default/sa/sleep',
    serialNumber: newLeaf.serialNumber,
    notBefore: new Date(Date.parse(newLeaf.validFrom) + 1000).toISOString(),
    notAfter: new Date(newLeaf.validTo).toISOString(),
    rootFingerprint: trust.rootOf(newLeaf),
    source: 'csr',
  });
  assert.equal((await call('POST /v1/ca/retire', JSON.stringify({ fingerprint: oldRoot }))).status, 200);
  assert.deepEqual(
    trust.describe().map((r) => r.fingerprint),
    [certificateFingerprint(nextCa.rootCertPem)],
  );
});

test('a node claim counts only for a proxy of the same namespace and ServiceAccount', () => {
  const records = new WorkloadCertificates();
  const base = {
    nodeId: 'n1',
    namespace: 'default',
    serviceAccount: 'sleep',
    spiffeId: 'spiffe://cluster.local/ns/default/sa/sleep',
    serialNumber: 'AA',
    notBefore: '2026-01-01T00:00:00.000Z',
    notAfter: '2026-01-02T00:00:00.000Z',
    rootFingerprint: 'R1',
    source: 'csr' as const,
  };
  records.record(base);
  assert.equal(records.for('n1', { namespace: 'default', serviceAccount: 'sleep' })?.serialNumber, 'AA');
  assert.equal(records.for('n1', { namespace: 'default', serviceAccount: 'reviews' }), undefined);
  records.record({ ...base, serialNumber: 'OLD', notBefore: '2025-12-31T00:00:00.000Z' });
  assert.equal(records.for('n1', base)?.serialNumber, 'AA', 'an older certificate does not replace a newer one');
});

test('a federated istiod adds and activates a CA only under a root of the mesh trust bundle, and serves both sources', async () => {
  const stateDir = fs.mkdtempSync(path.join(dir, 'federated-'));
  const trust = await TrustManager.load({ initial, stateDir, log });
  const oldRoot = certificateFingerprint(initial.rootCertPem);
  const newRoot = certificateFingerprint(nextCa.rootCertPem);
  // The mesh trust bundle in etcd, as the FederationLink sees it; the served bundle is istiod's own roots first, then
  // the mesh's others (FederationLink.trustBundlePem).
  let meshRoots: string[] = [initial.rootCertPem];
  const served = (): string => {
    const own = trust.bundle();
    const fps = new Set(own.map(certificateFingerprint));
    return [...own, ...meshRoots.filter((p) => !fps.has(certificateFingerprint(p)))].join('');
  };
  const discovery = {
    status: () => [],
    pushAll: () => undefined,
    pushContext: () => ({ trustBundlePem: served() }),
  } as unknown as DiscoveryServer;
  const admin = createTrustAdmin({
    trust,
    records: new WorkloadCertificates(),
    discovery,
    meshTrust: { mesh: 'm1', roots: () => meshRoots },
    log,
  });
  const call = async (route: string, body = ''): Promise<{ status: number; body: Record<string, unknown> }> =>
    (await admin.handle(route, () => Promise.resolve(body))) as { status: number; body: Record<string, unknown> };
  const add = JSON.stringify({ caDir: path.join(dir, 'next') });

  const refused = await call('POST /v1/ca/roots', add);
  assert.equal(refused.status, 409);
  assert.match(String(refused.body.error), /is not in mesh m1's trust bundle/);
  assert.equal(trust.describe().length, 1, 'nothing added');

  meshRoots = [initial.rootCertPem, nextCa.rootCertPem]; // a mesh admin published the new root
  let status = (await call('GET /v1/ca/status')).body as unknown as CaStatus;
  assert.deepEqual(status.servedRoots, [oldRoot, newRoot], "istiod's root first, then the mesh's new one");
  assert.deepEqual(status.mesh, { name: 'm1', roots: [oldRoot, newRoot] });
  assert.equal((await call('POST /v1/ca/roots', add)).status, 200);

  meshRoots = [initial.rootCertPem]; // the root left the mesh bundle before activation: activation is refused
  const notActivated = await call('POST /v1/ca/activate');
  assert.equal(notActivated.status, 409);
  assert.match(String(notActivated.body.error), /the staged root .* is not in mesh m1's trust bundle/);
  meshRoots = [initial.rootCertPem, nextCa.rootCertPem];
  assert.equal((await call('POST /v1/ca/activate')).status, 200);

  // Retiring the old root from istiod alone leaves it served while the mesh bundle still holds it; it is gone from
  // the served bundle only once it left both.
  assert.equal((await call('POST /v1/ca/retire', JSON.stringify({ fingerprint: oldRoot }))).status, 200);
  status = (await call('GET /v1/ca/status')).body as unknown as CaStatus;
  assert.deepEqual(
    status.roots.map((r) => r.fingerprint),
    [newRoot],
  );
  assert.deepEqual(status.servedRoots, [newRoot, oldRoot]);
  meshRoots = [nextCa.rootCertPem];
  status = (await call('GET /v1/ca/status')).body as unknown as CaStatus;
  assert.deepEqual(status.servedRoots, [newRoot]);
  assert.equal(
    status.servedBundlePem,
    nextCa.rootCertPem.endsWith('\n') ? nextCa.rootCertPem : `${nextCa.rootCertPem}\n`,
  );
});
