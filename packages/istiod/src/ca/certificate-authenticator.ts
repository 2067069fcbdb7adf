import { verifySpiffePeer } from '@fedmesh/pki';
import type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';

/** CertificateAuthenticatorOptions: the trust domains whose workloads may renew. */
export interface CertificateAuthenticatorOptions {
  readonly trustDomains: readonly string[];
}

/**
 * CertificateAuthenticator authenticates renewals: the caller's current client certificate, which the TLS layer has
 * verified against the trust bundle, gives its SPIFFE identity through `verifySpiffePeer` (role client). Resolves to
 * null without a verified client certificate; throws PkiError `PEER_*` when the certificate is not an acceptable
 * X509-SVID (CA certificate, no or several URI SANs, foreign trust domain, no clientAuth).
 */
export class CertificateAuthenticator implements Authenticator {
  readonly name = 'certificate';
  readonly #trustDomains: readonly string[];

  constructor(options: CertificateAuthenticatorOptions) {
    if (options.trustDomains.length === 0) throw new TypeError('CertificateAuthenticator: trustDomains is empty');
    this.#trustDomains = [...options.trustDomains];
  }

  /** authenticate implements {@link Authenticator}. */
  async authenticate(context: AuthenticationContext): Promise<AuthenticatedCaller | null> {
    if (context.peerCertificate === undefined) return null;
    const identity = verifySpiffePeer(context.peerCertificate, {
      trustDomains: this.#trustDomains,
      peerRole: 'client',
    });
    return { identity, authenticator: this.name };
  }
}
