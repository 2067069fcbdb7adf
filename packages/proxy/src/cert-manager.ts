import { EventEmitter } from 'node:events';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { chainRootIndex, createCsr, generateKeyPair, requestCertificate } from '@fedmesh/pki';

/** CertManagerOptions configure how the proxy obtains and renews its workload certificate. */
export interface CertManagerOptions {
  /** caAddress is istiod's CA, `host:port` (15012). */
  caAddress: string;
  /** caServerName is the name checked in istiod's serving certificate (default `istiod.istio-system.svc`). */
  caServerName?: string;
  /** rootCertPem verifies istiod's serving certificate until `trustBundle` gives something. */
  rootCertPem: string;
  /**
   * trustBundle returns the current trust bundle (SDS `ROOTCA`, one or more roots) to verify istiod with; during a
   * root rotation istiod's serving certificate moves to the new root, which only the bundle holds. Default: the
   * bootstrap `rootCertPem`.
   */
  trustBundle?: () => string;
  /** token authenticates the first request (bootstrap); renewals authenticate with the current certificate. */
  token: () => string | undefined;
  /** ttlSeconds is the requested lifetime (0: the CA's default, 24 h). */
  ttlSeconds?: number;
  /**
   * nodeId, when set, is sent as CSR metadata `fedmesh.io/node-id` so istiod can record which connected workload
   * holds which certificate (`fedmesh ca status`). It never changes the identity issued.
   */
  nodeId?: string;
  /** initial is a certificate obtained earlier (persisted by a VM agent): the first request renews with it, no token. */
  initial?: WorkloadCertificate;
  log: Logger;
}

/** WorkloadCertificate is the proxy's current identity material. */
export interface WorkloadCertificate {
  keyPem: string;
  /** chainPem is the leaf followed by intermediates (no root). */
  chainPem: string;
  /** rootPem is the root the CA said the chain ends at (the last element of its answer). */
  rootPem: string;
  spiffeId: string;
  /** serialNumber is the leaf's serial, uppercase hex as Node prints it. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** receivedAt is when the proxy installed it; renewal is measured from here (notBefore is backdated by the CA). */
  receivedAt: Date;
}

/** RENEW_AT and RENEW_JITTER: renew at 50% ± 10% of the lifetime left when the certificate arrived. */
export const RENEW_AT = 0.5;
/** RENEW_JITTER is the ± fraction of the lifetime added at random to the renewal point. */
export const RENEW_JITTER = 0.1;

/**
 * renewalDelayMs returns how long after `cert.receivedAt` to renew: (50% ± 10% jitter) of the time from receipt to
 * notAfter (DESIGN.md, Identity: renew at 50% of the lifetime, with jitter). Measured from receipt, not notBefore:
 * the CA backdates notBefore by a minute for clock skew, which would otherwise pull renewal of a 2-minute certificate
 * forward to a quarter of its life. `random` is in [0, 1). At least 1 s.
 */
export function renewalDelayMs(cert: Pick<WorkloadCertificate, 'notAfter' | 'receivedAt'>, random: number): number {
  const life = cert.notAfter.getTime() - cert.receivedAt.getTime();
  return Math.max(1_000, life * (RENEW_AT + (random * 2 - 1) * RENEW_JITTER));
}

/**
 * chainEndsAtPrimary tells whether a workload certificate chains to the first (primary) root of `trustBundlePem`.
 * The rotation rule (docs/adr/0004): when the trust bundle changes and this is false, the proxy re-issues its
 * certificate, because istiod puts the root it now signs under first.
 */
export function chainEndsAtPrimary(cert: Pick<WorkloadCertificate, 'chainPem'>, trustBundlePem: string): boolean {
  return chainRootIndex(cert.chainPem, trustBundlePem) === 0;
}

/**
 * CertManager keeps the proxy's workload certificate: it makes a P-256 key locally (the key never leaves the
 * process), sends a CSR to istiod's CA with the bootstrap token, and renews at 50% ± 10% of the lifetime
 * ({@link renewalDelayMs}), authenticating the renewal with the current certificate (DESIGN.md, Identity).
 * {@link CertManager.renewNow} renews at once (root rotation). Emits `'rotated'` with the new
 * {@link WorkloadCertificate}. Failed renewals retry with backoff (1 s doubling to 30 s) until one succeeds.
 */
export class CertManager extends EventEmitter {
  private current: WorkloadCertificate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<WorkloadCertificate> | undefined;
  private stopped = false;
  private failures = 0;
  /** renewals counts certificates installed after the first. */
  renewals = 0;

  /** constructor stores options; no I/O. */
  constructor(private readonly opts: CertManagerOptions) {
    super();
    this.current = opts.initial;
  }

  /** certificate returns the current certificate, if any. */
  certificate(): WorkloadCertificate | undefined {
    return this.current;
  }

  /** start obtains the first certificate (throws if the CA refuses) and schedules renewals. */
  async start(signal?: AbortSignal): Promise<WorkloadCertificate> {
    signal?.addEventListener('abort', () => this.stop(), { once: true });
    return this.renewNow('bootstrap');
  }

  /**
   * renewNow obtains and installs a new certificate now, authenticated with the current one (or the bootstrap token
   * when there is none). Concurrent calls share one request. Rejects when the CA refuses or is unreachable; a renewal
   * that was due keeps retrying on its timer.
   */
  renewNow(reason: string): Promise<WorkloadCertificate> {
    if (this.inflight) return this.inflight;
    const p = this.issue()
      .then((cert) => {
        this.failures = 0;
        this.install(cert, reason);
        return cert;
      })
      .finally(() => {
        this.inflight = undefined;
      });
    this.inflight = p;
    if (reason !== 'bootstrap')
      p.catch((err: unknown) => {
        const delayMs = Math.min(30_000, 1_000 * 2 ** this.failures++);
        this.opts.log.warn({ err: (err as Error).message, reason, delayMs }, 'certificate renewal failed; retrying');
        this.schedule(delayMs, reason);
      });
    return p;
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
      rootCertsPem: this.opts.trustBundle?.() || this.opts.rootCertPem,
      csrPem,
      ...(token !== undefined ? { token } : {}),
      ...(cur ? { clientCert: { certPem: cur.chainPem, keyPem: cur.keyPem } } : {}),
      ttlSeconds: this.opts.ttlSeconds ?? 0,
      serverName: this.opts.caServerName ?? 'istiod.istio-system.svc',
      ...(this.opts.nodeId !== undefined ? { metadata: { 'fedmesh.io/node-id': this.opts.nodeId } } : {}),
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
    const nl = (p: string): string => (p.endsWith('\n') ? p : `${p}\n`);
    return {
      keyPem: key.privateKeyPem,
      chainPem: [leafPem, ...intermediates].map(nl).join(''),
      rootPem: nl(rest[rest.length - 1] ?? ''),
      spiffeId: uri,
      serialNumber: leaf.serialNumber,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      receivedAt: new Date(),
    };
  }

  private install(cert: WorkloadCertificate, reason: string): void {
    if (this.current) this.renewals++;
    this.current = cert;
    this.emit('rotated', cert);
    this.opts.log.info(
      { spiffeId: cert.spiffeId, serial: cert.serialNumber, notAfter: cert.notAfter.toISOString(), reason },
      'workload certificate installed',
    );
    this.schedule(renewalDelayMs(cert, Math.random()), 'renewal');
  }

  private schedule(delayMs: number, reason: string): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        // Failures are logged and retried inside renewNow.
        this.renewNow(reason).catch(() => undefined);
      },
      Math.min(delayMs, 2 ** 31 - 1),
    );
    this.timer.unref();
  }
}
