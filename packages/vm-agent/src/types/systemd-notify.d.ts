/**
 * Types for the `systemd-notify` npm package (1.0.0), which ships none: it spawns `/usr/bin/systemd-notify` with
 * `--ready`, `--status=` and `--pid=` and resolves when that exits 0 (rejects with its stderr otherwise).
 */
declare module 'systemd-notify' {
  /** NotifyOptions are the fields the package turns into `systemd-notify` flags. */
  interface NotifyOptions {
    ready?: boolean;
    status?: string;
    pid?: number;
    booted?: boolean;
  }
  /** notify runs `systemd-notify` once with the flags of `opts`. */
  function notify(opts?: NotifyOptions): Promise<unknown>;
  export default notify;
}
