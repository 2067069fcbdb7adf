import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  toValidationIssues,
  WORKLOAD_HEALTH_SERVICE,
  WorkloadHealthReportSchema,
  type WorkloadHealthAck,
  type WorkloadHealthReport,
} from '@fedmesh/api';
import { isPkiError, verifySpiffePeer } from '@fedmesh/pki';
import type { Logger } from 'pino';
import type { WorkloadEntryController } from './auto-registration.js';

/** WorkloadHealthServiceOptions configure {@link createWorkloadHealthService}. */
export interface WorkloadHealthServiceOptions {
  controller: WorkloadEntryController;
  trustDomains: readonly string[];
  log: Logger;
}

/**
 * createWorkloadHealthService implements `fedmesh.vm.v1.WorkloadHealthService/Report` for istiod's 15012: the caller
 * must present a client certificate the TLS layer verified (a workload X509-SVID of the trust domain), and may report
 * only for a connected auto-registered entry of its own namespace and ServiceAccount. Answers UNAUTHENTICATED without
 * a usable certificate, INVALID_ARGUMENT (with the field path) for a malformed report, NOT_FOUND when the proxy is not
 * registered (yet), PERMISSION_DENIED for another identity's entry; each refusal is logged.
 */
export function createWorkloadHealthService(options: WorkloadHealthServiceOptions): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const log = options.log;
  const report: grpc.handleUnaryCall<unknown, WorkloadHealthAck> = (call, callback) => {
    const peer = call.getPeer();
    const refuse = (code: grpc.status, details: string, fields: Record<string, unknown> = {}): void => {
      log.warn({ peer, code: grpc.status[code], ...fields }, `health report refused: ${details}`);
      callback({ code, details });
    };
    const raw = call.getAuthContext().sslPeerCertificate?.raw;
    if (raw === undefined) return refuse(grpc.status.UNAUTHENTICATED, 'a workload client certificate is required');
    let identity;
    try {
      identity = verifySpiffePeer(new X509Certificate(raw), { trustDomains: options.trustDomains, peerRole: 'client' });
    } catch (err) {
      return refuse(grpc.status.UNAUTHENTICATED, 'the client certificate is not a workload certificate', {
        reason: isPkiError(err) ? err.reason : 'PEER_MALFORMED',
      });
    }
    const parsed = WorkloadHealthReportSchema.safeParse(call.request);
    if (!parsed.success) {
      const detail = toValidationIssues(parsed.error.issues)
        .map((i) => `${i.path || 'request'}: ${i.message}`)
        .join('; ');
      return refuse(grpc.status.INVALID_ARGUMENT, detail);
    }
    const body: WorkloadHealthReport = parsed.data;
    const result = options.controller.reportHealth(identity, body);
    if (!result.ok)
      return refuse(
        result.reason === 'NOT_REGISTERED' ? grpc.status.NOT_FOUND : grpc.status.PERMISSION_DENIED,
        result.message,
        {
          proxyId: body.proxyId,
          namespace: identity.namespace,
          serviceAccount: identity.serviceAccount,
        },
      );
    callback(null, { workloadEntry: result.workloadEntry });
  };
  return {
    definition: WORKLOAD_HEALTH_SERVICE,
    implementation: { Report: report as grpc.UntypedHandleCall },
  };
}
