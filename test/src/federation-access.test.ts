import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  EtcdKvStore,
  FederationMember,
  NatsTransport,
  keys,
  natsAccessConfig,
  provisionEtcdAccess,
  publishTrustRoot,
  subjects,
  type ExportedService,
} from '@fedmesh/federation';
import { startEtcd, startNats, type RunningProcess } from './infra.js';
import { waitUntil } from './harness.js';

// A cluster may write only its own keys and subjects: etcd roles and NATS permissions, with real servers.
const mesh = 'm1';
const creds = [
  { cluster: 'east', password: 'east-secret-1' },
  { cluster: 'west', password: 'west-secret-1' },
];
let etcd: RunningProcess;
let nats: RunningProcess;
const silent = { info: () => undefined, warn: () => undefined, debug: () => undefined };
const ROOT_PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

function kvAs(cluster: string): EtcdKvStore {
  const c = creds.find((x) => x.cluster === cluster);
  return new EtcdKvStore({
    endpoints: [etcd.url],
    auth: { username: `${mesh}-${cluster}`, password: c?.password ?? '' },
  });
}

function svc(host: string, address: string): Omit<ExportedService, 'seq'> {
  return {
    hostname: host,
    name: host.split('.')[0] ?? host,
    namespace: 'default',
    ports: [{ name: 'http', port: 9080, protocol: 'HTTP' }],
    endpoints: [
      {
        address,
        targetPorts: { '9080': 9080 },
        labels: { app: 'x' },
        namespace: 'default',
        serviceAccount: 'x',
        workloadName: 'x',
        podName: 'x-0',
        locality: { region: '', zone: '', subZone: '' },
        healthy: true,
        weight: 1,
      },
    ],
  };
}

before(async () => {
  etcd = await startEtcd();
  nats = await startNats(natsAccessConfig(mesh, creds));
  await provisionEtcdAccess({ endpoints: [etcd.url], rootPassword: 'root-secret', mesh, clusters: creds });
  const admin = new EtcdKvStore({ endpoints: [etcd.url], auth: { username: 'root', password: 'root-secret' } });
  await publishTrustRoot(admin, mesh, ROOT_PEM);
  admin.close();
});

after(async () => {
  await nats.stop();
  await etcd.stop();
});

test('with their own credentials both clusters join and exchange endpoints', async () => {
  const members: FederationMember[] = [];
  const conns: { kv: EtcdKvStore; t: NatsTransport }[] = [];
  try {
    for (const c of creds) {
      const kv = kvAs(c.cluster);
      const t = await NatsTransport.connect({ servers: [nats.url], user: `${mesh}-${c.cluster}`, pass: c.password });
      conns.push({ kv, t });
      const m = new FederationMember({
        mesh,
        cluster: c.cluster,
        network: 'n1',
        istiodAddress: '127.0.0.1:15012',
        kv,
        transport: t,
        log: silent,
        heartbeatIntervalMs: 200,
      });
      await m.join([ROOT_PEM]);
      members.push(m);
    }
    await members[0]?.export([svc('reviews.default.svc.cluster.local', '127.0.50.10')]);
    await waitUntil(
      () => (members[1]?.remote().find((r) => r.record.cluster === 'east')?.services.length ?? 0) === 1,
      10_000,
      'west sees east',
    );
  } finally {
    for (const m of members) await m.leave();
    for (const c of conns) {
      await c.t.close();
      c.kv.close();
    }
  }
});

test("a forged etcd write to another cluster's keys, or to the trust bundle, is refused", async () => {
  const west = kvAs('west');
  try {
    let refused = 0;
    for (const key of [
      keys.endpoints(mesh, 'east', 'reviews.default.svc.cluster.local'),
      keys.cluster(mesh, 'east'),
      keys.trust(mesh, 'forged'),
    ]) {
      await assert.rejects(west.put(key, '{"forged":true}'), /permission denied/i);
      refused++;
    }
    assert.equal(refused, 3);
    await assert.doesNotReject(west.put(keys.endpoints(mesh, 'west', 'ok.default.svc.cluster.local'), '{}'));
    await west.delete(keys.endpoints(mesh, 'west', 'ok.default.svc.cluster.local'));
    assert.equal(await west.get(keys.endpoints(mesh, 'east', 'reviews.default.svc.cluster.local')), undefined);
  } finally {
    west.close();
  }
});

test("a forged NATS publish on another cluster's subject is refused and never delivered", async () => {
  const east = await NatsTransport.connect({ servers: [nats.url], user: `${mesh}-east`, pass: 'east-secret-1' });
  const west = await NatsTransport.connect({ servers: [nats.url], user: `${mesh}-west`, pass: 'west-secret-1' });
  try {
    const got: string[] = [];
    east.subscribe(subjects.allEndpoints(mesh), (d) => got.push(new TextDecoder().decode(d)));
    await new Promise((r) => setTimeout(r, 200));
    west.publish(subjects.endpoints(mesh, 'east'), new TextEncoder().encode('forged'));
    west.publish(subjects.heartbeat(mesh, 'east'), new TextEncoder().encode('forged'));
    west.publish(subjects.endpoints(mesh, 'west'), new TextEncoder().encode('legit'));
    await waitUntil(() => got.includes('legit'), 5_000, 'legit delta');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got, ['legit']);
  } finally {
    await east.close().catch(() => undefined);
    await west.close().catch(() => undefined);
  }
});

test('a cluster without credentials cannot read or write at all', async () => {
  const anon = new EtcdKvStore({ endpoints: [etcd.url] });
  try {
    await assert.rejects(anon.put(keys.cluster(mesh, 'rogue'), '{}'));
  } finally {
    anon.close();
  }
  await assert.rejects(NatsTransport.connect({ servers: [nats.url] }));
});
