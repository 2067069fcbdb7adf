// proxy-loadgen: an open-loop HTTP/1.1 load generator that corrects coordinated omission. Request i is due at
// start + i / rate whatever happened to earlier ones, and its latency runs from that intended time, not from when
// a connection was free to send it: a stall shows up in the percentiles instead of silently lowering the rate
// (Gil Tene's correction, as wrk2 does). Keep-alive connections, one request in flight on each, opened as needed up
// to --connections; beyond that requests queue (and their queueing counts). With --h2, HTTP/2 over cleartext
// (prior knowledge): --connections sessions, requests spread over them, as many streams in flight as the peer
// allows. Prints one JSON line.
//   node --import tsx bench/proxy-loadgen.ts --target 127.0.0.1:8080 [--host app:8080] [--rate 1000]
//     [--seconds 10] [--warmup 2] [--connections 64] [--path /] [--h2]
import http2 from 'node:http2';
import net from 'node:net';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';

/** LoadResult is what one open-loop run measured; latencies are in microseconds. */
export interface LoadResult {
  rate: number;
  sent: number;
  completed: number;
  errors: number;
  achievedRps: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  connections: number;
}

interface Conn {
  sock: net.Socket;
  buf: Buffer;
  /** intended is when the request in flight was due (ms, performance.now()), or undefined when idle. */
  intended: number | undefined;
}

/**
 * parseResponse returns the length of the first complete HTTP/1.1 response in `buf` (Content-Length or chunked
 * body), 0 when it is not complete yet, or -1 when it cannot be parsed.
 */
export function parseResponse(buf: Buffer): number {
  const head = buf.indexOf('\r\n\r\n');
  if (head < 0) return 0;
  const text = buf.toString('latin1', 0, head);
  if (!/^HTTP\/1\.[01] \d{3}/.test(text)) return -1;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(text);
  if (cl) {
    const total = head + 4 + Number(cl[1]);
    return buf.length >= total ? total : 0;
  }
  if (!/\r\ntransfer-encoding:\s*chunked/i.test(text)) return -1;
  let at = head + 4;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) return 0;
    const size = parseInt(buf.toString('latin1', at, eol), 16);
    if (Number.isNaN(size)) return -1;
    at = eol + 2 + size + 2;
    if (buf.length < at) return 0;
    if (size === 0) return at;
  }
}

/** runOpenLoop sends `rate` requests per second for `seconds` after `warmup` seconds and records their latency. */
export async function runOpenLoop(opts: {
  host: string;
  port: number;
  hostHeader: string;
  path: string;
  rate: number;
  seconds: number;
  warmup: number;
  maxConnections: number;
}): Promise<LoadResult> {
  const hist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const request = Buffer.from(
    `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.hostHeader}\r\nUser-Agent: fedmesh-bench\r\n\r\n`,
  );
  const idle: Conn[] = [];
  const queue: number[] = [];
  let open = 0;
  let sent = 0;
  let completed = 0;
  let errors = 0;
  const interval = 1000 / opts.rate;
  const total = Math.round(opts.rate * (opts.warmup + opts.seconds));
  const warm = Math.round(opts.rate * opts.warmup);
  const start = performance.now() + 50;
  let measuredFrom = 0;
  let measuredTo = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((r) => (finish = r));
  let outstanding = 0;

  const settle = (c: Conn, ok: boolean): void => {
    const due = c.intended;
    c.intended = undefined;
    if (due === undefined) return;
    outstanding--;
    const n = completed + errors;
    if (ok) completed++;
    else errors++;
    const idx = Math.round((due - start) / interval);
    if (idx >= warm && ok) {
      hist.recordValue(Math.max(1, Math.round((performance.now() - due) * 1000)));
      measuredTo = performance.now();
    }
    if (n + 1 >= total && outstanding === 0) finish();
  };

  const dispatch = (c: Conn): void => {
    const due = queue.shift();
    if (due === undefined) return void idle.push(c);
    c.intended = due;
    c.sock.write(request);
  };

  const connect = (): void => {
    open++;
    const c: Conn = {
      sock: net.connect({ host: opts.host, port: opts.port, noDelay: true }),
      buf: Buffer.alloc(0),
      intended: undefined,
    };
    let connected = false;
    c.sock.on('connect', () => {
      connected = true;
      dispatch(c);
    });
    c.sock.on('data', (d: Buffer) => {
      c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
      const n = parseResponse(c.buf);
      if (n === 0) return;
      if (n < 0) return void c.sock.destroy(new Error('unparsable response'));
      c.buf = c.buf.subarray(n);
      settle(c, true);
      dispatch(c);
    });
    c.sock.on('error', () => undefined);
    c.sock.on('close', () => {
      open--;
      const i = idle.indexOf(c);
      if (i >= 0) idle.splice(i, 1);
      settle(c, false);
      if (!connected && queue.shift() !== undefined) {
        // The connection never opened: the request it was for fails, so a dead target cannot loop forever.
        outstanding--;
        errors++;
        if (completed + errors >= total && outstanding === 0) finish();
      }
      if (queue.length > 0 && open < opts.maxConnections) connect();
    });
  };

  const tick = (): void => {
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) {
      const due = start + sent * interval;
      if (sent === warm) measuredFrom = due;
      sent++;
      outstanding++;
      queue.push(due);
      const c = idle.pop();
      if (c) dispatch(c);
      else if (open < opts.maxConnections) connect();
    }
    if (sent < total) setTimeout(tick, Math.max(0, Math.min(1, start + sent * interval - performance.now())));
  };
  setTimeout(tick, 50);
  const deadline = setTimeout(finish, (opts.warmup + opts.seconds + 30) * 1000);
  await done;
  clearTimeout(deadline);
  for (const c of idle) c.sock.destroy();
  const pct = (p: number): number => hist.getValueAtPercentile(p);
  const measuredCount = completed - Math.min(completed, warm);
  return {
    rate: opts.rate,
    sent,
    completed,
    errors,
    achievedRps: measuredTo > measuredFrom ? (measuredCount * 1000) / (measuredTo - measuredFrom) : 0,
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    p999: pct(99.9),
    max: hist.maxValue,
    connections: open,
  };
}

