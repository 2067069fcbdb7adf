/**
 * Transparent capture end to end, in network namespaces this test creates: istiod runs in this process on the
 * host side of a private /24; a `sleep` pod and a `reviews` pod each get their own namespace with Istio's
 * iptables rules (`fedmesh iptables`) and a sidecar in REDIRECT mode running as uid 1337. curl, which knows nothing
 * of the mesh, calls `http://reviews:9080/` (the name maps to the virtual IP istiod gave the Service) and the
 * reviews app sees the caller's SPIFFE ID, which its sidecar set after verifying the caller's certificate. An `ext`
 * pod outside the mesh (no rules, no sidecar) serves plain HTTP on 9080, an HTTP port of the mesh: requests to it
 * by IP take the sleep sidecar's HTTP chain and its catch-all virtual host, `allow_any` (PassthroughCluster) or,
 * once the mesh config file says REGISTRY_ONLY, `block_all` (502).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseResource } from '@fedmesh/api';
import { Istiod } from '@fedmesh/istiod';
import { loadOriginalDst } from '@fedmesh/proxy';
import { PROXY_ENTRY, PROXY_NODE_FLAGS } from '@fedmesh/ctl';
import { CLI } from '../cli.js';
import { SAMPLES, testLogger } from '../harness.js';
import { captureUnavailable, PodNetwork, type CommandResult, type Pod } from './pod-network.js';

const PROXY_UID = 1337;
const REVIEWS = 'reviews.default.svc.cluster.local';
const unavailable = await captureUnavailable();

/** EXT_APP: a plain HTTP server outside the mesh answering `external-http <path>` (argv: port, host). */
const EXT_APP = `require('http').createServer((q, r) => r.end('external-http ' + q.url)).listen(Number(process.argv[1]), process.argv[2]);`;

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** natCount sums the packet counters of a `nat` chain's rules in a pod (how many connections it redirected). */
async function natCount(net: PodNetwork, pod: Pod, chain: string): Promise<number> {
  const r = await net.exec(pod, 'iptables', ['-t', 'nat', '-L', chain, '-v', '-n', '-x'], 30_000);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .slice(2)
    .filter((l) => l.includes('REDIRECT'))
    .reduce((n, l) => n + Number(l.trim().split(/\s+/)[0] ?? 0), 0);
}

