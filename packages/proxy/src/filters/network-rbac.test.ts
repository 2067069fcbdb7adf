/**
 * The network RBAC filter as the proxy applies it in front of a tcp_proxy: the decoder refuses what it cannot
 * apply (HTTP-only matchers, matcher trees, a missing stat_prefix, RBAC before an HCM) with the field path; the
 * engine reads the connection's identity, addresses and SNI as Envoy's Permission and Principal define them; and a
 * real tcp_proxy chain closes a denied connection before dialling the app, counts it and logs it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { ClusterManager } from '../cluster-manager.js';
import { serveTcpChain, rbacConnectionOf, type SidecarTcpDeps } from '../tcp/sidecar-tcp.js';
import { ClusterLoadAssignmentSchema, ClusterSchema, tcpProxyOf } from '../xds/envoy-schemas.js';
import { NETWORK_RBAC_FILTER_TYPE } from '../xds/rbac-schemas.js';
import { ListenerType } from '../xds/resource-types.js';
import {
  NetworkRbacFilter,
  enforceNetworkRbac,
  networkRbacOf,
  type NetworkRbacDecision,
  type RbacConnection,
} from './network-rbac.js';

const CLIENT = 'spiffe://cluster.local/ns/default/sa/client';
const OTHER = 'spiffe://cluster.local/ns/other/sa/intruder';
const ANY = [{ any: true as const }];
const TCP_PROXY = {
  name: 'envoy.filters.network.tcp_proxy',
  typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
    stat_prefix: 'inbound|9000||',
    cluster: 'inbound|9000||',
  },
};

function rbacFilter(config: object): object {
  return {
    name: 'envoy.filters.network.rbac',
    typed_config: { '@type': NETWORK_RBAC_FILTER_TYPE, stat_prefix: 'tcp.', ...config },
  };
}

/** listenerWith wraps network filters into a Listener as istiod sends it (encoded protobuf). */
function listenerWith(filters: object[]): ReturnType<typeof encodeAny> {
  return encodeAny(TypeUrl.Listener, {
    name: 'virtualInbound',
    address: { socket_address: { address: '127.0.9.20', port_value: 15006 } },
    filter_chains: [{ name: 'inbound|9000||', filters }],
  });
}

function nack(filters: object[]): string {
  const r = ListenerType.decode(listenerWith(filters));
  assert.ok('error' in r, 'the Listener must be NACKed');
  return r.error;
}

function conn(over: Partial<RbacConnection> = {}): RbacConnection {
  return {
    peerPrincipal: CLIENT,
    directRemoteIp: '127.0.9.10',
    remoteIp: '127.0.9.10',
    destinationIp: '127.0.9.20',
    destinationPort: 9000,
    requestedServerName: 'outbound_.9000_._.tcp-echo.default.svc.cluster.local',
    ...over,
  };
}

function compile(...configs: object[]): NetworkRbacFilter[] {
  return configs.map(
    (c, i) => new NetworkRbacFilter({ '@type': NETWORK_RBAC_FILTER_TYPE, stat_prefix: 'tcp.', ...c }, `f${i}`),
  );
}

function decide(filters: NetworkRbacFilter[], c: RbacConnection, registry = new Registry()): NetworkRbacDecision {
  return enforceNetworkRbac(filters, c, registry);
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((a, v) => a + Number(v.value), 0);
}

