/**
 * Federation across network namespaces (issue 6, item 6). Three namespaces this test creates: `infra` (real etcd
 * and nats-server), `east` and `west` (one cluster each: istiod, an east-west gateway configured by Istio's own
 * multicluster/expose-services.yaml, and a local mesh of Bookinfo pods on 127.0.N.x). Only gateways cross networks:
 * iptables in each cluster namespace refuses new connections to the other cluster except to its 15443. Every client
 * runs inside a namespace. Figures are printed as `# …` lines.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FIXTURES } from '../harness.js';
import { Proc } from './procs.js';
import { inNs, netnsUnavailable, spawnInNs, Topology, type ClusterNet } from './topology.js';

const unavailable = await netnsUnavailable();
const ROOT = path.resolve(import.meta.dirname, '../../..');
const CLI = path.join(ROOT, 'packages/ctl/dist/main.js');
const MESH = 'netns';
const GATEWAY_PORT = 15443;
const host = (svc: string): string => `${svc}.default.svc.cluster.local`;
const cluster = (svc: string): string => `outbound|9080||${host(svc)}`;

interface Cluster {
  net: ClusterNet;
  dir: string;
  subnet: string;
  istiod?: Proc;
  gateway?: Proc;
  pods?: Proc;
}

const topo = new Topology();
// The temp dir is made in before() (a skipped suite leaves nothing behind) and removed in after().
let tmp = '';
const procs: Proc[] = [];
let etcd: Proc;
let nats: Proc;
const east: Cluster = { net: topo.east, dir: '', subnet: '127.0.20' };
const west: Cluster = { net: topo.west, dir: '', subnet: '127.0.30' };
const figures: string[] = [];

function figure(line: string): void {
  figures.push(line);
  console.log(`# ${line}`);
}

function start(name: string, ns: string, cmd: string, args: string[]): Proc {
  const p = new Proc(name, spawnInNs(ns, cmd, args));
  procs.push(p);
  return p;
}

function node(name: string, ns: string, script: string, config: object, dir: string): Proc {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  return start(name, ns, process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, script), file]);
}

/** listening polls until `ip:port` accepts a TCP connection from inside `ns` (bash /dev/tcp), bounded. */
async function listening(ns: string, ip: string, port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await inNs(ns, 'bash', ['-c', `exec 3<>/dev/tcp/${ip}/${port}`]).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${ip}:${port} within ${timeoutMs} ms`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

const sleepOf = (c: Cluster): Proc => {
  assert.ok(c.pods);
  return c.pods;
};

async function startInfra(): Promise<void> {
  const ip = topo.infra.ip;
  const etcdDir = path.join(tmp, 'etcd');
  etcd = start('etcd', topo.infra.ns, 'etcd', [
    '--data-dir',
    etcdDir,
    '--name',
    'default',
    '--listen-client-urls',
    `http://${ip}:2379`,
    '--advertise-client-urls',
    `http://${ip}:2379`,
    '--listen-peer-urls',
    `http://${ip}:2380`,
    '--initial-advertise-peer-urls',
    `http://${ip}:2380`,
    '--initial-cluster',
    `default=http://${ip}:2380`,
    '--log-level',
    'error',
  ]);
  const natsBin = fs.existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server';
  nats = start('nats-server', topo.infra.ns, natsBin, ['-a', ip, '-p', '4222']);
  await listening(topo.infra.ns, ip, 2379, 20_000, 'etcd');
  await listening(topo.infra.ns, ip, 4222, 20_000, 'nats-server');
}

