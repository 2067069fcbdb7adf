/**
 * Raw TCP and TLS passthrough under transparent capture, end to end, in network namespaces this test creates:
 * istiod runs in this process; a `sleep` pod and a `tcp-echo` pod each have Istio's iptables rules and a REDIRECT
 * sidecar running as uid 1337; an `ext` pod outside the mesh (no rules, no sidecar) runs a TCP and a TLS server.
 * The clients are plain Node and curl, which know nothing of the mesh:
 * - `tcp-echo:9000` (the Service's virtual IP, port named `tcp`) goes through the sleep sidecar's VIP chain, over
 *   mTLS to the echo pod's port 9000, whose inbound redirect hands it to the sidecar's TCP chain for that port; the
 *   echo sidecar counts it in `istio_tcp_*` with `connection_security_policy="mutual_tls"` and the sleep SPIFFE ID;
 * - an AuthorizationPolicy DENY on port 9000 closes it before the app is dialled;
 * - `ext`'s TCP server and its TLS server (curl verifies ext's own certificate) are reached through the
 *   PassthroughCluster (ORIGINAL_DST): the sidecar dials the destination the app dialled.
 * With FEDMESH_CAPTURE_BENCH=1 the last test prints connection setup times through capture and direct.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseManifests, parseResource } from '@fedmesh/api';
import { Istiod } from '@fedmesh/istiod';
import { loadOriginalDst } from '@fedmesh/proxy';
import { PROXY_ENTRY, PROXY_NODE_FLAGS } from '@fedmesh/ctl';
import { CLI } from '../cli.js';
import { testLogger } from '../harness.js';
import { captureUnavailable, PodNetwork, type Pod } from './pod-network.js';

const PROXY_UID = 1337;
const TCP_ECHO = 'tcp-echo.default.svc.cluster.local';
const SLEEP_ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const unavailable = await captureUnavailable();

const SERVICES = `apiVersion: v1
kind: Service
metadata: { name: tcp-echo, namespace: default }
spec:
  selector: { app: tcp-echo }
  ports: [{ name: tcp, port: 9000 }]
`;

/** ECHO_APP: a TCP server answering `<tag>:<bytes read>` once the client half-closes (argv: tag, port, host). */
const ECHO_APP = `const net = require('net');
const [tag, port, host] = process.argv.slice(1);
net.createServer({ allowHalfOpen: true }, (s) => {
  let got = '';
  s.on('data', (d) => (got += d));
  s.on('end', () => s.end(tag + ':' + got));
  s.on('error', () => s.destroy());
}).listen(Number(port), host);`;

/** TLS_APP: an HTTPS server with its own certificate (argv: key, cert, port, host). */
const TLS_APP = `const fs = require('fs');
const [key, cert, port, host] = process.argv.slice(1);
require('https').createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (q, r) => r.end('external-tls'))
  .listen(Number(port), host);`;

/**
 * CLIENT: an unmodified app. argv: host, port, message, count. Sends `message`, half-closes and prints what came
 * back (an empty answer when the connection is closed on it), `count` times in a row; with count > 1 it prints one
 * JSON line of the setup times (ms from connect() to the whole answer) instead.
 */
const CLIENT = `const net = require('net');
const [host, port, msg, count] = process.argv.slice(1);
const n = Number(count || 1);
const once = () => new Promise((resolve) => {
  const t0 = process.hrtime.bigint();
  let got = '';
  const s = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => s.end(msg));
  const timer = setTimeout(() => s.destroy(), 20000);
  s.on('data', (d) => (got += d));
  s.on('error', () => undefined);
  s.on('close', () => { clearTimeout(timer); resolve({ got, ms: Number(process.hrtime.bigint() - t0) / 1e6 }); });
});
(async () => {
  const times = [];
  let last = '';
  for (let i = 0; i < n; i++) { const r = await once(); last = r.got; times.push(r.ms); if (n > 1 && !r.got) process.exit(2); }
  process.stdout.write(n > 1 ? JSON.stringify(times) : last);
})();`;

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

