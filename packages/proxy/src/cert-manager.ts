import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { createCsr, generateKeyPair, requestCertificate } from '@fedmesh/pki';

/** CertManagerOptions configure how the proxy obtains and renews its workload certificate. */
export interface CertManagerOptions {
  /** caAddress is istiod's CA, `host:port` (15012). */
  caAddress: string;
  /** caServerName is the name checked in istiod's serving certificate (default `istiod.istio-system.svc`). */
  caServerName?: string;
  /** rootCertPem verifies istiod's serving certificate before the trust bundle arrives over SDS. */
  rootCertPem: string;
  /** token authenticates the first request (bootstrap); renewals authenticate with the current certificate. */
  token: () => string | undefined;
  /** ttlSeconds is the requested lifetime (0: the CA's default, 24 h). */
  ttlSeconds?: number;
  log: Logger;
}

/** WorkloadCertificate is the proxy's current identity material. */
export interface WorkloadCertificate {
  keyPem: string;
  /** chainPem is the leaf followed by intermediates (no root). */
  chainPem: string;
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * CertManager keeps the proxy's workload certificate: it makes a P-256 key locally (the key never leaves the
 * process), sends a CSR to istiod's CA with the bootstrap token, and renews at 50% of the lifetime with ±10%
 * jitter, authenticating the renewal with the current certificate (DESIGN.md, Identity). Emits `'rotated'`
 * with the new {@link WorkloadCertificate}. Failed renewals retry with backoff until the certificate expires.
 */
export class CertManager extends EventEmitter {
  private current: WorkloadCertificate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** constructor stores options; no I/O. */
  constructor(private readonly opts: CertManagerOptions) {
    super();
  }

  /** certificate returns the current certificate, if any. */
  certificate(): WorkloadCertificate | undefined {
    return this.current;
  }

  /** start obtains the first certificate (throws if the CA refuses) and schedules renewals. */
  async start(signal?: AbortSignal): Promise<WorkloadCertificate> {
    signal?.addEventListener('abort', () => this.stop(), { once: true });
    const cert = await this.issue();
    this.install(cert);
    return cert;
  }

  /** stop cancels renewals. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async issue(): Promise<WorkloadCertificate> {
    const key = await generateKeyPair('ec-p256');
    const csrPem = createCsr({ privateKey: key.privateKey });
    const cur = this.current;
    const token = cur ? undefined : this.opts.token();
    const resp = await requestCertificate({
      address: this.opts.caAddress,
      rootCertsPem: this.opts.rootCertPem,
      csrPem,
      ...(token !== undefined ? { token } : {}),
      ...(cur ? { clientCert: { certPem: cur.chainPem, keyPem: cur.keyPem } } : {}),
      ttlSeconds: this.opts.ttlSeconds ?? 0,
      serverName: this.opts.caServerName ?? 'istiod.istio-system.svc',
    });
    const [leafPem, ...rest] = resp.certChainPem;
    if (!leafPem) throw new Error('CA returned an empty chain');
    const leaf = new X509Certificate(leafPem);
    if (!leaf.checkPrivateKey(key.privateKey)) throw new Error('CA returned a certificate for another key');
    const uri =
      (leaf.subjectAltName ?? '')
        .split(', ')
        .find((s) => s.startsWith('URI:'))
        ?.slice(4) ?? '';
    // The last element is the root: keep leaf + intermediates only.
    const intermediates = rest.length > 0 ? rest.slice(0, -1) : [];
    return {
      keyPem: key.privateKeyPem,
      chainPem: [leafPem, ...intermediates].map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''),
      spiffeId: uri,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
  }

  private install(cert: WorkloadCertificate): void {
    this.current = cert;
    this.emit('rotated', cert);
    this.opts.log.info(
      { spiffeId: cert.spiffeId, notAfter: cert.notAfter.toISOString() },
      'workload certificate installed',
    );
    const life = cert.notAfter.getTime() - cert.notBefore.getTime();
    const at = cert.notBefore.getTime() + life * (0.5 + (Math.random() - 0.5) * 0.2);
    this.schedule(Math.max(1_000, at - Date.now()), 0);
  }

  private schedule(delayMs: number, failures: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.issue()
          .then((c) => this.install(c))
          .catch((err: unknown) => {
            this.opts.log.warn({ err: (err as Error).message, failures }, 'certificate renewal failed; retrying');
            this.schedule(Math.min(30_000, 1_000 * 2 ** failures), failures + 1);
          });
      },
      Math.min(delayMs, 2 ** 31 - 1),
    );
    this.timer.unref();
  }
}
