import type { Logger } from 'pino';

/**
 * runUntilSignal starts a component and keeps the process alive until SIGTERM or SIGINT, then runs `stop`
 * (bounded by `graceMs`, default 5,000 ms) and exits 0. A failed start logs the error and exits 1.
 */
export async function runUntilSignal(
  log: Logger,
  start: () => Promise<void>,
  stop: () => Promise<void>,
  graceMs = 5_000,
): Promise<void> {
  try {
    await start();
  } catch (err) {
    log.error({ err }, 'start failed');
    process.exit(1);
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => {
      log.info({ signal: sig }, 'stopping');
      const t = setTimeout(() => process.exit(0), graceMs);
      t.unref();
      stop()
        .catch((err: unknown) => log.warn({ err }, 'stop failed'))
        .finally(() => resolve());
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  process.exit(0);
}
