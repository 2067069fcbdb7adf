import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { parseClientHello, TLS_MAX_RECORD_BYTES } from './client-hello.js';

/** captureHello starts a raw TCP server, lets `connect` open a TLS client to it, and returns the first bytes. */
async function captureHello(connect: (port: number) => void | Promise<void>): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const got = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ClientHello within 5 s')), 5_000);
      server.once('connection', (sock) => {
        const chunks: Buffer[] = [];
        sock.on('data', (c: Buffer) => {
          chunks.push(c);
          const all = Buffer.concat(chunks);
          if (parseClientHello(all).state !== 'incomplete') {
            clearTimeout(timer);
            sock.destroy();
            resolve(all);
          }
        });
        sock.on('error', () => undefined);
      });
    });
    await connect(port);
    return await got;
  } finally {
    server.close();
  }
}

function nodeHello(servername: string | undefined, alpn?: string[]): Promise<Buffer> {
  return captureHello((port) => {
    const c = tls.connect({
      host: '127.0.0.1',
      port,
      ...(servername !== undefined ? { servername } : {}),
      ...(alpn ? { ALPNProtocols: alpn } : {}),
      rejectUnauthorized: false,
    });
    c.on('error', () => undefined);
  });
}

/** reframe splits one ClientHello's handshake bytes over records of at most `size` bytes. */
function reframe(hello: Buffer, size: number): Buffer {
  const len = hello.readUInt16BE(3);
  const body = hello.subarray(5, 5 + len);
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const frag = body.subarray(i, i + size);
    const head = Buffer.from([22, 3, 1, 0, 0]);
    head.writeUInt16BE(frag.length, 3);
    out.push(head, frag);
  }
  return Buffer.concat(out);
}

/** build makes a ClientHello record from extensions (type → body), TLS 1.2 style. */
function build(exts: [number, Buffer][] | undefined, opts: { sessionId?: number; suites?: number } = {}): Buffer {
  const parts: Buffer[] = [Buffer.from([3, 3]), Buffer.alloc(32, 7)];
  parts.push(Buffer.from([opts.sessionId ?? 0]), Buffer.alloc(Math.min(opts.sessionId ?? 0, 64)));
  const suites = opts.suites ?? 2;
  const s = Buffer.alloc(2 + suites);
  s.writeUInt16BE(suites, 0);
  parts.push(s, Buffer.from([1, 0]));
  if (exts) {
    const body = Buffer.concat(
      exts.map(([t, b]) => {
        const h = Buffer.alloc(4);
        h.writeUInt16BE(t, 0);
        h.writeUInt16BE(b.length, 2);
        return Buffer.concat([h, b]);
      }),
    );
    const l = Buffer.alloc(2);
    l.writeUInt16BE(body.length, 0);
    parts.push(l, body);
  }
  const hello = Buffer.concat(parts);
  const hs = Buffer.alloc(4);
  hs.writeUInt8(1, 0);
  hs.writeUIntBE(hello.length, 1, 3);
  const rec = Buffer.from([22, 3, 1, 0, 0]);
  rec.writeUInt16BE(hello.length + 4, 3);
  return Buffer.concat([rec, hs, hello]);
}

function sniExt(...names: [number, string][]): Buffer {
  const entries = Buffer.concat(
    names.map(([t, n]) => {
      const b = Buffer.from(n, 'latin1');
      const h = Buffer.alloc(3);
      h.writeUInt8(t, 0);
      h.writeUInt16BE(b.length, 1);
      return Buffer.concat([h, b]);
    }),
  );
  const l = Buffer.alloc(2);
  l.writeUInt16BE(entries.length, 0);
  return Buffer.concat([l, entries]);
}

const SNI = 'outbound_.9080_.v1_.reviews.default.svc.cluster.local';

