import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { ReadinessProbe } from '@fedmesh/api';

/** ProbeResult is one probe outcome: healthy or not, and a short reason (empty when healthy). */
export interface ProbeResult {
  healthy: boolean;
  message: string;
}

/** ProbeTiming is a probe's schedule and thresholds with Kubernetes' defaults applied (0 means the default). */
export interface ProbeTiming {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

/** probeTiming applies Kubernetes' defaults: period 10 s, timeout 1 s, success 1, failure 3, no initial delay. */
export function probeTiming(p: ReadinessProbe): ProbeTiming {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds || 10) * 1000,
    timeoutMs: (p.timeoutSeconds || 1) * 1000,
    successThreshold: p.successThreshold || 1,
    failureThreshold: p.failureThreshold || 3,
  };
}

/** MAX_EXEC_OUTPUT_BYTES bounds what an exec probe may print (stdout and stderr each, 16 KiB). */
const MAX_EXEC_OUTPUT_BYTES = 16 * 1024;

function httpProbe(p: NonNullable<ReadinessProbe['httpGet']>, host: string, timeoutMs: number): Promise<ProbeResult> {
  const mod = p.scheme === 'HTTPS' ? https : http;
  const headers: Record<string, string> = { 'user-agent': 'fedmesh-vm-agent/probe' };
  for (const h of p.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value ?? '';
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = mod.request(
      {
        host: p.host ?? host,
        port: p.port,
        path: p.path ?? '/',
        method: 'GET',
        headers,
        agent: false,
        // Like the kubelet: an HTTPS probe does not verify the certificate.
        ...(p.scheme === 'HTTPS' ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        finish(
          code >= 200 && code < 400 ? { healthy: true, message: '' } : { healthy: false, message: `HTTP ${code}` },
        );
        req.destroy();
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish({ healthy: false, message: `HTTP probe timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    req.on('error', (err) => finish({ healthy: false, message: `HTTP probe failed: ${err.message}` }));
    req.end();
  });
}

function tcpProbe(p: NonNullable<ReadinessProbe['tcpSocket']>, host: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: p.host ?? host, port: p.port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ healthy: false, message: `TCP probe timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ healthy: true, message: '' });
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve({ healthy: false, message: `TCP probe failed: ${err.message}` });
    });
  });
}

function execProbe(p: NonNullable<ReadinessProbe['exec']>, timeoutMs: number): Promise<ProbeResult> {
  const [file = '', ...args] = p.command;
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_EXEC_OUTPUT_BYTES, windowsHide: true },
      (err) => {
        if (!err) return resolve({ healthy: true, message: '' });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
        if (e.killed) return resolve({ healthy: false, message: `exec probe timed out after ${timeoutMs} ms` });
        resolve({
          healthy: false,
          message: typeof e.code === 'number' ? `exec probe exited ${e.code}` : `exec probe failed: ${e.message}`,
        });
      },
    );
  });
}

/**
 * probeOnce runs a WorkloadGroup readiness probe once: `httpGet` (healthy on a 2xx or 3xx answer; host defaults to
 * `defaultHost`, the VM's address), `tcpSocket` (healthy when a connection opens) or `exec` (healthy on exit 0; run
 * without a shell, killed at the timeout). Every probe is bounded by `timeoutMs`. Never rejects. A `grpc` probe is
 * reported unhealthy with "unsupported" (bootstrap refuses it before this is reached).
 */
export function probeOnce(probe: ReadinessProbe, defaultHost: string, timeoutMs: number): Promise<ProbeResult> {
  if (probe.httpGet) return httpProbe(probe.httpGet, defaultHost, timeoutMs);
  if (probe.tcpSocket) return tcpProbe(probe.tcpSocket, defaultHost, timeoutMs);
  if (probe.exec) return execProbe(probe.exec, timeoutMs);
  return Promise.resolve({ healthy: false, message: 'unsupported probe kind' });
}

/**
 * Prober runs a readiness probe on its schedule and keeps Kubernetes' readiness semantics: it starts not ready,
 * becomes ready after `successThreshold` consecutive successes and not ready after `failureThreshold` consecutive
 * failures. Emits `'change'` with a {@link ProbeResult} whenever readiness flips (the first result included), and
 * `'result'` after every probe. {@link Prober.start} runs until the signal aborts.
 */
export class Prober extends EventEmitter {
  private ready: boolean | undefined;
  private successes = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private last: ProbeResult = { healthy: false, message: 'not probed yet' };
  readonly timing: ProbeTiming;

  /** constructor stores the probe and the default host; no I/O. */
  constructor(
    private readonly probe: ReadinessProbe,
    private readonly defaultHost: string,
  ) {
    super();
    this.timing = probeTiming(probe);
  }

  /** current returns the readiness now (not ready before the thresholds are met) and the last probe's message. */
  current(): ProbeResult {
    return { healthy: this.ready === true, message: this.ready === true ? '' : this.last.message };
  }

  /** start schedules the first probe after `initialDelay` and each next one a period after the previous ended. */
  start(signal: AbortSignal): void {
    const stop = (): void => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    };
    signal.addEventListener('abort', stop, { once: true });
    const tick = (): void => {
      void probeOnce(this.probe, this.defaultHost, this.timing.timeoutMs).then((r) => {
        if (signal.aborted) return;
        this.record(r);
        this.timer = setTimeout(tick, this.timing.periodMs);
      });
    };
    this.timer = setTimeout(tick, this.timing.initialDelayMs);
  }

  private record(r: ProbeResult): void {
    this.last = r;
    if (r.healthy) {
      this.successes++;
      this.failures = 0;
    } else {
      this.failures++;
      this.successes = 0;
    }
    this.emit('result', r);
    let next = this.ready;
    if (r.healthy && this.successes >= this.timing.successThreshold) next = true;
    if (!r.healthy && (this.failures >= this.timing.failureThreshold || this.ready === undefined)) next = false;
    if (next !== undefined && next !== this.ready) {
      this.ready = next;
      this.emit('change', this.current());
    }
  }
}
