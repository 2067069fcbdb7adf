import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { ClusterManager } from '../cluster-manager.js';
import { ClusterLoadAssignmentSchema, ClusterSchema } from '../xds/envoy-schemas.js';
import { blankTcpLabels, TcpMetrics } from '../tcp/tcp-metrics.js';
import { GatewayListenerManager } from './gateway-listeners.js';
import { encodeAny, TypeUrl } from '@fedmesh/api/xds';
import { GatewayListenerSchema, GatewayListenerType, matchFilterChain } from './gateway-schema.js';

const CERTS = path.resolve(import.meta.dirname, '../../../../../shared/fixtures/istio-samples/certs');
const SNI = 'outbound_.9080_.v1_.reviews.default.svc.cluster.local';
const OTHER = 'outbound_.9080_._.ratings.default.svc.cluster.local';

interface Material {
  key: string;
  chain: string;
  root: string;
}

async function workload(ca: CertificateAuthority, sa: string): Promise<Material> {
  const k = await generateKeyPair('ec-p256');
  const issued = await ca.signWorkload({
    publicKey: k.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: sa },
  });
  const chain = Array.isArray(issued.chainPem) ? issued.chainPem.join('') : String(issued.chainPem);
  return { key: k.privateKeyPem, chain, root: ca.rootCertsPem.join('') };
}

function listen(server: net.Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function assignment(name: string, ports: number[]) {
  return ClusterLoadAssignmentSchema.parse({
    cluster_name: name,
    endpoints: [
      {
        lb_endpoints: ports.map((p) => ({
          endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: p } } },
        })),
      },
    ],
  });
}

/** closed resolves when a socket closes, with whether any data arrived before. */
function closed(s: net.Socket): Promise<{ data: number; ms: number }> {
  const t0 = Date.now();
  let data = 0;
  s.on('data', (c: Buffer) => (data += c.length));
  s.on('error', () => undefined);
  return new Promise((r) => s.on('close', () => r({ data, ms: Date.now() - t0 })));
}

