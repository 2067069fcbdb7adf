import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino, { type Logger } from 'pino';
import { ACCESS_MSG, createAccessLogger, type AccessLogEntry } from './access-log.js';

const BASE = { component: 'proxy', pid: 4242, pod: 'sleep-0', scope: 'access' };

function entry(over: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    start_time: '2026-11-22T04:00:00.000Z',
    direction: 'outbound',
    route_name: 'default',
    method: 'GET',
    path: '/a?b=c',
    protocol: 'HTTP/1.1',
    response_code: 200,
    response_flags: '-',
    response_code_details: 'via_upstream',
    bytes_received: 0,
    bytes_sent: 28,
    duration: 1.234,
    request_duration: 0.012,
    response_duration: null,
    response_tx_duration: 0.05,
    upstream_service_time: 1,
    x_forwarded_for: null,
    user_agent: 'curl/8.5.0',
    request_id: 'e3b0c442-98fc-4c14-9afb-f4c8996fb924',
    authority: 'app:8080',
    upstream_host: '127.0.152.10:15006',
    upstream_cluster: 'outbound|8080||app.default.svc.cluster.local',
    upstream_local_address: '127.0.152.2:40000',
    downstream_local_address: '127.0.152.2:15001',
    downstream_remote_address: '127.0.0.1:5000',
    requested_server_name: null,
    upstream_transport_failure_reason: null,
    downstream_peer_principal: null,
    upstream_peer_principal: 'spiffe://cluster.local/ns/default/sa/app',
    attempts: 1,
    trace_id: '0af7651916cd43dd8448eb211c80319c',
    span_id: 'b7ad6b7169203331',
    parent_span_id: null,
    ...over,
  };
}

/** closeLogger ends the logger's destination (flushing it and closing its file descriptor) and waits for it. */
async function closeLogger(logger: Logger): Promise<void> {
  const dest = (logger as unknown as Record<symbol, NodeJS.WritableStream>)[pino.symbols.streamSym];
  assert.ok(dest);
  await new Promise<void>((resolve) => {
    dest.once('close', () => resolve());
    dest.end();
  });
}

/** linesOf logs through `createAccessLogger` into a temp file and returns the lines once the logger is closed. */
async function linesOf(log: (l: Logger) => void, level = 'info'): Promise<string[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'access-log-'));
  const file = path.join(dir, 'access.log');
  try {
    const logger = createAccessLogger({ level, base: BASE, fd: fs.openSync(file, 'w'), flushIntervalMs: 10 });
    log(logger);
    await closeLogger(logger); // the destination owns the descriptor and closes it
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** pinoLine is what plain pino (same level and base) writes for the same call, with `time` set to `time`. */
function pinoLine(obj: object, msg: string, time: number): string {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  pino({ level: 'info', base: BASE, timestamp: () => `,"time":${time}` }, sink).info(obj, msg);
  return out.trimEnd();
}

const timeOf = (line: string): number => (JSON.parse(line) as { time: number }).time;

test('an access line is byte for byte what pino writes, including strings that need escaping', async () => {
  const entries = [
    entry(),
    entry({
      path: '/q?x="1"&y=\\2\n\t\u0001',
      user_agent: 'ünïcødé ✓ 𝄞 and a string longer than forty-two characters, "quoted"',
      response_flags: 'UF,URX',
      duration: Number.NaN,
      request_duration: Number.POSITIVE_INFINITY,
    }),
  ];
  const lines = await linesOf((l) => {
    for (const e of entries) l.info(e, ACCESS_MSG);
  });
  assert.equal(lines.length, 2);
  lines.forEach((line, i) => {
    const e = entries[i];
    assert.ok(e);
    assert.equal(line, pinoLine(e, 'access', timeOf(line)));
  });
  const parsed = JSON.parse(lines[1] ?? '') as Record<string, unknown>;
  assert.equal(parsed.path, '/q?x="1"&y=\\2\n\t\u0001');
  assert.equal(parsed.duration, null);
  assert.equal(parsed.scope, 'access');
});

test('other calls on the access logger keep going through pino (errors, other messages, children)', async () => {
  const err = new Error('upstream gone');
  const lines = await linesOf((l) => {
    l.error({ err }, 'request failed');
    l.info({ cluster: 'c' }, 'not an access line');
    l.child({ conn: 7 }).info(entry(), ACCESS_MSG);
    l.debug({ cluster: 'c' }, 'below the level');
  });
  assert.equal(lines.length, 3);
  const [failed, other, child] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(failed?.level, 50);
  assert.equal((failed?.err as { message: string }).message, 'upstream gone');
  assert.match(String((failed?.err as { stack: string }).stack), /upstream gone/);
  assert.equal(other?.msg, 'not an access line');
  assert.equal(child?.conn, 7, "a child's bindings are written");
  assert.equal(child?.msg, 'access');
});

test('a silenced access logger writes nothing', async () => {
  assert.deepEqual(await linesOf((l) => l.info(entry(), ACCESS_MSG), 'warn'), []);
});
