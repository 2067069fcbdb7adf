import { execFile } from 'node:child_process';
import notify from 'systemd-notify';
import type { Logger } from 'pino';

/** NotifierOptions: what systemd put in the environment (see features.ts) and where to log. */
export interface NotifierOptions {
  notifySocket: string | undefined;
  watchdogUsec: number | undefined;
  watchdogPid: number | undefined;
  log: Logger;
  /** pid is this process's PID (default `process.pid`). */
  pid?: number;
  /** timeoutMs bounds each `systemd-notify` run (default 5 s). */
  timeoutMs?: number;
}

/**
 * SystemdNotifier talks to systemd for a `Type=notify` service: `READY=1` and `STATUS=` through the `systemd-notify`
 * npm package (which runs `/usr/bin/systemd-notify --pid=<pid>`), and `WATCHDOG=1` by running
 * `systemd-notify --no-block WATCHDOG=1` itself (the package has no watchdog call) every third of `WATCHDOG_USEC`. Without
 * `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Failures are logged, never thrown: losing a status line
 * must not stop the agent, and a missing watchdog ping is exactly what systemd's restart is for.
 */
export class SystemdNotifier {
  private watchdogTimer: NodeJS.Timeout | undefined;
  private lastStatus = '';
  /** watchdogPings counts pings sent. */
  watchdogPings = 0;

  /** constructor stores options; no I/O. */
  constructor(private readonly opts: NotifierOptions) {}

  /** enabled reports whether systemd is listening (`NOTIFY_SOCKET` set). */
  get enabled(): boolean {
    return this.opts.notifySocket !== undefined;
  }

  /**
   * watchdogIntervalMs is a third of `WATCHDOG_USEC` (in ms) when the watchdog is this process's, else undefined.
   * sd_watchdog_enabled(3) suggests half; a third keeps one lost ping from killing a healthy agent (a
   * `systemd-notify` child that exits before systemd reads its message can have it dropped, and a poller can miss
   * one), since the gap after a single loss is then 2/3 of the timeout.
   */
  get watchdogIntervalMs(): number | undefined {
    const { watchdogUsec, watchdogPid } = this.opts;
    if (!this.enabled || watchdogUsec === undefined) return undefined;
    if (watchdogPid !== undefined && watchdogPid !== (this.opts.pid ?? process.pid)) return undefined;
    return Math.max(1, Math.floor(watchdogUsec / 3000));
  }

  /** ready sends `READY=1` with a `STATUS=` line. */
  async ready(status: string): Promise<void> {
    if (!this.enabled) return;
    this.lastStatus = status;
    await this.run(() => notify({ ready: true, status, pid: this.opts.pid ?? process.pid }), 'READY=1');
  }

  /** status sends a `STATUS=` line (skipped when equal to the last one). */
  async status(status: string): Promise<void> {
    if (!this.enabled || status === this.lastStatus) return;
    this.lastStatus = status;
    await this.run(() => notify({ status, pid: this.opts.pid ?? process.pid }), 'STATUS=');
  }

  /**
   * startWatchdog pings `WATCHDOG=1` every {@link SystemdNotifier.watchdogIntervalMs} while `alive()` says the agent
   * works (a hung or broken agent stops pinging, and systemd restarts it). No-op without a watchdog.
   */
  startWatchdog(alive: () => boolean): void {
    const every = this.watchdogIntervalMs;
    if (every === undefined || this.watchdogTimer) return;
    const ping = (): void => {
      if (!alive()) {
        this.opts.log.warn('agent not alive: withholding the watchdog ping');
        return;
      }
      execFile('systemd-notify', ['--no-block', 'WATCHDOG=1'], { timeout: this.opts.timeoutMs ?? 5_000 }, (err) => {
        if (err) this.opts.log.warn({ err: err.message }, 'watchdog ping failed');
        else this.watchdogPings++;
      });
    };
    ping();
    this.watchdogTimer = setInterval(ping, every);
  }

  /** stopWatchdog stops pinging. */
  stopWatchdog(): void {
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }

  private async run(call: () => Promise<unknown>, what: string): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        call(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.opts.log.warn({ err: err instanceof Error ? err.message : String(err) }, `sd_notify ${what} failed`);
    } finally {
      clearTimeout(timer);
    }
  }
}
