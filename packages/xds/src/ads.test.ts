import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl, decodeAny, encodeAny, type AnyMessage } from '@fedmesh/api/xds';
import {
  AdsClient,
  Snapshot,
  SnapshotCache,
  createAdsServer,
  loadAdsGrpc,
  type WireDiscoveryResponse,
  type XdsResourceType,
} from './index.js';

const clusterType: XdsResourceType<{ name: string; connectTimeout: string }> = {
  typeUrl: TypeUrl.Cluster,
  decode(any: AnyMessage) {
    const c = decodeAny(any) as { name?: string; connect_timeout?: { seconds?: string } };
    const name = c.name ?? '';
    if (name.startsWith('bad')) return { name, error: 'connect_timeout: must be set' };
    return { name, value: { name, connectTimeout: c.connect_timeout?.seconds ?? '0' } };
  },
};

function cluster(name: string, seconds: number): { name: string; resource: AnyMessage } {
  return { name, resource: encodeAny(TypeUrl.Cluster, { name, connect_timeout: { seconds } }) };
}

const cache = new SnapshotCache();
const nacks: string[] = [];
const ads = createAdsServer(cache, { onNack: (_s, _t, _v, m) => nacks.push(m) });
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

test('a client applies and ACKs a push, NACKs a bad one and keeps its last good config', async () => {
  cache.setSnapshot('n1', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 1)] }));
  const client = new AdsClient({ address, credentials: grpc.credentials.createInsecure(), node: { id: 'n1' } });
  const seen: string[][] = [];
  client.subscribe(clusterType, [], (res) => seen.push([...res.keys()]));
  client.start();
  try {
    await once(client, 'ack');
    assert.deepEqual(seen, [['a']]);

    cache.setSnapshot('n1', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 2), cluster('bad', 1)] }));
    const [, , message] = (await once(client, 'nack')) as [string, string, string];
    assert.match(message, /bad: connect_timeout: must be set/);
    assert.equal(client.resources<{ connectTimeout: string }>(TypeUrl.Cluster).get('a')?.connectTimeout, '1');
    assert.equal(client.resources(TypeUrl.Cluster).has('bad'), false);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(nacks.length, 1, 'the server records the NACK and does not re-send the refused version');

    cache.setSnapshot('n1', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 3), cluster('b', 1)] }));
    await once(client, 'ack');
    assert.deepEqual([...client.resources(TypeUrl.Cluster).keys()].sort(), ['a', 'b']);
    const want = cache.getSnapshot('n1')?.version(TypeUrl.Cluster);
    const acked = (): string | undefined =>
      ads
        .streams()
        .find((s) => s.node.id === 'n1')
        ?.types.get(TypeUrl.Cluster)?.ackedVersion;
    for (let i = 0; i < 100 && acked() !== want; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(acked(), want, 'the server saw the ACK of the latest version');
  } finally {
    client.close();
  }
});

test('pushes wait for the ACK of the previous one, and a stale nonce is ignored', async () => {
  cache.setSnapshot('n2', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 1)] }));
  const { Client } = loadAdsGrpc();
  const raw = new Client(address, grpc.credentials.createInsecure());
  const call = raw.StreamAggregatedResources();
  const responses: WireDiscoveryResponse[] = [];
  call.on('data', (r: WireDiscoveryResponse) => responses.push(r));
  call.on('error', () => undefined);
  const waitFor = async (n: number): Promise<void> => {
    for (let i = 0; i < 100 && responses.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  };
  try {
    call.write({ node: { id: 'n2' }, type_url: TypeUrl.Cluster, resource_names: [] });
    await waitFor(1);
    const first = responses[0];
    assert.ok(first);
    // Not yet ACKed: a new snapshot must not be pushed.
    cache.setSnapshot('n2', new Snapshot({ [TypeUrl.Cluster]: [cluster('a', 2)] }));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(responses.length, 1);
    call.write({ type_url: TypeUrl.Cluster, version_info: first.version_info, response_nonce: first.nonce });
    await waitFor(2);
    const second = responses[1];
    assert.ok(second);
    assert.notEqual(second.version_info, first.version_info);
    // A NACK that carries the old nonce is stale: the server ignores it.
    const before = nacks.length;
    call.write({
      type_url: TypeUrl.Cluster,
      version_info: first.version_info,
      response_nonce: first.nonce,
      error_detail: { code: 3, message: 'stale' },
    });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(nacks.length, before);
    const st = ads
      .streams()
      .find((s) => s.node.id === 'n2')
      ?.types.get(TypeUrl.Cluster);
    assert.equal(st?.nack, undefined);
  } finally {
    call.cancel();
    raw.close();
  }
});
