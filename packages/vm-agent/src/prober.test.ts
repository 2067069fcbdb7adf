import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Prober, probeOnce, probeTiming, type ProbeResult } from './prober.js';

let server: http.Server;
let port = 0;
let status = 200;
let hang = false;
const seenHeaders: http.IncomingHttpHeaders[] = [];

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

before(async () => {
  server = http.createServer((req, res) => {
    seenHeaders.push(req.headers);
    if (hang) return; // never answers
    res.writeHead(req.url === '/moved' ? 302 : status, { location: '/' }).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as net.AddressInfo).port;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

describe('probeOnce', () => {
  it('httpGet: 2xx and 3xx are healthy, others and timeouts are not; headers are sent; host defaults to the VM', async () => {
    status = 200;
    const ok = await probeOnce(
      { httpGet: { port, path: '/ready', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } },
      '127.0.0.1',
      1_000,
    );
    assert.deepEqual(ok, { healthy: true, message: '' });
    assert.equal(seenHeaders.at(-1)?.['x-probe'], 'yes');
    assert.deepEqual(await probeOnce({ httpGet: { port, path: '/moved' } }, '127.0.0.1', 1_000), {
      healthy: true,
      message: '',
    });
    status = 503;
    assert.deepEqual(await probeOnce({ httpGet: { port } }, '127.0.0.1', 1_000), {
      healthy: false,
      message: 'HTTP 503',
    });
    hang = true;
    assert.deepEqual(await probeOnce({ httpGet: { port } }, '127.0.0.1', 200), {
      healthy: false,
      message: 'HTTP probe timed out after 200 ms',
    });
    hang = false;
    const refused = await probeOnce({ httpGet: { port: await closedPort() } }, '127.0.0.1', 1_000);
    assert.equal(refused.healthy, false);
    assert.match(refused.message, /ECONNREFUSED/);
  });

  it('tcpSocket: a connection is healthy, a refusal is not', async () => {
    assert.equal((await probeOnce({ tcpSocket: { port } }, '127.0.0.1', 1_000)).healthy, true);
    const r = await probeOnce({ tcpSocket: { port: await closedPort(), host: '127.0.0.1' } }, '10.255.255.1', 1_000);
    assert.equal(r.healthy, false);
    assert.match(r.message, /ECONNREFUSED/);
  });

  it('exec: exit 0 is healthy; non-zero, a missing command and a timeout are not; no shell', async () => {
    assert.deepEqual(await probeOnce({ exec: { command: ['true'] } }, '', 2_000), { healthy: true, message: '' });
    assert.deepEqual(await probeOnce({ exec: { command: ['false'] } }, '', 2_000), {
      healthy: false,
      message: 'exec probe exited 1',
    });
    assert.deepEqual(await probeOnce({ exec: { command: ['sleep', '5'] } }, '', 200), {
      healthy: false,
      message: 'exec probe timed out after 200 ms',
    });
    assert.match((await probeOnce({ exec: { command: ['no-such-command-fedmesh'] } }, '', 2_000)).message, /ENOENT/);
    assert.equal((await probeOnce({ exec: { command: ['true;', 'false'] } }, '', 2_000)).healthy, false, 'not a shell');
  });
});

describe('Prober', () => {
  it('applies Kubernetes defaults and thresholds: ready after successThreshold, not ready after failureThreshold', async () => {
    assert.deepEqual(probeTiming({ tcpSocket: { port: 1 } }), {
      initialDelayMs: 0,
      periodMs: 10_000,
      timeoutMs: 1_000,
      successThreshold: 1,
      failureThreshold: 3,
    });
    status = 200;
    const prober = new Prober(
      { httpGet: { port }, periodSeconds: 1, failureThreshold: 2, successThreshold: 1 },
      '127.0.0.1',
    );
    const changes: ProbeResult[] = [];
    let results = 0;
    prober.on('change', (r: ProbeResult) => changes.push(r));
    prober.on('result', () => results++);
    const ctl = new AbortController();
    assert.equal(prober.current().healthy, false, 'not ready before the first probe');
    prober.start(ctl.signal);
    try {
      const until = async (check: () => boolean, what: string): Promise<void> => {
        const deadline = Date.now() + 10_000;
        while (!check()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await until(() => changes.length === 1, 'ready');
      assert.deepEqual(changes[0], { healthy: true, message: '' });
      status = 500;
      const failedFrom = results;
      await until(() => changes.length === 2, 'not ready');
      assert.ok(results - failedFrom >= 2, 'one failure is not enough with failureThreshold 2');
      assert.deepEqual(changes[1], { healthy: false, message: 'HTTP 500' });
      status = 200;
      await until(() => changes.length === 3, 'ready again');
      assert.equal(changes[2]?.healthy, true);
    } finally {
      ctl.abort();
      status = 200;
    }
    const after = results;
    await new Promise((r) => setTimeout(r, 1_300));
    assert.ok(results <= after + 1, 'stops after abort');
  });
});
