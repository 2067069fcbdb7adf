import { execFile } from 'node:child_process';
import path from 'node:path';

/** CLI is the compiled `fedmesh` entry point. */
export const CLI = path.resolve(import.meta.dirname, '../../packages/ctl/dist/main.js');

/** fedmesh runs the CLI with arguments; resolves exit code, stdout and stderr (never rejects on a non-zero exit). */
export function fedmesh(args: string[], timeoutMs = 90_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
