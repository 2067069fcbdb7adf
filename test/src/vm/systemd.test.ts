/**
 * Bring a VM into the mesh, end to end, as a user would: `pnpm package:vm` builds the .deb; a real systemd runs as
 * PID 1 in its own PID/mount/network namespaces (the VM); the local mesh (istiod and pods, mesh-node.ts) runs in a
 * network namespace of its own; a veth pair joins the two on a 10.x/24 only these namespaces know, so nothing is
 * dialled from the host. In the VM: `dpkg -i`, the files from `fedmesh vm config` in /etc/fedmesh,
 * `systemctl start fedmesh-vm-agent`. Then: pod → VM over mTLS, VM → pod by name, a failing probe takes the VM out of
 * the endpoints and recovery brings it back, `kill -9` of the agent (token removed first) → systemd restarts it and it
 * renews with its persisted certificate, a hung agent is restarted by the watchdog, `dpkg --purge` leaves nothing.
 * Timings are measured and printed. Needs root, iproute2, unshare/nsenter, systemd, dpkg-deb, curl and python3.
 *
 * The VM shares the host's root filesystem (only /run, /tmp and /var/tmp are its own), so the early-boot units
 * `sysinit.target` would pull in (tmpfiles, sysctl, journal flush, hugepages…) are masked inside it, journald keeps
 * its journal in /run, and everything the package or the VM made on the host is removed and checked afterwards.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import type { MeshNodeConfig } from './mesh-node.js';
import { HostLock, MeshNamespace, must, poll, run, sleep, sweepLeftovers, SystemdVm } from './vm-host.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const CLI = path.join(REPO, 'packages/ctl/dist/main.js');
const tag = randomBytes(3).toString('hex');
const NET = `10.${randomInt(200, 250)}.${randomInt(1, 250)}`;
const IP = { istiod: `${NET}.1`, sleep: `${NET}.10`, hello: `${NET}.11`, legacyPod: `${NET}.12`, vm: `${NET}.100` };
const UNIT = 'fedmesh-vm-agent.service';
const LEGACY = 'outbound|80||legacy.vm.svc.cluster.local';

const MANIFESTS = `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: vm}
spec:
  selector: {app: legacy}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy-vm, namespace: vm}
spec:
  selector: {app: legacy, version: vm}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: vm}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 8080, targetPort: 8080}]
`;

const GROUP = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: vm}
spec:
  metadata: {labels: {app: legacy, version: vm}}
  template: {serviceAccount: legacy-sa, ports: {http: 8080}}
  probe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 1}
`;

// The VM's app: answers who it is and who called (x-forwarded-client-cert); /healthz fails while /run/work/unhealthy exists.
const VM_APP = `import http from 'node:http';
import fs from 'node:fs';
const [ip, port] = process.argv.slice(2);
http.createServer((req, res) => {
  if (req.url === '/healthz') {
    const bad = fs.existsSync('/run/work/unhealthy');
    return res.writeHead(bad ? 503 : 200).end(bad ? 'unhealthy' : 'ok');
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ vm: true, xfcc: req.headers['x-forwarded-client-cert'] ?? null }));
}).listen(Number(port), ip);
`;

/** Host paths the package or the VM could leave behind. */
const LEFTOVERS = [
  '/usr/local/bin/fedmesh-vm-agent',
  '/usr/lib/fedmesh-vm-agent',
  '/lib/systemd/system/fedmesh-vm-agent.service',
  '/etc/fedmesh',
  '/var/lib/fedmesh',
  '/etc/systemd/system/multi-user.target.wants/fedmesh-vm-agent.service',
  '/etc/systemd/system/fedmesh-vm-agent.service',
  '/var/lib/systemd/deb-systemd-helper-enabled/fedmesh-vm-agent.service.dsh-also',
  '/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/fedmesh-vm-agent.service',
  '/var/lib/systemd/deb-systemd-helper-masked/fedmesh-vm-agent.service',
  '/var/lib/dpkg/info/fedmesh-vm-agent.list',
  '/var/log/journal',
];
const ACCOUNT_FILES = ['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow'];

