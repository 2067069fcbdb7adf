import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** SUBNET_LOCK_DIR holds one file per reserved 127.0.N.0/24 block, named N, holding the reserving process's pid. */
export const SUBNET_LOCK_DIR = path.join(os.tmpdir(), 'fedmesh-subnets');

const held = new Set<string>();
let exitHook = false;

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** tryLock creates the lock file of block `n` exclusively, reclaiming it first if its holder has exited. */
function tryLock(n: number): boolean {
  const file = path.join(SUBNET_LOCK_DIR, String(n));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      held.add(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(fs.readFileSync(file, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) return false;
      fs.rmSync(file, { force: true }); // stale: its holder is gone
    }
  }
  return false;
}

/**
 * reserveSubnet picks N in 10..249 such that the loopback block 127.0.N.0/24 is neither reserved by another live
 * process (an exclusive lock file in {@link SUBNET_LOCK_DIR}, created with `wx`, so two processes choosing at the
 * same moment never get the same N; a lock whose pid has exited is reclaimed) nor in use (each `probes` entry
 * `[lastOctet, port]` must be free to bind). The reservation lasts until this process exits. Throws after 60
 * attempts.
 */
export async function reserveSubnet(probes: readonly (readonly [number, number])[]): Promise<number> {
  fs.mkdirSync(SUBNET_LOCK_DIR, { recursive: true });
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const f of held) fs.rmSync(f, { force: true });
    });
  }
  for (let i = 0; i < 60; i++) {
    const n = 10 + Math.floor(Math.random() * 240);
    if (!tryLock(n)) continue;
    let free = true;
    for (const [octet, port] of probes) free = free && (await portFree(`127.0.${n}.${octet}`, port));
    if (free) return n;
    // In use by something that does not reserve (or a process that left it bound): keep the lock so nobody else
    // in this run tries it again, and pick another.
  }
  throw new Error('no free 127.0.N.0/24 block found');
}
