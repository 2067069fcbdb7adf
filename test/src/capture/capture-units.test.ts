/**
 * The parts of transparent capture that need no network namespace: istiod's virtual IPs and capture-mode
 * listeners (checked against the proxy's own strict decoders), route choice by original destination, Envoy's
 * `destination_port` filter chain level, and the istio-iptables rules (applied and removed in a namespace when
 * one can be made).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TypeUrl } from '@fedmesh/api/xds';
import { allocateVips, createGenerators, parseIpv4Cidr } from '@fedmesh/istiod';
import {
  authorityCandidates,
  captureRules,
  ListenerType,
  RouteConfigurationType,
  RouteTable,
  hcmOf,
  routeForDestination,
  findFilterChain,
  type EnvoyFilterChain,
  type EnvoyListener,
  type RequestView,
  type SocketAddress,
} from '@fedmesh/proxy';
import { bookinfoPush, node, pod } from './capture-model.js';
import { captureUnavailable, sh } from './pod-network.js';

describe('service virtual IPs', () => {
  it('every Service without spec.clusterIP gets a stable address from the service CIDR', () => {
    const push = bookinfoPush('10.96.7.0/24');
    const vips = push.services.map((s) => s.addresses?.[0]);
    assert.equal(vips.length, 4);
    for (const v of vips) assert.match(v ?? '', /^10\.96\.7\.(\d+)$/);
    assert.equal(new Set(vips).size, 4, 'distinct addresses');
    // The same services always get the same addresses; adding one leaves the others alone unless it collides.
    assert.deepEqual(
      bookinfoPush('10.96.7.0/24').services.map((s) => s.addresses),
      push.services.map((s) => s.addresses),
    );
    const hosts = push.services.map((s) => s.hostname);
    const cidr = parseIpv4Cidr('10.96.7.0/24');
    const before = allocateVips(hosts, cidr, new Set());
    const afterAdd = allocateVips([...hosts, 'extra.default.svc.cluster.local'], cidr, new Set());
    for (const h of hosts)
      if (afterAdd.get('extra.default.svc.cluster.local') !== before.get(h))
        assert.equal(afterAdd.get(h), before.get(h));
  });

  it('an explicit clusterIP is kept, headless Services get none, and no CIDR means no allocation', () => {
    const explicit = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'pinned', namespace: 'default' },
      spec: { clusterIP: '10.96.7.200', selector: { app: 'pinned' }, ports: [{ name: 'http', port: 80 }] },
    };
    const headless = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'headless', namespace: 'default' },
      spec: { clusterIP: 'None', selector: { app: 'h' }, ports: [{ name: 'http', port: 80 }] },
    };
    const push = bookinfoPush('10.96.7.0/24', [explicit, headless]);
    assert.deepEqual(push.service('pinned.default.svc.cluster.local')?.addresses, ['10.96.7.200']);
    assert.equal(push.service('headless.default.svc.cluster.local')?.addresses, undefined);
    assert.ok(
      !push.services.some(
        (s) => s.hostname !== 'pinned.default.svc.cluster.local' && s.addresses?.[0] === '10.96.7.200',
      ),
    );
    assert.ok(bookinfoPush(undefined).services.every((s) => s.addresses === undefined));
    assert.throws(() => parseIpv4Cidr('10.96.7.0/33'), /IPv4 prefix/);
    assert.throws(() => parseIpv4Cidr('10.96.300.0/24'), /IPv4 prefix/);
  });

  it('outbound routes answer to <vip>:<port> as Istio generates them', () => {
    const push = bookinfoPush('10.96.7.0/24');
    const vip = push.service('reviews.default.svc.cluster.local')?.addresses?.[0] ?? '';
    const proxy = node('sleep-0', '10.0.0.9', 'sleep', { app: 'sleep' }, 'REDIRECT');
    const rds = createGenerators().get(TypeUrl.RouteConfiguration)?.(push, proxy, []) ?? [];
    assert.ok(rds[0]);
    const decoded = RouteConfigurationType.decode(rds[0].resource);
    assert.ok('value' in decoded, 'the proxy accepts the RouteConfiguration');
    const vh = decoded.value.virtualHost(`${vip}:9080`);
    assert.equal(vh?.name, 'reviews.default.svc.cluster.local:9080');
  });
});

describe('capture-mode listeners from istiod', () => {
  const push = bookinfoPush('10.96.7.0/24', [
    pod('reviews-v1-0', '10.0.0.11', 'bookinfo-reviews', { app: 'reviews', version: 'v1' }, 9080),
  ]);
  const lds = createGenerators().get(TypeUrl.Listener);
  const listeners = (mode: string): Map<string, EnvoyListener> => {
    const out = new Map<string, EnvoyListener>();
    const proxy = node('reviews-v1-0', '10.0.0.11', 'bookinfo-reviews', { app: 'reviews', version: 'v1' }, mode);
    for (const e of lds?.(push, proxy, []) ?? []) {
      const d = ListenerType.decode(e.resource);
      assert.ok('value' in d, `the proxy accepts ${e.name}: ${'error' in d ? String(d.error) : ''}`);
      out.set(d.name, d.value.config);
    }
    return out;
  };

  it('REDIRECT: both listeners bind 0.0.0.0 behind original_dst, and inbound gets a chain per destination port', () => {
    const l = listeners('REDIRECT');
    const out = l.get('virtualOutbound');
    const inb = l.get('virtualInbound');
    assert.equal(out?.address.socket_address.address, '0.0.0.0');
    assert.equal(inb?.address.socket_address.address, '0.0.0.0');
    assert.equal(out?.listener_filters?.[0]?.name, 'envoy.filters.listener.original_dst');
    assert.equal(inb?.listener_filters?.[0]?.name, 'envoy.filters.listener.original_dst');
    const byPort = inb?.filter_chains.filter((c) => c.filter_chain_match?.destination_port?.value === 9080) ?? [];
    assert.ok(byPort.length >= 1, 'a chain for destination port 9080');
    for (const c of byPort) assert.equal(c.filter_chain_match?.server_names, undefined);
    const tls = byPort.find((c) => c.filter_chain_match?.transport_protocol === 'tls');
    assert.ok(tls?.transport_socket, 'the 9080 chain requires mutual TLS');
    const route = tls ? hcmOf(tls)?.route_config?.virtual_hosts?.[0] : undefined;
    assert.deepEqual(route?.domains, ['*']);
    assert.equal(route?.routes?.[0]?.route?.cluster, 'inbound|9080||');
    assert.ok(
      inb?.filter_chains.some((c) => (c.filter_chain_match?.server_names?.length ?? 0) > 0),
      'SNI chains stay for explicit-mode peers that dial 15006',
    );
  });

  it('NONE: listeners are the explicit-mode ones, unchanged', () => {
    const l = listeners('NONE');
    assert.equal(l.get('virtualOutbound')?.address.socket_address.address, '10.0.0.11');
    assert.equal(l.get('virtualOutbound')?.listener_filters, undefined);
    assert.ok(!l.get('virtualInbound')?.filter_chains.some((c) => c.filter_chain_match?.destination_port));
  });
});

describe('route choice on a redirected connection', () => {
  const table = new RouteTable({
    name: 'outbound',
    virtual_hosts: [
      {
        name: 'reviews',
        domains: ['reviews:9080', '10.96.0.12:9080'],
        routes: [{ name: 'r', match: { prefix: '/' }, route: { cluster: 'reviews' } }],
      },
      {
        name: 'ratings',
        domains: ['ratings:9080'],
        routes: [{ name: 'a', match: { prefix: '/' }, route: { cluster: 'ratings' } }],
      },
    ],
  });
  const view = (authority: string): RequestView => ({
    method: 'GET',
    authority,
    path: '/x?y=1',
    scheme: 'http',
    headers: {},
  });
  const vip: SocketAddress = { address: '10.96.0.12', port: 9080, family: 'IPv4' };
  const cluster = (authority: string, dst: SocketAddress | undefined): string | undefined => {
    const hit = routeForDestination(table, view(authority), dst);
    const a = hit?.route.action;
    return a?.kind === 'route' ? a.clusters[0]?.name : undefined;
  };

  it('the Host header decides, with the original destination port when it has none', () => {
    assert.equal(cluster('reviews', vip), 'reviews');
    assert.equal(cluster('ratings', vip), 'ratings');
    assert.equal(cluster('ratings:9080', vip), 'ratings');
    assert.deepEqual(authorityCandidates('reviews', vip), ['reviews:9080', 'reviews', '10.96.0.12:9080']);
  });

  it('a Host that names no service is routed by the virtual IP:port dialled; nothing matches otherwise', () => {
    assert.equal(cluster('nobody.example', vip), 'reviews');
    assert.equal(cluster('', vip), 'reviews');
    assert.equal(cluster('nobody.example', { address: '10.96.0.99', port: 9080, family: 'IPv4' }), undefined);
    assert.equal(cluster('nobody.example', undefined), undefined, 'without an original destination, only the Host');
    assert.equal(cluster('reviews', undefined), undefined, 'explicit mode needs the port in the Host');
  });
});

describe('allow_any / block_all: HTTP to hosts the mesh does not know (capture mode)', () => {
  const push = (mode?: 'ALLOW_ANY' | 'REGISTRY_ONLY') =>
    bookinfoPush('10.96.7.0/24', [], mode ? { outboundTrafficPolicy: mode } : {});
  const routes = (mode: 'ALLOW_ANY' | 'REGISTRY_ONLY' | undefined, interception: string): RouteTable => {
    const proxy = node('sleep-0', '10.0.0.9', 'sleep', { app: 'sleep' }, interception);
    const rds = createGenerators().get(TypeUrl.RouteConfiguration)?.(push(mode), proxy, []) ?? [];
    assert.ok(rds[0]);
    const decoded = RouteConfigurationType.decode(rds[0].resource);
    assert.ok(
      'value' in decoded,
      `the proxy accepts the RouteConfiguration: ${'error' in decoded ? String(decoded.error) : ''}`,
    );
    return decoded.value;
  };
  const vip = (p: ReturnType<typeof push>): string =>
    p.service('reviews.default.svc.cluster.local')?.addresses?.[0] ?? '';
  const ext: SocketAddress = { address: '192.0.2.7', port: 9080, family: 'IPv4' };
  const get = (authority: string): RequestView => ({
    method: 'GET',
    authority,
    path: '/',
    scheme: 'http',
    headers: {},
  });

  it('ALLOW_ANY (default): the last virtual host is allow_any, * to PassthroughCluster, without timeout', () => {
    for (const mode of [undefined, 'ALLOW_ANY'] as const) {
      const table = routes(mode, 'REDIRECT');
      const last = table.config.virtual_hosts?.at(-1);
      assert.equal(last?.name, 'allow_any');
      assert.deepEqual(last?.domains, ['*']);
      assert.equal(last?.routes?.[0]?.name, 'allow_any');
      assert.equal(last?.routes?.[0]?.route?.cluster, 'PassthroughCluster');
      assert.equal(Number(last?.routes?.[0]?.route?.timeout?.seconds ?? -1), 0);
      const hit = routeForDestination(table, get('192.0.2.7:9080'), ext);
      assert.equal(hit?.vh.name, 'allow_any');
    }
  });

  it('REGISTRY_ONLY: block_all answers a direct 502', () => {
    const table = routes('REGISTRY_ONLY', 'REDIRECT');
    const last = table.config.virtual_hosts?.at(-1);
    assert.equal(last?.name, 'block_all');
    assert.deepEqual(last?.domains, ['*']);
    const hit = routeForDestination(table, get('example.com'), ext);
    assert.equal(hit?.route.name, 'block_all');
    assert.deepEqual(hit?.route.action.kind === 'direct' ? hit.route.action.status : undefined, 502);
  });

  it('mesh hosts and virtual IPs still win over the catch-all, whatever the Host header', () => {
    const p = push('REGISTRY_ONLY');
    const table = routes('REGISTRY_ONLY', 'REDIRECT');
    const dst: SocketAddress = { address: vip(p), port: 9080, family: 'IPv4' };
    assert.equal(routeForDestination(table, get('reviews'), dst)?.vh.name, 'reviews.default.svc.cluster.local:9080');
    assert.equal(
      routeForDestination(table, get('nobody.example'), dst)?.vh.name,
      'reviews.default.svc.cluster.local:9080',
      'the virtual IP dialled is tried before *',
    );
  });

  it('explicit mode gets no catch-all: unknown hosts stay 404 NR (no original destination to pass through to)', () => {
    for (const mode of [undefined, 'REGISTRY_ONLY'] as const) {
      const table = routes(mode, 'NONE');
      assert.ok(!table.config.virtual_hosts?.some((v) => v.domains.includes('*')));
      assert.equal(routeForDestination(table, get('example.com:9080'), undefined), undefined);
    }
  });
});

describe("Envoy's destination_port filter chain level", () => {
  const chain = (name: string, port?: number, sni?: string[]): { chain: EnvoyFilterChain; name: string } => ({
    name,
    chain: {
      name,
      filter_chain_match: {
        ...(port ? { destination_port: { value: port } } : {}),
        ...(sni ? { server_names: sni } : {}),
      },
    } as unknown as EnvoyFilterChain,
  });
  const chains = [chain('sni', undefined, ['a']), chain('p9080', 9080), chain('p9090', 9090), chain('any')];
  const at = (port: number | undefined, serverName?: string): string | undefined =>
    findFilterChain(chains, { destinationPort: port, serverName, transportProtocol: 'tls' })?.name;

  it('chains naming the port win; other ports fall to the chains that name none', () => {
    assert.equal(at(9080), 'p9080');
    assert.equal(at(9090), 'p9090');
    assert.equal(at(15006, 'a'), 'sni');
    assert.equal(at(15006), 'any');
    assert.equal(at(undefined, 'a'), 'sni');
  });

  it('no fall-back to a less specific level: the SNI chain is out of reach on a port that has chains', () => {
    assert.equal(at(9080, 'a'), 'p9080');
  });
});

describe('istio-iptables rules', () => {
  it('redirect outbound to 15001 and inbound to 15006, sparing the proxy uid and its own ports', () => {
    const rules = captureRules();
    for (const line of [
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
      '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
      '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
      '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
    ])
      assert.ok(rules.includes(line), line);
    for (const p of [15000, 15001, 15006, 15020, 15021, 15090])
      assert.ok(rules.includes(`-A ISTIO_INBOUND -p tcp --dport ${p} -j RETURN`), String(p));
    assert.ok(captureRules({ proxyUid: 2000 }).includes('--uid-owner 2000'));
    assert.throws(() => captureRules({ outboundPort: 0 }), /outboundPort/);
  });

  it('install and clean up in a network namespace', async (t) => {
    const why = await captureUnavailable();
    if (why) return t.skip(why);
    const ns = `fmcrules${process.pid}`;
    assert.equal((await sh('ip', ['netns', 'add', ns])).code, 0);
    try {
      const { applyCaptureRules, removeCaptureRules } = await import('@fedmesh/proxy');
      await applyCaptureRules({ netns: ns });
      const saved = (await sh('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'])).stdout;
      assert.ok(saved.includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001'), saved);
      await removeCaptureRules({ netns: ns });
      const left = (await sh('ip', ['netns', 'exec', ns, 'iptables', '-t', 'nat', '-S'])).stdout;
      assert.ok(!left.includes('ISTIO'), left);
    } finally {
      await sh('ip', ['netns', 'del', ns]);
    }
  });
});
