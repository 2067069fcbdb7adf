// `fedmesh ca rotate-root --federation` across two clusters joined with `fedmesh cluster join` (real istiod and
// sidecar processes, a real etcd and nats-server on loopback), with traffic flowing east→west and west→east the whole
// time. The first run is killed half-way and a second run resumes it. A third cluster that was down during the
// rotation cannot come back under the retired root.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { request } from 'undici';
import { parseManifests } from '@fedmesh/api';
import { readState, type MeshState } from '@fedmesh/ctl';
import {
  EtcdKvStore,
  FederationMember,
  NatsTransport,
  keys,
  publishTrustRoot,
  retiredTrustKey,
  rootFingerprint,
} from '@fedmesh/federation';
import type { CaStatus } from '@fedmesh/istiod';
import { certificateFingerprint, splitPemBundle } from '@fedmesh/pki';
import { CLI, fedmesh } from './cli.js';
import { FIXTURES, get, waitUntil } from './harness.js';
import { startEtcd, startNats, type RunningProcess } from './infra.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-fedrotate-'));
const MESH = 'm1';
let etcd: RunningProcess;
let nats: RunningProcess;
let east: MeshState;
let west: MeshState;
const stateDir = (c: string): string => path.join(dir, c);
const rootA = path.join(dir, 'root-a');
const rootB = path.join(dir, 'root-b');
const readPem = (d: string): string => fs.readFileSync(path.join(d, 'root-cert.pem'), 'utf8');

/** FederatedReport is the part of the command's `--json` report the test reads. */
interface FederatedReport {
  newRoot: string;
  retiredRoots: string[];
  phases: Record<string, number>;
  clusters: Record<string, { workloads: number; phases: Record<string, number> }>;
  totalMs: number;
}

function bookinfoSubset(app: string): string {
  const text = fs.readFileSync(path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'), 'utf8');
  const docs = text.split(/^---$/m).filter((d) => {
    const r = parseManifests(d).resources[0];
    return r !== undefined && [app, `${app}-v1`, `bookinfo-${app}`].includes(r.metadata.name);
  });
  const file = path.join(dir, `${app}.yaml`);
  fs.writeFileSync(file, docs.join('---'));
  return file;
}

async function join(cluster: string, app: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return fedmesh(
    [
      ...['cluster', 'join', '--mesh', MESH, '--cluster', cluster, '--network', 'n1'],
      ...['--etcd', etcd.url, '--nats', nats.url, '--root', rootA, '--state-dir', stateDir(cluster)],
      ...['-f', bookinfoSubset(app)],
    ],
    120_000,
  );
}

function rotateArgs(clusters: string[]): string[] {
  return [
    ...['ca', 'rotate-root', '--federation', '--mesh', MESH, '--etcd', etcd.url, '--new-root', rootB],
    ...clusters.flatMap((c) => ['--cluster-state-dir', `${c}=${stateDir(c)}`]),
    ...clusters.flatMap((c) => ['--new-intermediate', `${c}=${path.join(dir, `${c}-b`)}`]),
    ...['--timeout', '120'],
  ];
}

async function etcdTrust(): Promise<Map<string, string>> {
  const kv = new EtcdKvStore({ endpoints: [etcd.url] });
  try {
    return await kv.getPrefix(keys.trustPrefix(MESH));
  } finally {
    kv.close();
  }
}

async function caStatusOf(s: MeshState): Promise<CaStatus> {
  const token = fs.readFileSync(path.join(s.stateDir, 'istiod', 'admin-token'), 'utf8').trim();
  const res = await request(`http://${s.istiod.monitoring}/v1/ca/status`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return (await res.body.json()) as CaStatus;
}

/** handshakes sums `fedmesh_tls_handshakes_total` by direction and result over every sidecar of both clusters. */
async function handshakes(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of [east, west])
    for (const p of s.pods) {
      const res = await request(`http://${p.admin}/stats/prometheus`);
      const text = await res.body.text();
      for (const m of text.matchAll(/^fedmesh_tls_handshakes_total\{([^}]*)\} (\d+)/gm)) {
        const labels = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
        const k = `${labels.direction}/${labels.result}`;
        out.set(k, (out.get(k) ?? 0) + Number(m[2]));
      }
    }
  return out;
}

const delta = (a: Map<string, number>, b: Map<string, number>, k: string): number => (b.get(k) ?? 0) - (a.get(k) ?? 0);

