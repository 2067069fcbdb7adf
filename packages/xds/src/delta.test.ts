/**
 * Delta (incremental) ADS against the same SnapshotCache as State of the World: both kinds of client see the same
 * resources after every snapshot, removals included; NACKs keep the last good config and are not re-sent; the
 * wire protocol follows Envoy's incremental xDS (subscribe/unsubscribe, initial_resource_versions, wildcard,
 * nonces, one un-ACKed response per type).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl, decodeAny, encodeAny, type AnyMessage } from '@fedmesh/api/xds';
import {
  AdsClient,
  DeltaAdsClient,
  Snapshot,
  SnapshotCache,
  createAdsServer,
  loadAdsGrpc,
  resourceVersion,
  type ResourceEntry,
  type WireDeltaDiscoveryRequest,
  type WireDeltaDiscoveryResponse,
  type XdsResourceType,
} from './index.js';

interface ClusterValue {
  name: string;
  seconds: string;
}
interface ClaValue {
  name: string;
  addresses: string[];
}

const clusterType: XdsResourceType<ClusterValue> = {
  typeUrl: TypeUrl.Cluster,
  decode(any: AnyMessage) {
    const c = decodeAny(any) as { name?: string; connect_timeout?: { seconds?: string } };
    const name = c.name ?? '';
    if (name.startsWith('bad')) return { name, error: 'connect_timeout: must be set' };
    return { name, value: { name, seconds: c.connect_timeout?.seconds ?? '0' } };
  },
};

const claType: XdsResourceType<ClaValue> = {
  typeUrl: TypeUrl.ClusterLoadAssignment,
  decode(any: AnyMessage) {
    const c = decodeAny(any) as {
      cluster_name?: string;
      endpoints?: { lb_endpoints?: { endpoint?: { address?: { socket_address?: { address?: string } } } }[] }[];
    };
    const name = c.cluster_name ?? '';
    const addresses = (c.endpoints ?? []).flatMap((e) =>
      (e.lb_endpoints ?? []).map((l) => l.endpoint?.address?.socket_address?.address ?? ''),
    );
    return { name, value: { name, addresses } };
  },
};

function cluster(name: string, seconds: number): ResourceEntry {
  return { name, resource: encodeAny(TypeUrl.Cluster, { name, connect_timeout: { seconds } }) };
}

function cla(name: string, ...addresses: string[]): ResourceEntry {
  return {
    name,
    resource: encodeAny(TypeUrl.ClusterLoadAssignment, {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: addresses.map((a) => ({
            endpoint: { address: { socket_address: { address: a, port_value: 80 } } },
          })),
        },
      ],
    }),
  };
}

const cache = new SnapshotCache();
const nacks: { node: string; protocol: string; message: string }[] = [];
const ads = createAdsServer(cache, {
  onNack: (s, _t, _v, m) => nacks.push({ node: s.node.id, protocol: s.protocol, message: m }),
});
const server = new grpc.Server();
let address = '';

before(async () => {
  server.addService(ads.service, ads.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  address = `127.0.0.1:${port}`;
});
after(() => server.forceShutdown());

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

function sorted<T>(m: ReadonlyMap<string, T>): [string, T][] {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
}

describe('Delta and SotW clients on one cache', () => {
  test('see identical resources after every snapshot, removals included', async () => {
    const sotw = new AdsClient({ address, credentials: grpc.credentials.createInsecure(), node: { id: 'same-sotw' } });
    const delta = new DeltaAdsClient({
      address,
      credentials: grpc.credentials.createInsecure(),
      node: { id: 'same-delta' },
    });
    const deltaUpdates: number[] = [];
    for (const c of [sotw, delta]) {
      c.subscribe(clusterType, [], () => undefined);
      c.subscribe(claType, ['outbound|80||a', 'outbound|80||b'], () => undefined);
    }
    let deltaVersionOfC: string | undefined;
    delta.subscribe(clusterType, [], (res) => deltaUpdates.push(res.size));
    const steps: Snapshot[] = [
      new Snapshot({
        [TypeUrl.Cluster]: [cluster('a', 1), cluster('b', 1)],
        [TypeUrl.ClusterLoadAssignment]: [cla('outbound|80||a', '10.0.0.1')],
      }),
      // a changes, b disappears, c appears; b's endpoints appear, a's gain one
      new Snapshot({
        [TypeUrl.Cluster]: [cluster('a', 2), cluster('c', 1)],
        [TypeUrl.ClusterLoadAssignment]: [
          cla('outbound|80||a', '10.0.0.1', '10.0.0.2'),
          cla('outbound|80||b', '10.0.1.1'),
          cla('outbound|80||unsubscribed', '10.9.9.9'),
        ],
      }),
      // everything of CDS goes; a's endpoints go (and both clients drop interest in them, as when cluster a goes)
      new Snapshot({
        [TypeUrl.ClusterLoadAssignment]: [cla('outbound|80||b', '10.0.1.1')],
      }),
    ];
    cache.setSnapshot('same-sotw', steps[0] as Snapshot);
    cache.setSnapshot('same-delta', steps[0] as Snapshot);
    sotw.start();
    delta.start();
    try {
      for (const [i, snap] of steps.entries()) {
        if (i === 2) for (const c of [sotw, delta]) c.subscribe(claType, ['outbound|80||b'], () => undefined);
        cache.setSnapshot('same-sotw', snap);
        cache.setSnapshot('same-delta', snap);
        for (const t of [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment]) {
          const want = snap.version(t);
          await until(
            () =>
              sotw.state().find((s) => s.typeUrl === t)?.version === want &&
              delta.state().find((s) => s.typeUrl === t)?.version === want,
            `step ${i} ${t} at ${want} on both clients`,
          );
          assert.deepEqual(sorted(delta.resources(t)), sorted(sotw.resources(t)), `step ${i} ${t}`);
        }
        if (i === 1) deltaVersionOfC = delta.resourceVersions(TypeUrl.Cluster).get('c');
      }
      assert.deepEqual(sorted(delta.resources(TypeUrl.Cluster)), []);
      assert.deepEqual(
        [...delta.resources<ClaValue>(TypeUrl.ClusterLoadAssignment).values()].map((v) => v.addresses),
        [['10.0.1.1']],
      );
      assert.deepEqual(deltaUpdates, [2, 2, 0], 'the delta handler saw each whole CDS state once');
      // A subscribed EDS name that disappears: Delta says so (removed_resources); SotW cannot for EDS (absence
      // is not deletion outside LDS/CDS), so the SotW client keeps its last copy.
      const gone = new Snapshot({ [TypeUrl.ClusterLoadAssignment]: [] });
      cache.setSnapshot('same-sotw', gone);
      cache.setSnapshot('same-delta', gone);
      await until(() => delta.resources(TypeUrl.ClusterLoadAssignment).size === 0, 'delta removal of b');
      assert.equal(sotw.resources(TypeUrl.ClusterLoadAssignment).size, 1);
      // Per-resource versions are content hashes the client can send back on reconnect.
      const c = steps[1]?.resources(TypeUrl.Cluster).get('c');
      assert.ok(c);
      assert.equal(deltaVersionOfC, resourceVersion(c));
      const st = ads.streams().find((s) => s.node.id === 'same-delta');
      assert.equal(st?.protocol, 'delta');
      assert.equal(st?.types.get(TypeUrl.Cluster)?.ackedVersion, steps[2]?.version(TypeUrl.Cluster));
    } finally {
      sotw.close();
      delta.close();
    }
  });

  test('a Delta client NACKs a bad resource, keeps its last good config, and the refused version is not re-sent', async () => {
    cache.setSnapshot('nack-delta', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 1)] }));
    const client = new DeltaAdsClient({
      address,
      credentials: grpc.credentials.createInsecure(),
      node: { id: 'nack-delta' },
    });
    const pushes: number[] = [];
    client.subscribe(clusterType, [], (res) => pushes.push(res.size));
    const nackEvents: string[] = [];
    client.on('nack', (_t: string, _v: string, m: string) => nackEvents.push(m));
    client.start();
    try {
      await until(() => client.resources(TypeUrl.Cluster).size === 1, 'first CDS');
      const before = nacks.length;
      cache.setSnapshot('nack-delta', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 2), cluster('bad', 1)] }));
      await until(() => nackEvents.length === 1, 'the client NACKs');
      assert.match(nackEvents[0] ?? '', /bad: connect_timeout: must be set/);
      await until(() => nacks.length === before + 1, 'the server records the NACK');
      assert.deepEqual(nacks.at(-1), {
        node: 'nack-delta',
        protocol: 'delta',
        message: 'bad: connect_timeout: must be set',
      });
      assert.equal(client.resources<ClusterValue>(TypeUrl.Cluster).get('a')?.seconds, '1', 'last good a kept');
      assert.equal(client.resources(TypeUrl.Cluster).has('bad'), false);
      const st = ads
        .streams()
        .find((s) => s.node.id === 'nack-delta')
        ?.types.get(TypeUrl.Cluster);
      assert.equal(st?.nack?.version, cache.getSnapshot('nack-delta')?.version(TypeUrl.Cluster));
      // The same snapshot again (and an unrelated type change) must not bring the refused resources back.
      cache.setSnapshot(
        'nack-delta',
        new Snapshot({
          [TypeUrl.Cluster]: [cluster('a', 2), cluster('bad', 1)],
          [TypeUrl.Listener]: [],
        }),
      );
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(nackEvents.length, 1, 'no re-send of what was refused');
      // A fix goes out as a diff and is ACKed.
      cache.setSnapshot('nack-delta', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 3), cluster('b', 1)] }));
      await until(() => client.resources(TypeUrl.Cluster).has('b'), 'the fix');
      assert.deepEqual(
        sorted(client.resources<ClusterValue>(TypeUrl.Cluster)).map(([n, v]) => `${n}=${v.seconds}`),
        ['a=3', 'b=1'],
      );
      assert.equal(client.state()[0]?.lastError, undefined);
      assert.deepEqual(pushes, [1, 2]);
    } finally {
      client.close();
    }
  });
});

/** RawDelta drives DeltaAggregatedResources by hand, to check the wire protocol. */
class RawDelta {
  readonly client = new (loadAdsGrpc().Client)(address, grpc.credentials.createInsecure());
  readonly call = this.client.DeltaAggregatedResources();
  readonly responses: WireDeltaDiscoveryResponse[] = [];
  status: grpc.StatusObject | undefined;