async function startCluster(c: Cluster, publishTrust: boolean): Promise<void> {
  fs.mkdirSync(c.dir, { recursive: true });
  const name = c.net.name;
  c.istiod = node(
    `istiod-${name}`,
    c.net.ns,
    'istiod-runner.ts',
    {
      host: c.net.ip,
      dir: c.dir,
      caDir: path.join(FIXTURES, 'certs'),
      files: [
        path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
        path.join(FIXTURES, 'multicluster/expose-services.yaml'),
      ],
      mesh: MESH,
      cluster: name,
      network: `net-${name}`,
      etcd: [`http://${topo.infra.ip}:2379`],
      nats: [`nats://${topo.infra.ip}:4222`],
      gatewayAddress: `${c.net.ip}:${GATEWAY_PORT}`,
      publishTrust,
    },
    c.dir,
  );
  await c.istiod.ready(60_000);
  c.gateway = start(`gateway-${name}`, c.net.ns, process.execPath, [
    CLI,
    'gateway',
    '--ip',
    c.net.ip,
    '--discovery',
    `${c.net.ip}:15012`,
    '--root-cert',
    path.join(c.dir, 'root-cert.pem'),
    '--token-file',
    path.join(c.dir, 'gateway-token'),
    '--network',
    `net-${name}`,
    '--cluster-id',
    name,
  ]);
}

function podsConfig(c: Cluster, apps: [string, string, string][]): object {
  const pods = apps.map(([app, version, sa], i) => ({
    name: `${app}-${version}-0`,
    app,
    version,
    serviceAccount: sa,
    ports: [9080],
    ip: `${c.subnet}.${10 + i}`,
  }));
  pods.push({ name: 'sleep-0', app: 'sleep', version: 'v1', serviceAccount: 'sleep', ports: [], ip: `${c.subnet}.2` });
  return {
    cluster: c.net.name,
    region: `region-${c.net.name}`,
    dir: c.dir,
    istiod: { xdsTls: `${c.net.ip}:15012`, monitoring: `${c.net.ip}:15014` },
    adminTokenFile: path.join(c.dir, 'istiod', 'admin-token'),
    rootCertFile: path.join(c.dir, 'root-cert.pem'),
    pods,
  };
}