before(async () => {
  etcd = await startEtcd();
  nats = await startNats();
  for (const out of [rootA, rootB]) {
    const r = await fedmesh(['ca', 'root', 'create', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
  }
  for (const c of ['east', 'west']) {
    const r = await fedmesh([
      ...['ca', 'intermediate', 'create', '--root', rootB, '--cluster', c],
      ...['--out', path.join(dir, `${c}-b`)],
    ]);
    assert.equal(r.code, 0, r.stderr);
  }
  // north joins under root A and is down (left the mesh) before the rotation starts.
  for (const [c, app] of [
    ['east', 'details'],
    ['west', 'ratings'],
    ['north', 'productpage'],
  ] as const) {
    const r = await join(c, app);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
  const down = await fedmesh(['down', '--state-dir', stateDir('north')]);
  assert.equal(down.code, 0, down.stderr);
  const kv = new EtcdKvStore({ endpoints: [etcd.url] });
  try {
    await waitUntil(
      async () => (await kv.get(keys.cluster(MESH, 'north'))) === undefined,
      20_000,
      'north gone from etcd',
    );
  } finally {
    kv.close();
  }
  east = readState(stateDir('east'));
  west = readState(stateDir('west'));
  await waitUntil(async () => (await get(east.sleep.outbound, 'ratings:9080')).status === 200, 20_000, 'east→west');
  await waitUntil(async () => (await get(west.sleep.outbound, 'details:9080')).status === 200, 20_000, 'west→east');
});

after(async () => {
  for (const c of ['east', 'west', 'north'])
    if (fs.existsSync(path.join(stateDir(c), 'state.json'))) await fedmesh(['down', '--state-dir', stateDir(c)]);
  await nats.stop();
  await etcd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('refusals change nothing: a registered cluster left out, an intermediate under another root, the single-cluster command', async () => {
  const trustBefore = await etcdTrust();
  const partial = await fedmesh(rotateArgs(['east']));
  assert.equal(partial.code, 1);
  assert.match(partial.stderr, /cluster\(s\) west are registered in mesh m1 but not part of this rotation/);

  // west's current intermediate (under the old root) given as its new one.
  const wrong = await fedmesh(
    rotateArgs(['east', 'west']).map((a) =>
      a === `west=${path.join(dir, 'west-b')}` ? `west=${path.join(stateDir('west'), 'ca')}` : a,
    ),
  );
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /west: new intermediate .* chains to root [0-9A-F:]{11}, not to the new root/);

  const single = await fedmesh([
    ...['ca', 'rotate-root', '--state-dir', stateDir('east'), '--new-ca', path.join(dir, 'east-b')],
  ]);
  assert.equal(single.code, 1);
  assert.match(single.stderr, /is cluster east of a federated mesh: every cluster must trust a new root/);

  // istiod itself refuses a CA under a root the mesh trust bundle does not hold.
  const token = fs.readFileSync(path.join(stateDir('east'), 'istiod', 'admin-token'), 'utf8').trim();
  const direct = await request(`http://${east.istiod.monitoring}/v1/ca/roots`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ caDir: path.join(dir, 'east-b') }),
  });
  assert.equal(direct.statusCode, 409);
  assert.match(((await direct.body.json()) as { error: string }).error, /is not in mesh m1's trust bundle/);

  assert.deepEqual(await etcdTrust(), trustBefore, 'the mesh trust bundle is unchanged');
  for (const s of [east, west]) {
    const st = await caStatusOf(s);
    assert.equal(st.roots.length, 1);
    assert.equal(st.stagedRoot, undefined);
  }
});

test(
  'a federated rotation, interrupted and resumed, fails no request and no handshake in either direction',
  { timeout: 600_000 },
  async (t) => {
    const oldRoot = certificateFingerprint(readPem(rootA));
    const newRoot = certificateFingerprint(readPem(rootB));
    let flowing = true;
    const sent = { 'east→west': 0, 'west→east': 0 };
    const failures: string[] = [];
    const loop = async (from: MeshState, host: string, dirn: keyof typeof sent): Promise<void> => {
      const deadline = Date.now() + 500_000;
      while (flowing && Date.now() < deadline) {
        sent[dirn]++;
        const r = await get(from.sleep.outbound, host).catch((e: Error) => ({ status: 0, body: e.message }));
        if (r.status !== 200) failures.push(`${dirn} ${r.status} ${r.body.trim()}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    const before = await handshakes();
    const traffic = Promise.all([loop(east, 'ratings:9080', 'east→west'), loop(west, 'details:9080', 'west→east')]);
    await new Promise((r) => setTimeout(r, 1_000));
    let first = '';
    let second: Awaited<ReturnType<typeof fedmesh>>;
    try {
      // First run: killed (SIGKILL) as soon as east's new intermediate signs, with west not yet started.
      first = await new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [CLI, ...rotateArgs(['east', 'west'])], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (d: string) => {
          err += d;
          if (/^activate \[east\]/m.test(err)) child.kill('SIGKILL');
        });
        child.on('exit', (code, signal) => resolve(`${err}\n(exit ${code ?? signal ?? '?'})`));
      });
      await new Promise((r) => setTimeout(r, 1_000)); // east's proxies re-issue while nothing drives the rotation
      second = await fedmesh([...rotateArgs(['east', 'west']), '--json'], 300_000);
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      flowing = false;
      await traffic;
    }
    const afterCounts = await handshakes();
    for (const line of first.trim().split('\n')) t.diagnostic(`run 1: ${line}`);
    for (const line of second.stderr.trim().split('\n')) t.diagnostic(`run 2: ${line}`);
    assert.match(first, /\(exit SIGKILL\)/, 'the first run was interrupted');
    assert.equal(second.code, 0, second.stderr);
    const report = JSON.parse(second.stdout) as FederatedReport;
    const failed = [...afterCounts.keys()]
      .filter((k) => !k.endsWith('/ok'))
      .reduce((n, k) => n + delta(before, afterCounts, k), 0);
    t.diagnostic(
      `requests: ${JSON.stringify(sent)}, ${failures.length} failed; handshakes: inbound ok +${delta(before, afterCounts, 'inbound/ok')}, ` +
        `outbound ok +${delta(before, afterCounts, 'outbound/ok')}, failed +${failed}; report ${JSON.stringify(report)}`,
    );
    assert.deepEqual(failures, [], 'no request failed');
    assert.equal(failed, 0, `no mTLS handshake failed: ${JSON.stringify([...afterCounts])}`);
    assert.ok(sent['east→west'] >= 20 && sent['west→east'] >= 20, 'traffic flowed both ways');
    assert.ok(delta(before, afterCounts, 'inbound/ok') > 0, 'server sidecars accepted new handshakes meanwhile');

    // The second run resumed: east was already signing under the new root, west was rotated by it.
    assert.match(second.stderr, /publish: root [0-9A-F:]{11} already in \/fedmesh\/m1\/trust\//);
    assert.match(second.stderr, /add \[east\]: the new intermediate already signs/);
    assert.match(second.stderr, /activate \[west\]: the new intermediate signs/);
    for (const step of [
      'preflight:',
      'distribute:',
      're-issue [east]',
      're-issue [west]',
      'retire [east]',
      'retire [west]',
      'retire [etcd]',
      'distribute-retired:',
      'done in',
    ])
      assert.ok(second.stderr.includes(step), `progress shows ${step}`);
    assert.equal(report.newRoot, newRoot);
    assert.deepEqual(report.retiredRoots, [oldRoot]);

    // The old root is gone from etcd (tombstoned) and from every istiod's and every proxy's bundle.
    const trust = await etcdTrust();
    assert.deepEqual(
      [...trust.values()].map((pem) => certificateFingerprint(pem)),
      [newRoot],
    );
    const kv = new EtcdKvStore({ endpoints: [etcd.url] });
    try {
      assert.ok(await kv.get(retiredTrustKey(MESH, rootFingerprint(readPem(rootA)))), 'the old root is tombstoned');
    } finally {
      kv.close();
    }
    for (const s of [east, west]) {
      const st = await caStatusOf(s);
      assert.deepEqual(st.servedRoots, [newRoot], `${s.cluster} serves only the new root`);
      assert.deepEqual(
        st.roots.map((r) => r.fingerprint),
        [newRoot],
      );
      for (const w of st.workloads) assert.equal(w.rootFingerprint, newRoot, `${w.nodeId} on the new root`);
      assert.deepEqual(
        splitPemBundle(fs.readFileSync(path.join(s.stateDir, 'root-cert.pem'), 'utf8')).map(certificateFingerprint),
        [newRoot],
        `${s.cluster}'s root-cert.pem`,
      );
      for (const p of s.pods) {
        const res = await request(`http://${p.admin}/config_dump`);
        const dump = (await res.body.json()) as { secrets: { name: string; trustBundle?: string }[] };
        const bundle = dump.secrets.find((x) => x.name === 'ROOTCA')?.trustBundle ?? '';
        assert.deepEqual(splitPemBundle(bundle).map(certificateFingerprint), [newRoot], `${p.name} in ${s.cluster}`);
      }
    }

    // Running it again finds everything done.
    const again = await fedmesh(rotateArgs(['east', 'west']), 120_000);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /retire \[/);
  },
);

test('a cluster that was down during the rotation cannot come back under the retired root', async () => {
  const north = await join('north', 'productpage');
  assert.equal(north.code, 1, north.stdout + north.stderr);
  assert.match(
    north.stdout,
    /✘ mesh trust: root [0-9a-f]{16}… was retired from mesh m1's trust bundle at \S+: a cluster under it cannot join/,
  );
  assert.equal(fs.existsSync(path.join(stateDir('north'), 'state.json')), false, 'nothing was started');

  // An istiod started under the old root is refused at join, even as a mesh admin publishing its roots.
  const kv = new EtcdKvStore({ endpoints: [etcd.url] });
  const transport = await NatsTransport.connect({ servers: [nats.url], name: 'north-test' });
  try {
    const member = new FederationMember({
      mesh: MESH,
      cluster: 'north',
      network: 'n1',
      istiodAddress: '127.0.0.1:15012',
      kv,
      transport,
      log: pino({ level: 'silent' }),
    });
    await assert.rejects(member.join([readPem(rootA)], true), /this cluster's root [0-9a-f]{16}… was retired/);
    await assert.rejects(publishTrustRoot(kv, MESH, readPem(rootA)), /was retired from mesh m1's trust bundle/);
    assert.equal(await kv.get(keys.cluster(MESH, 'north')), undefined, 'north did not register');
    assert.equal((await kv.getPrefix(keys.trustPrefix(MESH))).size, 1, 'the bundle still holds only the new root');
  } finally {
    await transport.close();
    kv.close();
  }
});
