import { PkiError, validateSpiffeIdentity, type SpiffeIdentity } from '@fedmesh/pki';
import { createHash, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';

/** LocalTokenAuthenticatorOptions configures istiod's own workload tokens. */
export interface LocalTokenAuthenticatorOptions {
  /** trustDomain is the trust domain of the identities tokens stand for. */
  readonly trustDomain: string;
  /** issuer is the `iss` claim. Default `fedmesh-istiod`. */
  readonly issuer?: string;
  /** audience is the `aud` claim required on authentication. Default `istio-ca` (Istio's CA audience). */
  readonly audience?: string;
  /** defaultTtlMs is the lifetime of minted tokens in ms. Default 1 h. */
  readonly defaultTtlMs?: number;
  /** maxTtlMs is the longest lifetime `mint` accepts, in ms. Default 24 h. */
  readonly maxTtlMs?: number;
  /** clockSkewMs is the leeway on `exp`, `nbf` and `iat`, in ms. Default 30 s. */
  readonly clockSkewMs?: number;
  /** now returns the current time in ms since the epoch. Default `Date.now` (inject for tests). */
  readonly now?: () => number;
}

/** MintTokenOptions names the workload a token stands for. */
export interface MintTokenOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** ttlMs is the token lifetime in ms. Default: the authenticator's `defaultTtlMs`. */
  readonly ttlMs?: number;
  /** audience overrides the `aud` claim (tokens for other audiences are refused by this authenticator). */
  readonly audience?: string;
}

interface Claims {
  iss?: unknown;
  sub?: unknown;
  aud?: unknown;
  exp?: unknown;
  nbf?: unknown;
  iat?: unknown;
  jti?: unknown;
}

