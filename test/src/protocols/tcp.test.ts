/**
 * Raw TCP and TLS passthrough through real sidecars. A `tcp-…` port gets a per-port outbound listener on the
 * client sidecar; bytes go over mTLS to the server sidecar's inbound tcp_proxy chain and on to the app, half-close
 * included, and both sidecars count them in `istio_tcp_*` (AuthorizationPolicy on TCP: tcp-authz.test.ts). TLS
 * ports (ServiceEntry `protocol: TLS`) pass the app's TLS through by SNI: curl verifies the destination's own
 * certificate, an unknown SNI is refused, and a VirtualService `tls` route redirects by `sniHosts`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import type tls from 'node:tls';
import { after, before, test } from 'node:test';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import { accessLogs, apply, closeAll, remove, startMesh } from '../resilience/helpers.js';
import { counter, inboundHandshakes, outboundHandshakes, run, serviceYaml } from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let echoPod: TestPod;
let echo: { server: net.Server; connections: number; bytes: number };
const tlsApps: { name: string; server: https.Server; sni: string[]; certFile: string }[] = [];
const ECHO_SVC = 'tcp-echo.default.svc.cluster.local';

function externalYaml(subnet: number): string {
  const se = (host: string, app: string, ip: string): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${app}, namespace: default }
spec:
  hosts: [${host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 8443, name: tls, protocol: TLS }]
  workloadSelector: { labels: { app: ${app} } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${app}, namespace: default }
spec: { address: ${ip}, labels: { app: ${app} } }
---
`;
  return (
    se('api.external.test', 'ext-api', `127.0.${subnet}.201`) +
    se('other.external.test', 'ext-other', `127.0.${subnet}.202`)
  );
}

async function startEcho(ip: string): Promise<typeof echo> {
  const out = { server: undefined as unknown as net.Server, connections: 0, bytes: 0 };
  out.server = net.createServer({ allowHalfOpen: true }, (s) => {
    out.connections++;
    s.on('data', (c: Buffer) => (out.bytes += c.length));
    s.on('error', () => s.destroy());
    s.pipe(s); // echo; the client's half-close ends our side after the last byte
  });
  await new Promise<void>((resolve, reject) => {
    out.server.once('error', reject);
    out.server.listen(9000, ip, () => resolve());
  });
  return out;
}

async function startTlsApp(name: string, host: string, ip: string): Promise<(typeof tlsApps)[number]> {
  const dir = fs.mkdtempSync(path.join(mesh.dir, `${name}-`));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  const r = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-keyout',
    key,
    '-out',
    cert,
    '-subj',
    `/CN=${host}`,
    '-addext',
    `subjectAltName=DNS:${host}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const app = { name, sni: [] as string[], certFile: cert, server: undefined as unknown as https.Server };
  app.server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    req.resume();
    res.end(`${name}\n`);
  });
  app.server.on('secureConnection', (s: tls.TLSSocket) => app.sni.push(String(s.servername)));
  await new Promise<void>((resolve, reject) => {
    app.server.once('error', reject);
    app.server.listen(8443, ip, () => resolve());
  });
  tlsApps.push(app);
  return app;
}

before(async () => {
  mesh = await startMesh(serviceYaml('tcp-echo', 'tcp', 9000, 9000));
  apply(mesh, externalYaml(mesh.subnet));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  echoPod = await mesh.addPod({ name: 'tcp-echo-0', serviceAccount: 'tcp-echo', labels: { app: 'tcp-echo' } });
  echo = await startEcho(echoPod.ip);
  await startTlsApp('api', 'api.external.test', `127.0.${mesh.subnet}.201`);
  await startTlsApp('other', 'other.external.test', `127.0.${mesh.subnet}.202`);
  await waitUntil(
    () =>
      client.sidecar.listeners.names().includes(`${client.ip}_9000`) &&
      client.sidecar.listeners.names().includes(`${client.ip}_8443`) &&
      (client.sidecar.clusters.get(`outbound|9000||${ECHO_SVC}`)?.endpoints.length ?? 0) > 0 &&
      (client.sidecar.clusters.get('outbound|8443||api.external.test')?.endpoints.length ?? 0) > 0,
    20_000,
    'the TCP and TLS listeners and their endpoints at the client',
  );
});

after(async () => {
  for (const a of tlsApps) {
    a.server.closeAllConnections();
    await new Promise<void>((r) => a.server.close(() => r()));
  }
  await new Promise<void>((r) => (echo ? echo.server.close(() => r()) : r()));
  await closeAll(mesh, []);
});

/** tcpRoundTrip connects to `host:port`, writes `payload` in chunks, half-closes, and collects the answer until the end. */
function tcpRoundTrip(host: string, port: number, payload: Buffer): Promise<{ data: Buffer; closedEarly: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(), 20_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.once('connect', () => {
      for (let off = 0; off < payload.length; off += 16_384) s.write(payload.subarray(off, off + 16_384));
      s.end();
    });
    s.once('close', (hadError) => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closedEarly: hadError });
    });
  });
}

