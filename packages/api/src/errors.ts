/**
 * Error classes shared by every fedmesh package.
 *
 * Modelled on undici: each error carries a stable `code` (never reused for a different failure) and a
 * `Symbol.for` brand, so `MeshError.isMeshError(x)` works across duplicate installs of this package where
 * `instanceof` would not.
 */

const kMeshError = Symbol.for('fedmesh.error');

/**
 * ErrorCode lists every stable error code fedmesh emits. The values are part of the public contract: they
 * appear in logs, NACK `error_detail`s, CLI output and metric labels, so a code is never renamed or reused
 * for a different failure. Add new codes at the end.
 */
export const ErrorCode = {
  /** Configuration (a manifest, an option, a resource) failed validation. */
  INVALID_CONFIG: 'FEDMESH_ERR_INVALID_CONFIG',
  /** A string that must be a SPIFFE ID (`spiffe://<trust-domain>/<path>`) is not one. */
  INVALID_SPIFFE_ID: 'FEDMESH_ERR_INVALID_SPIFFE_ID',
  /** The certificate authority refused to sign (bad credential, identity mismatch, policy). */
  CA_DENIED: 'FEDMESH_ERR_CA_DENIED',
  /** A named thing (resource, cluster, service, file) does not exist. */
  NOT_FOUND: 'FEDMESH_ERR_NOT_FOUND',
  /** The xDS peer broke the protocol (bad nonce, unknown type URL, malformed message). */
  XDS_PROTOCOL: 'FEDMESH_ERR_XDS_PROTOCOL',
  /** The input is well formed but asks for something fedmesh does not implement (a kind, a field value). */
  UNSUPPORTED: 'FEDMESH_ERR_UNSUPPORTED',
  /** The caller is not authenticated (no or invalid credential). */
  UNAUTHENTICATED: 'FEDMESH_ERR_UNAUTHENTICATED',
  /** The operation did not finish in time. */
  TIMEOUT: 'FEDMESH_ERR_TIMEOUT',
  /** A dependency (etcd, NATS, a peer cluster) is unreachable; retrying later may succeed. */
  UNAVAILABLE: 'FEDMESH_ERR_UNAVAILABLE',
  /** The operation was cancelled through its AbortSignal. */
  ABORTED: 'FEDMESH_ERR_ABORTED',
  /** A bug: an invariant inside fedmesh did not hold. */
  INTERNAL: 'FEDMESH_ERR_INTERNAL',
} as const;

/** ErrorCode (the type) is the union of every value of the `ErrorCode` object, e.g. `'FEDMESH_ERR_NOT_FOUND'`. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * ErrorCodeGrpcStatus maps each {@link ErrorCode} to the gRPC status code (numeric, per
 * https://grpc.github.io/grpc/core/md_doc_statuscodes.html) a server returns for it. This is the one place
 * that mapping lives; the xDS and CA servers use it rather than choosing statuses themselves.
 */
export const ErrorCodeGrpcStatus: Readonly<Record<ErrorCode, number>> = Object.freeze({
  FEDMESH_ERR_INVALID_CONFIG: 3, // INVALID_ARGUMENT
  FEDMESH_ERR_INVALID_SPIFFE_ID: 3, // INVALID_ARGUMENT
  FEDMESH_ERR_CA_DENIED: 7, // PERMISSION_DENIED
  FEDMESH_ERR_NOT_FOUND: 5, // NOT_FOUND
  FEDMESH_ERR_XDS_PROTOCOL: 3, // INVALID_ARGUMENT
  FEDMESH_ERR_UNSUPPORTED: 12, // UNIMPLEMENTED
  FEDMESH_ERR_UNAUTHENTICATED: 16, // UNAUTHENTICATED
  FEDMESH_ERR_TIMEOUT: 4, // DEADLINE_EXCEEDED
  FEDMESH_ERR_UNAVAILABLE: 14, // UNAVAILABLE
  FEDMESH_ERR_ABORTED: 1, // CANCELLED
  FEDMESH_ERR_INTERNAL: 13, // INTERNAL
});

/** MeshErrorOptions are the optional constructor arguments of {@link MeshError}: the underlying `cause`. */
export interface MeshErrorOptions {
  /** The error (or value) that caused this one; kept as the standard `Error.cause`. */
  cause?: unknown;
}

/**
 * MeshError is the base class of every error fedmesh throws on purpose. `code` is a stable
 * {@link ErrorCode}; `message` is for humans and may change; `cause` holds the underlying error.
 * Instances carry the `Symbol.for('fedmesh.error')` brand: test with {@link MeshError.isMeshError}, which
 * also recognises errors created by another copy of this package.
 */
export class MeshError extends Error {
  /** code is the stable machine-readable error code. */
  readonly code: ErrorCode;
  /** name is `'MeshError'`; each subclass sets its own class name. */
  override readonly name: string = 'MeshError';

  /**
   * MeshError's constructor takes the stable `code`, a human `message`, and optionally the `cause`.
   */
  constructor(code: ErrorCode, message: string, options?: MeshErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }

  /**
   * MeshError.isMeshError reports whether `x` is a MeshError (any subclass, from any copy of this package),
   * by its `Symbol.for('fedmesh.error')` brand rather than `instanceof`.
   */
  static isMeshError(x: unknown): x is MeshError {
    return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[kMeshError] === true;
  }
}

// The brand lives on the prototype, so subclasses and copies of this package share it without a public field.
Object.defineProperty(MeshError.prototype, kMeshError, { value: true, enumerable: false });

/**
 * ValidationIssue is one problem found while validating configuration: `path` is the dotted field path
 * inside the validated object (`spec.http[0].route[1].weight`, `''` for the object itself) and `message`
 * says what is wrong in words a user understands (`must be ≤ 100`).
 */
export interface ValidationIssue {
  /** The field path, with `.` between keys and `[i]` for list indices; `''` for the whole object. */
  path: string;
  /** What is wrong, e.g. `must be ≤ 100` or `unknown field`. */
  message: string;
}

/**
 * InvalidConfigError is the {@link MeshError} (code `FEDMESH_ERR_INVALID_CONFIG`) thrown when configuration
 * is rejected at startup or by a `parse*` helper. `issues` lists every problem found, each with its field
 * path; the message joins them as `path: message; …`.
 */
export class InvalidConfigError extends MeshError {
  /** issues lists every validation problem found (at least one). */
  readonly issues: readonly ValidationIssue[];

  /**
   * InvalidConfigError's constructor takes the issues and an optional leading `subject` for the message
   * (e.g. `VirtualService default/reviews`).
   */
  constructor(issues: readonly ValidationIssue[], subject?: string, options?: MeshErrorOptions) {
    const detail = issues.map((i) => (i.path === '' ? i.message : `${i.path}: ${i.message}`)).join('; ');
    super(ErrorCode.INVALID_CONFIG, subject === undefined ? detail : `${subject}: ${detail}`, options);
    this.issues = Object.freeze([...issues]);
  }

  /** name is `'InvalidConfigError'`. */
  override readonly name: string = 'InvalidConfigError';

  /** InvalidConfigError.isInvalidConfigError reports whether `x` is a MeshError with code `FEDMESH_ERR_INVALID_CONFIG` and an `issues` list. */
  static isInvalidConfigError(x: unknown): x is InvalidConfigError {
    return (
      MeshError.isMeshError(x) && x.code === ErrorCode.INVALID_CONFIG && Array.isArray((x as InvalidConfigError).issues)
    );
  }
}
