/**
 * istiod's capture-mode (REDIRECT) config for TCP and TLS, checked with the proxy's own strict decoders and its
 * filter chain matcher: `virtualOutbound` holds chains by original destination (a TCP service's virtual IP and
 * port, TLS by SNI, HTTP ports, a passthrough for the rest of a port and a catch-all under outboundTrafficPolicy),
 * CDS adds PassthroughCluster (ORIGINAL_DST) and BlackHoleCluster, and `virtualInbound` serves a TCP target port by
 * `destination_port` (mTLS; plaintext too where PeerAuthentication allows it) behind the network RBAC filters of
 * the workload's AuthorizationPolicies.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TypeUrl } from '@fedmesh/api/xds';
import { createGenerators, type PushContext } from '@fedmesh/istiod';
import {
  ClusterType,
  findFilterChain,
  ListenerType,
  tcpProxyOf,
  type EnvoyFilterChain,
  type EnvoyListener,
  type FilterChainFacts,
} from '@fedmesh/proxy';
import { bookinfoPush, node, pod } from './capture-model.js';

const TCP_ECHO = 'tcp-echo.default.svc.cluster.local';
const tcpEcho = [
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'tcp-echo', namespace: 'default' },
    spec: { selector: { app: 'tcp-echo' }, ports: [{ name: 'tcp', port: 9000 }] },
  },
  pod('tcp-echo-0', '10.0.0.12', 'tcp-echo', { app: 'tcp-echo' }, 9000),
  {
    // A TLS host outside the mesh without an address: reached by SNI on 8443.
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'api', namespace: 'default' },
    spec: {
      hosts: ['api.external.test'],
      location: 'MESH_EXTERNAL',
      resolution: 'STATIC',
      ports: [{ number: 8443, name: 'tls', protocol: 'TLS' }],
      workloadSelector: { labels: { app: 'ext-api' } },
    },
  },
  {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name: 'ext-api', namespace: 'default' },
    spec: { address: '198.51.100.7', labels: { app: 'ext-api' } },
  },
];
const denyTcp = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'deny-9000', namespace: 'default' },
  spec: {
    selector: { matchLabels: { app: 'tcp-echo' } },
    action: 'DENY',
    rules: [{ to: [{ operation: { ports: ['9000'] } }] }],
  },
};
const permissive = {
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'permissive', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'tcp-echo' } }, mtls: { mode: 'PERMISSIVE' } },
};

function listeners(push: PushContext, who: 'sleep' | 'tcp-echo', mode = 'REDIRECT'): Map<string, EnvoyListener> {
  const proxy =
    who === 'sleep'
      ? node('sleep-0', '10.0.0.9', 'sleep', { app: 'sleep' }, mode)
      : node('tcp-echo-0', '10.0.0.12', 'tcp-echo', { app: 'tcp-echo' }, mode);
  const warnings: string[] = [];
  const out = new Map<string, EnvoyListener>();
  for (const e of createGenerators().get(TypeUrl.Listener)?.(push, proxy, warnings) ?? []) {
    const d = ListenerType.decode(e.resource);
    assert.ok('value' in d, `the proxy accepts ${e.name}: ${'error' in d ? String(d.error) : ''}`);
    out.set(d.name, d.value.config);
  }
  return out;
}

type Chain = { chain: EnvoyFilterChain };
function pick(l: EnvoyListener | undefined, facts: Partial<FilterChainFacts>): EnvoyFilterChain | undefined {
  const chains: Chain[] = (l?.filter_chains ?? []).map((chain) => ({ chain }));
  return findFilterChain(chains, { transportProtocol: 'raw_buffer', ...facts })?.chain;
}
const clusterOf = (c: EnvoyFilterChain | undefined): string | undefined => (c ? tcpProxyOf(c)?.cluster : undefined);

describe('capture-mode virtualOutbound: chains by original destination', () => {
  const push = bookinfoPush('10.96.7.0/24', tcpEcho);
  const vip = push.service(TCP_ECHO)?.addresses?.[0] ?? '';
  const reviewsVip = push.service('reviews.default.svc.cluster.local')?.addresses?.[0] ?? '';
  const out = listeners(push, 'sleep').get('virtualOutbound');

  it("a TCP service's virtual IP and port reach its cluster; the port elsewhere and unknown ports pass through", () => {
    assert.match(vip, /^10\.96\.7\./);
    assert.equal(clusterOf(pick(out, { destinationPort: 9000, destinationIp: vip })), `outbound|9000||${TCP_ECHO}`);
    assert.equal(clusterOf(pick(out, { destinationPort: 9000, destinationIp: '192.0.2.1' })), 'PassthroughCluster');
    assert.equal(clusterOf(pick(out, { destinationPort: 5555, destinationIp: '192.0.2.1' })), 'PassthroughCluster');
    assert.equal(pick(out, { destinationPort: 5555 })?.name, 'PassthroughFilterChain');
  });

  it('HTTP ports keep the HTTP connection manager (routes by Host or VIP), matched on the port', () => {
    const http = pick(out, { destinationPort: 9080, destinationIp: reviewsVip });
    assert.equal(http?.name, '0.0.0.0_9080');
    assert.equal(http?.filters.at(-1)?.name, 'envoy.filters.network.http_connection_manager');
  });

  it('TLS passes through by SNI at its port, behind a tls_inspector; another SNI there passes through', () => {
    assert.deepEqual(
      out?.listener_filters?.map((f) => f.name),
      ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector'],
    );
    const tls = { destinationPort: 8443, destinationIp: '198.51.100.7', transportProtocol: 'tls' as const };
    assert.equal(clusterOf(pick(out, { ...tls, serverName: 'api.external.test' })), 'outbound|8443||api.external.test');
    assert.equal(clusterOf(pick(out, { ...tls, serverName: 'other.test' })), 'PassthroughCluster');
  });

  it('REGISTRY_ONLY sends unknown destinations to BlackHoleCluster; known ones are unchanged', () => {
    const strict = bookinfoPush('10.96.7.0/24', tcpEcho, { outboundTrafficPolicy: 'REGISTRY_ONLY' });
    const o = listeners(strict, 'sleep').get('virtualOutbound');
    assert.equal(clusterOf(pick(o, { destinationPort: 5555, destinationIp: '192.0.2.1' })), 'BlackHoleCluster');
    assert.equal(clusterOf(pick(o, { destinationPort: 9000, destinationIp: '192.0.2.1' })), 'BlackHoleCluster');
    assert.equal(clusterOf(pick(o, { destinationPort: 9000, destinationIp: vip })), `outbound|9000||${TCP_ECHO}`);
  });

  it('CDS adds PassthroughCluster (ORIGINAL_DST) and BlackHoleCluster, which the proxy accepts; explicit mode does not', () => {
    const cds = createGenerators().get(TypeUrl.Cluster);
    const names = (mode: string): string[] =>
      (cds?.(push, node('sleep-0', '10.0.0.9', 'sleep', { app: 'sleep' }, mode), []) ?? []).map((e) => {
        const d = ClusterType.decode(e.resource);
        assert.ok('value' in d, `the proxy accepts ${e.name}: ${'error' in d ? String(d.error) : ''}`);
        if (e.name === 'PassthroughCluster') assert.equal(d.value.type, 'ORIGINAL_DST');
        return e.name;
      });
    assert.ok(names('REDIRECT').includes('PassthroughCluster'));
    assert.ok(names('REDIRECT').includes('BlackHoleCluster'));
    assert.ok(!names('NONE').includes('PassthroughCluster'));
  });

  it('explicit mode keeps its per-port TCP listener and an HTTP-only virtualOutbound', () => {
    const l = listeners(push, 'sleep', 'NONE');
    assert.ok(l.has('10.0.0.9_9000'));
    assert.deepEqual(
      l.get('virtualOutbound')?.filter_chains.map((c) => c.name),
      ['virtualOutbound-http'],
    );
  });
});

describe('capture-mode virtualInbound: TCP ports by destination port, behind network RBAC', () => {
  it('STRICT: an mTLS chain for port 9000 with no SNI needed; plaintext on 9000 matches nothing', () => {
    const inb = listeners(bookinfoPush('10.96.7.0/24', tcpEcho), 'tcp-echo').get('virtualInbound');
    const mtls = pick(inb, { destinationPort: 9000, transportProtocol: 'tls' });
    assert.equal(mtls?.name, 'inbound|9000||@mtls');
    assert.ok(mtls?.transport_socket, 'terminates mutual TLS');
    assert.equal(clusterOf(mtls), 'inbound|9000||');
    assert.equal(pick(inb, { destinationPort: 9000 }), undefined);
  });

  it("the workload's AuthorizationPolicies come first as network RBAC; PERMISSIVE adds a plaintext chain", () => {
    const inb = listeners(bookinfoPush('10.96.7.0/24', [...tcpEcho, denyTcp, permissive]), 'tcp-echo').get(
      'virtualInbound',
    );
    for (const t of ['tls', 'raw_buffer'] as const) {
      const c = pick(inb, { destinationPort: 9000, transportProtocol: t });
      assert.deepEqual(
        c?.filters.map((f) => f.name),
        ['envoy.filters.network.rbac', 'envoy.filters.network.tcp_proxy'],
        t,
      );
    }
    assert.equal(pick(inb, { destinationPort: 9000 })?.name, 'inbound|9000||@plaintext');
  });
});
