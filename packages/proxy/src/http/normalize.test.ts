import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  normalizeRequestPath,
  removeDotSegments,
  stripHostPort,
  stripTrailingHostDot,
  type PathNormalizationOptions,
} from './normalize.js';

// Istio's meshConfig.pathNormalization levels as fedmesh's istiod emits them (docs/adr/0011).
const NONE: PathNormalizationOptions = { normalizePath: false, mergeSlashes: false, escapedSlashes: 'KEEP_UNCHANGED' };
const BASE: PathNormalizationOptions = { normalizePath: true, mergeSlashes: false, escapedSlashes: 'REJECT_REQUEST' };
const MERGE: PathNormalizationOptions = { ...BASE, mergeSlashes: true };
const DECODE_MERGE: PathNormalizationOptions = {
  normalizePath: true,
  mergeSlashes: true,
  escapedSlashes: 'UNESCAPE_AND_FORWARD',
};

function path(target: string, opts: PathNormalizationOptions): string {
  const r = normalizeRequestPath(target, opts);
  assert.ok(r.ok, `${target} refused: ${r.ok ? '' : r.reason}`);
  return r.path;
}

function refused(target: string, opts: PathNormalizationOptions): string {
  const r = normalizeRequestPath(target, opts);
  assert.ok(!r.ok, `${target} accepted as ${r.ok ? r.path : ''}`);
  return r.reason;
}

test('RFC 3986 §5.2.4 examples: dot segments are removed and never climb above the root', () => {
  assert.equal(removeDotSegments('/a/b/c/./../../g'), '/a/g');
  assert.equal(removeDotSegments('/mid/content=5/../6'), '/mid/6');
  assert.equal(removeDotSegments('/../../admin'), '/admin');
  assert.equal(removeDotSegments('/a/..'), '/');
  assert.equal(removeDotSegments('/a/.'), '/a/');
  assert.equal(removeDotSegments('/a/b/..'), '/a/');
});

test('BASE decodes unreserved escapes, upper-cases the rest and resolves dot segments (also encoded ones)', () => {
  assert.equal(path('/%61dmin', BASE), '/admin');
  assert.equal(path('/a/../admin', BASE), '/admin');
  assert.equal(path('/a/%2e%2E/admin', BASE), '/admin');
  assert.equal(path('/%7euser/%e2%82%ac', BASE), '/~user/%E2%82%AC');
  assert.equal(path('/public/./x?q=/../a', BASE), '/public/x?q=/../a', 'the query is kept as sent');
  assert.equal(path('//admin', BASE), '//admin', 'BASE does not merge slashes');
  assert.equal(path('*', BASE), '*', 'OPTIONS * is left alone');
});

test('MERGE_SLASHES and DECODE_AND_MERGE_SLASHES', () => {
  assert.equal(path('//admin', MERGE), '/admin');
  assert.equal(path('/a//b///c', MERGE), '/a/b/c');
  assert.equal(path('/%2Fadmin', DECODE_MERGE), '/admin');
  assert.equal(path('/%5cadmin', DECODE_MERGE), '/admin', 'an escaped backslash becomes a slash, as Envoy does');
  assert.equal(path('/a%2F..%2Fadmin', DECODE_MERGE), '/admin', 'unescaping happens before dot-segment removal');
});

test('escaped slashes are refused under BASE and MERGE_SLASHES (REJECT_REQUEST), kept under NONE', () => {
  assert.match(refused('/%2Fadmin', BASE), /escaped slash/);
  assert.match(refused('/x%2fadmin', MERGE), /escaped slash/);
  assert.match(refused('/%5Cadmin', BASE), /escaped slash/);
  assert.equal(path('/%2Fadmin', NONE), '/%2Fadmin');
});

test('a dot segment with path parameters is refused when normalizing (Tomcat reads `..;` as `..`)', () => {
  assert.match(refused('/public/..;/admin', BASE), /dot segment with path parameters/);
  assert.match(refused('/public/.;x/admin', MERGE), /dot segment with path parameters/);
  assert.match(refused('/public/%2e%2e;/admin', BASE), /dot segment with path parameters/);
  assert.equal(path('/public;jsessionid=1/x', BASE), '/public;jsessionid=1/x', 'parameters elsewhere are kept');
  assert.equal(path('/public/..;/admin', NONE), '/public/..;/admin');
});

test('UNESCAPE_AND_REDIRECT asks for a redirect to the unescaped path', () => {
  const r = normalizeRequestPath('/a%2Fb?x=1', { ...BASE, escapedSlashes: 'UNESCAPE_AND_REDIRECT' });
  assert.deepEqual(r, { ok: true, path: '/a/b?x=1', redirect: true });
});

test('refused whatever the level: %00, bad escapes, backslash, fragment, control and non-ASCII, not origin-form', () => {
  for (const opts of [NONE, BASE, MERGE, DECODE_MERGE]) {
    assert.match(refused('/admin%00', opts), /%00/);
    assert.match(refused('/x?a=%00', opts), /%00/);
    assert.match(refused('/ad%zzmin', opts), /percent-encoding/);
    assert.match(refused('/admin%4', opts), /percent-encoding/);
    assert.match(refused('/admin%', opts), /percent-encoding/);
    assert.match(refused('\\admin', opts), /start with/);
    assert.match(refused('/\\admin', opts), /backslash/);
    assert.match(refused('/admin#x', opts), /fragment/);
    assert.match(refused('/ad min', opts), /invalid character/);
    assert.match(refused('/é', opts), /invalid character/);
    assert.match(refused('%2Fadmin', opts), /start with/);
    assert.match(refused('admin', opts), /start with/);
  }
});

test('strip_trailing_host_dot removes one trailing dot, keeping the port', () => {
  assert.equal(stripTrailingHostDot('reviews.'), 'reviews');
  assert.equal(stripTrailingHostDot('reviews.default.:9080'), 'reviews.default:9080');
  assert.equal(stripTrailingHostDot('reviews:9080'), 'reviews:9080');
  assert.equal(stripTrailingHostDot('[::1]:80'), '[::1]:80');
});

test('strip_any_host_port removes a numeric port, IPv6 literals included, and nothing else', () => {
  assert.equal(stripHostPort('bookinfo.example.com:8080'), 'bookinfo.example.com');
  assert.equal(stripHostPort('Bookinfo.Example.com:80'), 'Bookinfo.Example.com');
  assert.equal(stripHostPort('10.0.0.1:443'), '10.0.0.1');
  assert.equal(stripHostPort('[::1]:8080'), '[::1]');
  for (const same of ['bookinfo.example.com', '[::1]', '[fe80::1%25eth0]', 'host:', '', 'a:99999999999'])
    assert.equal(stripHostPort(same), same, same);
});
