/**
 * Processes the netns suite starts inside namespaces: each speaks JSON lines on stdout (a `{"ready": …}` line
 * first, then `{id, ok, …}` answers to `{id, cmd, …}` commands written to its stdin).
 */
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';

/** Proc wraps one started process: readiness, request/answer over stdio, signals, and a bounded stop. */
export class Proc {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();
  private readyLine: Promise<Record<string, unknown>>;
  private stderr = '';
  exited = false;

  /** constructor starts reading the process's output. */
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let onReady: (v: Record<string, unknown>) => void = () => undefined;
    let onFail: (e: Error) => void = () => undefined;
    this.readyLine = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    this.readyLine.catch(() => undefined);
    child.stderr?.on('data', (c: Buffer) => {
      this.stderr = (this.stderr + c.toString()).slice(-4_000);
    });
    if (child.stdout) {
      const rl = readline.createInterface({ input: child.stdout });
      rl.on('line', (line) => {
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if ('ready' in msg) return onReady(msg);
        const p = this.pending.get(Number(msg.id));
        if (!p) return;
        this.pending.delete(Number(msg.id));
        if (msg.ok) p.resolve(msg);
        else p.reject(new Error(`${name}: ${String(msg.error)}`));
      });
    }
    child.on('exit', (code, signal) => {
      this.exited = true;
      const err = new Error(`${name} exited (${code ?? signal}): ${this.stderr.trim().slice(-1_500)}`);
      onFail(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  /** pid is the process id (`ip netns exec` execs the command, so it is the command's own). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** ready waits for the `{"ready": …}` line; rejects if the process exits first or after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<Record<string, unknown>> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.name} not ready within ${timeoutMs} ms: ${this.stderr.trim().slice(-1_500)}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.readyLine, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** send writes a command and resolves with its answer; rejects on an error answer, an exit or `timeoutMs`. */
  send(cmd: Record<string, unknown>, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no answer to ${String(cmd.cmd)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin?.write(`${JSON.stringify({ id, ...cmd })}\n`);
    });
  }

  /** signal sends a signal to the process (SIGSTOP/SIGCONT for an outage, SIGKILL for a crash). */
  signal(sig: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(sig);
  }

  /** stop sends SIGCONT and SIGTERM, then SIGKILL after `graceMs`, and resolves once the process has exited. */
  async stop(graceMs = 3_000): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
}
