import * as grpc from '@grpc/grpc-js';
import { WORKLOAD_HEALTH_SERVICE, type WorkloadHealthAck, type WorkloadHealthReport } from '@fedmesh/api';
import type { WorkloadCertificate } from '@fedmesh/proxy';
import type { Logger } from 'pino';

/** HealthReporterOptions configure {@link HealthReporter}. */
export interface HealthReporterOptions {
  /** address is istiod's 15012, `host:port`. */
  address: string;
  /** serverName is the name checked in istiod's serving certificate (`istiod.istio-system.svc`). */
  serverName: string;
  /** trustBundle returns the roots to verify istiod with. */
  trustBundle: () => string;
  /** certificate returns the workload certificate to authenticate with. */
  certificate: () => WorkloadCertificate | undefined;
  /** proxyId is the xDS node ID of this VM's proxy (the WorkloadEntry istiod updates). */
  proxyId: string;
  /** resendMs re-sends the last result this often, so a re-created entry (istiod restart) gets it (default 5 s). */
  resendMs?: number;
  /** timeoutMs bounds each call (default 5 s). */
  timeoutMs?: number;
  log: Logger;
}

type ReportFn = (
  req: WorkloadHealthReport,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, ack?: WorkloadHealthAck) => void,
) => void;

const Client = grpc.makeGenericClientConstructor(WORKLOAD_HEALTH_SERVICE, 'WorkloadHealthService');

/**
 * HealthReporter sends the readiness probe's result to istiod (`WorkloadHealthService/Report` on 15012, mutual TLS
 * with the workload certificate): at once when it changes, again every `resendMs`, and after a failure with back-off
 * (0.5 s doubling to `resendMs`; istiod answers NOT_FOUND until the proxy's auto-registration is in). Only the latest
 * result is ever in flight. {@link HealthReporter.close} stops it.
 */
export class HealthReporter {
  private latest: WorkloadHealthReport | undefined;
  private sending = false;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  /** delivered counts reports istiod accepted. */
  delivered = 0;

  /** constructor stores options; no I/O before {@link HealthReporter.report}. */
  constructor(private readonly opts: HealthReporterOptions) {}

  /** report queues `healthy`/`message` as the result to send now (replacing one not yet sent). */
  report(healthy: boolean, message: string): void {
    this.latest = { proxyId: this.opts.proxyId, healthy, message: message.slice(0, 1024) };
    this.failures = 0;
    this.schedule(0);
  }

  /** close stops sending. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.send(), delayMs);
    this.timer.unref();
  }

  private async send(): Promise<void> {
    const body = this.latest;
    const cert = this.opts.certificate();
    const resendMs = this.opts.resendMs ?? 5_000;
    if (this.sending || this.closed || !body) return;
    if (!cert) return this.schedule(500);
    this.sending = true;
    try {
      const ack = await this.call(body, cert);
      if (this.failures > 0 || this.delivered === 0)
        this.opts.log.info({ healthy: body.healthy, workloadEntry: ack.workloadEntry }, 'health reported to istiod');
      this.delivered++;
      this.failures = 0;
      this.schedule(this.latest === body ? resendMs : 0);
    } catch (err) {
      const delay = Math.min(resendMs, 500 * 2 ** this.failures++);
      const code = (err as Partial<grpc.ServiceError>).code;
      (this.failures === 1 ? this.opts.log.warn : this.opts.log.debug).call(
        this.opts.log,
        { code: code === undefined ? undefined : grpc.status[code], err: (err as Error).message, retryInMs: delay },
        'health report not accepted; retrying',
      );
      this.schedule(this.latest === body ? delay : 0);
    } finally {
      this.sending = false;
    }
  }

  private call(body: WorkloadHealthReport, cert: WorkloadCertificate): Promise<WorkloadHealthAck> {
    const creds = grpc.credentials.createSsl(
      Buffer.from(this.opts.trustBundle()),
      Buffer.from(cert.keyPem),
      Buffer.from(cert.chainPem),
    );
    const client = new Client(this.opts.address, creds, {
      'grpc.ssl_target_name_override': this.opts.serverName,
      'grpc.default_authority': this.opts.serverName,
    });
    const report = (client as unknown as { Report: ReportFn }).Report.bind(client);
    return new Promise<WorkloadHealthAck>((resolve, reject) => {
      report(body, new grpc.Metadata(), { deadline: Date.now() + (this.opts.timeoutMs ?? 5_000) }, (err, ack) => {
        client.close();
        if (err || !ack) reject(err ?? new Error('empty answer'));
        else resolve(ack);
      });
    });
  }
}
