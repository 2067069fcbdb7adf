/**
 * Filter chain selection as Envoy orders it (destination port, destination IP by longest prefix, SNI exact then
 * longest wildcard, transport protocol; no fall-back to a less specific level), the decoder's refusals (bad or
 * unsupported match criteria, ambiguous chains, ORIGINAL_DST clusters the proxy cannot serve), and a real
 * listener with the `original_dst` listener filter: a connection's original destination picks a tcp_proxy chain by
 * port and address, passes TLS through by SNI, reaches an ORIGINAL_DST cluster's host (the destination itself), or
 * falls to a cluster with no host and is closed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import type { SocketAddress } from './capture/original-dst.js';
import { ClusterManager } from './cluster-manager.js';
import { duplicateFilterChainMatch, findFilterChain, type FilterChainFacts } from './filter-chain-match.js';
import { ListenerManager } from './listener-manager.js';
import { ProxyMetrics } from './metrics.js';
import type { EnvoyCluster, EnvoyFilterChain } from './xds/envoy-schemas.js';
import { ClusterType, ListenerType } from './xds/resource-types.js';

type Match = NonNullable<EnvoyFilterChain['filter_chain_match']>;

function chain(name: string, m: Match = {}): { name: string; chain: EnvoyFilterChain } {
  return { name, chain: { name, filter_chain_match: m } as EnvoyFilterChain };
}
const range = (address_prefix: string, len: number): NonNullable<Match['prefix_ranges']>[number] => ({
  address_prefix,
  prefix_len: { value: len },
});
const facts = (f: Partial<FilterChainFacts>): FilterChainFacts => ({ transportProtocol: 'raw_buffer', ...f });

describe("findFilterChain: Envoy's FilterChainMatch order", () => {
  const chains = [
    chain('vip-a', { destination_port: { value: 9000 }, prefix_ranges: [range('10.96.0.10', 32)] }),
    chain('net', { destination_port: { value: 9000 }, prefix_ranges: [range('10.96.0.0', 16)] }),
    chain('port-9000', { destination_port: { value: 9000 } }),
    chain('port-443-api', { destination_port: { value: 443 }, server_names: ['api.example.com'] }),
    chain('port-443-wild', { destination_port: { value: 443 }, server_names: ['*.example.com'] }),
    chain('port-443-wider', { destination_port: { value: 443 }, server_names: ['*.com'] }),
    chain('port-443', { destination_port: { value: 443 } }),
    chain('tls-any', { transport_protocol: 'tls' }),
    chain('catch-all'),
  ];
  const pick = (f: Partial<FilterChainFacts>): string | undefined => findFilterChain(chains, facts(f))?.name;

  it('the destination port comes first: chains naming it, else only chains naming no port', () => {
    assert.equal(pick({ destinationPort: 9000, destinationIp: '10.1.2.3' }), 'port-9000');
    assert.equal(pick({ destinationPort: 7000, destinationIp: '10.96.0.10' }), 'catch-all');
    assert.equal(pick({ destinationPort: undefined }), 'catch-all');
  });

  it('then the destination address: the longest prefix that contains it, else chains without ranges', () => {
    assert.equal(pick({ destinationPort: 9000, destinationIp: '10.96.0.10' }), 'vip-a');
    assert.equal(pick({ destinationPort: 9000, destinationIp: '10.96.7.7' }), 'net');
    assert.equal(pick({ destinationPort: 9000, destinationIp: '::ffff:10.96.0.10' }), 'vip-a', 'IPv4-mapped');
    assert.equal(pick({ destinationPort: 9000, destinationIp: '10.97.0.10' }), 'port-9000');
    assert.equal(pick({ destinationPort: 9000, destinationIp: 'fd00::1' }), 'port-9000', 'other family');
  });

  it('then the SNI: exact, else the longest matching wildcard, else chains without names', () => {
    const tlsFacts = { destinationPort: 443, transportProtocol: 'tls' as const };
    assert.equal(pick({ ...tlsFacts, serverName: 'API.example.com' }), 'port-443-api');
    assert.equal(pick({ ...tlsFacts, serverName: 'www.example.com' }), 'port-443-wild');
    assert.equal(pick({ ...tlsFacts, serverName: 'www.other.com' }), 'port-443-wider');
    assert.equal(pick({ ...tlsFacts, serverName: 'example.org' }), 'port-443');
    assert.equal(pick({ ...tlsFacts }), 'port-443', 'no SNI');
  });

  it('then the transport protocol; no level falls back to a less specific one', () => {
    assert.equal(pick({ destinationPort: 15001, transportProtocol: 'tls' }), 'tls-any');
    assert.equal(pick({ destinationPort: 15001, transportProtocol: 'raw_buffer' }), 'catch-all');
    const strict = [
      chain('p9080-tls', { destination_port: { value: 9080 }, transport_protocol: 'tls' }),
      chain('sni', { server_names: ['a'] }),
      chain('any'),
    ];
    // Port 9080 has a chain, so the port-less chains are out even though the 9080 chain refuses plaintext.
    assert.equal(findFilterChain(strict, facts({ destinationPort: 9080 })), undefined);
    assert.equal(
      findFilterChain(strict, facts({ destinationPort: 9080, transportProtocol: 'tls' }))?.name,
      'p9080-tls',
    );
    assert.equal(findFilterChain(strict, facts({ destinationPort: 9090, serverName: 'a' }))?.name, 'sni');
    // A range that does not contain the address leaves only the chains without ranges at that port.
    const ranged = [chain('vip', { destination_port: { value: 5432 }, prefix_ranges: [range('10.96.0.1', 32)] })];
    assert.equal(findFilterChain(ranged, facts({ destinationPort: 5432, destinationIp: '10.96.0.2' })), undefined);
  });

  it('duplicateFilterChainMatch finds chains that match the same connections, as Envoy refuses them', () => {
    const c = (m: Match): EnvoyFilterChain => ({ filter_chain_match: m }) as EnvoyFilterChain;
    assert.equal(duplicateFilterChainMatch(chains.map((x) => x.chain)), undefined);
    assert.match(
      duplicateFilterChainMatch([c({ server_names: ['a', 'b'] }), c({ server_names: ['B'] })]) ?? '',
      /^filter_chains\[1\]\.filter_chain_match: matches the same connections as filter_chains\[0\]$/,
    );
    assert.ok(
      duplicateFilterChainMatch([
        c({ destination_port: { value: 1 }, prefix_ranges: [range('10.0.0.7', 24)] }),
        c({ destination_port: { value: 1 }, prefix_ranges: [range('10.0.0.0', 24)] }),
      ]),
      '10.0.0.7/24 is the range 10.0.0.0/24',
    );
    assert.equal(duplicateFilterChainMatch([c({}), c({ transport_protocol: 'tls' })]), undefined);
    assert.ok(duplicateFilterChainMatch([c({}), c({})]));
  });
});

const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const tcpProxy = (cluster: string): object => ({
  name: 'envoy.filters.network.tcp_proxy',
  typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: cluster, cluster },
});
const ORIGINAL_DST = {
  name: 'envoy.filters.listener.original_dst',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' },
};
const TLS_INSPECTOR = {
  name: 'envoy.filters.listener.tls_inspector',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
};

function decodeListener(l: object): ReturnType<typeof ListenerType.decode> {
  return ListenerType.decode(encodeAny(TypeUrl.Listener, l));
}
function decodeCluster(c: object): ReturnType<typeof ClusterType.decode> {
  return ClusterType.decode(encodeAny(TypeUrl.Cluster, c));
}
function errorOf(r: { error?: string } | object): string {
  return 'error' in r ? String(r.error) : '';
}

describe('decoding: what the proxy cannot match or serve is NACKed with the field path', () => {
  const listener = (chains: object[]): object => ({
    name: 'virtualOutbound',
    address: { socket_address: { address: '0.0.0.0', port_value: 15001 } },
    listener_filters: [ORIGINAL_DST],
    filter_chains: chains,
  });

  it('prefix_ranges must be addresses with a prefix length the family allows', () => {
    const bad = decodeListener(
      listener([{ filter_chain_match: { prefix_ranges: [{ address_prefix: 'vip' }] }, filters: [tcpProxy('x')] }]),
    );
    assert.match(errorOf(bad), /filter_chains\[0\]\.filter_chain_match\.prefix_ranges\[0\]\.address_prefix/);
    const long = decodeListener(
      listener([
        {
          filter_chain_match: { prefix_ranges: [{ address_prefix: '10.0.0.1', prefix_len: { value: 33 } }] },
          filters: [tcpProxy('x')],
        },
      ]),
    );
    assert.match(errorOf(long), /prefix_ranges\[0\]\.prefix_len: must be ≤ 32/);
  });

  it('unsupported criteria and ambiguous chains are refused, never ignored', () => {
    const alpn = decodeListener(
      listener([{ filter_chain_match: { application_protocols: ['istio'] }, filters: [tcpProxy('x')] }]),
    );
    assert.match(errorOf(alpn), /filter_chains\[0\]\.filter_chain_match: .*application_protocols/);
    const dup = decodeListener(
      listener([
        { filter_chain_match: { destination_port: { value: 9000 } }, filters: [tcpProxy('a')] },
        { filter_chain_match: { destination_port: { value: 9000 } }, filters: [tcpProxy('b')] },
      ]),
    );
    assert.match(errorOf(dup), /filter_chains\[1\]\.filter_chain_match: matches the same connections/);
  });

  it('ORIGINAL_DST clusters need CLUSTER_PROVIDED, and take no hosts and no TLS', () => {
    const ok = decodeCluster({
      name: 'PassthroughCluster',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: { seconds: 10 },
    });
    assert.ok('value' in ok, errorOf(ok));
    assert.match(
      errorOf(decodeCluster({ name: 'p', type: 'ORIGINAL_DST', connect_timeout: { seconds: 1 } })),
      /lb_policy: lb_policy CLUSTER_PROVIDED goes with type ORIGINAL_DST/,
    );
    assert.match(
      errorOf(
        decodeCluster({
          name: 'p',
          type: 'ORIGINAL_DST',
          lb_policy: 'CLUSTER_PROVIDED',
          load_assignment: { cluster_name: 'p', endpoints: [] },
        }),
      ),
      /type: an ORIGINAL_DST cluster takes no load_assignment/,
    );
    assert.match(
      errorOf(
        decodeCluster({
          name: 'p',
          type: 'ORIGINAL_DST',
          lb_policy: 'CLUSTER_PROVIDED',
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
              common_tls_context: {},
            },
          },
        }),
      ),
      /transport_socket: TLS to an ORIGINAL_DST cluster is not implemented/,
    );
  });
});

/** A real listener with original_dst: the test says where each connection "was going" (the capture seam). */
describe('a listener behind original_dst picks tcp_proxy chains by the original destination', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-fcm-'));
  const log = pino({ level: 'silent' });
  const servers: net.Server[] = [];
  let manager: ListenerManager;
  let clusters: ClusterManager;
  let listenPort = 0;
  let nextDestination: SocketAddress | undefined;
  let passthroughPort = 0;
  let vipAppPort = 0;
  let tlsAppPort = 0;
  let greeterPort = 0;

  async function serve(server: net.Server, host = '127.0.0.1'): Promise<number> {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return (server.address() as net.AddressInfo).port;
  }
  /** tagged echo: answers `<tag>:<what it read>` once the client half-closes. */
  function echo(tag: string): net.Server {
    return net.createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('end', () => s.end(`${tag}:${got}`));
      s.on('error', () => s.destroy());
    });
  }
  /** exchange connects to the listener as if it were redirected from `dst`, sends `msg`, half-closes, reads all. */
  function exchange(dst: SocketAddress, msg: string): Promise<string> {
    nextDestination = dst;
    return new Promise((resolve) => {
      let got = '';
      const s = net.connect({ host: '127.0.0.1', port: listenPort, allowHalfOpen: true }, () => s.end(msg));
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve(got === '' ? 'closed' : got));
    });
  }
  const ip4 = (address: string, port: number): SocketAddress => ({ address, port, family: 'IPv4' });

  before(async () => {
    passthroughPort = await serve(echo('passthrough'));
    vipAppPort = await serve(echo('vip-app'));
    // A server-first protocol (MySQL, SMTP): the server greets, the client says nothing until then.
    greeterPort = await serve(net.createServer((s) => s.end('220 greeter ready\r\n')));
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
        ...['-keyout', key, '-out', cert, '-subj', '/CN=api.test', '-addext', 'subjectAltName=DNS:api.test'],
      ],
      { stdio: 'pipe' },
    );
    tlsAppPort = await serve(
      tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (s) => s.end('tls-app')),
    );
    const probe = await serve(net.createServer());
    listenPort = probe;
    await new Promise<void>((r) => servers.pop()?.close(() => r()));
    const staticCluster = (name: string, port?: number): EnvoyCluster => {
      const d = decodeCluster({
        name,
        type: 'STATIC',
        connect_timeout: { seconds: 2 },
        load_assignment: {
          cluster_name: name,
          endpoints: port
            ? [
                {
                  lb_endpoints: [
                    { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } },
                  ],
                },
              ]
            : [],
        },
      });
      assert.ok('value' in d, errorOf(d));
      return d.value;
    };
    const passthrough = decodeCluster({
      name: 'PassthroughCluster',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: { seconds: 2 },
    });
    assert.ok('value' in passthrough);
    clusters = new ClusterManager();
    clusters.setClusters(
      new Map([
        ['outbound|9000||vip-app', staticCluster('outbound|9000||vip-app', vipAppPort)],
        ['outbound|8443||api.test', staticCluster('outbound|8443||api.test', tlsAppPort)],
        ['outbound|3306||greeter', staticCluster('outbound|3306||greeter', greeterPort)],
        ['BlackHoleCluster', staticCluster('BlackHoleCluster')],
        ['PassthroughCluster', passthrough.value],
      ]),
    );
    const decoded = decodeListener({
      name: 'virtualOutbound',
      address: { socket_address: { address: '127.0.0.1', port_value: listenPort } },
      traffic_direction: 'OUTBOUND',
      listener_filters: [ORIGINAL_DST, TLS_INSPECTOR],
      filter_chains: [
        {
          name: '10.96.0.10_9000',
          filter_chain_match: { destination_port: { value: 9000 }, prefix_ranges: [range('10.96.0.10', 32)] },
          filters: [tcpProxy('outbound|9000||vip-app')],
        },
        {
          name: '10.96.0.40_3306',
          filter_chain_match: { destination_port: { value: 3306 }, prefix_ranges: [range('10.96.0.40', 32)] },
          filters: [tcpProxy('outbound|3306||greeter')],
        },
        {
          name: '0.0.0.0_8443',
          filter_chain_match: { destination_port: { value: 8443 }, server_names: ['api.test'] },
          filters: [tcpProxy('outbound|8443||api.test')],
        },
        {
          name: 'PassthroughFilterChain@9000',
          filter_chain_match: { destination_port: { value: 9000 } },
          filters: [tcpProxy('PassthroughCluster')],
        },
        {
          name: '0.0.0.0_7777',
          filter_chain_match: { destination_port: { value: 7777 } },
          filters: [tcpProxy('BlackHoleCluster')],
        },
        { name: 'PassthroughFilterChain', filters: [tcpProxy('PassthroughCluster')] },
      ],
    });
    assert.ok('value' in decoded, errorOf(decoded));
    manager = new ListenerManager({
      log,
      handlerContext: {
        clusters,
        metrics: new ProxyMetrics(),
        accessLog: log,
        self: { name: 'client', namespace: 'default', app: 'client', version: 'v1', principal: '', cluster: 'c' },
      },
      rds: () => undefined,
      tls: () => undefined,
      // The capture seam (SO_ORIGINAL_DST in a real sidecar): where the accepted connection was going.
      originalDestination: () => nextDestination,
    });
    await manager.apply(new Map([['virtualOutbound', decoded.value]]));
  });

  after(() => {
    manager.close();
    clusters.close();
    for (const s of servers) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("a service's virtual IP and port pick its chain; the same port elsewhere passes through", async () => {
    assert.equal(await exchange(ip4('10.96.0.10', 9000), 'hello'), 'vip-app:hello');
    // 127.0.0.1:<passthroughPort> names no service: the catch-all chain's ORIGINAL_DST cluster dials it.
    assert.equal(await exchange(ip4('127.0.0.1', passthroughPort), 'direct'), 'passthrough:direct');
  });

  it('TLS is passed through by SNI at its port, the app terminating its own TLS', async () => {
    nextDestination = ip4('10.96.0.20', 8443);
    const got = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: listenPort, servername: 'api.test', rejectUnauthorized: false });
      let body = '';
      s.on('data', (c: Buffer) => (body += c.toString()));
      s.on('end', () => resolve(`${body}|${s.getPeerCertificate().subject.CN}`));
      s.on('error', reject);
    });
    assert.equal(got, 'tls-app|api.test');
  });

  it('a server-first protocol is not held by the tls_inspector when its destination needs no inspection', async () => {
    nextDestination = ip4('10.96.0.40', 3306);
    const start = Date.now();
    const greeting = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: listenPort }); // writes nothing
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    assert.equal(greeting, '220 greeter ready\r\n');
    // The inspector would have waited its 10 s handshake timeout and closed the connection without a byte.
    assert.ok(Date.now() - start < 9_000, `greeted after ${Date.now() - start} ms`);
  });

  it('a chain whose cluster has no host closes the connection (BlackHoleCluster)', async () => {
    assert.equal(await exchange(ip4('10.96.0.30', 7777), 'x'), 'closed');
  });

  it('without an original destination, the ORIGINAL_DST cluster has no host: closed, no loop', async () => {
    nextDestination = undefined;
    const r = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: listenPort, allowHalfOpen: true }, () => s.end('loop?'));
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve(got === '' ? 'closed' : got));
    });
    assert.equal(r, 'closed');
  });
});