/** runOpenLoopH2 is {@link runOpenLoop} over HTTP/2 cleartext: `maxConnections` sessions, one stream per request. */
export async function runOpenLoopH2(opts: Parameters<typeof runOpenLoop>[0]): Promise<LoadResult> {
  const hist = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
  const sessions = await Promise.all(
    Array.from(
      { length: Math.max(1, opts.maxConnections) },
      () =>
        new Promise<http2.ClientHttp2Session>((resolve, reject) => {
          const s = http2.connect(`http://${opts.host}:${opts.port}`);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        }),
    ),
  );
  for (const s of sessions) s.on('error', () => undefined);
  const interval = 1000 / opts.rate;
  const total = Math.round(opts.rate * (opts.warmup + opts.seconds));
  const warm = Math.round(opts.rate * opts.warmup);
  const start = performance.now() + 50;
  let sent = 0;
  let completed = 0;
  let errors = 0;
  let measuredFrom = 0;
  let measuredTo = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((r) => (finish = r));
  const settle = (idx: number, due: number, ok: boolean): void => {
    if (ok) completed++;
    else errors++;
    if (ok && idx >= warm) {
      hist.recordValue(Math.max(1, Math.round((performance.now() - due) * 1000)));
      measuredTo = performance.now();
    }
    if (completed + errors >= total) finish();
  };
  const send = (idx: number, due: number): void => {
    const session = sessions[idx % sessions.length];
    if (!session || session.closed || session.destroyed) return settle(idx, due, false);
    const req = session.request({ ':path': opts.path, ':authority': opts.hostHeader, 'user-agent': 'fedmesh-bench' });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', () => undefined);
    req.on('end', () => settle(idx, due, status >= 200 && status < 400));
    req.on('error', () => settle(idx, due, false));
    req.end();
  };
  const tick = (): void => {
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) {
      const due = start + sent * interval;
      if (sent === warm) measuredFrom = due;
      send(sent, due);
      sent++;
    }
    if (sent < total) setTimeout(tick, Math.max(0, Math.min(1, start + sent * interval - performance.now())));
  };
  setTimeout(tick, 50);
  const deadline = setTimeout(finish, (opts.warmup + opts.seconds + 30) * 1000);
  await done;
  clearTimeout(deadline);
  for (const s of sessions) s.close();
  const pct = (p: number): number => hist.getValueAtPercentile(p);
  const measuredCount = completed - Math.min(completed, warm);
  return {
    rate: opts.rate,
    sent,
    completed,
    errors,
    achievedRps: measuredTo > measuredFrom ? (measuredCount * 1000) / (measuredTo - measuredFrom) : 0,
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    p999: pct(99.9),
    max: hist.maxValue,
    connections: sessions.length,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values: a } = parseArgs({
    options: {
      target: { type: 'string' },
      host: { type: 'string' },
      path: { type: 'string', default: '/' },
      rate: { type: 'string', default: '1000' },
      seconds: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      h2: { type: 'boolean', default: false },
    },
  });
  const [host, port] = (a.target ?? '').split(':');
  if (!host || !port) throw new Error('--target host:port is required');
  const result = await (a.h2 ? runOpenLoopH2 : runOpenLoop)({
    host,
    port: Number(port),
    hostHeader: a.host ?? a.target ?? host,
    path: a.path,
    rate: Number(a.rate),
    seconds: Number(a.seconds),
    warmup: Number(a.warmup),
    maxConnections: Number(a.connections),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
