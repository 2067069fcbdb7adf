import * as grpc from '@grpc/grpc-js';
import {
  checkTtl,
  DEFAULT_CERT_TTL_MS,
  isPkiError,
  loadIstioCertificateService,
  MAX_CERT_TTL_MS,
  parseCsr,
  PkiError,
  spiffeUri,
  type CertificateAuthority,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
  type PkiLogger,
  type PkiReason,
} from '@fedmesh/pki';
import { X509Certificate } from 'node:crypto';
import type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';

/** CA_REFUSAL_STATUS is the one gRPC status every refused certificate request gets. */
export const CA_REFUSAL_STATUS = grpc.status.PERMISSION_DENIED;
/** CA_REFUSAL_MESSAGE is the one message every refused certificate request gets; the reason is only logged. */
export const CA_REFUSAL_MESSAGE = 'certificate request refused';

/** CaServiceOptions configures {@link createCaService}. */
export interface CaServiceOptions {
  /** ca signs; a function is asked on every request, so a root rotation can switch the signer. */
  readonly ca: CertificateAuthority | (() => CertificateAuthority);
  /** onIssued observes each certificate issued (after signing, before answering); it must not throw. */
  readonly onIssued?: (event: IssuedEvent) => void;
  /** authenticators are tried in order; the first non-null answer wins, the first throw refuses. */
  readonly authenticators: readonly Authenticator[];
  readonly logger?: PkiLogger;
  /** maxTtlMs is the longest lifetime granted, in ms. Default and upper bound 90 days; longer requests are refused. */
  readonly maxTtlMs?: number;
  /** defaultTtlMs is the lifetime when `validity_duration` is 0, in ms. Default 24 h. */
  readonly defaultTtlMs?: number;
  /** maxCsrBytes bounds the CSR PEM, in bytes. Default 16 KiB. */
  readonly maxCsrBytes?: number;
}

/** IssuedEvent describes one issued certificate, for istiod's per-workload records (`fedmesh ca status`). */
export interface IssuedEvent {
  readonly identity: AuthenticatedCaller['identity'];
  readonly authenticator: string;
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** rootCertPem is the root the issued chain ends at. */
  readonly rootCertPem: string;
  /** metadata holds the request's `metadata` Struct entries that are strings (unauthenticated claims). */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * requestMetadata reads the string entries of a request's `metadata` Struct (at most 32, each at most 1 KiB). The
 * well-known Struct comes from protobufjs's bundled definition, whose field names are camelCase (`stringValue`) even
 * with proto-loader's `keepCase`.
 */
function requestMetadata(metadata: unknown): Record<string, string> {
  const fields = (metadata as { fields?: Record<string, { stringValue?: unknown }> } | undefined)?.fields ?? {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields).slice(0, 32))
    if (typeof v.stringValue === 'string' && v.stringValue.length <= 1024) out[k] = v.stringValue;
  return out;
}

/** CaService is a service definition and implementation pair for `grpc.Server.addService`. */
export interface CaService {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
}

/** RefusalReason is what a refusal is logged with: a PkiReason, or a failure inside an authenticator. */
type RefusalReason = PkiReason | 'AUTHENTICATOR_ERROR';