describe('parseClientHello', () => {
  let nodeWithSni: Buffer;
  before(async () => {
    nodeWithSni = await nodeHello(SNI, ['istio', 'http/1.1']);
  });

  test("reads the SNI and ALPN of Node's own ClientHello", () => {
    const r = parseClientHello(nodeWithSni);
    assert.equal(r.state, 'done');
    if (r.state !== 'done') return;
    assert.equal(r.serverName, SNI);
    assert.deepEqual(r.alpn, ['istio', 'http/1.1']);
    assert.equal(r.bytes, nodeWithSni.length);
  });

  test('a ClientHello without SNI is done with serverName undefined', async () => {
    const r = parseClientHello(await nodeHello(undefined));
    assert.equal(r.state, 'done');
    assert.equal(r.state === 'done' ? r.serverName : 'x', undefined);
  });

  test('every proper prefix of a valid ClientHello is incomplete, never an error', () => {
    for (let n = 0; n < nodeWithSni.length; n++)
      assert.equal(parseClientHello(nodeWithSni.subarray(0, n)).state, 'incomplete', `prefix of ${n} bytes`);
  });

  test('a ClientHello split over many records (and prefixes of it) is reassembled', () => {
    for (const size of [1, 7, 64, 300]) {
      const split = reframe(nodeWithSni, size);
      const r = parseClientHello(split);
      assert.equal(r.state, 'done', `records of ${size} bytes`);
      assert.equal(r.state === 'done' ? r.serverName : '', SNI);
      for (const n of [0, 5, 6, Math.floor(split.length / 2), split.length - 1])
        assert.equal(parseClientHello(split.subarray(0, n)).state, 'incomplete');
    }
  });

  test('bytes after the ClientHello are not part of it', () => {
    const r = parseClientHello(Buffer.concat([nodeWithSni, Buffer.from([23, 3, 3, 0, 1, 0])]));
    assert.equal(r.state === 'done' ? r.bytes : -1, nodeWithSni.length);
  });

  test('not TLS: HTTP, SSLv2-style hello, other content types, other versions are refused at once', () => {
    for (const [input, why] of [
      [Buffer.from('GET / HTTP/1.1\r\n'), 'http'],
      [Buffer.from([0x80, 0x2e, 0x01]), 'sslv2'],
      [Buffer.from([23, 3, 3, 0, 5]), 'application data'],
      [Buffer.from([22, 2, 0, 0, 5]), 'version 2'],
      [Buffer.from([22, 3, 9, 0, 5]), 'version 3.9'],
      [Buffer.from('G'), 'one byte of http'],
    ] as const) {
      const r = parseClientHello(input);
      assert.equal(r.state, 'error', why);
      assert.equal(r.state === 'error' ? r.reason : '', 'not_tls', why);
    }
  });

  test('a record over 2^14 bytes is refused from its header alone', () => {
    const head = Buffer.from([22, 3, 1, 0, 0]);
    head.writeUInt16BE(TLS_MAX_RECORD_BYTES + 1, 3);
    const r = parseClientHello(head);
    assert.equal(r.state === 'error' ? r.reason : '', 'record_too_large');
  });

  test('a ClientHello longer than the limit is refused from its handshake header', () => {
    const big = build([[21, Buffer.alloc(3000)]]);
    assert.equal(parseClientHello(big).state, 'done');
    const r = parseClientHello(big.subarray(0, 9), 1024);
    assert.equal(r.state === 'error' ? r.reason : '', 'client_hello_too_large');
  });

  test('a handshake that is not a ClientHello is refused', () => {
    const sh = build([]);
    sh.writeUInt8(2, 5); // ServerHello
    const r = parseClientHello(sh);
    assert.equal(r.state === 'error' ? r.reason : '', 'not_client_hello');
  });

  test('hand-built ClientHellos: SNI types, names and extension rules', () => {
    const ok = (b: Buffer): string | undefined => {
      const r = parseClientHello(b);
      assert.equal(r.state, 'done', JSON.stringify(r));
      return r.state === 'done' ? r.serverName : undefined;
    };
    const reason = (b: Buffer): string => {
      const r = parseClientHello(b);
      return r.state === 'error' ? r.reason : r.state;
    };
    assert.equal(ok(build(undefined)), undefined, 'no extensions at all (TLS 1.2 allows it)');
    assert.equal(
      ok(build([[0, sniExt([0, 'Reviews.Default.SVC.cluster.local'])]])),
      'reviews.default.svc.cluster.local',
    );
    assert.equal(ok(build([[0, sniExt([7, 'ignored'], [0, 'a.b'])]])), 'a.b', 'unknown name types are skipped');
    assert.equal(ok(build([[0, sniExt([0, SNI])]], { sessionId: 32, suites: 40 })), SNI);
    assert.equal(reason(build([[0, sniExt([0, 'a.b'], [0, 'c.d'])]])), 'bad_server_name');
    assert.equal(reason(build([[0, sniExt()]])), 'bad_server_name');
    assert.equal(reason(build([[0, sniExt([0, 'bad name'])]])), 'bad_server_name');
    assert.equal(reason(build([[0, sniExt([0, 'trailing.dot.'])]])), 'bad_server_name');
    assert.equal(reason(build([[0, sniExt([0, 'x'.repeat(256)])]])), 'bad_server_name');
    assert.equal(reason(build([[0, sniExt([0, 'nul\u0000.b'])]])), 'bad_server_name');
    assert.equal(
      reason(
        build([
          [0, sniExt([0, 'a.b'])],
          [0, sniExt([0, 'a.b'])],
        ]),
      ),
      'duplicate_extension',
    );
    assert.equal(reason(build([[16, Buffer.from([0, 1, 0])]])), 'malformed', 'empty ALPN protocol');
    assert.equal(reason(build([], { sessionId: 33 })), 'malformed', 'session_id over 32');
    assert.equal(reason(build([], { suites: 3 })), 'malformed', 'odd cipher_suites length');
    const lying = build([[0, sniExt([0, 'a.b'])]]);
    lying.writeUInt16BE(lying.readUInt16BE(lying.length - 10) + 40, lying.length - 10); // extension length too big
    assert.equal(reason(lying), 'malformed');
  });

  test('10,000 random mutations of a real ClientHello never throw and never read past the input', () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const counts = { incomplete: 0, done: 0, error: 0 };
    for (let i = 0; i < 10_000; i++) {
      const b = Buffer.from(nodeWithSni);
      for (let k = 0; k < 1 + rand(4); k++) b[5 + rand(b.length - 5)] = rand(256);
      const cut = rand(3) === 0 ? b.subarray(0, rand(b.length)) : b;
      const r = parseClientHello(cut);
      counts[r.state]++;
      if (r.state === 'done') assert.ok(r.bytes <= cut.length);
    }
    assert.ok(counts.error > 0 && counts.done > 0 && counts.incomplete > 0, JSON.stringify(counts));
  });
});

describe('parseClientHello against openssl s_client', () => {
  let available = true;
  after(() => undefined);
  test('reads the SNI of an independent TLS implementation', async (t) => {
    const hello = await captureHello(
      (port) =>
        new Promise<void>((resolve) => {
          const p = spawn(
            'openssl',
            ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', SNI, '-alpn', 'istio'],
            {
              stdio: ['pipe', 'ignore', 'ignore'],
            },
          );
          p.on('error', () => {
            available = false;
            resolve();
          });
          p.on('spawn', () => resolve());
          setTimeout(() => p.kill('SIGKILL'), 4_000).unref();
        }),
    ).catch((err: unknown) => {
      if (!available) return undefined;
      throw err;
    });
    if (!hello) return t.skip('openssl is not installed');
    const r = parseClientHello(hello);
    assert.equal(r.state, 'done');
    assert.equal(r.state === 'done' ? r.serverName : '', SNI);
    assert.deepEqual(r.state === 'done' ? r.alpn : [], ['istio']);
  });
});
