import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { SystemdNotifier } from './notify.js';
import { FakeNotifySocket } from './testing.js';

const log = pino({ level: 'silent' });
let dir = '';
let fake: FakeNotifySocket;
const saved = process.env.NOTIFY_SOCKET;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-notify-'));
  fake = await FakeNotifySocket.start(dir);
  // systemd-notify (spawned by the npm package and by the watchdog) reads NOTIFY_SOCKET from the environment.
  process.env.NOTIFY_SOCKET = fake.socketPath;
});
after(async () => {
  if (saved === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = saved;
  await fake.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('SystemdNotifier', () => {
  it('sends STATUS= lines and READY=1 with MAINPID through systemd-notify', async () => {
    const n = new SystemdNotifier({
      notifySocket: fake.socketPath,
      watchdogUsec: undefined,
      watchdogPid: undefined,
      log,
    });
    await n.status('requesting a certificate');
    await n.status('requesting a certificate'); // unchanged: not sent again
    await n.ready('serving');
    const status = await fake.waitFor('STATUS', 'requesting a certificate', 5_000);
    const ready = await fake.waitFor('READY', '1', 5_000);
    assert.equal(ready.fields['STATUS'], 'serving');
    assert.equal(ready.fields['MAINPID'], String(process.pid));
    assert.ok(status.at <= ready.at);
    assert.equal(fake.messages.filter((m) => m.fields['STATUS'] === 'requesting a certificate').length, 1);
  });

  it('pings WATCHDOG=1 every third of WATCHDOG_USEC while alive, and not while not alive', async () => {
    const n = new SystemdNotifier({
      notifySocket: fake.socketPath,
      watchdogUsec: 600_000,
      watchdogPid: process.pid,
      log,
    });
    assert.equal(n.watchdogIntervalMs, 200);
    let alive = true;
    const from = fake.messages.length;
    n.startWatchdog(() => alive);
    try {
      const deadline = Date.now() + 10_000;
      while (fake.messages.slice(from).filter((m) => m.fields['WATCHDOG'] === '1').length < 3) {
        if (Date.now() > deadline) throw new Error('fewer than 3 watchdog pings in 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      alive = false;
      await new Promise((r) => setTimeout(r, 300)); // let pings already spawned land
      const stopped = fake.messages.length;
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(fake.messages.length, stopped, 'no pings while not alive');
    } finally {
      n.stopWatchdog();
    }
  });

  it('does nothing without NOTIFY_SOCKET, or when the watchdog belongs to another process', async () => {
    const off = new SystemdNotifier({ notifySocket: undefined, watchdogUsec: 400_000, watchdogPid: undefined, log });
    assert.equal(off.enabled, false);
    assert.equal(off.watchdogIntervalMs, undefined);
    const before = fake.messages.length;
    await off.ready('x');
    off.startWatchdog(() => true);
    const other = new SystemdNotifier({ notifySocket: fake.socketPath, watchdogUsec: 400_000, watchdogPid: 1, log });
    assert.equal(other.watchdogIntervalMs, undefined);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fake.messages.length, before);
  });
});
