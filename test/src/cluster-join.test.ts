import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parseManifests } from '@fedmesh/api';
import { readState } from '@fedmesh/ctl';
import { fedmesh } from './cli.js';
import { FIXTURES, get, waitUntil } from './harness.js';
import { startEtcd, startNats, type RunningProcess } from './infra.js';

// `fedmesh cluster join` three times against a real etcd and nats-server: east, west, then a third cluster joining
// the running two-cluster mesh with one command and no restarts. Each cluster runs one Bookinfo service (Istio's
// own documents, split out of bookinfo.yaml) so the suite stays light.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-join-'));
let etcd: RunningProcess;
let nats: RunningProcess;
const clusters = { east: 'details', west: 'ratings', south: 'productpage', north: 'details' } as const;

function bookinfoSubset(app: string): string {
  const text = fs.readFileSync(path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'), 'utf8');
  const docs = text.split(/^---$/m).filter((d) => {
    const { resources } = parseManifests(d);
    const r = resources[0];
    if (!r) return false;
    return r.metadata.name === app || r.metadata.name === `${app}-v1` || r.metadata.name === `bookinfo-${app}`;
  });
  const file = path.join(dir, `${app}.yaml`);
  fs.writeFileSync(file, docs.join('---'));
  return file;
}

function join(cluster: keyof typeof clusters): Promise<{ code: number; stdout: string; stderr: string }> {
  return fedmesh([
    'cluster',
    'join',
    '--mesh',
    'm1',
    '--cluster',
    cluster,
    '--network',
    'n1',
    '--etcd',
    etcd.url,
    '--nats',
    nats.url,
    '--root',
    path.join(dir, 'root'),
    '--state-dir',
    path.join(dir, cluster),
    '-f',
    bookinfoSubset(clusters[cluster]),
  ]);
}

before(async () => {
  etcd = await startEtcd();
  nats = await startNats();
  const root = await fedmesh(['ca', 'root', 'create', '--out', path.join(dir, 'root')]);
  assert.equal(root.code, 0, root.stderr);
});

after(async () => {
  for (const c of Object.keys(clusters))
    if (fs.existsSync(path.join(dir, c, 'state.json'))) await fedmesh(['down', '--state-dir', path.join(dir, c)]);
  await nats.stop();
  await etcd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('east and west join the mesh, each under its own intermediate of one root, and verify each other', async () => {
  const east = await join('east');
  assert.equal(east.code, 0, east.stdout + east.stderr);
  assert.match(east.stdout, /✔ intermediate CA: .* chains to the mesh root/);
  assert.match(east.stdout, /✔ registered in etcd: \/fedmesh\/m1\/clusters\/east under a lease; peers: none/);
  const west = await join('west');
  assert.equal(west.code, 0, west.stdout + west.stderr);
  assert.match(west.stdout, /✔ discovery of east: \d+ endpoint\(s\) of east in our sidecars/);
  assert.match(west.stdout, /✔ data path to east: sleep -> details\.default:9080 answered by east over mTLS/);
});

test('a third cluster joins the running two-cluster mesh with one command, and the others see it without restarts', async () => {
  const eastPid = readState(path.join(dir, 'east')).istiod.pid;
  const south = await join('south');
  assert.equal(south.code, 0, south.stdout + south.stderr);
  assert.match(south.stdout, /✔ data path to east: .* answered by east over mTLS/);
  assert.match(south.stdout, /✔ data path to west: .* answered by west over mTLS/);
  const east = readState(path.join(dir, 'east'));
  assert.equal(east.istiod.pid, eastPid, 'east was not restarted');
  await waitUntil(
    async () => {
      const r = await get(east.sleep.outbound, 'productpage:9080');
      return r.status === 200 && (JSON.parse(r.body) as { cluster: string }).cluster === 'south';
    },
    20_000,
    "east's sleep reaching south's productpage",
  );
  const r = await get(east.sleep.outbound, 'productpage:9080');
  assert.match(
    (JSON.parse(r.body) as { callerPrincipal: string }).callerPrincipal,
    /^spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/,
  );
  const list = await fedmesh(['cluster', 'list', '--mesh', 'm1', '--etcd', etcd.url]);
  assert.equal(list.code, 0, list.stderr);
  await waitUntil(
    async () => {
      const st = await fedmesh(['cluster', 'status', '--state-dir', path.join(dir, 'east'), '--json']);
      const rows = JSON.parse(st.stdout) as {
        cluster: string;
        live: boolean;
        ackedSeq: number | null;
        self: boolean;
        seq: number;
      }[];
      const self = rows.find((x) => x.self);
      return (
        rows.length === 3 &&
        rows.every((x) => x.live) &&
        rows.filter((x) => !x.self).every((x) => x.ackedSeq === self?.seq)
      );
    },
    15_000,
    'every peer acknowledged east',
  );
  const status = await fedmesh(['cluster', 'status', '--state-dir', path.join(dir, 'east')]);
  assert.match(status.stdout, /^east \(this\)\s+n1\s+yes\s+1\s+1/m);
  assert.match(status.stdout, /^south\s+n1\s+yes\s+1\s+1\s+\d+\s+\d+\/\d+\s+\d+ ms ago/m);
  for (const c of ['east', 'west', 'south'])
    assert.match(list.stdout, new RegExp(`^${c}\\s+n1\\s+127\\.0\\.\\d+\\.1:15012\\s+-\\s+1\\s+1`, 'm'));
});

test('a cluster whose intermediate is under another root cannot join: its root is not in the mesh trust bundle', async () => {
  const other = await fedmesh(['ca', 'root', 'create', '--out', path.join(dir, 'other-root')]);
  assert.equal(other.code, 0, other.stderr);
  const im = await fedmesh([
    'ca',
    'intermediate',
    'create',
    '--root',
    path.join(dir, 'other-root'),
    '--cluster',
    'rogue',
    '--out',
    path.join(dir, 'rogue-ca'),
  ]);
  assert.equal(im.code, 0, im.stderr);
  const rogue = await fedmesh([
    'cluster',
    'join',
    '--mesh',
    'm1',
    '--cluster',
    'rogue',
    '--network',
    'n1',
    '--etcd',
    etcd.url,
    '--nats',
    nats.url,
    '--intermediate',
    path.join(dir, 'rogue-ca'),
    '--state-dir',
    path.join(dir, 'rogue'),
    '-f',
    bookinfoSubset('details'),
  ]);
  assert.equal(rogue.code, 1);
  assert.match(rogue.stdout, /✘ mesh trust: the intermediate's root [0-9a-f]{16}… is not in mesh m1's trust bundle/);
  assert.equal(fs.existsSync(path.join(dir, 'rogue', 'state.json')), false, 'nothing was started');
  const list = await fedmesh(['cluster', 'list', '--mesh', 'm1', '--etcd', etcd.url]);
  assert.doesNotMatch(list.stdout, /rogue/);
});

test("failover drill: east's details pods are taken away under load and north takes over with no request lost", async () => {
  const north = await join('north');
  assert.equal(north.code, 0, north.stdout + north.stderr);
  // One retry allowed, on connection failures and resets (a killed pod resets its pooled connections).
  const vs = path.join(dir, 'details-retry.yaml');
  fs.writeFileSync(
    vs,
    'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: details}\nspec:\n  hosts: [details]\n  http:\n  - route:\n    - destination: {host: details}\n    retries: {attempts: 1, retryOn: "connect-failure,refused-stream,reset,unavailable"}\n',
  );
  const applied = await fedmesh(['apply', '-f', vs, '--state-dir', path.join(dir, 'south')]);
  assert.equal(applied.code, 0, applied.stderr);
  await new Promise((r2) => setTimeout(r2, 500));
  const r = await fedmesh([
    'failover',
    'drill',
    '--service',
    'details',
    '--cluster',
    'east',
    '--cluster-state-dir',
    path.join(dir, 'east'),
    '--from-state-dir',
    path.join(dir, 'south'),
    '--rps',
    '30',
    '--duration',
    '6000',
    '--json',
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as {
    requests: number;
    failed: number;
    failoverMs: number;
    withdrawnMs: number;
    answeredBy: { before: Record<string, number>; after: Record<string, number> };
    restoredMs: number;
  };
  assert.equal(report.failed, 0, JSON.stringify(report));
  assert.ok(
    (report.answeredBy.before.east ?? 0) > 0 && (report.answeredBy.before.north ?? 0) > 0,
    JSON.stringify(report.answeredBy),
  );
  assert.ok((report.answeredBy.after.north ?? 0) > 0, JSON.stringify(report.answeredBy));
  assert.ok(report.withdrawnMs >= 0, "east's endpoints left the client sidecar");
  console.log(
    `# failover drill: ${report.requests} requests, ${report.failed} failed, last answer from east ${report.failoverMs} ms after, endpoints withdrawn after ${report.withdrawnMs} ms, restored in ${report.restoredMs} ms`,
  );
});
