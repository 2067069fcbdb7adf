import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MeshError } from './errors.js';
import { formatSpiffeId, parseSpiffeId, parseSpiffeUri } from './spiffe.js';

function rejects(fn: () => unknown, why: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(MeshError.isMeshError(err));
    assert.equal(err.code, 'FEDMESH_ERR_INVALID_SPIFFE_ID');
    assert.match(err.message, why);
    return true;
  });
}

describe('SPIFFE IDs', () => {
  it('formats and parses Istio workload identities', () => {
    const id = { trustDomain: 'cluster.local', namespace: 'bookinfo', serviceAccount: 'bookinfo-reviews' };
    const uri = formatSpiffeId(id);
    assert.equal(uri, 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews');
    assert.deepEqual(parseSpiffeId(uri), id);
    assert.deepEqual(parseSpiffeId('spiffe://td_1.example-x/ns/Ns.A/sa/s_a'), {
      trustDomain: 'td_1.example-x',
      namespace: 'Ns.A',
      serviceAccount: 's_a',
    });
  });

  it('parses any valid SPIFFE ID into trust domain and path', () => {
    assert.deepEqual(parseSpiffeUri('spiffe://example.org'), { trustDomain: 'example.org', path: '' });
    assert.deepEqual(parseSpiffeUri('spiffe://example.org/a/b.c/-_'), {
      trustDomain: 'example.org',
      path: '/a/b.c/-_',
    });
  });

  it('rejects IDs that break the SPIFFE ID spec', () => {
    rejects(() => parseSpiffeUri('https://example.org/ns/a/sa/b'), /scheme must be "spiffe:\/\/"/);
    rejects(() => parseSpiffeUri('SPIFFE://example.org/ns/a/sa/b'), /scheme/);
    rejects(() => parseSpiffeUri('spiffe://Example.org/ns/a'), /lowercase/);
    rejects(() => parseSpiffeUri('spiffe://example.org:8443/ns/a'), /port/);
    rejects(() => parseSpiffeUri('spiffe://user@example.org/ns/a'), /userinfo/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/a?x=1'), /query/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/a#frag'), /fragment/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/a%20b'), /percent/);
    rejects(() => parseSpiffeUri('spiffe:///ns/a'), /trust domain is empty/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns//sa/b'), /must not be empty/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/./sa/b'), /"\." or "\.\."/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/../sa/b'), /"\." or "\.\."/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/a/'), /trailing slash/);
    rejects(() => parseSpiffeUri('spiffe://example.org/ns/a b'), /may contain only/);
    rejects(() => parseSpiffeUri(`spiffe://${'a'.repeat(256)}`), /longer than 255/);
    rejects(() => parseSpiffeUri(`spiffe://example.org/${'a'.repeat(2048)}`), /longer than 2048/);
  });

  it('requires the /ns/<ns>/sa/<sa> path for workload identities', () => {
    rejects(() => parseSpiffeId('spiffe://example.org/workload/a'), /\/ns\/<namespace>\/sa\/<service-account>/);
    rejects(() => parseSpiffeId('spiffe://example.org/ns/a/sa/b/c'), /\/ns\/<namespace>/);
    rejects(() => parseSpiffeId('spiffe://example.org'), /\/ns\/<namespace>/);
  });

  it('refuses to format invalid parts', () => {
    rejects(() => formatSpiffeId({ trustDomain: 'Cluster.Local', namespace: 'a', serviceAccount: 'b' }), /lowercase/);
    rejects(() => formatSpiffeId({ trustDomain: 'cluster.local', namespace: '', serviceAccount: 'b' }), /namespace/);
    rejects(
      () => formatSpiffeId({ trustDomain: 'cluster.local', namespace: 'a', serviceAccount: 'b/c' }),
      /service account/,
    );
  });
});