let lock: HostLock | undefined;
let base = '';
let work = '';
let meshDir = '';
let deb = '';
let meshNs: MeshNamespace | undefined;
let vm: SystemdVm | undefined;
let mesh: ChildProcess | undefined;
let nextId = 1;
const pending = new Map<number, (v: Record<string, unknown>) => void>();
const accountsBefore = new Map<string, string>();
let devBefore: string[] = [];
const timings: Record<string, number> = {};

function readIfExists(f: string): string {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

/** meshCall sends one command to the mesh runner and waits (bounded) for its answer. */
async function meshCall(cmd: Record<string, unknown>, timeoutMs = 40_000): Promise<Record<string, unknown>> {
  const id = nextId++;
  const child = mesh;
  if (!child?.stdin) throw new Error('mesh runner not running');
  const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`mesh runner: no answer to ${String(cmd['op'])} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    pending.set(id, (v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
  child.stdin.write(`${JSON.stringify({ id, ...cmd })}\n`);
  const r = await answer;
  if (r['ok'] !== true) throw new Error(`mesh runner: ${String(r['error'])}`);
  return r;
}

async function meshGet(pod: string, host: string): Promise<{ status: number; body: string }> {
  const r = await meshCall({ op: 'get', pod, host });
  return { status: Number(r['status']), body: String(r['body']) };
}

function fedmeshInMesh(args: string[]): Promise<string> {
  assert.ok(meshNs);
  return meshNs.exec(process.execPath, [CLI, ...args], 60_000);
}

async function dpkgInVm(args: string[]): Promise<string> {
  assert.ok(vm);
  // dpkg's lock is the host's: wait (bounded) if someone else is installing.
  for (let attempt = 0; ; attempt++) {
    const r = await vm.run(['dpkg', ...args], 120_000);
    if (r.code === 0) return r.stdout;
    if (attempt < 30 && /lock/i.test(r.stderr)) {
      await sleep(2_000);
      continue;
    }
    throw new Error(`dpkg ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
}

/** within waits for `p` or `ms`, whichever is first, and leaves no timer behind (so the process can exit). */
async function within(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]);
  clearTimeout(t);
}

/** packageKnown tells whether dpkg has the package in any state other than not-installed. */
async function packageKnown(): Promise<boolean> {
  const status = (await run('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', 'fedmesh-vm-agent'])).stdout.trim();
  return status !== '' && status !== 'un';
}

async function journal(): Promise<string> {
  assert.ok(vm);
  return (await vm.run(['journalctl', '-u', UNIT, '-o', 'cat', '--no-pager'])).stdout;
}

/**
 * setUp builds everything; `signal` aborts it between steps (the after hook aborts, then waits for it, so nothing is
 * made after cleanup).
 */