  constructor() {
    this.call.on('data', (r: WireDeltaDiscoveryResponse) => this.responses.push(r));
    this.call.on('error', () => undefined);
    this.call.on('status', (s: grpc.StatusObject) => (this.status = s));
  }

  send(req: WireDeltaDiscoveryRequest): void {
    this.call.write(req);
  }

  async next(n: number): Promise<WireDeltaDiscoveryResponse> {
    await until(() => this.responses.length >= n, `response #${n}`);
    const r = this.responses[n - 1];
    assert.ok(r);
    return r;
  }

  async quiet(ms = 150): Promise<number> {
    await new Promise((r) => setTimeout(r, ms));
    return this.responses.length;
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

function names(r: WireDeltaDiscoveryResponse): string[] {
  return (r.resources ?? []).map((x) => x.name).sort();
}

describe('Delta wire protocol', () => {
  test('initial_resource_versions: a reconnect gets only what changed, and removals of what disappeared', async () => {
    const snap = new Snapshot({ [TypeUrl.Cluster]: [cluster('same', 1), cluster('changed', 2), cluster('new', 1)] });
    cache.setSnapshot('reconnect', snap);
    const raw = new RawDelta();
    try {
      raw.send({
        node: { id: 'reconnect' },
        type_url: TypeUrl.Cluster,
        initial_resource_versions: {
          same: snap.resourceVersion(TypeUrl.Cluster, 'same') ?? '',
          changed: 'old-version',
          gone: 'whatever',
        },
      });
      const r = await raw.next(1);
      assert.deepEqual(names(r), ['changed', 'new']);
      assert.deepEqual(r.removed_resources, ['gone']);
      assert.equal(r.system_version_info, snap.version(TypeUrl.Cluster));
      for (const x of r.resources) assert.equal(x.version, snap.resourceVersion(TypeUrl.Cluster, x.name));
    } finally {
      raw.close();
    }
  });

  test('one un-ACKed response per type; ACK releases the next diff; a stale nonce is ignored', async () => {
    cache.setSnapshot('inflight', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 1)] }));
    const raw = new RawDelta();
    try {
      raw.send({ node: { id: 'inflight' }, type_url: TypeUrl.Cluster });
      const first = await raw.next(1);
      assert.deepEqual(names(first), ['a']);
      cache.setSnapshot('inflight', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 2), cluster('b', 1)] }));
      assert.equal(await raw.quiet(), 1, 'nothing more before the ACK');
      raw.send({ type_url: TypeUrl.Cluster, response_nonce: 'not-a-nonce-we-sent' });
      assert.equal(await raw.quiet(), 1, 'a stale nonce does not release it');
      raw.send({ type_url: TypeUrl.Cluster, response_nonce: first.nonce });
      const second = await raw.next(2);
      assert.deepEqual(names(second), ['a', 'b']);
      assert.notEqual(second.nonce, first.nonce);
      // Now a removal only: b goes.
      raw.send({ type_url: TypeUrl.Cluster, response_nonce: second.nonce });
      cache.setSnapshot('inflight', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 2)] }));
      const third = await raw.next(3);
      assert.deepEqual(names(third), []);
      assert.deepEqual(third.removed_resources, ['b']);
    } finally {
      raw.close();
    }
  });

  test('subscribe answers even known and absent names; unsubscribe stops updates; * is wildcard for any type', async () => {
    cache.setSnapshot(
      'subs',
      new Snapshot({ [TypeUrl.ClusterLoadAssignment]: [cla('x', '10.0.0.1'), cla('y', '10.0.0.2')] }),
    );
    const raw = new RawDelta();
    try {
      raw.send({ node: { id: 'subs' }, type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: ['x', 'z'] });
      const r1 = await raw.next(1);
      assert.deepEqual(names(r1), ['x']);
      assert.deepEqual(r1.removed_resources, ['z'], 'a subscribed name that does not exist is reported removed');
      // Re-subscribing x (already held) must still answer it.
      raw.send({
        type_url: TypeUrl.ClusterLoadAssignment,
        response_nonce: r1.nonce,
        resource_names_subscribe: ['x'],
      });
      const r2 = await raw.next(2);
      assert.deepEqual(names(r2), ['x']);
      raw.send({
        type_url: TypeUrl.ClusterLoadAssignment,
        response_nonce: r2.nonce,
        resource_names_unsubscribe: ['x'],
      });
      cache.setSnapshot(
        'subs',
        new Snapshot({ [TypeUrl.ClusterLoadAssignment]: [cla('x', '10.0.0.9'), cla('y', '10.0.0.2')] }),
      );
      assert.equal(await raw.quiet(), 2, 'no update for an unsubscribed name');
      raw.send({ type_url: TypeUrl.ClusterLoadAssignment, resource_names_subscribe: ['*'] });
      const r3 = await raw.next(3);
      assert.deepEqual(names(r3), ['x', 'y']);
      const st = ads
        .streams()
        .find((s) => s.node.id === 'subs')
        ?.types.get(TypeUrl.ClusterLoadAssignment);
      assert.deepEqual(st?.names, ['*', 'z']);
    } finally {
      raw.close();
    }
  });

  test('an empty first CDS request is a wildcard that is answered even when empty', async () => {
    cache.setSnapshot('empty', new Snapshot({}));
    const raw = new RawDelta();
    try {
      raw.send({ node: { id: 'empty' }, type_url: TypeUrl.Cluster });
      const r = await raw.next(1);
      assert.deepEqual(names(r), []);
      assert.deepEqual(r.removed_resources ?? [], []);
      raw.send({ type_url: TypeUrl.Cluster, response_nonce: r.nonce });
      cache.setSnapshot('empty', new Snapshot({ [TypeUrl.Cluster]: [cluster('later', 1)] }));
      assert.deepEqual(names(await raw.next(2)), ['later']);
    } finally {
      raw.close();
    }
  });

  test('a request without type_url ends the stream with INVALID_ARGUMENT', async () => {
    const raw = new RawDelta();
    try {
      raw.send({ node: { id: 'bad-request' } });
      await until(() => raw.status !== undefined, 'stream status');
      assert.equal(raw.status?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(raw.status?.details ?? '', /type_url/);
    } finally {
      raw.close();
    }
  });
});
