import {
  AuthenticationV1Api,
  Observable,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  type V1TokenReview,
} from '@kubernetes/client-node';
import { PkiError, validateSpiffeIdentity, type PkiReason, type SpiffeIdentity } from '@fedmesh/pki';
import type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';

/** KubeTokenAuthenticatorOptions configure {@link KubeTokenAuthenticator}. */
export interface KubeTokenAuthenticatorOptions {
  /** kubeConfig reaches the API server that reviews tokens (istiod's own credentials; needs `create tokenreviews`). */
  readonly kubeConfig: KubeConfig;
  /** trustDomain of the identities issued. */
  readonly trustDomain: string;
  /** audience the token must be bound to. Default `istio-ca` (Istio's CA audience). */
  readonly audience?: string;
  /** issuers are extra `iss` values that mark a JWT as a Kubernetes token besides the `kubernetes.io` claims. */
  readonly issuers?: readonly string[];
  /** timeoutMs bounds one TokenReview call, in ms. Default 5 s. */
  readonly timeoutMs?: number;
}

const MAX_TOKEN_BYTES = 16 * 1024;
const USERNAME = /^system:serviceaccount:([^:]+):([^:]+)$/;
const LEGACY_ISSUER = 'kubernetes/serviceaccount';

/** Claims are the unverified JWT claims used only to route a token to this authenticator (never to accept it). */
interface Claims {
  iss?: unknown;
  exp?: unknown;
  'kubernetes.io'?: unknown;
  'kubernetes.io/serviceaccount/namespace'?: unknown;
}

function decodeClaims(token: string): Claims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => /^[A-Za-z0-9_-]+$/.test(p))) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as unknown;
    return typeof claims === 'object' && claims !== null && !Array.isArray(claims) ? claims : undefined;
  } catch {
    return undefined;
  }
}

function bearerToken(context: AuthenticationContext): string | undefined {
  const values = context.metadata.get('authorization');
  if (values.length !== 1) return undefined;
  const match = typeof values[0] === 'string' ? /^Bearer\s+(\S+)$/i.exec(values[0]) : null;
  return match?.[1];
}

/**
 * KubeTokenAuthenticator authenticates certificate requests carrying a Kubernetes ServiceAccount token
 * (`authorization: Bearer <jwt>`) with the API server's TokenReview (authentication.k8s.io/v1, `spec.audiences`
 * `[istio-ca]`), as Istio's `KubeJWTAuthenticator` does. The identity is the reviewed user
 * `system:serviceaccount:<ns>:<sa>` (in group `system:serviceaccounts`), never anything the token or CSR claims.
 *
 * Resolves to null (next authenticator) when there is no single bearer token or it is not a Kubernetes token: a JWT
 * with a `kubernetes.io` claim (TokenRequest/projected tokens), the legacy `kubernetes.io/serviceaccount/namespace`
 * claim or issuer `kubernetes/serviceaccount`, or an `iss` in `issuers`. Otherwise it throws PkiError:
 * `TOKEN_EXPIRED` (its `exp` has passed; checked before any call), `TOKEN_WRONG_AUDIENCE` (the review names no
 * `istio-ca` audience), `TOKEN_UNAUTHENTICATED` (the review refused it), `TOKEN_NOT_SERVICE_ACCOUNT`,
 * `TOKEN_MALFORMED` (names that make no SPIFFE ID), or `TOKEN_REVIEW_FAILED` (the API server could not answer in
 * `timeoutMs`, or refused istiod). Messages carry the API server's reason, never the token.
 */
export class KubeTokenAuthenticator implements Authenticator {
  readonly name = 'kubernetes';
  readonly audience: string;
  readonly #api: AuthenticationV1Api;
  readonly #trustDomain: string;
  readonly #issuers: ReadonlySet<string>;
  readonly #timeoutMs: number;