test('raw TCP: bytes echo through both sidecars over mTLS, half-close included, counted in istio_tcp_*', async () => {
  const payload = randomBytes(256 * 1024);
  const out0 = await outboundHandshakes(client);
  const in0 = await inboundHandshakes(echoPod);
  const conns0 = echo.connections;
  const r = await tcpRoundTrip(client.ip, 9000, payload);
  assert.equal(r.data.length, payload.length);
  assert.ok(r.data.equals(payload), 'every byte came back in order');
  assert.equal(echo.connections - conns0, 1);
  assert.equal((await outboundHandshakes(client)) - out0, 1, 'the client sidecar originated mTLS');
  assert.equal((await inboundHandshakes(echoPod)) - in0, 1, 'the server sidecar terminated it');
  const src = { reporter: 'source', destination_service: ECHO_SVC };
  const dst = {
    reporter: 'destination',
    destination_service: ECHO_SVC,
    source_principal: 'spiffe://cluster.local/ns/default/sa/client',
  };
  await waitUntil(
    async () =>
      (await counter(client, 'istio_tcp_received_bytes_total', src)) >= payload.length &&
      (await counter(client, 'istio_tcp_sent_bytes_total', src)) >= payload.length &&
      (await counter(echoPod, 'istio_tcp_received_bytes_total', dst)) >= payload.length &&
      (await counter(echoPod, 'istio_tcp_sent_bytes_total', dst)) >= payload.length,
    10_000,
    'TCP bytes counted by both sidecars',
  );
  assert.ok((await counter(client, 'istio_tcp_connections_opened_total', src)) >= 1);
  assert.ok((await counter(echoPod, 'istio_tcp_connections_opened_total', dst)) >= 1);
  assert.equal(await counter(client, 'istio_tcp_received_bytes_total', src), payload.length);
  const log = accessLogs(mesh, 'tcp-echo-0').find((l) => (l as unknown as { protocol: string }).protocol === 'tcp');
  assert.equal(log?.downstream_peer_principal, 'spiffe://cluster.local/ns/default/sa/client');
});

function curlTls(host: string, extra: string[] = []): ReturnType<typeof run> {
  return run('curl', [
    '-s',
    '--max-time',
    '15',
    '--resolve',
    `${host}:8443:${client.ip}`,
    ...extra,
    `https://${host}:8443/`,
  ]);
}

test('TLS passthrough by SNI: curl verifies each destination’s own certificate through the sidecar', async () => {
  const [api, other] = tlsApps as [(typeof tlsApps)[number], (typeof tlsApps)[number]];
  const a = await curlTls('api.external.test', ['--cacert', api.certFile]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, 'api\n');
  const o = await curlTls('other.external.test', ['--cacert', other.certFile]);
  assert.equal(o.code, 0, o.stderr);
  assert.equal(o.stdout, 'other\n');
  assert.deepEqual([api.sni.at(-1), other.sni.at(-1)], ['api.external.test', 'other.external.test']);
  const labels = { reporter: 'source', destination_service: 'api.external.test' };
  await waitUntil(
    async () => (await counter(client, 'istio_tcp_connections_opened_total', labels)) >= 1,
    10_000,
    'the passthrough connection counted',
  );
  assert.ok((await counter(client, 'istio_tcp_sent_bytes_total', labels)) > 0);
  // An SNI no chain names is refused, and reaches neither destination.
  const before = api.sni.length + other.sni.length;
  const u = await curlTls('unknown.external.test', ['-k']);
  assert.notEqual(u.code, 0);
  assert.equal(api.sni.length + other.sni.length, before);
});

test('a VirtualService tls route sends an SNI to another destination (sniHosts match)', async () => {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api-to-other, namespace: default }
spec:
  hosts: [api.external.test]
  tls:
  - match: [{ port: 8443, sniHosts: [api.external.test] }]
    route: [{ destination: { host: other.external.test, port: { number: 8443 } } }]
`,
  );
  try {
    await waitUntil(
      async () => (await curlTls('api.external.test', ['-k'])).stdout === 'other\n',
      20_000,
      'api.external.test routed to other',
    );
    const other = tlsApps[1];
    assert.equal(other?.sni.at(-1), 'api.external.test', 'the ClientHello reached the other destination unchanged');
  } finally {
    remove(mesh, 'VirtualService/default/api-to-other');
  }
});
