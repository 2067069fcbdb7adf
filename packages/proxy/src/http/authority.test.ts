import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { checkAuthority, http2Authority } from './authority.js';
import { HttpConnectionManagerSchema } from '../xds/envoy-schemas.js';
import { NO_SECURITY, RequestGuard, compileHcmSecurity } from './request-guard.js';

test('HTTP/2: :authority names the request; host is used only without it (RFC 9113 §8.3.1)', () => {
  assert.deepEqual(http2Authority('reviews:9080', undefined), { ok: true, authority: 'reviews:9080' });
  assert.deepEqual(http2Authority(undefined, 'reviews:9080'), { ok: true, authority: 'reviews:9080' });
  assert.deepEqual(http2Authority(undefined, undefined), { ok: true, authority: '' });
  assert.deepEqual(http2Authority('reviews:9080', 'Reviews:9080'), { ok: true, authority: 'reviews:9080' });
  assert.deepEqual(http2Authority('[::1]:80', '[::1]:80'), { ok: true, authority: '[::1]:80' });
});

test('HTTP/2: a host header naming another host or port than :authority is malformed', () => {
  for (const [pseudo, host] of [
    ['reviews:9080', 'internal.reviews'],
    ['internal.reviews', 'reviews:9080'],
    ['reviews', 'reviews:9080'],
    ['reviews:9080', 'reviews:9081'],
    ['[::1]:80', '[::2]:80'],
  ] as const) {
    const r = http2Authority(pseudo, host);
    assert.ok(!r.ok, `${pseudo} / ${host} accepted`);
    assert.equal(r.details, 'http2.violation.of.messaging.rule');
  }
});

test('an authority is host[:port]: userinfo, spaces, slashes and non-digit ports are refused (RFC 9110 §7.2)', () => {
  for (const ok of ['reviews', 'reviews:9080', 'reviews.:9080', 'a_b.svc', '10.0.0.1:80', '[::1]:9080', '', 'x%41y'])
    assert.ok(checkAuthority(ok).ok, ok);
  for (const bad of [
    'x@internal.reviews',
    'user:pw@reviews:9080',
    'reviews:9080@',
    'a b',
    'a/b',
    'a:80x',
    'x%4',
    'a\tb',
  ]) {
    const r = checkAuthority(bad);
    assert.ok(!r.ok, `${bad} accepted`);
    assert.equal(r.details, 'http.invalid_authority');
  }
  const r = checkAuthority('x@internal.reviews');
  assert.ok(!r.ok && r.reason === 'userinfo in the authority');
});

/**
 * The guard as the HTTP handler calls it, behind real servers: the handler's view takes Host first (as
 * http-handler.ts builds it), and the guard must replace it with the request's authority or refuse the request.
 */
describe('RequestGuard: the authority it hands on', () => {
  const deps = { statPrefix: 'test', registry: new Registry(), log: pino({ level: 'silent' }), maxHeadersCount: 100 };
  const guard = new RequestGuard(NO_SECURITY, deps);
  // An ingress gateway's HCM as istiod sends it: strip_trailing_host_dot, then strip_any_host_port (on /strip).
  const ingressHcm = HttpConnectionManagerSchema.parse({
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'outbound_0.0.0.0_8080',
    rds: { route_config_name: 'http.8080', config_source: { ads: {}, resource_api_version: 'V3' } },
    http_filters: [
      {
        name: 'envoy.filters.http.router',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
      },
    ],
    strip_trailing_host_dot: true,
    strip_any_host_port: true,
  });
  const stripping = new RequestGuard(compileHcmSecurity(ingressHcm, 'hcm'), deps);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const view = {
      method: req.method ?? 'GET',
      authority: req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? '',
      path: req.url ?? '/',
      scheme: 'http',
      headers: req.headers,
    };
    const g = (req.url === '/strip' ? stripping : guard).decodeHeaders(req, view, undefined, () => undefined);
    if ('reply' in g) res.writeHead(g.reply.status, { 'x-details': g.reply.details }).end();
    else res.writeHead(200, { 'x-authority': g.view.authority }).end();
  };
  const h1 = http.createServer(handler);
  const h2 = http2.createServer((req, res) =>
    handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse),
  );
  let h1Port = 0;
  let h2Port = 0;
  before(async () => {
    for (const s of [h1, h2]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    h1Port = (h1.address() as net.AddressInfo).port;
    h2Port = (h2.address() as net.AddressInfo).port;
  });
  after(() => {
    h1.closeAllConnections();
    h1.close();
    h2.close();
  });

  async function viaH2(headers: http2.OutgoingHttpHeaders): Promise<http2.IncomingHttpHeaders> {
    const client = http2.connect(`http://127.0.0.1:${h2Port}`);
    try {
      return await new Promise((resolve, reject) => {
        const req = client.request({ ':path': '/x', ...headers });
        req.on('response', resolve);
        req.on('error', reject);
        req.resume();
      });
    } finally {
      client.close();
    }
  }

  function viaH1(host: string, path = '/x'): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: h1Port, path, headers: { host }, agent: false }, (res) => {
        res.resume();
        resolve(res);
      });
      req.on('error', reject);
    });
  }

  test('HTTP/2: :authority is authorized and routed, not a host header that agrees', async () => {
    const r = await viaH2({ ':authority': 'reviews:9080', host: 'Reviews:9080' });
    assert.equal(r[':status'], 200);
    assert.equal(r['x-authority'], 'reviews:9080');
  });

  test('HTTP/2: host disagreeing with :authority is refused either way round', async () => {
    for (const [authority, host] of [
      ['internal.reviews', 'reviews:9080'],
      ['reviews:9080', 'internal.reviews'],
    ]) {
      const r = await viaH2({ ':authority': authority, host });
      assert.equal(r[':status'], 400, `${authority} / ${host}`);
      assert.equal(r['x-details'], 'http2.violation.of.messaging.rule');
    }
  });

  test('HTTP/2 and HTTP/1.1: userinfo in the authority is refused', async () => {
    const r2 = await viaH2({ ':authority': 'x@internal.reviews' });
    assert.equal(r2[':status'], 400);
    assert.equal(r2['x-details'], 'http.invalid_authority');
    const r1 = await viaH1('x@internal.reviews');
    assert.equal(r1.statusCode, 400);
    assert.equal(r1.headers['x-details'], 'http.invalid_authority');
    const ok = await viaH1('reviews:9080');
    assert.equal(ok.headers['x-authority'], 'reviews:9080');
  });

  test('strip_any_host_port: the port is gone before routing, after the trailing dot; without it the port stays', async () => {
    for (const [host, want] of [
      ['bookinfo.example.com:8080', 'bookinfo.example.com'],
      ['bookinfo.example.com.:8080', 'bookinfo.example.com'],
      ['[::1]:8080', '[::1]'],
      ['bookinfo.example.com', 'bookinfo.example.com'],
    ] as const)
      assert.equal((await viaH1(host, '/strip')).headers['x-authority'], want, host);
    const r2 = await viaH2({ ':authority': 'bookinfo.example.com:8443', ':path': '/strip' });
    assert.equal(r2['x-authority'], 'bookinfo.example.com');
    assert.equal((await viaH1('bookinfo.example.com:8080')).headers['x-authority'], 'bookinfo.example.com:8080');
  });
});
