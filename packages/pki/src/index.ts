/**
 * @fedmesh/pki: keys, CSRs, the mesh CA (SPIFFE X509-SVIDs in Istio's plug-in CA layout), SPIFFE peer checks and
 * the client of Istio's CA API. Certificates are built with forge.asn1 and signed with Node's crypto.
 */
export { PkiError, isPkiError, type PkiErrorCode, type PkiReason } from './errors.js';
export type { PkiLogger } from './logger.js';
export {
  isValidTrustDomain,
  parseSpiffeUri,
  sameIdentity,
  spiffeUri,
  validateSpiffeIdentity,
  type SpiffeIdentity,
} from './spiffe.js';
export { derToPem, splitPemBundle } from './pem.js';
export { certificateFingerprint, chainRootIndex } from './chain.js';
export { generateKeyPair, type GeneratedKeyPair, type KeyType, type PublicKeyInfo } from './keys.js';
export { createCsr, parseCsr, type CreateCsrOptions, type ParseCsrOptions, type ParsedCsr } from './csr.js';
export type { NameAttributes } from './asn1.js';
export type { SubjectAltNames } from './extensions.js';
export {
  CertificateAuthority,
  checkTtl,
  CLOCK_SKEW_MS,
  DEFAULT_CERT_TTL_MS,
  DEFAULT_TRUST_DOMAIN,
  MAX_CERT_TTL_MS,
  type CreateSelfSignedOptions,
  type IssuedCertificate,
  type LoadPluggedCaOptions,
  type SignServingOptions,
  type SignWorkloadOptions,
} from './ca.js';
export type { CaMaterialPem } from './ca-material.js';
export {
  createRootCa,
  DEFAULT_CA_ORG,
  DEFAULT_INTERMEDIATE_TTL_MS,
  DEFAULT_ROOT_TTL_MS,
  type CreateRootCaOptions,
  type RootCa,
} from './root-ca.js';
export {
  createIntermediateCa,
  createIntermediateCsr,
  INTERMEDIATE_CA_COMMON_NAME,
  signIntermediate,
  type CreateIntermediateCaOptions,
  type CreateIntermediateCsrOptions,
  type IntermediateCsr,
  type SignedIntermediate,
  type SignIntermediateOptions,
} from './intermediate-ca.js';
export { writeCaFiles, writePluggedCa, type CaFile, type WriteCaFilesOptions } from './ca-files.js';
export {
  spiffeCheckServerIdentity,
  verifySpiffePeer,
  type ExpectedServerIdentity,
  type PeerCertificateInput,
  type PeerRole,
  type VerifySpiffePeerOptions,
} from './peer.js';
export {
  CA_PROTO_PATH,
  loadIstioCertificateService,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
  type IstioCertificateServiceGrpc,
} from './ca-proto.js';
export { requestCertificate, type CertificateResponse, type RequestCertificateOptions } from './client.js';
