import type { Metadata } from '@grpc/grpc-js';
import type { SpiffeIdentity } from '@fedmesh/pki';
import type { X509Certificate } from 'node:crypto';

/** AuthenticationContext is what a certificate request carries besides the CSR. */
export interface AuthenticationContext {
  /** metadata is the gRPC request metadata (`authorization: Bearer <token>`, …). */
  readonly metadata: Metadata;
  /**
   * peerCertificate is the client certificate, present only when the TLS layer verified it against the trust bundle.
   */
  readonly peerCertificate?: X509Certificate;
}

/** AuthenticatedCaller is who a request proved to be, and which authenticator proved it. */
export interface AuthenticatedCaller {
  readonly identity: SpiffeIdentity;
  readonly authenticator: string;
}

/**
 * Authenticator decides who is asking for a certificate (Istio's `security.Authenticator`). `authenticate` resolves
 * to the caller, to null when it does not apply (no credential of its kind: the next authenticator is tried), or
 * rejects when its credential is present but invalid (the request is refused; a PkiError's reason is logged).
 */
export interface Authenticator {
  /** name labels the authenticator in logs (`local-token`, `certificate`, `kubernetes`). */
  readonly name: string;
  authenticate(context: AuthenticationContext): Promise<AuthenticatedCaller | null>;
}
