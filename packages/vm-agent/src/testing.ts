/**
 * Test helpers for the VM agent (the `@fedmesh/vm-agent/testing` export; production code never imports it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';

/** NotifyMessage is one datagram a fake `NOTIFY_SOCKET` received, with its arrival time (ms since the epoch). */
export interface NotifyMessage {
  at: number;
  /** fields are the `KEY=value` lines of the datagram. */
  fields: Record<string, string>;
}

// Node cannot open AF_UNIX datagram sockets, so the receiver is a few lines of Python. It answers sd_notify_barrier()
// (BARRIER=1 with a file descriptor to close) as systemd does, so `systemd-notify` without --no-block returns at once.
const RECEIVER = `
import json, os, socket, sys, time, array
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(p)
os.chmod(p, 0o777)
print(json.dumps({"bound": True}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    print(json.dumps({"at": time.time() * 1000, "msg": data.decode("utf-8", "replace")}), flush=True)
`;

/**
 * FakeNotifySocket is a systemd `NOTIFY_SOCKET` receiver for tests: it records every datagram (READY=1, STATUS=,
 * WATCHDOG=1, …) with its arrival time. Needs `python3`. Always {@link FakeNotifySocket.close} it.
 */
export class FakeNotifySocket {
  readonly messages: NotifyMessage[] = [];
  private constructor(
    readonly socketPath: string,
    private readonly proc: ChildProcess,
  ) {}

  /** start binds a receiver at `<dir>/notify.sock`; rejects if python3 is missing or the socket cannot be bound in 5 s. */
  static async start(dir: string): Promise<FakeNotifySocket> {
    const socketPath = path.join(dir, 'notify.sock');
    const proc = spawn('python3', ['-u', '-c', RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    const fake = new FakeNotifySocket(socketPath, proc);
    const lines = readline.createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    const bound = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('notify receiver did not start in 5 s')), 5_000);
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      lines.on('line', (line) => {
        const m = JSON.parse(line) as { bound?: boolean; at?: number; msg?: string };
        if (m.bound) {
          clearTimeout(timer);
          resolve();
          return;
        }
        const fields: Record<string, string> = {};
        for (const l of (m.msg ?? '').split('\n')) {
          const i = l.indexOf('=');
          if (i > 0) fields[l.slice(0, i)] = l.slice(i + 1);
        }
        fake.messages.push({ at: m.at ?? Date.now(), fields });
      });
    });
    try {
      await bound;
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
    return fake;
  }

  /** find returns the first message with `key` (optionally equal to `value`) at or after index `from`. */
  find(key: string, value?: string, from = 0): NotifyMessage | undefined {
    return this.messages.slice(from).find((m) => key in m.fields && (value === undefined || m.fields[key] === value));
  }

  /** waitFor polls until {@link FakeNotifySocket.find} succeeds, or throws after `timeoutMs`. */
  async waitFor(key: string, value: string | undefined, timeoutMs: number, from = 0): Promise<NotifyMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.find(key, value, from);
      if (m) return m;
      if (Date.now() > deadline)
        throw new Error(`no ${key}${value === undefined ? '' : `=${value}`} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** close stops the receiver. */
  async close(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await once(this.proc, 'exit');
    }
  }
}
