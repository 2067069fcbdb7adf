/**
 * Listener limits and timeouts, with real sockets: slowloris header dribble, a body that never finishes, idle
 * keep-alive connections, idle TLS handshakes, and header count and size limits. The first group drives the
 * proxy's ListenerManager with short limits so that each case takes about a second; the last test checks the
 * defaults a real sidecar runs with (10 s headers timeout, 10 s handshake timeout).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { ClusterManager, ListenerManager, ListenerType, ProxyMetrics, type ListenerLimits } from '@fedmesh/proxy';
import { FIXTURES, LocalMesh, freeSubnet, testLogger, waitUntil, type TestPod } from '../harness.js';
import { plainDialer, rawExchange } from './fixture.js';

const LIMITS: ListenerLimits = {
  headersTimeoutMs: 1_000,
  requestTimeoutMs: 2_000,
  keepAliveTimeoutMs: 1_000,
  handshakeTimeoutMs: 1_000,
  maxHeaderSizeBytes: 4_096,
  maxHeadersCount: 20,
  maxConnections: 50,
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-limits-'));
let manager: ListenerManager;
let host = '';
const PORT = 15001;

function listener(ip: string) {
  const decoded = ListenerType.decode(
    encodeAny(TypeUrl.Listener, {
      name: 'limits',
      address: { socket_address: { address: ip, port_value: PORT } },
      filter_chains: [
        {
          name: 'http',
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'limits',
                route_config: {
                  name: 'local',
                  virtual_hosts: [
                    {
                      name: 'all',
                      domains: ['*'],
                      routes: [
                        { match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'ok' } } },
                      ],
                    },
                  ],
                },
                http_filters: [
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                  },
                ],
              },
            },
          ],
        },
      ],
    }),
  );
  assert.ok('value' in decoded, 'error' in decoded ? decoded.error : '');
  return decoded.value;
}

before(async () => {
  host = `127.0.${await freeSubnet()}.10`;
  const log = testLogger(dir, 'proxy');
  manager = new ListenerManager({
    log,
    limits: LIMITS,
    handlerContext: {
      clusters: new ClusterManager(),
      metrics: new ProxyMetrics(),
      accessLog: log.child({ scope: 'access' }),
      self: {
        name: 'limits',
        namespace: 'default',
        app: 'limits',
        version: 'v1',
        principal: '',
        cluster: 'Kubernetes',
      },
    },
    rds: () => undefined,
    tls: () => undefined,
  });
  await manager.apply(new Map([['limits', listener(host)]]));
});
after(() => {
  manager.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** dribble connects, writes `head`, then one of `drip` every 200 ms until the server closes or 15 s pass. */
function dribble(head: string, drip: string): Promise<{ closedAfterMs: number | undefined; answer: string }> {
  return new Promise((resolve) => {
    const start = Date.now();
    let answer = '';
    const sock = net.connect({ host, port: PORT }, () => sock.write(head));
    const timer = setInterval(() => sock.writable && sock.write(drip), 200);
    const stop = (closed: boolean): void => {
      clearInterval(timer);
      clearTimeout(limit);
      sock.destroy();
      resolve({ closedAfterMs: closed ? Date.now() - start : undefined, answer });
    };
    const limit = setTimeout(() => stop(false), 15_000);
    sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => stop(true));
  });
}

describe('listener limits (ListenerManager with 1 s headers, 2 s request, 1 s keep-alive timeouts)', () => {
  it('a slowloris header dribble is cut off with 408 and a parser-error access log line', async () => {
    const r = await dribble('GET / HTTP/1.1\r\nHost: a\r\n', 'X-Slow: 1\r\n');
    assert.ok(r.closedAfterMs !== undefined, 'the connection must be closed while headers still dribble in');
    assert.match(r.answer, /^HTTP\/1\.1 408 /);
    await waitUntil(
      () =>
        fs.readFileSync(path.join(dir, 'proxy.log'), 'utf8').includes('http1.codec_error{ERR_HTTP_REQUEST_TIMEOUT}'),
      5_000,
      'DPE access log line',
    );
  });

  it('a body that never finishes is cut off by the request timeout', async () => {
    const r = await dribble('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n', 'x');
    assert.ok(r.closedAfterMs !== undefined, 'the connection must be closed while the body still dribbles in');
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    const r = await rawExchange(plainDialer(host, PORT), 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { quietMs: 8_000 });
    assert.deepEqual(r.statuses, [200]);
    assert.equal(r.closed, true, 'closed by the server before the client gave up');
  });

  it('more header lines than allowed (20) get 431; exactly 20 are served', async () => {
    const headers = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
    const ok = await rawExchange(
      plainDialer(host, PORT),
      `GET / HTTP/1.1\r\nHost: a\r\n${headers(18)}Connection: close\r\n\r\n`,
    );
    assert.deepEqual(ok.statuses, [200]);
    const tooMany = await rawExchange(plainDialer(host, PORT), `GET / HTTP/1.1\r\nHost: a\r\n${headers(20)}\r\n`);
    assert.deepEqual([tooMany.statuses, tooMany.closed], [[431], true]);
  });

  it('headers over the size limit get 431 and a closed connection', async () => {
    const r = await rawExchange(
      plainDialer(host, PORT),
      `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(5_000)}\r\n\r\n`,
    );
    assert.deepEqual([r.statuses, r.closed], [[431], true]);
  });
});

describe('a real sidecar with its default limits', () => {
  const mesh = new LocalMesh();
  let reviews: TestPod;
  before(async () => {
    await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')]);
    reviews = await mesh.addPod({
      name: 'reviews-v1-0',
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: 'v1' },
      appPort: 9080,
    });
  });
  after(() => mesh.close());

  it('cuts off a header dribble on 15001 (headersTimeout) and a silent TLS client on 15006 (handshake timeout)', async () => {
    const silentTls = new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: reviews.ip, port: 15006, servername: 'x', rejectUnauthorized: false });
      const limit = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 30_000);
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(limit);
        resolve(true);
      });
    });
    const silentTcp = new Promise<boolean>((resolve) => {
      const s = net.connect({ host: reviews.ip, port: 15006 });
      const limit = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 30_000);
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(limit);
        resolve(true);
      });
    });
    const start = Date.now();
    const sock = net.connect({ host: reviews.ip, port: 15001 }, () =>
      sock.write('GET / HTTP/1.1\r\nHost: reviews:9080\r\n'),
    );
    const drip = setInterval(() => sock.writable && sock.write('X-Slow: 1\r\n'), 500);
    const closed = await new Promise<boolean>((resolve) => {
      const limit = setTimeout(() => resolve(false), 30_000);
      sock.on('error', () => undefined);
      sock.on('close', () => {
        clearTimeout(limit);
        resolve(true);
      });
    });
    clearInterval(drip);
    sock.destroy();
    assert.equal(closed, true, `header dribble still open after ${Date.now() - start} ms`);
    assert.equal(await silentTls, true, 'a TLS client that never finishes its handshake is dropped');
    assert.equal(await silentTcp, true, 'a client that never sends a byte is dropped');
  });
});