describe('GatewayListenerManager: TLS AUTO_PASSTHROUGH by SNI', () => {
  let server: tls.Server; // the destination sidecar's mTLS listener stand-in
  let tap: net.Server; // a TCP hop between the gateway and the sidecar that records what the gateway sends
  const tapped: Buffer[] = [];
  let serverPort = 0;
  let tapPort = 0;
  let deadPort = 0;
  let client: Material;
  let sidecar: Material;
  const seenPeers: string[] = [];
  const registry = new Registry();
  const metrics = new TcpMetrics(registry);
  const clusters = new ClusterManager({});
  let gw: GatewayListenerManager;
  let gwPort = 0;
  const log = pino({ level: 'silent' });

  before(async () => {
    const ca = await CertificateAuthority.loadPluggedCa(CERTS, { trustDomain: 'cluster.local' });
    client = await workload(ca, 'sleep');
    sidecar = await workload(ca, 'bookinfo-reviews');
    server = tls.createServer({
      key: sidecar.key,
      cert: sidecar.chain,
      ca: sidecar.root,
      requestCert: true,
      rejectUnauthorized: true,
    });
    server.on('secureConnection', (s: tls.TLSSocket) => {
      const uri = (s.getPeerCertificate().subjectaltname ?? '').replace(/^URI:/, '');
      seenPeers.push(`${s.servername || ''} ${uri}`);
      s.on('data', (d: Buffer) => {
        const text = d.toString();
        if (text.startsWith('big:')) s.write(Buffer.alloc(Number(text.slice(4)), 0x61));
        else s.write(`echo:${text}`);
      });
      s.on('error', () => undefined);
    });
    serverPort = await listen(server);
    tap = net.createServer((down) => {
      const up = net.connect(serverPort, '127.0.0.1');
      down.on('data', (c: Buffer) => tapped.push(c));
      down.pipe(up).pipe(down);
      down.on('error', () => up.destroy());
      up.on('error', () => down.destroy());
    });
    tapPort = await listen(tap);
    const dead = net.createServer();
    deadPort = await listen(dead);
    await new Promise<void>((r) => dead.close(() => r()));

    const edsCluster = (name: string) =>
      ClusterSchema.parse({
        name,
        type: 'EDS',
        eds_cluster_config: { service_name: name, eds_config: { ads: {} } },
        connect_timeout: { seconds: 1 },
      });
    clusters.setClusters(new Map([SNI, OTHER].map((n) => [n, edsCluster(n)])));
    clusters.setAssignments(
      new Map([
        [SNI, assignment(SNI, [tapPort])],
        [OTHER, assignment(OTHER, [deadPort])],
      ]),
    );
    gw = new GatewayListenerManager({
      log,
      clusters,
      metrics,
      baseLabels: () => ({ ...blankTcpLabels(), reporter: 'source', source_workload: 'istio-eastwestgateway' }),
      limits: { helloTimeoutMs: 300 },
    });
    const probe = net.createServer();
    gwPort = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    await gw.apply(new Map([['gw', listenerConfig(gwPort, 60_000)]]));
  });

  after(async () => {
    gw.close();
    clusters.close();
    server.close();
    tap.close();
  });

  function listenerConfig(port: number, idleMs: number) {
    const chain = (name: string) => ({
      name,
      filter_chain_match: { server_names: [name] },
      filters: [
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
            stat_prefix: name,
            cluster: name,
            idle_timeout: { seconds: Math.floor(idleMs / 1000), nanos: (idleMs % 1000) * 1e6 },
          },
        },
      ],
    });
    return GatewayListenerSchema.parse({
      name: 'gw',
      address: { socket_address: { address: '127.0.0.1', port_value: port } },
      listener_filters: [
        {
          name: 'envoy.filters.listener.tls_inspector',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
          },
        },
      ],
      filter_chains: [chain(SNI), chain(OTHER)],
    });
  }

  function dial(servername: string): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: gwPort,
        servername,
        key: client.key,
        cert: client.chain,
        ca: client.root,
        checkServerIdentity: () => undefined,
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  }

  function exchange(s: tls.TLSSocket, msg: string, want: number): Promise<string> {
    return new Promise((resolve, reject) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= want) {
          s.off('data', onData);
          resolve(got);
        }
      };
      s.on('data', onData);
      s.once('error', reject);
      s.write(msg);
    });
  }

  test('mTLS passes through end to end: each side sees the other, the gateway forwards only ciphertext', async () => {
    const s = await dial(SNI);
    const peer = s.getPeerCertificate().subjectaltname;
    assert.equal(peer, 'URI:spiffe://cluster.local/ns/default/sa/bookinfo-reviews');
    const secret = 'GET /secret-marker-7f3a HTTP/1.1';
    assert.equal(await exchange(s, secret, 5 + secret.length), `echo:${secret}`);
    s.end();
    assert.ok(seenPeers.includes(`${SNI} spiffe://cluster.local/ns/default/sa/sleep`), seenPeers.join(','));
    const wire = Buffer.concat(tapped);
    assert.ok(wire.length > 0);
    assert.equal(wire.includes(Buffer.from('secret-marker')), false, 'the gateway forwarded plaintext');
    assert.equal(wire.readUInt8(0), 22, 'the first byte upstream is the client\u2019s own ClientHello record');
  });

  test('byte counters match what crossed, in both directions', async () => {
    const before = await counts();
    const s = await dial(SNI);
    const reply = await exchange(s, 'big:200000', 200_000);
    assert.equal(reply.length, 200_000);
    await new Promise<void>((r) => {
      s.once('close', () => r());
      s.end();
    });
    await waitFor(() => gw.activeSessions() === 0, 2_000, 'session closed');
    const after = await counts();
    const sent = after.sent - before.sent;
    const received = after.received - before.received;
    assert.ok(sent >= 200_000 && sent < 210_000, `sent ${sent}`);
    assert.ok(received > 200 && received < 5_000, `received ${received}`);
    assert.equal(after.opened - before.opened, 1);
  });

  async function counts(): Promise<{ sent: number; received: number; opened: number }> {
    const sum = async (c: { get(): Promise<{ values: { value: number }[] }> }) =>
      (await c.get()).values.reduce((n, v) => n + v.value, 0);
    return {
      sent: await sum(metrics.sentBytes),
      received: await sum(metrics.receivedBytes),
      opened: await sum(metrics.opened),
    };
  }

  async function rejected(reason: string): Promise<number> {
    const v = (await metrics.rejected.get()).values.find((x) => x.labels.reason === reason);
    return v?.value ?? 0;
  }

  test('an SNI no filter chain matches is closed without a byte and counted', async () => {
    const before = await rejected('no_filter_chain');
    await assert.rejects(dial('outbound_.9080_._.unknown.default.svc.cluster.local'));
    assert.equal(await rejected('no_filter_chain'), before + 1);
  });

  test('not TLS, and silence, are closed: at once, and after the ClientHello timeout', async () => {
    const http = net.connect(gwPort, '127.0.0.1');
    const c1 = closed(http);
    http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const r1 = await c1;
    assert.equal(r1.data, 0);
    assert.ok((await rejected('not_tls')) >= 1);
    const silent = net.connect(gwPort, '127.0.0.1');
    const r2 = await closed(silent);
    assert.equal(r2.data, 0);
    assert.ok(r2.ms >= 250 && r2.ms < 3_000, `closed after ${r2.ms} ms`);
    assert.ok((await rejected('timeout')) >= 1);
  });

  test('an upstream that refuses the connection closes the downstream (flag UF)', async () => {
    await assert.rejects(dial(OTHER));
    const v = (await metrics.closed.get()).values.find((x) => x.labels.response_flags === 'UF');
    assert.ok(v && v.value >= 1);
  });

  test('max_connect_attempts tries another host after a refused one', async () => {
    clusters.setAssignments(new Map([[SNI, assignment(SNI, [deadPort, tapPort])]]));
    const cfg = listenerConfig(gwPort, 60_000);
    for (const fc of cfg.filter_chains) fc.filters[0]!.typed_config.max_connect_attempts = { value: 2 };
    await gw.apply(new Map([['gw', cfg]]));
    for (let i = 0; i < 6; i++) {
      const s = await dial(SNI);
      assert.equal(await exchange(s, 'hi', 7), 'echo:hi');
      s.destroy();
    }
    clusters.setAssignments(new Map([[SNI, assignment(SNI, [tapPort])]]));
  });

  test('an idle connection is closed after idle_timeout', async () => {
    await gw.apply(new Map([['gw', listenerConfig(gwPort, 300)]]));
    const s = await dial(SNI);
    const t0 = Date.now();
    await new Promise<void>((r) => s.once('close', () => r()));
    const ms = Date.now() - t0;
    assert.ok(ms >= 250 && ms < 3_000, `closed after ${ms} ms`);
    await gw.apply(new Map([['gw', listenerConfig(gwPort, 60_000)]]));
  });
});