describe(
  'transparent capture of raw TCP and TLS (VIP chains, mTLS, network RBAC, PassthroughCluster)',
  {
    skip: unavailable,
  },
  () => {
    let dir: string;
    let net: PodNetwork | undefined;
    let istiod: Istiod | undefined;
    let sleep: Pod;
    let echo: Pod;
    let ext: Pod;
    let vip: string;
    const logs = (name: string): string => path.join(dir, `${name}.log`);

    /** client runs the unmodified client in the sleep pod, as `uid` when given (1337 is never captured). */
    async function client(host: string, port: number, msg: string, count = 1, uid?: number): Promise<string> {
      const asUser = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
      const argv = [...asUser, process.execPath, '-e', CLIENT, host, String(port), msg, String(count)];
      const r = await net!.exec(sleep, argv[0] ?? '', argv.slice(1), 120_000);
      assert.equal(r.code, 0, `client failed: ${r.stderr}`);
      return r.stdout;
    }

    /** stats returns a sidecar's Prometheus text (admin 15000 is excluded from capture). */
    async function stats(pod: Pod): Promise<string> {
      const r = await net!.exec(pod, 'curl', ['-sS', `http://${pod.ip}:15000/stats/prometheus`]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    }

    function sum(text: string, metric: string, labels: Record<string, string>): number {
      return text
        .split('\n')
        .filter(
          (l) => l.startsWith(`${metric}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
        )
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    }

    async function startSidecar(pod: Pod, name: string, sa: string, labels: Record<string, string>, ports: number[]) {
      istiod!.store.apply(
        [
          parseResource({
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: {
              name,
              namespace: 'default',
              labels,
              ownerReferences: [{ kind: 'Deployment', name: name.replace(/-\d+$/, '') }],
            },
            spec: {
              serviceAccountName: sa,
              containers: [{ name: 'app', image: 'app', ports: ports.map((c) => ({ containerPort: c })) }],
            },
            status: { phase: 'Running', podIP: pod.ip, conditions: [{ type: 'Ready', status: 'True' }] },
          }),
        ],
        'test',
      );
      const rules = await net!.exec(pod, process.execPath, [CLI, 'iptables', '--proxy-uid', String(PROXY_UID)], 60_000);
      assert.equal(rules.code, 0, rules.stderr);
      const token = path.join(dir, `${name}.token`);
      fs.writeFileSync(token, istiod!.tokens.mint({ namespace: 'default', serviceAccount: sa }), { mode: 0o600 });
      fs.chownSync(token, PROXY_UID, PROXY_UID);
      net!.spawn(
        pod,
        [process.execPath, ...PROXY_NODE_FLAGS, PROXY_ENTRY, 'proxy', '--ip', pod.ip, '--pod', name]
          .concat(['--namespace', 'default', '--service-account', sa, '--workload', name.replace(/-\d+$/, '')])
          .concat(['--labels', JSON.stringify(labels), '--discovery', `${net!.hostIp}:15012`])
          .concat(['--root-cert', path.join(dir, 'root-cert.pem'), '--token-file', token])
          .concat(['--interception-mode', 'REDIRECT']),
        logs(`${name}.proxy`),
        PROXY_UID,
      );
    }

    before(async () => {
      loadOriginalDst();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-capture-tcp-'));
      fs.chmodSync(dir, 0o755);
      const serviceCidr = `10.96.${10 + Math.floor(Math.random() * 240)}.0/24`;
      net = await PodNetwork.create({ serviceCidr });
      const config = path.join(dir, 'services.yaml');
      fs.writeFileSync(config, SERVICES);
      istiod = new Istiod({
        host: net.hostIp,
        xdsPlainPort: 15010,
        xdsTlsPort: 15012,
        monitoringPort: 15014,
        stateDir: path.join(dir, 'istiod'),
        configFiles: [config],
        serviceCidr,
        log: testLogger(dir, 'istiod'),
      });
      await istiod.start();
      vip = istiod.discovery.pushContext().service(TCP_ECHO)?.addresses?.[0] ?? '';
      assert.match(vip, /^10\.96\./, 'istiod gave tcp-echo a virtual IP');
      fs.writeFileSync(path.join(dir, 'root-cert.pem'), istiod.ca.rootCertsPem.join(''), { mode: 0o644 });

      ext = await net.addPod('ext');
      sleep = await net.addPod('sleep', { 'tcp-echo': vip, [TCP_ECHO]: vip, 'ext.example': ext.ip });
      echo = await net.addPod('tcp-echo');
      // ext: outside the mesh, a TCP server and a TLS server with its own certificate for ext.example.
      const key = path.join(dir, 'ext-key.pem');
      const cert = path.join(dir, 'ext-cert.pem');
      const ssl = await net.exec(ext, 'openssl', [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
        ...['-keyout', key, '-out', cert, '-subj', '/CN=ext.example', '-addext', 'subjectAltName=DNS:ext.example'],
      ]);
      assert.equal(ssl.code, 0, ssl.stderr);
      fs.chmodSync(key, 0o644);
      net.spawn(ext, [process.execPath, '-e', ECHO_APP, 'external', '7070', ext.ip], logs('ext.tcp'));
      net.spawn(ext, [process.execPath, '-e', TLS_APP, key, cert, '8443', ext.ip], logs('ext.tls'));
      net.spawn(echo, [process.execPath, '-e', ECHO_APP, 'tcp-echo-0', '9000', echo.ip], logs('tcp-echo-0.app'));
      await startSidecar(sleep, 'sleep-0', 'sleep', { app: 'sleep' }, []);
      await startSidecar(echo, 'tcp-echo-0', 'tcp-echo', { app: 'tcp-echo' }, [9000]);
      for (const p of [sleep, echo])
        await until(`${p.name} sidecar ready`, 90_000, async () => {
          const r = await net!.exec(p, 'curl', [
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            `http://${p.ip}:15000/ready`,
          ]);
          return r.stdout === '200';
        });
      await until('the sleep sidecar to have tcp-echo endpoints', 60_000, async () => {
        const r = await net!.exec(sleep, 'curl', ['-s', `http://${sleep.ip}:15000/clusters`]);
        return r.stdout.includes(`outbound|9000||${TCP_ECHO}::${echo.ip}:9000`);
      });
    });

    after(async () => {
      await net?.close();
      await istiod?.stop();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('an unmodified client reaches tcp-echo by name over mTLS; the echo sidecar counts the sleep SPIFFE ID', async () => {
      const before = sum(await stats(echo), 'istio_tcp_connections_opened_total', {
        reporter: 'destination',
        connection_security_policy: 'mutual_tls',
        source_principal: SLEEP_ID,
      });
      assert.equal(await client('tcp-echo', 9000, 'hello'), 'tcp-echo-0:hello');
      assert.equal(await client(vip, 9000, 'by-vip'), 'tcp-echo-0:by-vip');
      await until('the echo sidecar to count two mutual_tls connections from sleep', 15_000, async () => {
        const text = await stats(echo);
        const labels = {
          reporter: 'destination',
          connection_security_policy: 'mutual_tls',
          source_principal: SLEEP_ID,
        };
        return (
          sum(text, 'istio_tcp_connections_opened_total', labels) >= before + 2 &&
          sum(text, 'istio_tcp_received_bytes_total', { ...labels, destination_service: TCP_ECHO }) > 0
        );
      });
    });

    it('an AuthorizationPolicy DENY on port 9000 closes the connection before the app is dialled', async () => {
      const { resources, errors } = parseManifests(
        `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-sleep, namespace: default }
spec:
  selector: { matchLabels: { app: tcp-echo } }
  action: DENY
  rules: [{ from: [{ source: { principals: [cluster.local/ns/default/sa/sleep] } }], to: [{ operation: { ports: ["9000"] } }] }]
`,
        { file: 'deny.yaml' },
      );
      assert.deepEqual(errors, []);
      istiod!.store.apply(resources, 'test');
      try {
        await until(
          'the echo sidecar to refuse sleep',
          30_000,
          async () => (await client('tcp-echo', 9000, 'x')) === '',
        );
        assert.ok(sum(await stats(echo), 'envoy_network_rbac_denied', {}) > 0, 'counted by network RBAC');
        // The access log is buffered (flushed every 200 ms).
        await until('the denial in the echo sidecar access log', 10_000, async () =>
          fs
            .readFileSync(logs('tcp-echo-0.proxy'), 'utf8')
            .includes('rbac_access_denied_matched_policy[ns[default]-policy[deny-sleep]-rule[0]]'),
        );
      } finally {
        istiod!.store.remove(['AuthorizationPolicy/default/deny-sleep']);
      }
      await until(
        'sleep to be served again',
        30_000,
        async () => (await client('tcp-echo', 9000, 'y')) === 'tcp-echo-0:y',
      );
    });

    it('a TCP server outside the mesh is reached through the PassthroughCluster (original destination)', async () => {
      assert.equal(await client(ext.ip, 7070, 'out'), 'external:out');
      await until('the sleep sidecar to count a PassthroughCluster connection', 15_000, async () => {
        const n = sum(await stats(sleep), 'istio_tcp_connections_opened_total', {
          reporter: 'source',
          destination_service: 'PassthroughCluster',
        });
        return n > 0;
      });
      await until('an access log line with the original destination as upstream host', 10_000, async () =>
        fs
          .readFileSync(logs('sleep-0.proxy'), 'utf8')
          .split('\n')
          .some((l) => l.includes('"upstream_cluster":"PassthroughCluster"') && l.includes(`"${ext.ip}:7070"`)),
      );
    });

    it("TLS to a host outside the mesh passes through untouched: curl verifies ext's own certificate", async () => {
      const r = await net!.exec(
        sleep,
        'curl',
        ['-sS', '-m', '30', '--cacert', path.join(dir, 'ext-cert.pem'), 'https://ext.example:8443/'],
        45_000,
      );
      assert.equal(r.code, 0, `curl failed: ${r.stderr}`);
      assert.equal(r.stdout, 'external-tls');
      // It went through the sidecar (not around it): the passthrough connection to ext:8443 is access-logged.
      await until('the passthrough TLS connection in the sleep sidecar access log', 10_000, async () =>
        fs
          .readFileSync(logs('sleep-0.proxy'), 'utf8')
          .split('\n')
          .some((l) => l.includes('"upstream_cluster":"PassthroughCluster"') && l.includes(`"${ext.ip}:8443"`)),
      );
    });

    it(
      'connection setup figures (FEDMESH_CAPTURE_BENCH=1)',
      { skip: process.env.FEDMESH_CAPTURE_BENCH !== '1' },
      async (t) => {
        const n = Number(process.env.FEDMESH_CAPTURE_BENCH_N ?? 200);
        const pct = (xs: number[], p: number): number => {
          const s = [...xs].sort((a, b) => a - b);
          return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
        };
        const runs: [string, () => Promise<string>][] = [
          ['direct (uid 1337, not captured) to ext', () => client(ext.ip, 7070, 'b', n, PROXY_UID)],
          ['captured, PassthroughCluster to ext', () => client(ext.ip, 7070, 'b', n)],
          ['captured, VIP chain + mTLS to tcp-echo', () => client(vip, 9000, 'b', n)],
        ];
        for (const [name, run] of runs) {
          const times = JSON.parse(await run()) as number[];
          assert.equal(times.length, n);
          t.diagnostic(`${name}: n=${n} p50=${pct(times, 50).toFixed(2)} ms p90=${pct(times, 90).toFixed(2)} ms`);
        }
      },
    );
  },
);
