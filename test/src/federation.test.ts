import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FederationSettings } from '@fedmesh/istiod';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';
import { startEtcd, startNats, type RunningProcess } from './infra.js';

// Two clusters, east and west, each with its own istiod (Istio's sample plug-in CA, so one root), joined through
// a real etcd and a real nats-server. Both run on one network (loopback), so pod addresses are reachable directly.
let etcd: RunningProcess;
let nats: RunningProcess;
const east = new LocalMesh();
const west = new LocalMesh();
let eastSleep: TestPod;
let westDetails: TestPod;
let eastReviews: TestPod;
let westReviews: TestPod;
const bookinfo = path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml');
const ca = path.join(FIXTURES, 'certs');

function federation(cluster: string): { federation: FederationSettings; clusterId: string } {
  return {
    clusterId: cluster,
    federation: {
      mesh: 'm1',
      cluster,
      network: 'net1',
      etcd: [etcd.url],
      nats: [nats.url],
      heartbeatIntervalMs: 250,
      withdrawAfterMs: 2_000,
      readmitAfterBeats: 3,
      publishTrust: true,
    },
  };
}

before(async () => {
  etcd = await startEtcd();
  nats = await startNats();
  await east.start([bookinfo], ca, federation('east'));
  await west.start([bookinfo], ca, federation('west'));
  eastSleep = await east.addPod({ name: 'sleep-0', serviceAccount: 'sleep', labels: { app: 'sleep' } });
  eastReviews = await east.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
    appPort: 9080,
  });
  westReviews = await west.addPod({
    name: 'reviews-v2-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v2' },
    appPort: 9080,
  });
  westDetails = await west.addPod({
    name: 'details-v1-0',
    serviceAccount: 'bookinfo-details',
    labels: { app: 'details', version: 'v1' },
    appPort: 9080,
  });
});

after(async () => {
  await east.close();
  await west.close();
  await nats.stop();
  await etcd.stop();
});

test("a call from east's sleep to a service that only has endpoints in west succeeds over mTLS with east's SPIFFE ID", async () => {
  await waitUntil(
    async () => (await get(`${eastSleep.ip}:15001`, 'details:9080')).status === 200,
    20_000,
    'details reachable from east',
  );
  const before = westDetails.backend?.requests.length ?? 0;
  const res = await get(`${eastSleep.ip}:15001`, 'details:9080', '/details/0');
  assert.equal(res.status, 200);
  assert.equal(JSON.parse(res.body).pod, 'details-v1-0');
  assert.match(JSON.parse(res.body).xfcc as string, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
  assert.equal(westDetails.backend?.requests.length, before + 1);
});

test('namespace sameness: reviews in east and west is one service, and both clusters serve it', async () => {
  const seen = new Set<string>();
  await waitUntil(
    async () => {
      const r = await get(`${eastSleep.ip}:15001`, 'reviews:9080');
      if (r.status === 200) seen.add(JSON.parse(r.body).pod as string);
      return seen.size === 2;
    },
    20_000,
    'both reviews pods',
  );
  assert.deepEqual([...seen].sort(), ['reviews-v1-0', 'reviews-v2-0']);
  void eastReviews;
  void westReviews;
});

test('a NATS outage loses nothing: peers stay admitted on the etcd lease and traffic keeps flowing', async () => {
  const member = east.istiod.federation?.member;
  assert.ok(member);
  nats.pause();
  let failures = 0;
  let sent = 0;
  const t0 = Date.now();
  try {
    while (Date.now() - t0 < 4_000) {
      sent++;
      const r = await get(`${eastSleep.ip}:15001`, 'details:9080').catch(() => ({ status: 0, body: '' }));
      if (r.status !== 200) failures++;
      await new Promise((r2) => setTimeout(r2, 50));
    }
    assert.equal(member.peer('west')?.live, true, 'west must stay admitted during a NATS outage');
  } finally {
    nats.resume();
  }
  assert.equal(failures, 0, `${failures} of ${sent} requests failed during the NATS outage`);
  await waitUntil(() => member.transportHealthy(), 15_000, 'NATS back');
  console.log(`# NATS outage of 4 s: ${failures} of ${sent} requests failed`);
});

test('the endpoints of a cluster that stops beating are withdrawn within the budget', async () => {
  const member = east.istiod.federation?.member;
  assert.ok(member);
  assert.equal(member.peer('west')?.live, true);
  // Silence west's federation (its istiod and pods keep running): stop its heartbeats by closing the member.
  const westMember = west.istiod.federation?.member;
  assert.ok(westMember);
  const t0 = Date.now();
  await westMember.close();
  await waitUntil(() => member.peer('west')?.live === false, 10_000, 'west withdrawn');
  const withdrawMs = Date.now() - t0;
  assert.ok(withdrawMs <= 5_000, `withdrawn after ${withdrawMs} ms`);
  // East's sidecars stop using west's details endpoint.
  await waitUntil(
    async () => (await get(`${eastSleep.ip}:15001`, 'details:9080')).status === 503,
    10_000,
    'details withdrawn in east',
  );
  // Only east's reviews pod is used now.
  for (let i = 0; i < 10; i++) {
    const r = await get(`${eastSleep.ip}:15001`, 'reviews:9080');
    assert.equal(JSON.parse(r.body).pod, 'reviews-v1-0');
  }
  console.log(`# withdrawal after heartbeats stopped: ${withdrawMs} ms (budget 5,000 ms)`);
});
