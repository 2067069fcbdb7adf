/**
 * Every environment variable the VM agent reads, with its default and meaning (CONVENTIONS.md: one `features.ts` per
 * package). Read once at startup by {@link readFeatures}; nothing else in the package touches `process.env`.
 */

/** Features are the agent's environment-derived settings. */
export interface Features {
  /** configDir (`FEDMESH_VM_CONFIG_DIR`, default `/etc/fedmesh`): the onboarding files `fedmesh vm config` wrote. */
  configDir: string;
  /**
   * stateDir (`FEDMESH_VM_STATE_DIR`, else the first path of systemd's `STATE_DIRECTORY`, else `/var/lib/fedmesh`):
   * where the certificate and key are kept (0600).
   */
  stateDir: string;
  /** logLevel (`FEDMESH_LOG_LEVEL`, default `info`). */
  logLevel: string;
  /** notifySocket (`NOTIFY_SOCKET`, set by systemd for Type=notify): when unset, sd_notify calls are skipped. */
  notifySocket: string | undefined;
  /** watchdogUsec (`WATCHDOG_USEC`, set by systemd from WatchdogSec=): the agent pings every third of it. */
  watchdogUsec: number | undefined;
  /** watchdogPid (`WATCHDOG_PID`): when set to another process, the watchdog is not this process's to ping. */
  watchdogPid: number | undefined;
  /** certTtlSeconds (`FEDMESH_VM_CERT_TTL_SECONDS`, default 0: the CA's default, 24 h): the lifetime requested. */
  certTtlSeconds: number;
  /** adminPort (`FEDMESH_VM_ADMIN_PORT`, default 15000): the proxy's admin listener on the VM address. */
  adminPort: number;
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0 || n > max)
    throw new Error(`${name}: must be an integer in [0, ${max}], got ${JSON.stringify(raw)}`);
  return n;
}

/** readFeatures reads {@link Features} from `env` (default `process.env`); throws naming the variable on a bad value. */
export function readFeatures(env: NodeJS.ProcessEnv = process.env): Features {
  const watchdogUsec = positiveInt(env, 'WATCHDOG_USEC', 0, 2 ** 52);
  const watchdogPid = positiveInt(env, 'WATCHDOG_PID', 0, 2 ** 31);
  return {
    configDir: env['FEDMESH_VM_CONFIG_DIR'] || '/etc/fedmesh',
    stateDir: env['FEDMESH_VM_STATE_DIR'] || env['STATE_DIRECTORY']?.split(':')[0] || '/var/lib/fedmesh',
    logLevel: env['FEDMESH_LOG_LEVEL'] || 'info',
    notifySocket: env['NOTIFY_SOCKET'] || undefined,
    watchdogUsec: watchdogUsec > 0 ? watchdogUsec : undefined,
    watchdogPid: watchdogPid > 0 ? watchdogPid : undefined,
    certTtlSeconds: positiveInt(env, 'FEDMESH_VM_CERT_TTL_SECONDS', 0, 90 * 24 * 3600),
    adminPort: positiveInt(env, 'FEDMESH_VM_ADMIN_PORT', 15000, 65535),
  };
}