  /** constructor makes the API client (no I/O). Throws PkiError `IDENTITY_INVALID` for a bad trust domain, TypeError for a bad timeout. */
  constructor(options: KubeTokenAuthenticatorOptions) {
    validateSpiffeIdentity({ trustDomain: options.trustDomain, namespace: 'ns', serviceAccount: 'sa' });
    this.#trustDomain = options.trustDomain;
    this.audience = options.audience ?? 'istio-ca';
    this.#issuers = new Set([LEGACY_ISSUER, ...(options.issuers ?? [])]);
    this.#timeoutMs = options.timeoutMs ?? 5000;
    if (!(this.#timeoutMs > 0)) throw new TypeError('KubeTokenAuthenticator: timeoutMs must be > 0');
    this.#api = options.kubeConfig.makeApiClient(AuthenticationV1Api);
  }

  /** isKubernetesToken tells, from unverified claims only, whether a token is for this authenticator. */
  isKubernetesToken(token: string): boolean {
    const c = decodeClaims(token);
    if (!c) return false;
    return (
      (typeof c['kubernetes.io'] === 'object' && c['kubernetes.io'] !== null) ||
      typeof c['kubernetes.io/serviceaccount/namespace'] === 'string' ||
      (typeof c.iss === 'string' && this.#issuers.has(c.iss))
    );
  }

  /** authenticate implements {@link Authenticator}: see the class comment for null versus thrown outcomes. */
  async authenticate(context: AuthenticationContext): Promise<AuthenticatedCaller | null> {
    const token = bearerToken(context);
    if (token === undefined || token.length > MAX_TOKEN_BYTES || !this.isKubernetesToken(token)) return null;
    const exp = decodeClaims(token)?.exp;
    if (typeof exp === 'number' && exp * 1000 <= Date.now()) throw new PkiError('TOKEN_EXPIRED', 'token has expired');
    const review = await this.review(token);
    return { identity: this.identityOf(review, token), authenticator: this.name };
  }

  private async review(token: string): Promise<V1TokenReview> {
    const timeoutMs = this.#timeoutMs;
    const body: V1TokenReview = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [this.audience] },
    };
    try {
      return await this.#api.createTokenReview(
        { body },
        {
          middleware: [
            {
              // The object-parameter API passes middleware straight to the observable API (client-node 1.4).
              pre: (ctx: RequestContext) => {
                ctx.setSignal(AbortSignal.timeout(timeoutMs));
                return new Observable(Promise.resolve(ctx));
              },
              post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
            },
          ],
          middlewareMergeStrategy: 'append',
        },
      );
    } catch (err) {
      const why = redact(err instanceof Error ? err.message : String(err), token);
      throw new PkiError('TOKEN_REVIEW_FAILED', `TokenReview failed: ${why}`, { cause: redactedCause(err, why) });
    }
  }

  private identityOf(review: V1TokenReview, token: string): SpiffeIdentity {
    const status = review.status;
    if (status?.authenticated !== true) {
      const why = redact(status?.error ?? 'not authenticated', token);
      const reason: PkiReason = /audience/i.test(why)
        ? 'TOKEN_WRONG_AUDIENCE'
        : /expired/i.test(why)
          ? 'TOKEN_EXPIRED'
          : 'TOKEN_UNAUTHENTICATED';
      throw new PkiError(reason, `TokenReview refused the token: ${why}`);
    }
    if (!(status.audiences ?? []).includes(this.audience)) {
      // Kubernetes API: clients must check that a compatible audience was returned (an authenticator that does not
      // support audiences returns none).
      throw new PkiError('TOKEN_WRONG_AUDIENCE', `TokenReview returned no ${this.audience} audience`);
    }
    const user = status.user;
    const m = USERNAME.exec(user?.username ?? '');
    if (!m || !(user?.groups ?? []).includes('system:serviceaccounts')) {
      throw new PkiError('TOKEN_NOT_SERVICE_ACCOUNT', `token user ${user?.username ?? '?'} is not a ServiceAccount`);
    }
    const identity = { trustDomain: this.#trustDomain, namespace: m[1] ?? '', serviceAccount: m[2] ?? '' };
    try {
      validateSpiffeIdentity(identity);
    } catch (err) {
      throw new PkiError('TOKEN_MALFORMED', 'ServiceAccount name makes no valid SPIFFE ID', { cause: err });
    }
    return identity;
  }
}

function redact(text: string, token: string): string {
  return text.split(token).join('<token>').slice(0, 300);
}

/** redactedCause keeps an error's code (ECONNREFUSED, …) without any text that might echo the request. */
function redactedCause(err: unknown, message: string): Error {
  const e = new Error(message);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' || typeof code === 'number') (e as Error & { code: unknown }).code = code;
  return e;
}
