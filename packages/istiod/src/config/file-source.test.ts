import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import type { DestinationRuleObject, VirtualServiceObject } from '../model/config.js';
import { FileConfigSource, loadManifestText } from './file-source.js';
import { ConfigStore, type ConfigEvent, type StoredObject } from './store.js';

const DR = (subsets: string[]): string => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews }
spec:
  host: reviews
  subsets: [${subsets.map((s) => `{ name: ${s}, labels: { version: ${s} } }`).join(', ')}]
`;
const REVIEWS_VS = (w1: number, w2: number): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews }
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: { host: reviews, subset: v1 }
      weight: ${w1}
    - destination: { host: reviews, subset: v2 }
      weight: ${w2}
`;
const RATINGS_VS = (subset: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ratings }
spec:
  hosts: [ratings]
  http:
  - route: [{ destination: { host: ratings, subset: ${subset} } }]
`;
const file = (...docs: string[]): string => docs.join('---\n');

/** weights reads the route weights of the stored `reviews` VirtualService. */
function weights(store: ConfigStore<StoredObject>): (number | undefined)[] {
  const vs = store.get('VirtualService/default/reviews') as VirtualServiceObject | undefined;
  return (vs?.spec.http?.[0]?.route ?? []).map((d) => d.weight);
}
function subsets(store: ConfigStore<StoredObject>): string[] {
  const dr = store.get('DestinationRule/default/reviews') as DestinationRuleObject | undefined;
  return (dr?.spec.subsets ?? []).map((s) => s.name);
}
function ratingsSubset(store: ConfigStore<StoredObject>): string | undefined {
  const vs = store.get('VirtualService/default/ratings') as VirtualServiceObject | undefined;
  return vs?.spec.http?.[0]?.route?.[0]?.destination.subset;
}

describe('loadManifestText for a watched file (replace: the file owns its objects)', () => {
  const owner = 'file:/etc/mesh/reviews.yaml';
  function loaded(): ConfigStore<StoredObject> {
    const store = new ConfigStore<StoredObject>();
    const res = loadManifestText(
      store,
      file(DR(['v1', 'v2']), REVIEWS_VS(90, 10), RATINGS_VS('v1')),
      owner,
      true,
      'reviews.yaml',
    );
    assert.deepEqual(res.errors, []);
    return store;
  }

  it('a VirtualService that becomes malformed keeps its last good version; the rest of the file still updates', () => {
    const store = loaded();
    const res = loadManifestText(
      store,
      file(DR(['v1', 'v2', 'v3']), REVIEWS_VS(90, -10), RATINGS_VS('v2')),
      owner,
      true,
      'reviews.yaml',
    );
    assert.deepEqual(
      res.errors.map((e) => [e.file, e.index, e.kind, e.name, e.path]),
      [['reviews.yaml', 1, 'VirtualService', 'reviews', 'spec.http[0].route[1].weight']],
    );
    assert.deepEqual(weights(store), [90, 10], 'last good reviews VirtualService kept');
    assert.deepEqual(subsets(store), ['v1', 'v2', 'v3'], 'DestinationRule in the same file updated');
    assert.equal(ratingsSubset(store), 'v2', 'other VirtualService in the same file updated');
  });

  it('a malformed VirtualService that was never good is simply absent', () => {
    const store = new ConfigStore<StoredObject>();
    loadManifestText(store, file(DR(['v1']), REVIEWS_VS(-1, 101)), owner, true, 'reviews.yaml');
    assert.equal(store.get('VirtualService/default/reviews'), undefined);
    assert.deepEqual(subsets(store), ['v1']);
  });

  it('a document removed from the file is deleted, and objects of other owners stay', () => {
    const store = loaded();
    loadManifestText(store, RATINGS_VS('v3'), 'api', false);
    const events: ConfigEvent[] = [];
    store.on('change', (e: ConfigEvent) => events.push(e));
    loadManifestText(store, file(DR(['v1', 'v2']), REVIEWS_VS(90, 10)), owner, true, 'reviews.yaml');
    assert.deepEqual(events, [], 'ratings is now owned by the API, so the file does not delete it');
    assert.equal(ratingsSubset(store), 'v3');

    const own = loaded();
    const seen: ConfigEvent[] = [];
    own.on('change', (e: ConfigEvent) => seen.push(e));
    loadManifestText(own, file(DR(['v1', 'v2']), RATINGS_VS('v1')), owner, true, 'reviews.yaml');
    assert.equal(own.get('VirtualService/default/reviews'), undefined);
    assert.deepEqual(
      seen.map((e) => [e.changed, e.deleted]),
      [[[], ['VirtualService/default/reviews']]],
    );
    assert.equal(ratingsSubset(own), 'v1');
  });

  it('a YAML syntax error anywhere in the file changes nothing', () => {
    const store = loaded();
    const before = store.revision;
    const res = loadManifestText(
      store,
      file(DR(['v1']), 'spec: [unclosed\n', RATINGS_VS('v9')),
      owner,
      true,
      'reviews.yaml',
    );
    assert.ok(res.errors.some((e) => e.severity === 'error' && /YAML syntax/.test(e.message) && e.index === 1));
    assert.deepEqual(res.applied, []);
    assert.equal(store.revision, before);
    assert.deepEqual([weights(store), subsets(store), ratingsSubset(store)], [[90, 10], ['v1', 'v2'], 'v1']);
  });

  it('a document that cannot be identified (no metadata.name) changes nothing either', () => {
    const store = loaded();
    const before = store.revision;
    const nameless = 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {}\nspec: { hosts: [x] }\n';
    loadManifestText(store, file(DR(['v1']), nameless), owner, true, 'reviews.yaml');
    assert.equal(store.revision, before);
    assert.ok(store.get('VirtualService/default/ratings'));
  });

  it('reloading an unchanged file emits no change', () => {
    const store = loaded();
    const before = store.revision;
    loadManifestText(store, file(DR(['v1', 'v2']), REVIEWS_VS(90, 10), RATINGS_VS('v1')), owner, true, 'reviews.yaml');
    assert.equal(store.revision, before);
  });
});

describe('loadManifestText for `fedmesh apply` (upsert)', () => {
  it('a bad weight is reported with file, index and field path; the other documents apply', () => {
    const store = new ConfigStore<StoredObject>();
    loadManifestText(store, REVIEWS_VS(50, 50), 'api', false, 'earlier.yaml');
    const res = loadManifestText(store, file(DR(['v1', 'v2']), REVIEWS_VS(90, -10)), 'api', false, 'bad-weight.yaml');
    const [err, ...rest] = res.errors;
    assert.deepEqual(rest, []);
    assert.ok(err);
    assert.equal(err.file, 'bad-weight.yaml');
    assert.equal(err.index, 1);
    assert.equal(err.path, 'spec.http[0].route[1].weight');
    assert.equal(err.code, 'FEDMESH_ERR_INVALID_CONFIG');
    assert.equal(err.severity, 'error');
    assert.equal(err.line, 18);
    assert.match(err.message, /≥ 0/);
    assert.deepEqual(res.applied, ['DestinationRule/default/reviews']);
    assert.deepEqual(weights(store), [50, 50], 'the earlier VirtualService is untouched');
  });

  it('apply never deletes what it was not given', () => {
    const store = new ConfigStore<StoredObject>();
    loadManifestText(store, file(DR(['v1']), RATINGS_VS('v1')), 'api', false);
    loadManifestText(store, REVIEWS_VS(90, 10), 'api', false);
    assert.deepEqual(
      store
        .list()
        .map((o) => `${o.kind}/${o.metadata.name}`)
        .sort(),
      ['DestinationRule/reviews', 'VirtualService/ratings', 'VirtualService/reviews'],
    );
  });
});

/** waitFor polls `cond` every 10 ms until it holds, or fails after `ms`. */
async function waitFor(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('FileConfigSource watching a real file', () => {
  let dir = '';
  let ac: AbortController;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-file-source-'));
    ac = new AbortController();
  });
  afterEach(() => {
    ac.abort();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('follows edits, keeps the last good VirtualService, deletes removed documents and ignores broken YAML', async () => {
    const logs: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const f = path.join(dir, 'mesh.yaml');
    fs.writeFileSync(f, file(DR(['v1', 'v2']), REVIEWS_VS(90, 10), RATINGS_VS('v1')));
    const store = new ConfigStore<StoredObject>();
    const source = new FileConfigSource(store, [f], log);
    const [first] = source.start(ac.signal);
    assert.deepEqual(first?.errors, []);
    assert.deepEqual(weights(store), [90, 10]);
    assert.equal(store.ownerOf('VirtualService/default/reviews'), `file:${f}`);

    fs.writeFileSync(f, file(DR(['v1', 'v2', 'v3']), REVIEWS_VS(80, -20), RATINGS_VS('v2')));
    await waitFor('the DestinationRule update', () => subsets(store).length === 3);
    assert.deepEqual(weights(store), [90, 10]);
    assert.equal(ratingsSubset(store), 'v2');
    const warn = logs.find((l) => l.path === 'spec.http[0].route[1].weight');
    assert.ok(warn, 'the bad weight is logged');
    assert.deepEqual(
      [warn.file, warn.index, warn.kind, warn.name, warn.level],
      ['mesh.yaml', 1, 'VirtualService', 'reviews', 40],
    );

    fs.writeFileSync(f, file(DR(['v1', 'v2', 'v3']), REVIEWS_VS(80, 20)));
    await waitFor('ratings to be deleted', () => store.get('VirtualService/default/ratings') === undefined);
    assert.deepEqual(weights(store), [80, 20]);

    const rev = store.revision;
    const before = logs.length;
    fs.writeFileSync(f, 'apiVersion: networking.istio.io/v1\nkind: [oops\n');
    await waitFor('the syntax error to be logged', () =>
      logs.slice(before).some((l) => /YAML syntax/.test(String(l.msg))),
    );
    assert.equal(store.revision, rev);
    assert.deepEqual(
      [weights(store), subsets(store)],
      [
        [80, 20],
        ['v1', 'v2', 'v3'],
      ],
    );
  });

  it('a file that disappears keeps the last good config', async () => {
    const logs: Record<string, unknown>[] = [];
    const log = pino(
      { level: 'info' },
      { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, unknown>) },
    );
    const f = path.join(dir, 'mesh.yaml');
    fs.writeFileSync(f, REVIEWS_VS(90, 10));
    const store = new ConfigStore<StoredObject>();
    new FileConfigSource(store, [f], log).start(ac.signal);
    fs.rmSync(f);
    await waitFor('the unreadable file to be logged', () => logs.some((l) => /unreadable/.test(String(l.msg))));
    assert.deepEqual(weights(store), [90, 10]);
  });

  it('start throws when a file cannot be read', () => {
    const store = new ConfigStore<StoredObject>();
    const source = new FileConfigSource(store, [path.join(dir, 'missing.yaml')], pino({ level: 'silent' }));
    assert.throws(() => source.start(ac.signal), /ENOENT/);
  });
});