describe('transparent capture (iptables REDIRECT, SO_ORIGINAL_DST)', { skip: unavailable }, () => {
  let dir: string;
  let net: PodNetwork | undefined;
  let istiod: Istiod | undefined;
  let sleep: Pod;
  let reviews: Pod;
  let ext: Pod;
  let vip: string;
  let meshFile: string;
  const logs = (name: string): string => path.join(dir, `${name}.log`);

  before(async () => {
    loadOriginalDst(); // the addon must be built (pnpm install builds it); fail here rather than in a sidecar log
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-capture-'));
    fs.chmodSync(dir, 0o755);
    const serviceCidr = `10.96.${10 + Math.floor(Math.random() * 240)}.0/24`;
    net = await PodNetwork.create({ serviceCidr });
    meshFile = path.join(dir, 'mesh.yaml');
    fs.writeFileSync(meshFile, '');
    istiod = new Istiod({
      meshConfigFile: meshFile,
      host: net.hostIp,
      xdsPlainPort: 15010,
      xdsTlsPort: 15012,
      monitoringPort: 15014,
      stateDir: path.join(dir, 'istiod'),
      configFiles: [path.join(SAMPLES, 'bookinfo.yaml')],
      serviceCidr,
      log: testLogger(dir, 'istiod'),
    });
    await istiod.start();
    vip = istiod.discovery.pushContext().service(REVIEWS)?.addresses?.[0] ?? '';
    assert.match(vip, /^10\.96\./, 'istiod gave reviews a virtual IP from the service CIDR');

    sleep = await net.addPod('sleep', { reviews: vip, [`reviews.default.svc.cluster.local`]: vip });
    reviews = await net.addPod('reviews');
    ext = await net.addPod('ext');
    net.spawn(ext, [process.execPath, '-e', EXT_APP, '9080', ext.ip], logs('ext.app'));
    const rootCert = path.join(dir, 'root-cert.pem');
    fs.writeFileSync(rootCert, istiod.ca.rootCertsPem.join(''), { mode: 0o644 });
    const pods = [
      { pod: sleep, name: 'sleep-0', sa: 'sleep', labels: { app: 'sleep' }, ports: [] as number[] },
      {
        pod: reviews,
        name: 'reviews-v1-0',
        sa: 'bookinfo-reviews',
        labels: { app: 'reviews', version: 'v1' },
        ports: [9080],
      },
    ];
    for (const p of pods) {
      istiod.store.apply(
        [
          parseResource({
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: {
              name: p.name,
              namespace: 'default',
              labels: p.labels,
              ownerReferences: [{ kind: 'Deployment', name: p.name.replace(/-\d+$/, '') }],
            },
            spec: {
              serviceAccountName: p.sa,
              containers: [{ name: 'app', image: 'app', ports: p.ports.map((c) => ({ containerPort: c })) }],
            },
            status: { phase: 'Running', podIP: p.pod.ip, conditions: [{ type: 'Ready', status: 'True' }] },
          }),
        ],
        'test',
      );
      // istio-iptables first (the init container), then the app and the sidecar.
      const rules: CommandResult = await net.exec(
        p.pod,
        process.execPath,
        [CLI, 'iptables', '--proxy-uid', String(PROXY_UID)],
        60_000,
      );
      assert.equal(rules.code, 0, rules.stderr);
      if (p.ports.length > 0)
        net.spawn(
          p.pod,
          [process.execPath, CLI, 'echo', '--host', p.pod.ip, '--port', ...p.ports.map(String)].concat([
            '--service',
            'reviews',
            '--version',
            'v1',
            '--pod',
            p.name,
            '--service-account',
            p.sa,
          ]),
          logs(`${p.name}.app`),
        );
      const token = path.join(dir, `${p.name}.token`);
      fs.writeFileSync(token, istiod.tokens.mint({ namespace: 'default', serviceAccount: p.sa }), { mode: 0o600 });
      fs.chownSync(token, PROXY_UID, PROXY_UID);
      net.spawn(
        p.pod,
        [
          process.execPath,
          ...PROXY_NODE_FLAGS,
          PROXY_ENTRY,
          'proxy',
          '--ip',
          p.pod.ip,
          '--pod',
          p.name,
          '--namespace',
          'default',
        ]
          .concat(['--service-account', p.sa, '--workload', p.name.replace(/-\d+$/, '')])
          .concat(['--labels', JSON.stringify(p.labels), '--discovery', `${net.hostIp}:15012`])
          .concat(['--root-cert', rootCert, '--token-file', token, '--interception-mode', 'REDIRECT']),
        logs(`${p.name}.proxy`),
        PROXY_UID,
      );
    }
    for (const p of pods)
      await until(`${p.name} sidecar ready`, 90_000, async () => {
        const r = await net!.exec(p.pod, 'curl', [
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          `http://${p.pod.ip}:15000/ready`,
        ]);
        return r.stdout === '200';
      });
    await until('reviews app listening', 60_000, async () => {
      const r = await net!.exec(reviews, 'curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        `http://${reviews.ip}:9080/`,
      ]);
      return r.stdout === '200';
    });
    // The sidecar is ready with listeners and clusters; endpoints (EDS) may still be on their way.
    await until('the sleep sidecar to have reviews endpoints', 60_000, async () => {
      const r = await net!.exec(sleep, 'curl', ['-s', `http://${sleep.ip}:15000/clusters`]);
      return r.stdout.includes(`outbound|9080||${REVIEWS}::${reviews.ip}:9080`);
    });
  });

  after(async () => {
    await net?.close();
    await istiod?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an app that knows nothing of the mesh calls http://reviews:9080/ and reviews sees its SPIFFE ID', async () => {
    const outBefore = await natCount(net!, sleep, 'ISTIO_REDIRECT');
    const inBefore = await natCount(net!, reviews, 'ISTIO_IN_REDIRECT');
    const r = await net!.exec(sleep, 'curl', ['-sS', '-m', '30', 'http://reviews:9080/ratings/0'], 45_000);
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const body = JSON.parse(r.stdout) as { service: string; pod: string; callerPrincipal: string | null; path: string };
    assert.equal(body.service, 'reviews');
    assert.equal(body.pod, 'reviews-v1-0');
    assert.equal(body.path, '/ratings/0');
    assert.equal(body.callerPrincipal, 'spiffe://cluster.local/ns/default/sa/sleep');
    // The sleep pod's connection to the virtual IP went to 15001, and the sidecar's connection to the reviews pod's
    // port 9080 was redirected to 15006 there: the original destination port chose the mTLS filter chain.
    assert.ok((await natCount(net!, sleep, 'ISTIO_REDIRECT')) > outBefore, 'outbound connection was captured');
    assert.ok((await natCount(net!, reviews, 'ISTIO_IN_REDIRECT')) > inBefore, 'inbound connection was captured');
  });

  it('the virtual IP picks the route when the Host header names no service', async () => {
    const r = await net!.exec(
      sleep,
      'curl',
      ['-sS', '-m', '30', '-H', 'host: nobody.example', `http://${vip}:9080/`],
      45_000,
    );
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const body = JSON.parse(r.stdout) as { service: string; callerPrincipal: string | null };
    assert.equal(body.service, 'reviews');
    assert.equal(body.callerPrincipal, 'spiffe://cluster.local/ns/default/sa/sleep');
  });

  it('a plaintext client outside the mesh is redirected to the mTLS listener and never reaches the app', async () => {
    const inBefore = await natCount(net!, reviews, 'ISTIO_IN_REDIRECT');
    // uid 1337 is not captured on the way out, so this plaintext request goes straight to the reviews pod's 9080,
    // where the inbound redirect hands it to 15006, which accepts only mutual TLS (STRICT by default). Had it
    // reached the echo app, the app would have answered 200.
    const r = await net!.exec(
      sleep,
      'setpriv',
      [
        ...[`--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups'],
        ...['curl', '-sS', '-m', '30', `http://${reviews.ip}:9080/`],
      ],
      45_000,
    );
    assert.notEqual(r.code, 0, `plaintext request was answered: ${r.stdout}`);
    assert.equal(r.stdout, '');
    assert.ok((await natCount(net!, reviews, 'ISTIO_IN_REDIRECT')) > inBefore, 'inbound connection was captured');
  });

  it('a peer that sends no SNI is served by the filter chain its original destination port picks', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const cert = await istiod!.ca.signWorkload({
      publicKey,
      identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'tester' },
    });
    const files = { cert: path.join(dir, 'tester.pem'), key: path.join(dir, 'tester-key.pem') };
    fs.writeFileSync(files.cert, cert.chainPem.join(''), { mode: 0o644 });
    fs.writeFileSync(files.key, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.chownSync(files.key, PROXY_UID, PROXY_UID);
    // curl sends no SNI to an IP address, so no `server_names` chain matches; only the chain whose
    // `destination_port` is 9080 (the port the client dialled before the redirect to 15006) can accept it.
    const r = await net!.exec(
      sleep,
      'setpriv',
      [
        ...[`--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups'],
        ...[
          'curl',
          '-sS',
          '-m',
          '30',
          '-k',
          '--cert',
          files.cert,
          '--key',
          files.key,
          `https://${reviews.ip}:9080/nosni`,
        ],
      ],
      45_000,
    );
    assert.equal(r.code, 0, `mTLS request failed: ${r.stderr}`);
    const body = JSON.parse(r.stdout) as { service: string; path: string; callerPrincipal: string | null };
    assert.equal(body.service, 'reviews');
    assert.equal(body.path, '/nosni');
    assert.equal(body.callerPrincipal, 'spiffe://cluster.local/ns/default/sa/tester');
  });

  /** curlStatus runs curl in the sleep pod and returns `<status> <body>`. */
  async function curlStatus(url: string): Promise<string> {
    const r = await net!.exec(sleep, 'curl', ['-sS', '-m', '30', '-w', ' %{http_code}', url], 45_000);
    assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
    const at = r.stdout.lastIndexOf(' ');
    return `${r.stdout.slice(at + 1)} ${r.stdout.slice(0, at)}`;
  }

  it('HTTP to a host outside the mesh: allow_any passes it through; REGISTRY_ONLY answers 502 (block_all)', async () => {
    // ALLOW_ANY (the default): the sidecar's allow_any route sends it to PassthroughCluster, the original destination.
    assert.equal(await curlStatus(`http://${ext.ip}:9080/out`), '200 external-http /out');
    await until('an access log line for allow_any with the original destination as upstream host', 10_000, async () =>
      fs
        .readFileSync(logs('sleep-0.proxy'), 'utf8')
        .split('\n')
        .some((l) => l.includes('"upstream_cluster":"PassthroughCluster"') && l.includes(`"${ext.ip}:9080"`)),
    );
    fs.writeFileSync(meshFile, 'outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n');
    try {
      await until('REGISTRY_ONLY to block ext', 30_000, async () =>
        (await curlStatus(`http://${ext.ip}:9080/out`)).startsWith('502 '),
      );
      // Mesh services still route, by name and by virtual IP.
      const byName = await curlStatus('http://reviews:9080/still');
      assert.match(byName, /^200 /);
      assert.equal((JSON.parse(byName.slice(4)) as { service: string }).service, 'reviews');
      assert.match(await curlStatus(`http://${vip}:9080/`), /^200 /);
    } finally {
      fs.writeFileSync(meshFile, '');
    }
    await until(
      'ALLOW_ANY to let ext through again',
      30_000,
      async () => (await curlStatus(`http://${ext.ip}:9080/again`)) === '200 external-http /again',
    );
  });
});
