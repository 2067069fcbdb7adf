/**
 * TlsMaterial is what the proxy's mTLS listeners and pools use: its own certificate chain and key (the SDS
 * secret `default`, made locally) and the trust bundle (the SDS secret `ROOTCA`, from istiod).
 */
export interface TlsMaterial {
  /** certChainPem is the leaf followed by its intermediates. */
  certChainPem: string;
  keyPem: string;
  /** trustBundlePem is one or more root certificates, concatenated PEM. */
  trustBundlePem: string;
  trustDomain: string;
  /** spiffeId is the proxy's own identity, from its leaf. */
  spiffeId: string;
}
