/**
 * The CA service of istiod: Istio's `IstioCertificateService` over gRPC with chained authenticators (local tokens,
 * renewal by client certificate). Export from the package entry point; see README.md here.
 */
export type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';
export {
  LocalTokenAuthenticator,
  type LocalTokenAuthenticatorOptions,
  type MintTokenOptions,
} from './local-token-authenticator.js';
export { CertificateAuthenticator, type CertificateAuthenticatorOptions } from './certificate-authenticator.js';
export { KubeTokenAuthenticator, type KubeTokenAuthenticatorOptions } from './kube-token-authenticator.js';
export {
  CA_REFUSAL_MESSAGE,
  CA_REFUSAL_STATUS,
  createCaService,
  type CaService,
  type CaServiceOptions,
  type IssuedEvent,
} from './ca-service.js';
export {
  createOptionalClientCertCredentials,
  startCaServer,
  StaticCertificateProvider,
  type RunningCaServer,
  type StartCaServerOptions,
} from './ca-server.js';
export {
  VM_TOKEN_GROUP_CLAIM,
  VM_TOKEN_ISSUER,
  VmTokenAuthenticator,
  type MintedVmToken,
  type MintVmTokenOptions,
  type VerifiedVmToken,
  type VmTokenAuthenticatorOptions,
  type WorkloadGroupLookup,
} from './vm-token-authenticator.js';