async function setUp(signal: AbortSignal): Promise<void> {
  assert.equal(process.getuid?.(), 0, 'this test needs root (namespaces, systemd, dpkg)');
  lock = await HostLock.acquire(path.join(os.tmpdir(), 'fedmesh-vm-e2e.lock'), 600_000, signal);
  // A run killed before its cleanup (SIGKILL) may have left a VM, a namespace, the package or its user.
  const swept = await sweepLeftovers('fm-vm.target', 'fedmesh-vm-agent', 'fedmesh');
  if (swept.length > 0) console.log(`# removed leftovers of an earlier run: ${swept.join(', ')}`);
  signal.throwIfAborted();
  for (const f of ACCOUNT_FILES) accountsBefore.set(f, readIfExists(f));
  devBefore = fs.readdirSync('/dev').sort();
  assert.equal(
    accountsBefore.get('/etc/passwd')?.match(/^fedmesh:/m),
    null,
    'a fedmesh user already exists on this host',
  );

  base = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-vm-systemd-'));
  work = path.join(base, 'work'); // /run/work inside the VM
  meshDir = path.join(base, 'mesh');
  const units = path.join(base, 'units');
  for (const d of [work, meshDir, units]) fs.mkdirSync(d);

  const built = await must('bash', [path.join(REPO, 'deploy/vm/build-deb.sh'), '--no-build', work], 300_000, signal);
  signal.throwIfAborted();
  deb = built.trim().split('\n').at(-1) ?? '';
  assert.match(path.basename(deb), /^fedmesh-vm-agent_\d+\.\d+\.\d+_(all|amd64|arm64)\.deb$/);

  // The VM: a target of its own, the app's unit, and every early-boot unit masked (an empty unit file is masked).
  fs.writeFileSync(path.join(units, 'fm-vm.target'), '[Unit]\nDescription=fedmesh test VM\nDefaultDependencies=no\n');
  fs.writeFileSync(path.join(work, 'vm-app.mjs'), VM_APP);
  fs.writeFileSync(
    path.join(units, 'vm-app.service'),
    `[Unit]\nDescription=the VM's app\n[Service]\nExecStart=${process.execPath} /run/work/vm-app.mjs ${IP.vm} 8080\nRestart=always\nRestartSec=200ms\n`,
  );
  const early = ['/lib/systemd/system/sysinit.target.wants', '/etc/systemd/system/sysinit.target.wants'].flatMap((d) =>
    fs.existsSync(d) ? fs.readdirSync(d) : [],
  );
  for (const u of [...early, 'local-fs.target', 'swap.target', 'systemd-remount-fs.service', 'tmp.mount'])
    if (u !== 'systemd-journald.service') fs.writeFileSync(path.join(units, u), '');

  // The mesh, in its own network namespace.
  signal.throwIfAborted();
  meshNs = await MeshNamespace.create(`fm-mesh-${tag}`);
  await meshNs.exec('ip', ['link', 'add', `fmm${tag}`, 'type', 'veth', 'peer', 'name', `fmv${tag}`]);
  for (const ip of [IP.istiod, IP.sleep, IP.hello, IP.legacyPod])
    await meshNs.exec('ip', ['addr', 'add', `${ip}/24`, 'dev', `fmm${tag}`]);
  await meshNs.exec('ip', ['link', 'set', `fmm${tag}`, 'up']);
  const manifests = path.join(meshDir, 'services.yaml');
  fs.writeFileSync(manifests, MANIFESTS);
  const cfg: MeshNodeConfig = {
    stateDir: meshDir,
    istiodIp: IP.istiod,
    manifests,
    pods: [
      { name: 'sleep-0', ip: IP.sleep, serviceAccount: 'sleep', labels: { app: 'sleep' } },
      { name: 'hello-0', ip: IP.hello, serviceAccount: 'hello', labels: { app: 'hello' }, appPort: 8080 },
      {
        name: 'legacy-pod-0',
        ip: IP.legacyPod,
        serviceAccount: 'legacy-pod',
        labels: { app: 'legacy', version: 'pod' },
        appPort: 8080,
      },
    ],
  };
  mesh = meshNs.spawn(
    process.execPath,
    ['--import', 'tsx', path.join(REPO, 'test/src/vm/mesh-node.ts'), JSON.stringify(cfg)],
    REPO,
  );
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('mesh runner not ready in 90 s')), 90_000);
    readline.createInterface({ input: mesh?.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if ('ready' in m) {
        clearTimeout(t);
        if (m['ready'] === true) resolve();
        else reject(new Error(`mesh runner failed: ${String(m['error'])}`));
      } else pending.get(Number(m['id']))?.(m);
    });
    mesh?.once('exit', (code) => reject(new Error(`mesh runner exited ${code}`)));
  });
  await ready;
  signal.throwIfAborted();

  // The VM: systemd as PID 1; its end of the veth; journald keeping its journal in /run only.
  vm = new SystemdVm(work, units, 'fm-vm.target', path.join(base, 'vm-console.log'));
  await vm.start();
  await meshNs.exec('ip', ['link', 'set', `fmv${tag}`, 'netns', String(vm.pid)]);
  for (const args of [
    ['ip', 'link', 'set', 'lo', 'up'],
    ['ip', 'addr', 'add', `${IP.vm}/24`, 'dev', `fmv${tag}`],
    ['ip', 'link', 'set', `fmv${tag}`, 'up'],
  ])
    await must('nsenter', ['-t', String(vm.pid), '-n', '--', ...args]);
  await vm.must([
    'sh',
    '-c',
    'mkdir -p /run/systemd/journald.conf.d && printf "[Journal]\\nStorage=volatile\\n" > /run/systemd/journald.conf.d/volatile.conf',
  ]);
  await vm.must(['systemctl', 'start', 'systemd-journald.socket', 'systemd-journald.service']);
  await vm.must(['systemctl', 'start', 'vm-app.service']);
}

