import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  formatClusterEnv,
  formatHostsFile,
  formatMeshConfigFile,
  InvalidConfigError,
  MeshError,
  VM_FILES,
  type VmClusterEnv,
} from '@fedmesh/api';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { detectInstanceIp, readBootstrap, readToken } from './bootstrap.js';
import { CERT_FILE, CertStore } from './cert-store.js';
import { readFeatures } from './features.js';

let dir = '';
let ca: CertificateAuthority;
const ENV: VmClusterEnv = {
  namespace: 'vm',
  serviceAccount: 'legacy-sa',
  workloadGroup: 'legacy',
  clusterId: 'east',
  network: '',
  labels: { app: 'legacy' },
  trustDomain: 'cluster.local',
  inboundPorts: [8080],
  probe: { tcpSocket: { port: 8080 } },
};

function configDir(name: string, files: Partial<Record<keyof typeof VM_FILES, string | undefined>>): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  for (const [k, text] of Object.entries(files))
    if (text !== undefined)
      fs.writeFileSync(path.join(d, VM_FILES[k as keyof typeof VM_FILES]), text, {
        mode: k === 'token' ? 0o600 : 0o644,
      });
  return d;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-vm-agent-files-'));
  ca = await CertificateAuthority.createSelfSigned({ stateDir: path.join(dir, 'ca'), trustDomain: 'cluster.local' });
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('onboarding files', () => {
  it('reads the files `fedmesh vm config` writes; hosts maps the discovery name to the dial address', async () => {
    const d = configDir('good', {
      clusterEnv: formatClusterEnv(ENV),
      meshConfig: formatMeshConfigFile('istiod.istio-system.svc:15012', 'cluster.local'),
      rootCert: ca.rootCertsPem.join(''),
      hosts: formatHostsFile([{ address: '10.7.0.1', names: ['istiod.istio-system.svc'] }]),
      token: 'a.b.c\n',
    });
    const boot = await readBootstrap(d);
    assert.deepEqual(boot.env, ENV);
    assert.equal(boot.discoveryAddress, 'istiod.istio-system.svc:15012');
    assert.equal(boot.dialAddress, '10.7.0.1:15012');
    assert.deepEqual(await readToken(boot.tokenFile), { token: 'a.b.c', looseMode: false });
    fs.chmodSync(boot.tokenFile, 0o644);
    assert.equal((await readToken(boot.tokenFile))?.looseMode, true);
    fs.rmSync(boot.tokenFile);
    assert.equal(await readToken(boot.tokenFile), undefined);
  });

  it('names what is missing or wrong', async () => {
    const base = {
      clusterEnv: formatClusterEnv(ENV),
      meshConfig: formatMeshConfigFile('10.7.0.1:15012', 'cluster.local'),
      rootCert: ca.rootCertsPem.join(''),
    };
    await assert.rejects(
      readBootstrap(configDir('no-root', { ...base, rootCert: undefined })),
      (err: unknown) => MeshError.isMeshError(err) && /root-cert\.pem is missing/.test(err.message),
    );
    await assert.rejects(
      readBootstrap(configDir('bad-root', { ...base, rootCert: 'not a certificate' })),
      (err: unknown) =>
        InvalidConfigError.isInvalidConfigError(err) && /root-cert\.pem: holds no PEM certificate/.test(err.message),
    );
    await assert.rejects(
      readBootstrap(
        configDir('grpc', { ...base, clusterEnv: formatClusterEnv({ ...ENV, probe: { grpc: { port: 9 } } }) }),
      ),
      /FEDMESH_READINESS_PROBE\.grpc: gRPC probes are not supported/,
    );
    await assert.rejects(
      readBootstrap(configDir('td', { ...base, meshConfig: formatMeshConfigFile('10.7.0.1:15012', 'other.td') })),
      /mesh\.yaml: trustDomain: is other\.td but cluster\.env says cluster\.local/,
    );
    await assert.rejects(
      readBootstrap(configDir('hosts', { ...base, hosts: 'istiod 10.0.0.1\n' })),
      /hosts: line 1: "istiod" is not an IP/,
    );
    const plain = await readBootstrap(configDir('plain', base));
    assert.equal(plain.dialAddress, '10.7.0.1:15012', 'no hosts file: dial what mesh.yaml says');
  });

  it('finds the local address toward istiod', async () => {
    assert.equal(await detectInstanceIp('127.0.0.1:15012'), '127.0.0.1');
  });

  it('reads its environment once, naming a bad variable', () => {
    const f = readFeatures({ STATE_DIRECTORY: '/var/lib/fedmesh:/var/lib/other', WATCHDOG_USEC: '20000000' });
    assert.equal(f.stateDir, '/var/lib/fedmesh');
    assert.equal(f.configDir, '/etc/fedmesh');
    assert.equal(f.watchdogUsec, 20_000_000);
    assert.equal(f.notifySocket, undefined);
    assert.equal(readFeatures({ FEDMESH_VM_STATE_DIR: '/srv/x', STATE_DIRECTORY: '/y' }).stateDir, '/srv/x');
    assert.throws(() => readFeatures({ WATCHDOG_USEC: 'soon' }), /WATCHDOG_USEC: must be an integer/);
  });
});

describe('CertStore', () => {
  it('persists the certificate and key in one 0600 file and loads it back only for the same identity, unexpired', async () => {
    const store = new CertStore(path.join(dir, 'state', 'fedmesh'));
    const id = { trustDomain: 'cluster.local', namespace: 'vm', serviceAccount: 'legacy-sa' };
    const spiffe = 'spiffe://cluster.local/ns/vm/sa/legacy-sa';
    assert.deepEqual(await store.load(spiffe), { reason: 'none' });
    const key = await generateKeyPair('ec-p256');
    const issued = await ca.signWorkload({ publicKey: key.publicKey, identity: id, ttlMs: 3_600_000 });
    const cert = {
      keyPem: key.privateKeyPem,
      chainPem: issued.chainPem.join(''),
      rootPem: ca.rootCertPem,
      spiffeId: spiffe,
      serialNumber: issued.serialNumber,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      receivedAt: new Date(),
    };
    await store.save(cert);
    assert.equal(fs.statSync(store.file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(store.dir).mode & 0o777, 0o700);
    assert.deepEqual(fs.readdirSync(store.dir), [CERT_FILE], 'no temporary files left');
    const loaded = await store.load(spiffe);
    assert.equal(loaded.cert?.serialNumber, new X509Certificate(cert.chainPem).serialNumber);
    assert.equal(loaded.cert?.keyPem, cert.keyPem);
    assert.equal((await store.load('spiffe://cluster.local/ns/vm/sa/other')).reason, 'other-identity');
    assert.equal((await store.load(spiffe, issued.notAfter.getTime() - 30_000)).reason, 'expired', 'within the margin');
    fs.writeFileSync(store.file, '{"keyPem": "x"');
    assert.equal((await store.load(spiffe)).reason, 'unreadable');
    await store.clear();
    assert.deepEqual(await store.load(spiffe), { reason: 'none' });
  });
});