const B64URL = /^[A-Za-z0-9_-]+$/;
const MAX_TOKEN_BYTES = 8 * 1024;
const SUBJECT = /^system:serviceaccount:([^:]+):([^:]+)$/;

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function decodeJson(part: string): unknown {
  if (!B64URL.test(part)) return undefined;
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * LocalTokenAuthenticator mints and checks istiod's own short-lived workload tokens: compact JWS (RFC 7515) JWTs
 * (RFC 7519) signed ES256 with a P-256 key made at construction (Node crypto; never persisted, so tokens die with the
 * process). Claims: `iss` (`fedmesh-istiod`), `aud` (`istio-ca`), `sub` (`system:serviceaccount:<ns>:<sa>`), `iat`,
 * `nbf`, `exp`, `jti`. `fedmesh up` uses it for local pods. Authentication reads `authorization: Bearer <jwt>` and
 * resolves to null for tokens that are not this issuer's (so other authenticators can try them). For this issuer's
 * tokens it throws PkiError `TOKEN_MALFORMED`, `TOKEN_UNKNOWN_KEY`, `TOKEN_BAD_SIGNATURE`, `TOKEN_WRONG_AUDIENCE`,
 * `TOKEN_EXPIRED` or `TOKEN_NOT_YET_VALID`.
 */
export class LocalTokenAuthenticator implements Authenticator {
  readonly name = 'local-token';
  readonly trustDomain: string;
  readonly issuer: string;
  readonly audience: string;
  /** keyId is the JWS `kid`: base64url of the first 16 bytes of the SHA-256 of the public key's SPKI. */
  readonly keyId: string;
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #defaultTtlMs: number;
  readonly #maxTtlMs: number;
  readonly #clockSkewMs: number;
  readonly #now: () => number;

  /** Creates the authenticator and its signing key. Throws TypeError on bad options, PkiError on a bad trust domain. */
  constructor(options: LocalTokenAuthenticatorOptions) {
    validateSpiffeIdentity({ trustDomain: options.trustDomain, namespace: 'ns', serviceAccount: 'sa' });
    this.trustDomain = options.trustDomain;
    this.issuer = options.issuer ?? 'fedmesh-istiod';
    this.audience = options.audience ?? 'istio-ca';
    this.#defaultTtlMs = options.defaultTtlMs ?? 60 * 60 * 1000;
    this.#maxTtlMs = options.maxTtlMs ?? 24 * 60 * 60 * 1000;
    this.#clockSkewMs = options.clockSkewMs ?? 30 * 1000;
    this.#now = options.now ?? Date.now;
    if (!(this.#defaultTtlMs > 0 && this.#defaultTtlMs <= this.#maxTtlMs) || !(this.#clockSkewMs >= 0)) {
      throw new TypeError('LocalTokenAuthenticator: need 0 < defaultTtlMs <= maxTtlMs and clockSkewMs >= 0');
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    this.keyId = b64url(createHash('sha256').update(spki).digest().subarray(0, 16));
  }

  /**
   * mint returns a compact JWT for `{namespace, serviceAccount}`, valid from now for `ttlMs` (default 1 h, at most
   * `maxTtlMs`). Throws PkiError `IDENTITY_INVALID` for names that are not SPIFFE path segments, and TypeError for a
   * bad TTL. Treat the token as a secret: never log it.
   */
  mint(options: MintTokenOptions): string {
    validateSpiffeIdentity({ trustDomain: this.trustDomain, ...options });
    const ttlMs = options.ttlMs ?? this.#defaultTtlMs;
    if (!(ttlMs > 0 && ttlMs <= this.#maxTtlMs)) throw new TypeError(`token TTL must be in (0, ${this.#maxTtlMs}] ms`);
    const now = Math.floor(this.#now() / 1000);
    const header = { alg: 'ES256', typ: 'JWT', kid: this.keyId };
    const claims = {
      iss: this.issuer,
      sub: `system:serviceaccount:${options.namespace}:${options.serviceAccount}`,
      aud: options.audience ?? this.audience,
      iat: now,
      nbf: now,
      exp: now + Math.ceil(ttlMs / 1000),
      jti: b64url(randomBytes(16)),
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key: this.#privateKey, dsaEncoding: 'ieee-p1363' });
    return `${signingInput}.${b64url(signature)}`;
  }

  /** authenticate implements {@link Authenticator}: see the class comment for null versus thrown outcomes. */
  async authenticate(context: AuthenticationContext): Promise<AuthenticatedCaller | null> {
    const values = context.metadata.get('authorization');
    if (values.length === 0) return null;
    if (values.length > 1) throw new PkiError('TOKEN_MALFORMED', 'more than one authorization header');
    const value = values[0];
    const match = typeof value === 'string' ? /^Bearer\s+(\S+)$/i.exec(value) : null;
    const token = match?.[1];
    if (token === undefined || token.length > MAX_TOKEN_BYTES) return null;
    const identity = this.verify(token);
    return identity === null ? null : { identity, authenticator: this.name };
  }

  /**
   * verify checks a token and returns its identity, or null when it is not a JWT from this issuer. Throws PkiError
   * `TOKEN_*` for this issuer's tokens that fail any check (see the class comment).
   */
  verify(token: string): SpiffeIdentity | null {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    const [headerPart = '', claimsPart = '', signaturePart = ''] = parts;
    const header = decodeJson(headerPart);
    const claims = decodeJson(claimsPart) as Claims | undefined;
    if (!isObject(header) || !isObject(claims) || claims.iss !== this.issuer) return null;

    if (header['alg'] !== 'ES256') throw new PkiError('TOKEN_MALFORMED', 'token algorithm must be ES256');
    if (header['kid'] !== this.keyId) throw new PkiError('TOKEN_UNKNOWN_KEY', 'token was signed by an unknown key');
    const signature = B64URL.test(signaturePart) ? Buffer.from(signaturePart, 'base64url') : Buffer.alloc(0);
    const signed = Buffer.from(`${headerPart}.${claimsPart}`);
    const valid =
      signature.length === 64 &&
      verify('sha256', signed, { key: this.#publicKey, dsaEncoding: 'ieee-p1363' }, signature);
    if (!valid) throw new PkiError('TOKEN_BAD_SIGNATURE', 'token signature does not verify');

    const audiences = Array.isArray(claims.aud) ? (claims.aud as unknown[]) : [claims.aud];
    if (!audiences.includes(this.audience)) throw new PkiError('TOKEN_WRONG_AUDIENCE', 'token audience mismatch');
    const now = this.#now();
    if (typeof claims.exp !== 'number' || claims.exp * 1000 + this.#clockSkewMs <= now) {
      throw new PkiError('TOKEN_EXPIRED', 'token has expired');
    }
    for (const claim of [claims.nbf, claims.iat]) {
      if (claim !== undefined && (typeof claim !== 'number' || claim * 1000 - this.#clockSkewMs > now)) {
        throw new PkiError('TOKEN_NOT_YET_VALID', 'token is not valid yet');
      }
    }
    const subject = typeof claims.sub === 'string' ? SUBJECT.exec(claims.sub) : null;
    if (subject === null || typeof claims.jti !== 'string') {
      throw new PkiError('TOKEN_MALFORMED', 'token lacks a service account subject or jti');
    }
    const identity = { trustDomain: this.trustDomain, namespace: subject[1] ?? '', serviceAccount: subject[2] ?? '' };
    try {
      validateSpiffeIdentity(identity);
    } catch (err) {
      throw new PkiError('TOKEN_MALFORMED', 'token subject is not a valid identity', { cause: err });
    }
    return identity;
  }
}