describe('the decoder NACKs what the network filter cannot apply (never fails open)', () => {
  const F = 'filter_chains[0].filters[0].typed_config';

  it('accepts RBAC filters before a tcp_proxy and compiles them with the listener', () => {
    const r = ListenerType.decode(
      listenerWith([
        rbacFilter({ rules: { action: 'DENY', policies: { p: { permissions: ANY, principals: ANY } } } }),
        rbacFilter({ rules: { action: 'ALLOW' }, enforcement_type: 'CONTINUOUS' }),
        TCP_PROXY,
      ]),
    );
    assert.ok('value' in r, 'error' in r ? r.error : '');
    const chain = r.value.config.filter_chains[0];
    assert.ok(chain);
    assert.equal(tcpProxyOf(chain)?.cluster, 'inbound|9000||');
    assert.deepEqual(
      networkRbacOf(chain).map((f) => [f.statPrefix, f.action]),
      [
        ['tcp.', 'DENY'],
        ['tcp.', 'ALLOW'],
      ],
    );
  });

  it('HTTP-only matchers (header, url_path) with their field path', () => {
    const header = { header: { name: ':method', string_match: { exact: 'GET' } } };
    const e1 = nack([
      rbacFilter({ rules: { action: 'DENY', policies: { p: { permissions: [header], principals: ANY } } } }),
      TCP_PROXY,
    ]);
    assert.ok(e1.includes(`${F}.rules.policies.p.permissions[0].header`), e1);
    assert.match(e1, /HTTP-only/);
    const path = { url_path: { path: { prefix: '/admin' } } };
    const e2 = nack([
      rbacFilter({ shadow_rules: { action: 'DENY', policies: { p: { permissions: ANY, principals: [path] } } } }),
      TCP_PROXY,
    ]);
    assert.ok(e2.includes(`${F}.shadow_rules.policies.p.principals[0].url_path`), e2);
  });

  it('matcher trees, metadata permissions, an empty stat_prefix, a bad regex', () => {
    assert.match(nack([rbacFilter({ matcher: {} }), TCP_PROXY]), /matcher/);
    const meta = {
      metadata: { filter: 'envoy.filters.a', path: [{ key: 'k' }], value: { string_match: { exact: 'x' } } },
    };
    assert.match(
      nack([rbacFilter({ rules: { policies: { p: { permissions: [meta], principals: ANY } } } }), TCP_PROXY]),
      /permissions\[0\]/,
    );
    assert.match(nack([rbacFilter({ stat_prefix: '' }), TCP_PROXY]), /stat_prefix/);
    const badRegex = { authenticated: { principal_name: { safe_regex: { regex: '(' } } } };
    const e = nack([
      rbacFilter({ rules: { action: 'ALLOW', policies: { p: { permissions: ANY, principals: [badRegex] } } } }),
      TCP_PROXY,
    ]);
    assert.ok(e.includes(`${F}.rules.policies["p"].principals[0].authenticated.principal_name`), e);
  });

  it('RBAC as the last filter, or before an HTTP connection manager, is refused', () => {
    assert.match(nack([rbacFilter({})]), /filters\[0\]\.name: a filter chain must end with a tcp_proxy or an HCM/);
    assert.match(nack([TCP_PROXY, rbacFilter({})]), /filters\[0\]\.name: .*must be the last network filter/);
    const hcm = {
      name: 'envoy.filters.network.http_connection_manager',
      typed_config: {
        '@type':
          'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        stat_prefix: 'x',
        route_config: { name: 'r', virtual_hosts: [] },
        http_filters: [
          {
            name: 'envoy.filters.http.router',
            typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
          },
        ],
      },
    };
    assert.match(nack([rbacFilter({}), hcm]), /network RBAC before an HTTP connection manager is not implemented/);
  });
});

describe('matching a connection (Envoy Permission and Principal)', () => {
  const deny = (principals: object[], permissions: object[] = ANY) =>
    compile({ rules: { action: 'DENY', policies: { p: { permissions, principals } } } });

  it('authenticated.principal_name is the verified SPIFFE ID; a plaintext connection is never authenticated', () => {
    const f = compile({
      rules: {
        action: 'ALLOW',
        policies: { p: { permissions: ANY, principals: [{ authenticated: { principal_name: { exact: CLIENT } } }] } },
      },
    });
    assert.equal(decide(f, conn()).allowed, true);
    assert.equal(decide(f, conn({ peerPrincipal: OTHER })).allowed, false);
    assert.equal(decide(f, conn({ peerPrincipal: undefined })).allowed, false);
    const ns = deny([{ authenticated: { principal_name: { safe_regex: { regex: '.*/ns/other/.*' } } } }]);
    assert.equal(decide(ns, conn({ peerPrincipal: OTHER })).allowed, false);
    assert.equal(decide(ns, conn()).allowed, true);
    const anyPeer = deny([{ not_id: { authenticated: {} } }]);
    assert.deepEqual(
      [decide(anyPeer, conn()).allowed, decide(anyPeer, conn({ peerPrincipal: undefined })).allowed],
      [true, false],
      'authenticated without a name matches any verified peer',
    );
  });

  it('source_ip, direct_remote_ip and remote_ip read the downstream address (IPv4-mapped IPv6 too)', () => {
    for (const kind of ['source_ip', 'direct_remote_ip', 'remote_ip']) {
      const f = deny([{ [kind]: { address_prefix: '10.1.0.0', prefix_len: { value: 16 } } }]);
      assert.equal(decide(f, conn({ directRemoteIp: '10.1.2.3', remoteIp: '10.1.2.3' })).allowed, false, kind);
      assert.equal(decide(f, conn({ directRemoteIp: '::ffff:10.1.2.3', remoteIp: '::ffff:10.1.2.3' })).allowed, false);
      assert.equal(decide(f, conn({ directRemoteIp: '10.2.0.1', remoteIp: '10.2.0.1' })).allowed, true, kind);
    }
  });

  it('destination_port, destination_port_range, destination_ip and requested_server_name', () => {
    const port = deny(ANY, [{ destination_port: 9000 }]);
    assert.deepEqual(
      [decide(port, conn()).allowed, decide(port, conn({ destinationPort: 9001 })).allowed],
      [false, true],
    );
    const range = deny(ANY, [{ destination_port_range: { start: 9000, end: 9001 } }]);
    assert.deepEqual(
      [decide(range, conn()).allowed, decide(range, conn({ destinationPort: 9001 })).allowed],
      [false, true],
      'the range end is exclusive',
    );
    const ip = deny(ANY, [{ destination_ip: { address_prefix: '127.0.9.20', prefix_len: { value: 32 } } }]);
    assert.equal(decide(ip, conn()).allowed, false);
    const sni = deny(ANY, [{ requested_server_name: { suffix: '.other.svc.cluster.local' } }]);
    assert.equal(decide(sni, conn()).allowed, true);
    assert.equal(
      decide(sni, conn({ requestedServerName: 'outbound_.9000_._.db.other.svc.cluster.local' })).allowed,
      false,
    );
    assert.equal(decide(sni, conn({ requestedServerName: undefined })).allowed, true, 'no SNI matches as ""');
  });
});

