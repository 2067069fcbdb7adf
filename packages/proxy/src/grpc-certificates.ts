import type * as grpc from '@grpc/grpc-js';

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/** GrpcTlsMaterial is what a gRPC TLS channel presents and trusts, as PEM. */
export interface GrpcTlsMaterial {
  /** trustBundlePem is one or more roots the server's chain must verify up to. */
  trustBundlePem: string;
  /** certChainPem is the client certificate, leaf first. */
  certChainPem: string;
  keyPem: string;
}

/**
 * MutableCertificateProvider feeds grpc-js (`grpc.experimental.createCertificateProviderChannelCredentials`) the
 * proxy's current certificate and trust bundle. {@link MutableCertificateProvider.update} swaps both: connections
 * made afterwards (ADS reconnects) use the new material, open ones keep theirs. Until the first update grpc-js
 * waits for material instead of connecting.
 */
export class MutableCertificateProvider implements grpc.experimental.CertificateProvider {
  private ca: grpc.experimental.CaCertificateUpdate | undefined;
  private identity: grpc.experimental.IdentityCertificateUpdate | undefined;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();

  /** update replaces the material and notifies grpc-js. */
  update(m: GrpcTlsMaterial): void {
    const ca = { caCertificate: Buffer.from(m.trustBundlePem) };
    const identity = { certificate: Buffer.from(m.certChainPem), privateKey: Buffer.from(m.keyPem) };
    this.ca = ca;
    this.identity = identity;
    for (const l of this.caListeners) l(ca);
    for (const l of this.identityListeners) l(identity);
  }

  /** addCaCertificateListener implements grpc's CertificateProvider; the listener gets the current bundle at once. */
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const ca = this.ca;
    if (ca) process.nextTick(listener, ca);
  }

  /** removeCaCertificateListener implements grpc's CertificateProvider. */
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  /** addIdentityCertificateListener implements grpc's CertificateProvider; the listener gets the current identity. */
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const identity = this.identity;
    if (identity) process.nextTick(listener, identity);
  }

  /** removeIdentityCertificateListener implements grpc's CertificateProvider. */
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
