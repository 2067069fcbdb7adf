import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { WorkloadCertificate } from '@fedmesh/proxy';

/** CERT_FILE is the one file (mode 0600) holding the key, chain and root, so they are replaced together. */
export const CERT_FILE = 'workload-certificate.json';

/** MAX_CERT_FILE_BYTES bounds the persisted file (64 KiB). */
const MAX_CERT_FILE_BYTES = 64 * 1024;

/** LoadResult says what was found in the state directory: a usable certificate, or why there is none. */
export type LoadResult =
  | { cert: WorkloadCertificate; reason?: undefined; detail?: undefined }
  | { cert?: undefined; reason: 'none' | 'expired' | 'other-identity' | 'unreadable'; detail?: string };

interface Persisted {
  keyPem: string;
  chainPem: string;
  rootPem: string;
  receivedAt: string;
}

/**
 * CertStore keeps the workload certificate, its key and root in one JSON file in the agent's state directory
 * (directory 0700, file 0600, written to a temporary file, synced and renamed, so a crash leaves the old or the new
 * pair, never a mix). After a crash or reboot within the certificate's lifetime the agent renews with it and needs no
 * bootstrap token. The key never leaves this host and is never logged.
 */
export class CertStore {
  /** constructor stores the directory; no I/O. */
  constructor(readonly dir: string) {}

  /** file is the persisted certificate's path. */
  get file(): string {
    return path.join(this.dir, CERT_FILE);
  }

  /**
   * load returns the persisted certificate when it is present, parses, matches its key, is for `spiffeId`, and is
   * valid for at least `marginMs` more (default 60 s); otherwise the reason there is none. Throws only for I/O errors
   * other than a missing file.
   */
  async load(spiffeId: string, now = Date.now(), marginMs = 60_000): Promise<LoadResult> {
    let text: string;
    try {
      const st = await fs.stat(this.file);
      if (st.size > MAX_CERT_FILE_BYTES) return { reason: 'unreadable', detail: 'file too large' };
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { reason: 'none' };
      throw err;
    }
    let p: Persisted;
    let leaf: X509Certificate;
    try {
      p = JSON.parse(text) as Persisted;
      leaf = new X509Certificate(p.chainPem);
      if (!leaf.checkPrivateKey(createPrivateKey(p.keyPem))) return { reason: 'unreadable', detail: 'key mismatch' };
    } catch (err) {
      return { reason: 'unreadable', detail: (err as Error).message };
    }
    const uri = (leaf.subjectAltName ?? '')
      .split(', ')
      .find((s) => s.startsWith('URI:'))
      ?.slice(4);
    if (uri !== spiffeId) return { reason: 'other-identity', detail: uri ?? 'no URI SAN' };
    const notAfter = new Date(leaf.validTo);
    if (notAfter.getTime() - marginMs <= now) return { reason: 'expired', detail: notAfter.toISOString() };
    return {
      cert: {
        keyPem: p.keyPem,
        chainPem: p.chainPem,
        rootPem: p.rootPem,
        spiffeId: uri,
        serialNumber: leaf.serialNumber,
        notBefore: new Date(leaf.validFrom),
        notAfter,
        receivedAt: new Date(p.receivedAt),
      },
    };
  }

  /** save persists a certificate atomically, creating the directory (0700) when needed. */
  async save(cert: WorkloadCertificate): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const body: Persisted = {
      keyPem: cert.keyPem,
      chainPem: cert.chainPem,
      rootPem: cert.rootPem,
      receivedAt: cert.receivedAt.toISOString(),
    };
    const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await fs.open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(JSON.stringify(body));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, this.file);
  }

  /** clear removes the persisted certificate (after istiod refused to renew it). */
  async clear(): Promise<void> {
    await fs.rm(this.file, { force: true });
  }
}
