/**
 * PkiReason is the specific, stable reason a PKI operation failed. It is meant for logs and metric labels;
 * callers that answer remote peers (the CA gRPC service) must not reveal it.
 */
export type PkiReason =
  // CSR parsing (PKCS#10, RFC 2986)
  | 'CSR_TOO_LARGE'
  | 'CSR_MALFORMED'
  | 'CSR_BAD_SIGNATURE'
  | 'CSR_WEAK_KEY'
  // issuing
  | 'TTL_TOO_LONG'
  | 'TTL_INVALID'
  | 'KEY_UNSUPPORTED'
  | 'IDENTITY_INVALID'
  | 'IDENTITY_WRONG_TRUST_DOMAIN'
  // authentication of certificate requests
  | 'NO_CREDENTIALS'
  | 'TOKEN_MALFORMED'
  | 'TOKEN_BAD_SIGNATURE'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_NOT_YET_VALID'
  | 'TOKEN_WRONG_AUDIENCE'
  | 'TOKEN_UNKNOWN_KEY'
  // a Kubernetes ServiceAccount token the API server's TokenReview did not authenticate, or authenticated as a
  // user that is not a ServiceAccount, or that could not be reviewed (API server unreachable, istiod not allowed)
  | 'TOKEN_UNAUTHENTICATED'
  | 'TOKEN_NOT_SERVICE_ACCOUNT'
  | 'TOKEN_REVIEW_FAILED'
  // a VM bootstrap token whose WorkloadGroup is gone or no longer runs as the token's ServiceAccount
  | 'TOKEN_BINDING_MISMATCH'
  // peer verification (SPIFFE X509-SVID)
  | 'PEER_NO_SPIFFE_ID'
  | 'PEER_MULTIPLE_URI_SANS'
  | 'PEER_BAD_SPIFFE_ID'
  | 'PEER_WRONG_TRUST_DOMAIN'
  | 'PEER_UNEXPECTED_IDENTITY'
  | 'PEER_IS_CA'
  | 'PEER_EXPIRED'
  | 'PEER_MISSING_CLIENT_AUTH'
  | 'PEER_MISSING_SERVER_AUTH'
  | 'PEER_MALFORMED'
  // CA material (Istio plug-in layout)
  | 'CA_FILES_MISSING'
  | 'CA_FILES_EXIST'
  | 'CA_CERT_INVALID'
  | 'CA_NOT_A_CA'
  | 'CA_KEY_INVALID'
  | 'CA_KEY_MISMATCH'
  | 'CA_CHAIN_INVALID'
  | 'CA_EXPIRED'
  | 'CA_TRUST_DOMAIN_MISMATCH'
  // talking to a CA
  | 'CA_REFUSED'
  | 'CA_UNAVAILABLE'
  | 'CA_BAD_RESPONSE';

/**
 * PkiErrorCode is the stable, never-reused `FEDMESH_ERR_*` family a {@link PkiReason} belongs to.
 */
export type PkiErrorCode =
  | 'FEDMESH_ERR_CSR_INVALID'
  | 'FEDMESH_ERR_CA_DENIED'
  | 'FEDMESH_ERR_PEER_REJECTED'
  | 'FEDMESH_ERR_CA_CONFIG'
  | 'FEDMESH_ERR_CA_UNAVAILABLE';

function codeFor(reason: PkiReason): PkiErrorCode {
  if (reason.startsWith('CSR_')) return 'FEDMESH_ERR_CSR_INVALID';
  if (reason.startsWith('PEER_')) return 'FEDMESH_ERR_PEER_REJECTED';
  if (reason === 'CA_UNAVAILABLE' || reason === 'CA_BAD_RESPONSE') return 'FEDMESH_ERR_CA_UNAVAILABLE';
  if (reason === 'CA_REFUSED') return 'FEDMESH_ERR_CA_DENIED';
  if (reason.startsWith('CA_')) return 'FEDMESH_ERR_CA_CONFIG';
  return 'FEDMESH_ERR_CA_DENIED';
}

const brand = Symbol.for('fedmesh.pki.PkiError');

/**
 * PkiError is the one error class thrown by `@fedmesh/pki` for expected failures (bad input, refused peers, broken
 * CA material). `code` is the stable `FEDMESH_ERR_*` family, `reason` the specific {@link PkiReason}; `cause` carries
 * the underlying error when there is one. Messages never contain key, token or CSR material.
 * `instanceof` works across duplicate installs (the class is branded with `Symbol.for`).
 */
export class PkiError extends Error {
  override readonly name = 'PkiError';
  /** code is the `FEDMESH_ERR_*` family of {@link PkiError.reason}. */
  readonly code: PkiErrorCode;
  /** reason is the specific, stable failure reason. */
  readonly reason: PkiReason;
  readonly [brand] = true;

  constructor(reason: PkiReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
    this.code = codeFor(reason);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** isPkiError tells whether `value` is a {@link PkiError}, optionally with the given reason. */
export function isPkiError(value: unknown, reason?: PkiReason): value is PkiError {
  return value instanceof PkiError && (reason === undefined || value.reason === reason);
}