const closing = new AbortController();
let setup: Promise<void> | undefined;

before(
  async () => {
    setup = setUp(closing.signal);
    await setup;
  },
  { timeout: 900_000 },
);

after(
  async () => {
    // A setup still running (its hook timed out) stops at its next step; wait for it before cleaning up.
    closing.abort();
    await within(
      setup?.catch(() => undefined),
      330_000,
    );
    const errors: string[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await f();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    await attempt('mesh runner', async () => {
      if (mesh && mesh.exitCode === null) {
        mesh.stdin?.end();
        await within(new Promise((r) => mesh?.once('exit', r)), 10_000);
        if (mesh.exitCode === null) mesh.kill('SIGKILL');
      }
    });
    await attempt('VM', async () => vm?.close());
    await attempt('mesh namespace', async () => meshNs?.close());
    await attempt('package', async () => {
      if (await packageKnown()) await must('dpkg', ['--purge', 'fedmesh-vm-agent'], 120_000);
      if (readIfExists('/etc/passwd').match(/^fedmesh:/m)) await run('userdel', ['fedmesh']);
      if (readIfExists('/etc/group').match(/^fedmesh:/m)) await run('groupdel', ['fedmesh']);
    });
    // What the VM's journald makes in the shared /dev (the /dev/log symlink) goes too; nothing else may appear there.
    await attempt('/dev', async () => {
      for (const e of ['log', 'hugepages', 'mqueue'])
        if (!devBefore.includes(e)) fs.rmSync(path.join('/dev', e), { recursive: true, force: true });
      // Other tests on this machine may add to /dev meanwhile: report, do not remove.
      const added = fs.readdirSync('/dev').filter((e) => !devBefore.includes(e));
      if (added.length > 0) console.log(`# new in /dev during this test (not removed): ${added.join(', ')}`);
    });
    if (base) fs.rmSync(base, { recursive: true, force: true });
    lock?.release();
    if (Object.keys(timings).length > 0) console.log(`# VM timings (ms): ${JSON.stringify(timings)}`);
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  },
  { timeout: 600_000 },
);

describe('a VM under systemd, from .deb to purge', () => {
  it('the .deb: Architecture, Depends nodejs (>= 20), conffile, launcher, unit, no sources', async () => {
    const info = await must('dpkg-deb', ['-I', deb]);
    assert.match(info, /^ Package: fedmesh-vm-agent$/m);
    assert.match(info, /^ Depends: nodejs \(>= 20\), passwd$/m);
    assert.match(info, /^ Architecture: (all|amd64|arm64)$/m);
    assert.match(await must('dpkg-deb', ['-f', deb, 'Installed-Size']), /^\d+\n$/);
    const contents = await must('dpkg-deb', ['-c', deb]);
    assert.match(contents, /^-rwxr-xr-x root\/root .* \.\/usr\/local\/bin\/fedmesh-vm-agent$/m);
    assert.match(contents, /^-rw-r--r-- root\/root .* \.\/lib\/systemd\/system\/fedmesh-vm-agent\.service$/m);
    assert.match(contents, / \.\/etc\/fedmesh\/agent\.env$/m);
    assert.match(contents, / \.\/usr\/lib\/fedmesh-vm-agent\/dist\/main\.js$/m);
    assert.match(contents, /\/node_modules\/@grpc\/grpc-js\/package\.json/);
    assert.doesNotMatch(contents, /\.ts$|\.map$/m, 'no sources or maps');
    assert.doesNotMatch(contents, /^\S+ (?!root\/root)/m, 'everything owned by root');
    const ctl = path.join(base, 'control');
    await must('dpkg-deb', ['-e', deb, ctl]);
    assert.equal(fs.readFileSync(path.join(ctl, 'conffiles'), 'utf8'), '/etc/fedmesh/agent.env\n');
  });

  it('installs with dpkg -i inside the VM: user, /etc/fedmesh for its group, unit enabled; systemd-analyze verify prints nothing', async () => {
    assert.ok(vm);
    await dpkgInVm(['-i', `/run/work/${path.basename(deb)}`]);
    assert.match(
      readIfExists('/etc/passwd'),
      /^fedmesh:x:\d+:\d+:fedmesh VM agent:\/var\/lib\/fedmesh:\/usr\/sbin\/nologin$/m,
    );
    assert.equal((await vm.must(['stat', '-c', '%U:%G %a', '/etc/fedmesh'])).trim(), 'root:fedmesh 2750');
    assert.equal((await vm.run(['systemctl', 'is-enabled', UNIT])).stdout.trim(), 'enabled');
    const verify = await vm.run(['systemd-analyze', 'verify', UNIT]);
    assert.equal(`${verify.stdout}${verify.stderr}`, '', 'systemd-analyze verify must print nothing');
    assert.equal(verify.code, 0);
    // Without onboarding files the unit does not start, and does not fail either.
    await vm.must(['systemctl', 'start', UNIT]);
    const s = await vm.show(UNIT, ['ActiveState', 'ConditionResult', 'NRestarts']);
    assert.deepEqual(s, { ActiveState: 'inactive', ConditionResult: 'no', NRestarts: '0' });
  });

  it('fedmesh vm config → /etc/fedmesh → systemctl start: READY=1 once the certificate and first config are in place', async () => {
    assert.ok(vm);
    const wg = path.join(meshDir, 'workload-group.yaml');
    fs.writeFileSync(wg, GROUP);
    await fedmeshInMesh(['apply', '-f', wg, '--state-dir', meshDir]);
    const out = path.join(work, 'vm-files');
    const printed = await fedmeshInMesh([
      'vm',
      'config',
      '--workload-group',
      wg,
      '--cluster',
      'Kubernetes',
      '-o',
      out,
      '--state-dir',
      meshDir,
    ]);
    assert.match(printed, /spiffe:\/\/cluster\.local\/ns\/vm\/sa\/legacy-sa/);
    // As the README says: the files readable by the agent's group, the token by nobody else.
    await vm.must(['sh', '-c', 'install -o root -g fedmesh -m 0640 /run/work/vm-files/* /etc/fedmesh/']);
    const t0 = Date.now();
    await vm.must(['systemctl', 'start', UNIT], 120_000);
    const wall = Date.now() - t0;
    const s = await vm.show(UNIT, [
      'ActiveState',
      'SubState',
      'StatusText',
      'NRestarts',
      'MainPID',
      'InactiveExitTimestampMonotonic',
      'ActiveEnterTimestampMonotonic',
      'WatchdogUSec',
      'Type',
      'NotifyAccess',
    ]);
    assert.equal(s['ActiveState'], 'active', JSON.stringify(s));
    assert.equal(s['Type'], 'notify');
    assert.equal(s['NotifyAccess'], 'all');
    assert.equal(s['WatchdogUSec'], '20s');
    assert.match(
      s['StatusText'] ?? '',
      new RegExp(`^serving as spiffe://cluster\\.local/ns/vm/sa/legacy-sa at ${IP.vm.replace(/\./g, '\\.')}`),
    );
    timings['systemctl start → READY=1 (systemd clock)'] = Math.round(
      (Number(s['ActiveEnterTimestampMonotonic']) - Number(s['InactiveExitTimestampMonotonic'])) / 1000,
    );
    timings['systemctl start → READY=1 (wall, systemctl returns)'] = wall;
    assert.equal(
      (await vm.must(['stat', '-c', '%U', `/proc/${s['MainPID']}`])).trim(),
      'fedmesh',
      'runs as the fedmesh user',
    );
    assert.equal(
      (await vm.must(['stat', '-c', '%U %a', '/var/lib/fedmesh/workload-certificate.json'])).trim(),
      'fedmesh 600',
    );
    assert.equal((await vm.must(['stat', '-c', '%a', '/var/lib/fedmesh'])).trim(), '700');
    // journald takes the agent's stdout asynchronously: wait (bounded) for the ready line, then check the order.
    const log = await poll('the agent’s ready line in the journal', 10_000, async () => {
      const j = await journal();
      return j.includes('VM ready: certificate in place') ? j : undefined;
    });
    assert.match(log, /requesting a certificate from istiod at .* with the bootstrap token/);
    const persisted = log.indexOf('certificate persisted');
    const readyLine = log.indexOf('VM ready: certificate in place, first configuration accepted');
    assert.ok(persisted >= 0 && readyLine > persisted, 'READY only after the certificate is persisted');
    const entries = (await meshCall({ op: 'entries' }))['entries'] as {
      spec: { address: string; labels: Record<string, string> };
    }[];
    const entry = entries.find((e) => e.spec.address === IP.vm);
    assert.deepEqual(entry?.spec.labels, { app: 'legacy', version: 'vm' });
  });

  it('a pod calls the VM’s service over mTLS, and the VM calls a mesh service by name', async () => {
    assert.ok(vm);
    await meshCall(
      {
        op: 'waitEndpoint',
        pod: 'sleep-0',
        cluster: 'outbound|80||legacy-vm.vm.svc.cluster.local',
        address: IP.vm,
        healthy: true,
        timeoutMs: 30_000,
      },
      40_000,
    );
    const toVm = await meshGet('sleep-0', 'legacy-vm.vm.svc.cluster.local');
    assert.equal(toVm.status, 200, toVm.body);
    const answer = JSON.parse(toVm.body) as { vm: boolean; xfcc: string };
    assert.equal(answer.vm, true);
    assert.match(
      answer.xfcc,
      /URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/sleep/,
      'the VM’s proxy verified the pod’s certificate',
    );
    const curl = await vm.runNet([
      'curl',
      '-sS',
      '--max-time',
      '10',
      '-x',
      `http://${IP.vm}:15001`,
      'http://hello.vm.svc.cluster.local:8080/',
    ]);
    assert.equal(curl.code, 0, curl.stderr);
    assert.deepEqual(JSON.parse(curl.stdout), { pod: 'hello-0' });
    const callers = (await meshCall({ op: 'callers', pod: 'hello-0' }))['callers'] as string[];
    assert.match(
      callers.at(-1) ?? '',
      /URI=spiffe:\/\/cluster\.local\/ns\/vm\/sa\/legacy-sa/,
      'the pod saw the VM’s identity',
    );
  });

  it('a failing probe takes the VM out of the endpoints (EDS UNHEALTHY); recovery brings it back', async () => {
    assert.ok(vm);
    fs.writeFileSync(path.join(work, 'unhealthy'), '');
    const failedAt = Date.now();
    const removed = await meshCall(
      { op: 'waitEndpoint', pod: 'sleep-0', cluster: LEGACY, address: IP.vm, healthy: false, timeoutMs: 30_000 },
      40_000,
    );
    timings['failing probe → UNHEALTHY in a pod’s EDS (period 1 s, failureThreshold 1)'] =
      Number(removed['at']) - failedAt;
    const bodies: string[] = [];
    for (let i = 0; i < 10; i++) bodies.push((await meshGet('sleep-0', 'legacy.vm.svc.cluster.local')).body);
    assert.ok(
      bodies.every((b) => b === '{"pod":"legacy-pod-0"}'),
      `only the pod answers: ${bodies.join(' ')}`,
    );
    assert.match((await vm.show(UNIT, ['StatusText']))['StatusText'] ?? '', /readiness probe failing: HTTP 503/);
    fs.rmSync(path.join(work, 'unhealthy'));
    const healedAt = Date.now();
    const back = await meshCall(
      { op: 'waitEndpoint', pod: 'sleep-0', cluster: LEGACY, address: IP.vm, healthy: true, timeoutMs: 30_000 },
      40_000,
    );
    timings['probe passing again → HEALTHY in a pod’s EDS'] = Number(back['at']) - healedAt;
    const seen = new Set<string>();
    for (let i = 0; i < 10 && seen.size < 2; i++)
      seen.add((await meshGet('sleep-0', 'legacy.vm.svc.cluster.local')).body.startsWith('{"vm":true') ? 'vm' : 'pod');
    assert.ok(seen.has('vm'), 'the VM takes traffic again');
  });

  it('kill -9 of the agent: systemd restarts it and it renews with its persisted certificate, no token', async () => {
    assert.ok(vm);
    await vm.must(['rm', '/etc/fedmesh/istio-token']);
    const before = await vm.show(UNIT, ['MainPID', 'NRestarts']);
    const issuedBefore = readIfExists(path.join(meshDir, 'logs', 'istiod.log')).split('\n').length;
    const killedAt = Date.now();
    await vm.must(['kill', '-9', before['MainPID'] ?? '']);
    await poll(
      'systemd to restart the agent',
      60_000,
      async () => {
        const s = await vm?.show(UNIT, ['NRestarts', 'ActiveState', 'MainPID']);
        return s &&
          Number(s['NRestarts']) === Number(before['NRestarts']) + 1 &&
          s['ActiveState'] === 'active' &&
          s['MainPID'] !== before['MainPID']
          ? s
          : undefined;
      },
      20,
    );
    timings['kill -9 → READY=1 again'] = Date.now() - killedAt;
    await poll(
      'the VM serving pods again',
      60_000,
      async () => {
        const r = await meshGet('sleep-0', 'legacy-vm.vm.svc.cluster.local').catch(() => undefined);
        return r?.status === 200 && r.body.startsWith('{"vm":true') ? r : undefined;
      },
      20,
    );
    timings['kill -9 → serving pod requests again'] = Date.now() - killedAt;
    const issued = readIfExists(path.join(meshDir, 'logs', 'istiod.log'))
      .split('\n')
      .slice(issuedBefore - 1)
      .filter((l) => l.includes('"certificate issued"') && l.includes('/sa/legacy-sa'))
      .map((l) => (JSON.parse(l) as { authenticator: string }).authenticator);
    assert.deepEqual(issued, ['certificate'], 'renewed with its current certificate, not a token');
    await poll('the renewal in the journal', 10_000, async () =>
      /renewing the persisted certificate .* \(no token needed\)/.test(await journal()) ? true : undefined,
    );
    assert.equal((await vm.run(['test', '-e', '/etc/fedmesh/istio-token'])).code, 1, 'the token is gone');
  });

  it('WATCHDOG=1 arrives every third of WatchdogSec; a hung agent is killed by the watchdog and restarted', async () => {
    assert.ok(vm);
    // A shorter watchdog for this test only (a drop-in in the VM's /run); the shipped unit says 20 s.
    await vm.must([
      'sh',
      '-c',
      `mkdir -p /run/systemd/system/${UNIT}.d && printf '[Service]\\nWatchdogSec=4s\\nTimeoutAbortSec=2s\\n' > /run/systemd/system/${UNIT}.d/watchdog.conf`,
    ]);
    await vm.must(['systemctl', 'daemon-reload']);
    await vm.must(['systemctl', 'restart', UNIT], 120_000);
    // Pings after this run's READY=1 only: the previous run's last ping lingers, and systemd also stamps the
    // watchdog when the service becomes active.
    const started = Number((await vm.show(UNIT, ['ActiveEnterTimestampMonotonic']))['ActiveEnterTimestampMonotonic']);
    const pings = new Set<number>();
    await poll(
      'three watchdog pings',
      20_000,
      async () => {
        const t = Number((await vm?.show(UNIT, ['WatchdogTimestampMonotonic']))?.['WatchdogTimestampMonotonic']);
        if (t > started) pings.add(t);
        return pings.size >= 3 ? true : undefined;
      },
      100,
    );
    const ts = [...pings].sort((a, b) => a - b);
    const gaps = ts.slice(1).map((t, i) => (t - (ts[i] ?? 0)) / 1000);
    assert.ok(
      gaps.every((g) => g > 1_000 && g < 3_000),
      `pings every third of WatchdogSec (1.33 s), well before the 4 s timeout: ${gaps.join(', ')} ms`,
    );
    const s = await vm.show(UNIT, ['MainPID', 'NRestarts']);
    const stoppedAt = Date.now();
    await vm.must(['kill', '-STOP', s['MainPID'] ?? '']);
    const results = new Set<string>();
    await poll(
      'the watchdog to restart the hung agent',
      60_000,
      async () => {
        const now = await vm?.show(UNIT, ['NRestarts', 'ActiveState', 'Result']);
        results.add(now?.['Result'] ?? '');
        return now && Number(now['NRestarts']) > Number(s['NRestarts']) && now['ActiveState'] === 'active'
          ? now
          : undefined;
      },
      50,
    );
    timings['SIGSTOP → watchdog restart → READY=1 (WatchdogSec=4s)'] = Date.now() - stoppedAt;
    assert.ok(
      results.has('watchdog'),
      `systemd ended the hung agent for its watchdog (Result: ${[...results].join(', ')})`,
    );
    await vm.must(['rm', '-r', `/run/systemd/system/${UNIT}.d`]);
    await vm.must(['systemctl', 'daemon-reload']);
  });

  it('systemctl stop, then dpkg --purge leaves nothing behind: files, unit, user, group, state', async () => {
    assert.ok(vm);
    await vm.must(['systemctl', 'stop', UNIT], 60_000);
    const entries = (await meshCall({ op: 'entries' }))['entries'] as {
      spec: { address: string };
      metadata: { annotations?: Record<string, string> };
    }[];
    assert.ok(
      entries.find((e) => e.spec.address === IP.vm)?.metadata.annotations?.['istio.io/disconnectedAt'],
      'istiod saw the VM leave',
    );
    await dpkgInVm(['--purge', 'fedmesh-vm-agent']);
    const left = LEFTOVERS.filter((p) => fs.existsSync(p));
    assert.deepEqual(left, []);
    assert.equal(await packageKnown(), false, 'dpkg no longer knows the package');
    for (const f of ACCOUNT_FILES) assert.equal(readIfExists(f), accountsBefore.get(f), `${f} is as before`);
    assert.equal((await vm.run(['systemctl', 'cat', UNIT])).code, 1, 'the unit is gone from systemd');
  });
});