describe('filters in chain order: LOG, DENY, ALLOW, shadow rules, counters', () => {
  it('the first refusal ends the walk and names the policy; LOG never refuses; shadow is counted, not enforced', async () => {
    const registry = new Registry();
    const filters = compile(
      {
        rules: {
          action: 'LOG',
          policies: { audit: { permissions: [{ destination_port: 9000 }], principals: ANY } },
        },
      },
      {
        rules: {
          action: 'DENY',
          policies: {
            'ns[default]-policy[deny-other]-rule[0]': {
              permissions: ANY,
              principals: [{ authenticated: { principal_name: { exact: OTHER } } }],
            },
          },
        },
        shadow_rules: { action: 'DENY', policies: { dry: { permissions: ANY, principals: ANY } } },
        shadow_rules_stat_prefix: 'istio_dry_run_deny_',
      },
      {
        rules: {
          action: 'ALLOW',
          policies: { allow: { permissions: ANY, principals: [{ authenticated: {} }] } },
        },
      },
    );
    const ok = decide(filters, conn(), registry);
    assert.deepEqual([ok.allowed, ok.accessLogHint, ok.terminationDetails], [true, true, undefined]);
    assert.deepEqual(ok.shadow, [
      { stat_prefix: 'tcp.', shadow_engine_result: 'denied', shadow_effective_policy_id: 'dry' },
    ]);
    const denied = decide(filters, conn({ peerPrincipal: OTHER, destinationPort: 9001 }), registry);
    assert.equal(denied.allowed, false);
    assert.equal(
      denied.terminationDetails,
      'rbac_access_denied_matched_policy[ns[default]-policy[deny-other]-rule[0]]',
    );
    const plaintext = decide(filters, conn({ peerPrincipal: undefined }), registry);
    assert.equal(plaintext.terminationDetails, 'rbac_access_denied_matched_policy[none]', 'ALLOW: no policy matched');
    const p = { envoy_network_rbac_prefix: 'tcp.' };
    assert.equal(await counter(registry, 'envoy_network_rbac_denied', p), 2);
    assert.equal(
      await counter(registry, 'envoy_network_rbac_allowed', p),
      3,
      'DENY and ALLOW passed the first, DENY the third',
    );
    assert.equal(await counter(registry, 'envoy_network_rbac_logged', p), 2);
    assert.equal(await counter(registry, 'envoy_network_rbac_not_logged', p), 1);
    assert.equal(
      await counter(registry, 'envoy_network_rbac_shadow_denied', {
        ...p,
        shadow_rules_stat_prefix: 'istio_dry_run_deny_',
      }),
      3,
    );
  });
});

