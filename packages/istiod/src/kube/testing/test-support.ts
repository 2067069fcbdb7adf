import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import type { FakeObject } from './fake-store.js';

/**
 * memoryLogger is a pino logger at level `debug` whose lines are kept, parsed from JSON, in `lines` (in the order
 * written), so a test can assert on what was logged (a warning's field path, a scope).
 */
export function memoryLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, dest), lines };
}

/**
 * waitUntil polls `check` every `intervalMs` (default 20 ms) until it returns true; after `timeoutMs` it throws
 * `timed out after <timeoutMs> ms waiting for <what>`. For bounded waits on a loaded machine, never for timing.
 */
export async function waitUntil(check: () => boolean, timeoutMs: number, what: string, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * fakePod is a Running, Ready v1 Pod in namespace `default` with `labels`, pod IP `ip`, ServiceAccount
 * `serviceAccount` and one container `app` running `image`, as the fake API server serves it.
 */
export function fakePod(
  name: string,
  ip: string,
  labels: Record<string, string>,
  { serviceAccount, image }: { serviceAccount: string; image: string },
): FakeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'app', image }] },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}
