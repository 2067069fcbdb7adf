import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigStore, configKey, type ConfigEvent, type StoredObject } from './store.js';

function vs(name: string, host: string, namespace?: string): StoredObject & { spec: { hosts: string[] } } {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, ...(namespace ? { namespace } : {}) },
    spec: { hosts: [host] },
  };
}

function recorder(store: ConfigStore): ConfigEvent[] {
  const events: ConfigEvent[] = [];
  store.on('change', (e: ConfigEvent) => events.push(e));
  return events;
}

describe('ConfigStore', () => {
  it('keys objects as Kind/namespace/name, namespace defaulting to default', () => {
    assert.equal(configKey(vs('reviews', 'reviews')), 'VirtualService/default/reviews');
    assert.equal(configKey(vs('reviews', 'reviews', 'team-b')), 'VirtualService/team-b/reviews');
  });

  it('apply emits one event per write with the changed keys, and skips identical objects', () => {
    const store = new ConfigStore();
    const events = recorder(store);
    assert.deepEqual(store.apply([vs('a', 'a'), vs('b', 'b')], 'api'), [
      'VirtualService/default/a',
      'VirtualService/default/b',
    ]);
    assert.deepEqual(store.apply([vs('a', 'a')], 'api'), []);
    assert.deepEqual(store.apply([vs('a', 'a2')], 'api'), ['VirtualService/default/a']);
    assert.deepEqual(
      events.map((e) => [e.revision, e.changed, e.deleted, [...e.kinds]]),
      [
        [1, ['VirtualService/default/a', 'VirtualService/default/b'], [], ['VirtualService']],
        [2, ['VirtualService/default/a'], [], ['VirtualService']],
      ],
    );
    assert.equal(store.revision, 2);
  });

  it('an identical object written by another owner changes ownership', () => {
    const store = new ConfigStore();
    store.apply([vs('a', 'a')], 'file:/x.yaml');
    assert.deepEqual(store.apply([vs('a', 'a')], 'api'), ['VirtualService/default/a']);
    assert.equal(store.ownerOf('VirtualService/default/a'), 'api');
  });

  it('list filters by kind and namespace', () => {
    const store = new ConfigStore();
    store.apply(
      [vs('a', 'a'), vs('b', 'b', 'team-b'), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } }],
      'api',
    );
    assert.deepEqual(
      store
        .list('VirtualService')
        .map((o) => o.metadata.name)
        .sort(),
      ['a', 'b'],
    );
    assert.deepEqual(
      store.list('VirtualService', 'team-b').map((o) => o.metadata.name),
      ['b'],
    );
    assert.deepEqual(
      store
        .list(undefined, 'default')
        .map((o) => o.kind)
        .sort(),
      ['Service', 'VirtualService'],
    );
  });

  it('remove deletes existing keys only, in one event', () => {
    const store = new ConfigStore();
    store.apply([vs('a', 'a'), vs('b', 'b')], 'api');
    const events = recorder(store);
    assert.deepEqual(store.remove(['VirtualService/default/a', 'VirtualService/default/nope']), [
      'VirtualService/default/a',
    ]);
    assert.deepEqual(store.remove(['VirtualService/default/nope']), []);
    assert.deepEqual(
      events.map((e) => e.deleted),
      [['VirtualService/default/a']],
    );
  });

  it('replaceOwned makes an owner hold exactly the given objects, except kept keys, in one event', () => {
    const store = new ConfigStore();
    store.apply([vs('a', 'a'), vs('b', 'b'), vs('c', 'c')], 'file:/x.yaml');
    store.apply([vs('other', 'o')], 'api');
    const events = recorder(store);
    store.replaceOwned([vs('a', 'a'), vs('d', 'd')], 'file:/x.yaml', new Set(['VirtualService/default/c']));
    assert.deepEqual(
      store
        .list()
        .map((o) => o.metadata.name)
        .sort(),
      ['a', 'c', 'd', 'other'],
    );
    assert.deepEqual(
      events.map((e) => [e.changed, e.deleted]),
      [[['VirtualService/default/d'], ['VirtualService/default/b']]],
    );
    store.replaceOwned([vs('a', 'a'), vs('d', 'd')], 'file:/x.yaml', new Set(['VirtualService/default/c']));
    assert.equal(events.length, 1, 'no event when nothing changed');
  });
});