describe('a tcp_proxy chain with network RBAC, over real sockets', () => {
  let echo: net.Server;
  let front: net.Server;
  let frontPort = 0;
  let echoConnections = 0;
  let peer: string | undefined;
  const registry = new Registry();
  const clusters = new ClusterManager({});
  const lines: Record<string, unknown>[] = [];
  const accessLog = pino(
    { level: 'info' },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );

  before(async () => {
    echo = net.createServer({ allowHalfOpen: true }, (s) => {
      echoConnections++;
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    const echoPort = await new Promise<number>((r) =>
      echo.listen(0, '127.0.0.1', () => r((echo.address() as net.AddressInfo).port)),
    );
    clusters.setClusters(
      new Map([
        [
          'inbound|9000||',
          ClusterSchema.parse({
            name: 'inbound|9000||',
            type: 'EDS',
            eds_cluster_config: { service_name: 'inbound|9000||', eds_config: { ads: {} } },
            connect_timeout: { seconds: 1 },
          }),
        ],
      ]),
    );
    clusters.setAssignments(
      new Map([
        [
          'inbound|9000||',
          ClusterLoadAssignmentSchema.parse({
            cluster_name: 'inbound|9000||',
            endpoints: [
              {
                lb_endpoints: [
                  { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: echoPort } } } },
                ],
              },
            ],
          }),
        ],
      ]),
    );
    // A DENY for the intruder and an ALLOW for the client on port 9000, as istiod generates them.
    const decoded = ListenerType.decode(
      listenerWith([
        rbacFilter({
          rules: {
            action: 'DENY',
            policies: {
              'ns[default]-policy[deny-other]-rule[0]': {
                permissions: ANY,
                principals: [{ authenticated: { principal_name: { safe_regex: { regex: '.*/ns/other/.*' } } } }],
              },
            },
          },
        }),
        rbacFilter({
          rules: {
            action: 'ALLOW',
            policies: {
              'ns[default]-policy[allow-client]-rule[0]': {
                permissions: [{ destination_port: 9000 }],
                principals: [{ authenticated: { principal_name: { exact: CLIENT } } }],
              },
            },
          },
        }),
        TCP_PROXY,
      ]),
    );
    assert.ok('value' in decoded, 'error' in decoded ? decoded.error : '');
    const chain = decoded.value.config.filter_chains[0];
    assert.ok(chain);
    const tcp = tcpProxyOf(chain);
    assert.ok(tcp);
    const deps: SidecarTcpDeps = {
      clusters,
      registry,
      tls: () => undefined,
      self: {
        name: 'tcp-echo',
        namespace: 'default',
        app: 'tcp-echo',
        version: 'v1',
        principal: 'spiffe://cluster.local/ns/default/sa/tcp-echo',
        cluster: 'Kubernetes',
      },
      accessLog,
      direction: 'inbound',
      networkRbac: networkRbacOf(chain),
    };
    // The listener's side of an accepted connection: the peer identity as the TLS listener would have verified it.
    front = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => s.destroy());
      serveTcpChain(tcp, s, Buffer.alloc(0), deps, {
        principal: peer,
        sni: 'outbound_.9000_._.tcp-echo.default.svc.cluster.local',
      });
    });
    frontPort = await new Promise<number>((r) =>
      front.listen(0, '127.0.0.1', () => r((front.address() as net.AddressInfo).port)),
    );
  });

  after(async () => {
    clusters.close();
    await new Promise<void>((r) => front.close(() => r()));
    await new Promise<void>((r) => echo.close(() => r()));
  });

  function roundTrip(payload: string): Promise<string> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      const s = net.connect({ host: '127.0.0.1', port: frontPort, allowHalfOpen: true });
      const timer = setTimeout(() => s.destroy(), 10_000);
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => undefined);
      s.once('connect', () => s.end(payload));
      s.once('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString());
      });
    });
  }

  it('the allowed principal is proxied to the app; others are closed before the app is dialled', async () => {
    peer = CLIENT;
    assert.equal(await roundTrip('hello'), 'hello');
    assert.equal(echoConnections, 1);
    for (const p of [OTHER, 'spiffe://cluster.local/ns/default/sa/stranger', undefined]) {
      peer = p;
      assert.equal(await roundTrip('let me in'), '', String(p));
    }
    assert.equal(echoConnections, 1, 'no denied connection reached the app');
    const denied = lines.filter((l) => typeof l.connection_termination_details === 'string');
    assert.deepEqual(
      denied.map((l) => [l.downstream_peer_principal, l.connection_termination_details, l.upstream_host]),
      [
        [OTHER, 'rbac_access_denied_matched_policy[ns[default]-policy[deny-other]-rule[0]]', null],
        ['spiffe://cluster.local/ns/default/sa/stranger', 'rbac_access_denied_matched_policy[none]', null],
        [null, 'rbac_access_denied_matched_policy[none]', null],
      ],
    );
    assert.equal(await counter(registry, 'envoy_network_rbac_denied', { envoy_network_rbac_prefix: 'tcp.' }), 3);
    assert.equal(
      await counter(registry, 'istio_tcp_connections_closed_total', {
        reporter: 'destination',
        source_principal: OTHER,
      }),
      1,
    );
    assert.equal(
      await counter(registry, 'istio_tcp_connections_opened_total', {
        reporter: 'destination',
        source_principal: CLIENT,
      }),
      1,
    );
  });

  it('the destination port is the inbound cluster’s (explicit mode: every peer arrives on 15006)', async () => {
    const s = net.connect({ host: '127.0.0.1', port: frontPort });
    await new Promise((r) => s.once('connect', r));
    const c = rbacConnectionOf(s, 'inbound|9000||', { principal: CLIENT });
    assert.deepEqual([c.destinationPort, c.destinationIp, c.peerPrincipal], [9000, '127.0.0.1', CLIENT]);
    assert.equal(rbacConnectionOf(s, 'outbound|80||x', {}).destinationPort, s.localPort, 'else the socket’s own port');
    s.destroy();
  });
});