describe('matchFilterChain', () => {
  const chain = (names: string[] | undefined) =>
    GatewayListenerSchema.parse({
      name: 'l',
      address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
      listener_filters: [
        {
          name: 'envoy.filters.listener.tls_inspector',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
          },
        },
      ],
      filter_chains: [
        {
          ...(names ? { filter_chain_match: { server_names: names } } : {}),
          filters: [
            {
              name: 'envoy.filters.network.tcp_proxy',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                stat_prefix: 's',
                cluster: names?.[0] ?? 'default',
              },
            },
          ],
        },
      ],
    }).filter_chains[0]!;

  test('exact beats the longest wildcard, which beats a catch-all; no SNI only matches a catch-all', () => {
    const exact = chain(['a.b.local']);
    const wide = chain(['*.local']);
    const narrow = chain(['*.b.local']);
    const all = chain(undefined);
    const chains = [all, wide, narrow, exact];
    assert.equal(matchFilterChain(chains, 'A.B.LOCAL'), exact);
    assert.equal(matchFilterChain(chains, 'x.b.local'), narrow);
    assert.equal(matchFilterChain(chains, 'x.local'), wide);
    assert.equal(matchFilterChain(chains, 'x.other'), all);
    assert.equal(matchFilterChain(chains, undefined), all);
    assert.equal(matchFilterChain([exact, wide], undefined), undefined);
  });
});

describe('GatewayListenerSchema', () => {
  test('refuses a chain that would terminate TLS, an HTTP manager, and duplicate server names, with field paths', () => {
    const base = {
      name: 'l',
      address: { socket_address: { address: '127.0.0.1', port_value: 15443 } },
      listener_filters: [
        {
          name: 'envoy.filters.listener.tls_inspector',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
          },
        },
      ],
    };
    const tcp = {
      name: 'envoy.filters.network.tcp_proxy',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
        stat_prefix: 's',
        cluster: 'c',
      },
    };
    const withTls = GatewayListenerSchema.safeParse({
      ...base,
      filter_chains: [{ filters: [tcp], transport_socket: { name: 'envoy.transport_sockets.tls' } }],
    });
    assert.equal(withTls.success, false);
    assert.match(JSON.stringify(withTls.error?.issues), /transport_socket/);
    const dup = GatewayListenerSchema.safeParse({
      ...base,
      filter_chains: [
        { filter_chain_match: { server_names: ['a.local'] }, filters: [tcp] },
        { filter_chain_match: { server_names: ['A.local'] }, filters: [tcp] },
      ],
    });
    assert.equal(dup.success, false);
    assert.match(JSON.stringify(dup.error?.issues), /already matched by filter_chains\[0\]/);
    const weighted = GatewayListenerSchema.safeParse({
      ...base,
      filter_chains: [{ filters: [{ ...tcp, typed_config: { ...tcp.typed_config, weighted_clusters: {} } }] }],
    });
    assert.equal(weighted.success, false);
  });
});

describe('GatewayListenerType', () => {
  test("NACKs a sidecar's HTTP listener with the field path (decoded from protobuf)", () => {
    const any = encodeAny(TypeUrl.Listener, {
      name: 'virtualOutbound',
      address: { socket_address: { address: '127.0.0.1', port_value: 15001 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'x',
                rds: { route_config_name: 'outbound', config_source: { ads: {} } },
                http_filters: [
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    const r = GatewayListenerType.decode(any);
    assert.equal(r.name, 'virtualOutbound');
    assert.ok('error' in r);
    assert.match(r.error, /filter_chains\[0\]\.filters\[0\]/);
    assert.match(r.error, /listener_filters/);
  });
});