class Refusal extends Error {
  constructor(
    readonly reason: RefusalReason,
    readonly caller?: AuthenticatedCaller,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/** refusalDetail gives the log fields explaining a refusal. PkiError messages hold no secrets by contract. */
function refusalDetail(refusal: Refusal): Record<string, unknown> {
  const cause = refusal.cause;
  if (refusal.reason === 'AUTHENTICATOR_ERROR') return { err: cause };
  return isPkiError(cause) ? { detail: cause.message } : {};
}

function peerCertificateOf(call: grpc.ServerUnaryCall<unknown, unknown>): X509Certificate | undefined {
  // grpc-js reports the client certificate only when the TLS layer verified it (socket.authorized).
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  return raw === undefined ? undefined : new X509Certificate(raw);
}

async function authenticate(
  authenticators: readonly Authenticator[],
  context: AuthenticationContext,
): Promise<AuthenticatedCaller> {
  for (const authenticator of authenticators) {
    let caller: AuthenticatedCaller | null;
    try {
      caller = await authenticator.authenticate(context);
    } catch (err) {
      throw new Refusal(isPkiError(err) ? err.reason : 'AUTHENTICATOR_ERROR', undefined, { cause: err });
    }
    if (caller !== null) return caller;
  }
  throw new Refusal('NO_CREDENTIALS');
}

function requestedTtlMs(validitySeconds: number, defaultTtlMs: number, maxTtlMs: number): number {
  if (validitySeconds === 0) return defaultTtlMs;
  if (!Number.isSafeInteger(validitySeconds) || validitySeconds < 0) {
    throw new PkiError('TTL_INVALID', 'validity_duration must be a non-negative number of seconds');
  }
  const ttlMs = checkTtl(validitySeconds * 1000);
  if (ttlMs > maxTtlMs) throw new PkiError('TTL_TOO_LONG', 'requested TTL exceeds the CA maximum');
  return ttlMs;
}

/**
 * createCaService implements Istio's `istio.v1.auth.IstioCertificateService/CreateCertificate`. The certificate's
 * identity is the authenticated caller's, never the CSR's SANs. `validity_duration` is in seconds: 0 gives
 * `defaultTtlMs`, above `maxTtlMs` is refused. The answer's `cert_chain` is [leaf, intermediates…, root]. Every
 * refusal (no or bad credentials, bad TTL, bad CSR, wrong trust domain) gets {@link CA_REFUSAL_STATUS} with
 * {@link CA_REFUSAL_MESSAGE} and is logged (warn) with its reason code; tokens, CSRs and keys are never logged.
 * Unexpected failures answer INTERNAL. Authentication runs before any CSR parsing. Throws TypeError on bad options.
 */
export function createCaService(options: CaServiceOptions): CaService {
  const maxTtlMs = options.maxTtlMs ?? MAX_CERT_TTL_MS;
  const defaultTtlMs = options.defaultTtlMs ?? DEFAULT_CERT_TTL_MS;
  if (!(maxTtlMs > 0 && maxTtlMs <= MAX_CERT_TTL_MS && defaultTtlMs > 0 && defaultTtlMs <= maxTtlMs)) {
    throw new TypeError('createCaService: need 0 < defaultTtlMs <= maxTtlMs <= 90 days');
  }
  if (options.authenticators.length === 0) throw new TypeError('createCaService: no authenticators');
  const { logger } = options;
  const signer =
    typeof options.ca === 'function'
      ? options.ca
      : (
          (ca) => () =>
            ca
        )(options.ca);
  const authenticators = [...options.authenticators];
  const parseOptions = options.maxCsrBytes === undefined ? {} : { maxBytes: options.maxCsrBytes };

  const createCertificate: grpc.handleUnaryCall<IstioCertificateRequest, IstioCertificateResponse> = (
    call,
    callback,
  ) => {
    const peer = call.getPeer();
    const handle = async (): Promise<IstioCertificateResponse> => {
      const peerCertificate = peerCertificateOf(call);
      const context =
        peerCertificate === undefined ? { metadata: call.metadata } : { metadata: call.metadata, peerCertificate };
      const caller = await authenticate(authenticators, context);
      try {
        const ttlMs = requestedTtlMs(call.request.validity_duration, defaultTtlMs, maxTtlMs);
        const csr = parseCsr(call.request.csr, parseOptions);
        const ca = signer();
        const issued = await ca.signWorkload({ publicKey: csr.publicKey, identity: caller.identity, ttlMs });
        logger?.info(
          {
            spiffeId: spiffeUri(caller.identity),
            authenticator: caller.authenticator,
            serialNumber: issued.serialNumber,
            notAfter: issued.notAfter.toISOString(),
            peer,
          },
          'certificate issued',
        );
        options.onIssued?.({
          identity: caller.identity,
          authenticator: caller.authenticator,
          serialNumber: issued.serialNumber,
          notBefore: issued.notBefore,
          notAfter: issued.notAfter,
          rootCertPem: ca.rootCertPem,
          metadata: requestMetadata(call.request.metadata),
        });
        return { cert_chain: [...issued.chainPem, ca.rootCertPem] };
      } catch (err) {
        if (isPkiError(err)) throw new Refusal(err.reason, caller, { cause: err });
        throw err;
      }
    };
    handle().then(
      (response) => callback(null, response),
      (err: unknown) => {
        if (err instanceof Refusal) {
          logger?.warn(
            {
              reason: err.reason,
              ...(err.caller === undefined
                ? {}
                : { spiffeId: spiffeUri(err.caller.identity), authenticator: err.caller.authenticator }),
              ...refusalDetail(err),
              peer,
            },
            CA_REFUSAL_MESSAGE,
          );
          callback({ code: CA_REFUSAL_STATUS, details: CA_REFUSAL_MESSAGE });
        } else {
          logger?.error({ err, peer }, 'certificate request failed');
          callback({ code: grpc.status.INTERNAL, details: 'internal error' });
        }
      },
    );
  };

  const { service } = loadIstioCertificateService();
  return { definition: service, implementation: { CreateCertificate: createCertificate } };
}