describe(
  'federation across network namespaces: east and west through east-west gateways',
  { skip: unavailable ?? false },
  () => {
    before(async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-netns-'));
      east.dir = path.join(tmp, 'east');
      west.dir = path.join(tmp, 'west');
      await topo.create(GATEWAY_PORT);
      await startInfra();
      await startCluster(east, true);
      await startCluster(west, false);
      const eastCfg = podsConfig(east, [
        ['productpage', 'v1', 'bookinfo-productpage'],
        ['details', 'v1', 'bookinfo-details'],
        ['reviews', 'v1', 'bookinfo-reviews'],
        ['reviews', 'v2', 'bookinfo-reviews'],
        ['reviews', 'v3', 'bookinfo-reviews'],
      ]) as { pods: object[] };
      // A productpage replica that is registered but never started: the test flips its readiness to change what east exports.
      eastCfg.pods.push({
        name: 'productpage-v1-extra',
        app: 'productpage',
        version: 'v1',
        serviceAccount: 'bookinfo-productpage',
        ports: [9080],
        ip: `${east.subnet}.30`,
        registerOnly: true,
      });
      east.pods = node('pods-east', east.net.ns, 'pods-runner.ts', eastCfg, east.dir);
      west.pods = node(
        'pods-west',
        west.net.ns,
        'pods-runner.ts',
        podsConfig(west, [
          ['ratings', 'v1', 'bookinfo-ratings'],
          ['reviews', 'v1', 'bookinfo-reviews'],
          ['reviews', 'v2', 'bookinfo-reviews'],
          ['reviews', 'v3', 'bookinfo-reviews'],
        ]),
        west.dir,
      );
      await Promise.all([east.pods.ready(90_000), west.pods.ready(90_000)]);
      await listening(east.net.ns, east.net.ip, GATEWAY_PORT, 30_000, 'east gateway');
      await listening(west.net.ns, west.net.ip, GATEWAY_PORT, 30_000, 'west gateway');
    });

    after(async () => {
      for (const p of [...procs].reverse()) await p.stop().catch(() => undefined);
      await topo.destroy();
      // FEDMESH_NETNS_LOGS=DIR keeps the processes' logs for debugging (off by default: the temp dir is removed).
      const keep = process.env.FEDMESH_NETNS_LOGS;
      if (keep && tmp) fs.cpSync(tmp, keep, { recursive: true, filter: (f) => !f.includes(`${path.sep}etcd`) });
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
      if (figures.length > 0) console.log(`# netns figures:\n${figures.map((f) => `#   ${f}`).join('\n')}`);
    });

    test("(a) east's sleep calls ratings, which exists only in west: mTLS through west's gateway, the callee sees east's SPIFFE ID", async () => {
      const e = sleepOf(east);
      const w = sleepOf(west);
      const deadline = Date.now() + 30_000;
      let res: Record<string, unknown> = {};
      while (Date.now() < deadline) {
        res = await e.send({ cmd: 'get', pod: 'sleep-0', host: 'ratings:9080', path: '/ratings/0' });
        if (res.status === 200) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(res.status, 200, `ratings from east: ${JSON.stringify(res)}`);
      const body = JSON.parse(String(res.body)) as { pod: string; cluster: string; xfcc: string };
      assert.equal(body.cluster, 'west');
      assert.equal(body.pod, 'ratings-v1-0');
      assert.match(body.xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
      // West's own sleep sent nothing: the caller was east's.
      assert.equal((await w.send({ cmd: 'requestsTotal', pod: 'sleep-0' })).total, 0);
      // East's sidecar knows ratings only as west's gateway, dialled at 15443.
      const eps = (await e.send({ cmd: 'endpoints', pod: 'sleep-0', cluster: cluster('ratings') })).endpoints as {
        address: string;
        port: number;
        gateway: string;
      }[];
      assert.deepEqual(
        eps.map((x) => `${x.address}:${x.port}:${x.gateway}`),
        [`${west.net.ip}:${GATEWAY_PORT}:net-west`],
      );
      // The call crossed west's gateway: its TCP metrics name the service from the SNI it routed on.
      const stats = await inNs(west.net.ns, 'bash', [
        '-c',
        `exec 3<>/dev/tcp/${west.net.ip}/15000 && printf 'GET /stats/prometheus HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3`,
      ]);
      const opened = stats
        .split('\n')
        .find(
          (l) =>
            l.startsWith('istio_tcp_connections_opened_total{') &&
            l.includes(`destination_service="${host('ratings')}"`),
        );
      assert.ok(
        opened && Number(opened.slice(opened.lastIndexOf(' ') + 1)) >= 1,
        `west gateway stats: ${opened ?? 'none'}`,
      );
      if (topo.isolated) {
        // Only gateways cross networks: west's istiod is not reachable from east, its gateway is.
        await assert.rejects(inNs(east.net.ns, 'bash', ['-c', `exec 3<>/dev/tcp/${west.net.ip}/15012`]));
        await inNs(east.net.ns, 'bash', ['-c', `exec 3<>/dev/tcp/${west.net.ip}/${GATEWAY_PORT}`]);
      }
      figure(
        `(a) east sleep → ratings (west only) via ${west.net.ip}:${GATEWAY_PORT}: 200 from ${body.pod}, callee saw ${/URI=(\S+)$/.exec(body.xfcc)?.[1]}; isolation by iptables: ${topo.isolated}`,
      );
    });

    test('(b) endpoint propagation east → west proxies over 20 changes: p50 and p99', async () => {
      const e = sleepOf(east);
      const w = sleepOf(west);
      const gw = `${east.net.ip}:${GATEWAY_PORT}`;
      const samples: number[] = [];
      for (let i = 0; i < 20; i++) {
        const ready = i % 2 === 0;
        const want = `${gw}/w${ready ? 2 : 1}`;
        const seen = w.send(
          { cmd: 'waitEndpoints', pod: 'sleep-0', cluster: cluster('productpage'), want, timeoutMs: 15_000 },
          20_000,
        );
        const { t0 } = await e.send({ cmd: 'setReady', pod: 'productpage-v1-extra', ready });
        const r = await seen;
        assert.notEqual(r.t, -1, `change ${i} never reached west's sleep (last seen ${String(r.sig)})`);
        samples.push(Number(r.t) - Number(t0));
      }
      const sorted = [...samples].sort((a, b) => a - b);
      figure(
        `(b) propagation east → west sidecar (20 changes): p50 ${percentile(sorted, 50)} ms, p99 ${percentile(sorted, 99)} ms, min ${sorted[0]} ms, max ${sorted[sorted.length - 1]} ms`,
      );
    });

    test("(c) all of east's reviews pods killed under load: 0 failed requests with one retry, and the time to shift", async () => {
      const e = sleepOf(east);
      await e.send({
        cmd: 'apply',
        yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews-failover, namespace: default }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN, localityLbSetting: { enabled: true } }
    outlierDetection: { consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100 }
`,
      });
      // Wait until east's sleep holds its three reviews pods and west's gateway (3 endpoints behind it).
      const want = [
        `${east.subnet}.12:9080/w1`,
        `${east.subnet}.13:9080/w1`,
        `${east.subnet}.14:9080/w1`,
        `${west.net.ip}:${GATEWAY_PORT}/w3`,
      ]
        .sort()
        .join(',');
      const ready = await e.send(
        { cmd: 'waitEndpoints', pod: 'sleep-0', cluster: cluster('reviews'), want, timeoutMs: 15_000 },
        20_000,
      );
      assert.notEqual(ready.t, -1, `reviews endpoints in east: ${String(ready.sig)}`);
      const { watch } = await e.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('reviews') });
      const loadP = e.send(
        {
          cmd: 'load',
          pod: 'sleep-0',
          host: 'reviews:9080',
          durationMs: 8_000,
          concurrency: 4,
          clientRetries: 1,
          pauseMs: 10,
        },
        30_000,
      );
      await new Promise((r) => setTimeout(r, 2_000));
      const kill = await e.send({ cmd: 'kill', app: 'reviews' });
      const r = (await loadP) as {
        sent: number;
        failed: number;
        firstTryFailed: number;
        timeline: [number, number, string, number][];
      };
      const { changes } = (await e.send({ cmd: 'watchStop', watch })) as { changes: { t: number; sig: string }[] };
      const killedAt = Number(kill.killedAt);
      const before = r.timeline.filter(([t]) => t < killedAt);
      const afterKill = r.timeline.filter(([, end]) => end >= killedAt);
      // Time to shift: from the kill until the end of the last request that did not land on west at its first try.
      const lastBad = afterKill.filter(([, , c, attempts]) => c !== 'west' || attempts > 1).pop();
      const shiftMs = lastBad ? lastBad[1] - killedAt : 0;
      const eastHealthy = (sig: string): boolean =>
        sig.split(',').some((x) => x.startsWith(`${east.subnet}.`) && !x.endsWith('/unhealthy'));
      const dropped = changes.find((c) => c.t >= killedAt && !eastHealthy(c.sig));
      const share = (list: [number, number, string, number][], c: string): string =>
        `${list.filter(([, , x]) => x === c).length}/${list.length}`;
      figure(
        `(c) kill east reviews under load: ${r.sent} requests, ${r.failed} failed with one client retry (${r.firstTryFailed} failed on the first try); served by east before the kill ${share(before, 'east')}, by west after ${share(afterKill, 'west')}; time to shift ${shiftMs} ms; east's reviews pods unhealthy in east sleep's EDS after ${dropped ? dropped.t - killedAt : 'never'} ms`,
      );
      assert.ok(afterKill.length > 0 && before.length > 0);
      assert.equal(r.failed, 0, `${r.failed} requests failed even with one retry`);
      assert.ok(dropped, "east's reviews pods stayed healthy in east sleep's endpoints");
      assert.ok(
        afterKill.slice(-20).every(([, , c]) => c === 'west'),
        'traffic did not shift to west',
      );
    });

    test('(e) a NATS outage, then an etcd outage: the data plane loses nothing, and state resyncs after', async () => {
      const e = sleepOf(east);
      const w = sleepOf(west);
      const gw = `${east.net.ip}:${GATEWAY_PORT}`;
      const { watch } = await w.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('details') });
      const loads = [
        e.send(
          { cmd: 'load', pod: 'sleep-0', host: 'ratings:9080', durationMs: 20_000, concurrency: 2, pauseMs: 20 },
          60_000,
        ),
        w.send(
          { cmd: 'load', pod: 'sleep-0', host: 'details:9080', durationMs: 20_000, concurrency: 2, pauseMs: 20 },
          60_000,
        ),
      ];
      const cur = (await w.send({ cmd: 'endpoints', pod: 'sleep-0', cluster: cluster('productpage') })).endpoints as {
        weight: number;
      }[];
      let weight = cur[0]?.weight ?? 1;
      const outage = async (what: string, proc: Proc): Promise<void> => {
        proc.signal('SIGSTOP');
        const stoppedAt = Date.now();
        try {
          await new Promise((r) => setTimeout(r, 1_000));
          weight = weight === 1 ? 2 : 1;
          const seen = w.send(
            {
              cmd: 'waitEndpoints',
              pod: 'sleep-0',
              cluster: cluster('productpage'),
              want: `${gw}/w${weight}`,
              timeoutMs: 30_000,
            },
            40_000,
          );
          const { t0 } = await e.send({ cmd: 'setReady', pod: 'productpage-v1-extra', ready: weight === 2 }, 20_000);
          await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + 4_000 - Date.now())));
          proc.signal('SIGCONT');
          const resumedAt = Date.now();
          const r = await seen;
          assert.notEqual(
            r.t,
            -1,
            `a change made during the ${what} outage never reached west (last ${String(r.sig)})`,
          );
          const t = Number(r.t);
          figure(
            `(e) ${what} outage of ${resumedAt - stoppedAt} ms: a change made during it reached west's sidecar ${t - Number(t0)} ms after it was made, ${Math.max(0, t - resumedAt)} ms after ${what} came back`,
          );
        } finally {
          proc.signal('SIGCONT');
        }
      };
      await new Promise((r) => setTimeout(r, 1_000));
      await outage('NATS', nats);
      await outage('etcd', etcd);
      const [toWest, toEast] = (await Promise.all(loads)) as { sent: number; failed: number }[];
      const { changes } = (await w.send({ cmd: 'watchStop', watch })) as { changes: { t: number; sig: string }[] };
      assert.ok(toWest && toEast);
      figure(
        `(e) data plane during both outages: east→west ${toWest.failed}/${toWest.sent} failed, west→east ${toEast.failed}/${toEast.sent} failed (no retries); west's view of east's details changed ${changes.length - 1} times`,
      );
      assert.equal(toWest.failed, 0);
      assert.equal(toEast.failed, 0);
      assert.equal(changes.length, 1, `west's endpoints for details flapped: ${JSON.stringify(changes)}`);
    });

    test('(f) partition and heal: no endpoint flapping, no stale endpoints', async () => {
      const e = sleepOf(east);
      const w = sleepOf(west);
      const gw = `${east.net.ip}:${GATEWAY_PORT}`;
      // A blip shorter than the liveness budget: nobody withdraws anybody.
      const w1 = await w.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('productpage') });
      const e1 = await e.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('ratings') });
      await topo.setLink(east.net, false);
      await new Promise((r) => setTimeout(r, 1_500));
      await topo.setLink(east.net, true);
      await new Promise((r) => setTimeout(r, 5_000));
      const blipWest = ((await w.send({ cmd: 'watchStop', watch: w1.watch })).changes as unknown[]).length - 1;
      const blipEast = ((await e.send({ cmd: 'watchStop', watch: e1.watch })).changes as unknown[]).length - 1;
      figure(
        `(f) 1.5 s partition of east: west's view of east changed ${blipWest} times, east's view of west ${blipEast} times`,
      );
      assert.equal(blipWest, 0);
      assert.equal(blipEast, 0);

      // A partition longer than the budget: west withdraws east once, and after the heal re-admits it with what east
      // changed meanwhile (resync), not with a stale copy.
      const before = (await w.send({ cmd: 'endpoints', pod: 'sleep-0', cluster: cluster('productpage') }))
        .endpoints as { weight: number }[];
      const oldWeight = before[0]?.weight ?? 1;
      const newWeight = oldWeight === 1 ? 2 : 1;
      const w2 = await w.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('productpage') });
      const e2 = await e.send({ cmd: 'watchStart', pod: 'sleep-0', cluster: cluster('ratings') });
      await topo.setLink(east.net, false);
      const downAt = Date.now();
      await new Promise((r) => setTimeout(r, 1_000));
      await e.send({ cmd: 'setReady', pod: 'productpage-v1-extra', ready: newWeight === 2 });
      await new Promise((r) => setTimeout(r, 7_000));
      await topo.setLink(east.net, true);
      const upAt = Date.now();
      const healed = await w.send(
        {
          cmd: 'waitEndpoints',
          pod: 'sleep-0',
          cluster: cluster('productpage'),
          want: `${gw}/w${newWeight}`,
          timeoutMs: 30_000,
        },
        40_000,
      );
      await new Promise((r) => setTimeout(r, 3_000));
      const westChanges = (await w.send({ cmd: 'watchStop', watch: w2.watch })).changes as { t: number; sig: string }[];
      const eastChanges = (await e.send({ cmd: 'watchStop', watch: e2.watch })).changes as { t: number; sig: string }[];
      const withdrawn = westChanges.find((c) => c.sig === '');
      figure(
        `(f) 8 s partition of east: west withdrew east after ${withdrawn ? withdrawn.t - downAt : 'never'} ms, re-admitted it ${Number(healed.t) - upAt} ms after the heal with the change made during the partition; west's view changed ${westChanges.length - 1} times (${westChanges.map((c) => c.sig || '∅').join(' → ')}); east's view of west changed ${eastChanges.length - 1} times`,
      );
      assert.notEqual(healed.t, -1, `west kept a stale view of east: ${JSON.stringify(westChanges)}`);
      assert.deepEqual(
        westChanges.map((c) => c.sig),
        [`${gw}/w${oldWeight}`, '', `${gw}/w${newWeight}`],
        'west withdrew east once and re-admitted it once, with fresh endpoints',
      );
      assert.equal(eastChanges.length, 1, `east's view of west flapped: ${JSON.stringify(eastChanges)}`);
    });

    test("(d) east's control plane and gateway killed: its endpoints are withdrawn in west within the budget (5 s)", async () => {
      const w = sleepOf(west);
      const gw = `${east.net.ip}:${GATEWAY_PORT}`;
      const cur = (await w.send({ cmd: 'endpoints', pod: 'sleep-0', cluster: cluster('details') })).endpoints as {
        address: string;
      }[];
      assert.deepEqual(
        cur.map((x) => x.address),
        [east.net.ip],
      );
      const gone = w.send(
        { cmd: 'waitEndpoints', pod: 'sleep-0', cluster: cluster('details'), want: '', timeoutMs: 20_000 },
        30_000,
      );
      const killedAt = Date.now();
      east.istiod?.signal('SIGKILL');
      east.gateway?.signal('SIGKILL');
      const r = await gone;
      assert.notEqual(r.t, -1, `east's endpoints were never withdrawn in west (last ${String(r.sig)})`);
      const ms = Number(r.t) - killedAt;
      figure(
        `(d) east's istiod and gateway killed: east's endpoints withdrawn from west's sidecar after ${ms} ms (budget 5,000 ms)`,
      );
      assert.ok(ms <= 5_000, `withdrawn after ${ms} ms`);
      void gw;
    });
  },
);
