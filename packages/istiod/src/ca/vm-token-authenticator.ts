import fs from 'node:fs/promises';
import path from 'node:path';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { PkiError, validateSpiffeIdentity, type PkiReason, type SpiffeIdentity } from '@fedmesh/pki';
import type { AuthenticatedCaller, AuthenticationContext, Authenticator } from './authenticator.js';

/** VM_TOKEN_ISSUER is the `iss` of VM bootstrap tokens (distinct from local pod tokens, so each authenticator knows its own). */
export const VM_TOKEN_ISSUER = 'fedmesh-istiod-vm';
/** VM_TOKEN_GROUP_CLAIM is the claim naming the WorkloadGroup a VM bootstrap token is bound to. */
export const VM_TOKEN_GROUP_CLAIM = 'fedmesh.io/workload-group';

/** WorkloadGroupLookup returns a WorkloadGroup's ServiceAccount now (undefined when the group does not exist). */
export type WorkloadGroupLookup = (namespace: string, name: string) => { serviceAccount: string } | undefined;

/** VmTokenAuthenticatorOptions configure {@link VmTokenAuthenticator}. */
export interface VmTokenAuthenticatorOptions {
  readonly trustDomain: string;
  /** signingKey is the P-256 private key tokens are signed with (see {@link VmTokenAuthenticator.load}). */
  readonly signingKey: KeyObject;
  /** workloadGroup returns a WorkloadGroup's current ServiceAccount (template `serviceAccount`, default `default`). */
  readonly workloadGroup: WorkloadGroupLookup;
  /** audience required on authentication. Default `istio-ca`. */
  readonly audience?: string;
  /** defaultTtlMs of minted tokens. Default 1 h. */
  readonly defaultTtlMs?: number;
  /** maxTtlMs is the longest lifetime `mint` accepts. Default 24 h. */
  readonly maxTtlMs?: number;
  /** clockSkewMs is the leeway on `exp`, `nbf` and `iat`. Default 30 s. */
  readonly clockSkewMs?: number;
  /** now returns the time in ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
}

/** MintVmTokenOptions name the VM's namespace, ServiceAccount and WorkloadGroup. */
export interface MintVmTokenOptions {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly workloadGroup: string;
  /** ttlMs is the token lifetime. Default: the authenticator's `defaultTtlMs` (1 h). */
  readonly ttlMs?: number;
  /** audience overrides `aud` (tests: a token for another audience must be refused). */
  readonly audience?: string;
}

/** MintedVmToken is a bootstrap token and when it expires. Treat `token` as a secret: never log it. */
export interface MintedVmToken {
  readonly token: string;
  readonly expiresAt: Date;
}

/** VerifiedVmToken is what a valid token proves: the identity and the WorkloadGroup it is bound to. */
export interface VerifiedVmToken {
  readonly identity: SpiffeIdentity;
  readonly workloadGroup: string;
}

const MAX_TOKEN_BYTES = 8 * 1024;
const SUBJECT = /^system:serviceaccount:([^:]+):([^:]+)$/;
const GROUP_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function joseReason(err: unknown): PkiReason {
  if (err instanceof joseErrors.JWTExpired) return 'TOKEN_EXPIRED';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'TOKEN_BAD_SIGNATURE';
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'TOKEN_WRONG_AUDIENCE';
    if (err.claim === 'nbf' || err.claim === 'iat') return 'TOKEN_NOT_YET_VALID';
  }
  return 'TOKEN_MALFORMED';
}

/**
 * VmTokenAuthenticator mints and checks VM bootstrap tokens (issue 4): ES256 JWTs (signed and verified with the
 * `jose` library) with `iss` {@link VM_TOKEN_ISSUER}, `aud` `istio-ca`, `sub` `system:serviceaccount:<ns>:<sa>`,
 * `fedmesh.io/workload-group`, `iat`, `nbf`, `exp` (1 h by default) and `jti`. A token is accepted for a CSR only
 * while it is unexpired (30 s leeway) AND its WorkloadGroup still exists in its namespace with the token's
 * ServiceAccount; the identity issued is `ns/sa`. Resolves null for requests without a bearer token or with tokens of
 * another issuer; throws PkiError `TOKEN_MALFORMED`, `TOKEN_UNKNOWN_KEY`, `TOKEN_BAD_SIGNATURE`,
 * `TOKEN_WRONG_AUDIENCE`, `TOKEN_EXPIRED` (also a token replayed after expiry), `TOKEN_NOT_YET_VALID` or
 * `TOKEN_BINDING_MISMATCH` for its own tokens that fail a check.
 */
export class VmTokenAuthenticator implements Authenticator {
  readonly name = 'vm-token';
  readonly trustDomain: string;
  readonly audience: string;
  /** keyId is the JWS `kid`: base64url of the first 16 bytes of the SHA-256 of the public key's SPKI. */
  readonly keyId: string;
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #lookup: WorkloadGroupLookup;
  readonly #defaultTtlMs: number;
  readonly #maxTtlMs: number;
  readonly #clockSkewMs: number;
  readonly #now: () => number;

  /** constructor checks options (TypeError on a non-P-256 key or bad TTLs; PkiError on a bad trust domain). */
  constructor(options: VmTokenAuthenticatorOptions) {
    validateSpiffeIdentity({ trustDomain: options.trustDomain, namespace: 'ns', serviceAccount: 'sa' });
    const key = options.signingKey;
    if (
      key.type !== 'private' ||
      key.asymmetricKeyType !== 'ec' ||
      key.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    )
      throw new TypeError('VmTokenAuthenticator: signingKey must be a P-256 private key');
    this.trustDomain = options.trustDomain;
    this.audience = options.audience ?? 'istio-ca';
    this.#defaultTtlMs = options.defaultTtlMs ?? 60 * 60 * 1000;
    this.#maxTtlMs = options.maxTtlMs ?? 24 * 60 * 60 * 1000;
    this.#clockSkewMs = options.clockSkewMs ?? 30_000;
    this.#now = options.now ?? Date.now;
    if (!(this.#defaultTtlMs > 0 && this.#defaultTtlMs <= this.#maxTtlMs) || !(this.#clockSkewMs >= 0))
      throw new TypeError('VmTokenAuthenticator: need 0 < defaultTtlMs <= maxTtlMs and clockSkewMs >= 0');
    this.#privateKey = key;
    this.#publicKey = createPublicKey(key);
    this.#lookup = options.workloadGroup;
    const spki = this.#publicKey.export({ type: 'spki', format: 'der' });
    this.keyId = createHash('sha256').update(spki).digest().subarray(0, 16).toString('base64url');
  }

  /**
   * load reads the signing key from `keyFile` (PKCS#8 PEM) or, when the file does not exist, makes a P-256 key and
   * writes it there with mode 0600, so tokens stay valid across istiod restarts. Throws when the file exists but is
   * not a P-256 private key, or cannot be written.
   */
  static async load(
    options: Omit<VmTokenAuthenticatorOptions, 'signingKey'> & { keyFile: string },
  ): Promise<VmTokenAuthenticator> {
    const { keyFile, ...rest } = options;
    let pem: string;
    try {
      pem = await fs.readFile(keyFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      await fs.mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
      const tmp = `${keyFile}.${randomBytes(6).toString('hex')}.tmp`;
      await fs.writeFile(tmp, pem, { mode: 0o600, flag: 'wx' });
      await fs.rename(tmp, keyFile);
    }
    return new VmTokenAuthenticator({ ...rest, signingKey: createPrivateKey(pem) });
  }

  /**
   * mint returns a bootstrap token for a VM of `workloadGroup` running as `namespace/serviceAccount`, valid from now
   * for `ttlMs` (default 1 h, at most `maxTtlMs`). Throws PkiError `IDENTITY_INVALID` for names that are not SPIFFE
   * path segments, TypeError for a bad group name or TTL. It does not check that the group exists (authentication
   * does, every time).
   */
  async mint(options: MintVmTokenOptions): Promise<MintedVmToken> {
    validateSpiffeIdentity({ trustDomain: this.trustDomain, ...options });
    if (options.workloadGroup.length > 253 || !GROUP_NAME.test(options.workloadGroup))
      throw new TypeError('workloadGroup must be a lowercase RFC 1123 subdomain');
    const ttlMs = options.ttlMs ?? this.#defaultTtlMs;
    if (!(Number.isFinite(ttlMs) && ttlMs > 0 && ttlMs <= this.#maxTtlMs))
      throw new TypeError(`token TTL must be in (0, ${this.#maxTtlMs}] ms`);
    const now = Math.floor(this.#now() / 1000);
    const exp = now + Math.ceil(ttlMs / 1000);
    const token = await new SignJWT({ [VM_TOKEN_GROUP_CLAIM]: options.workloadGroup })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: this.keyId })
      .setIssuer(VM_TOKEN_ISSUER)
      .setSubject(`system:serviceaccount:${options.namespace}:${options.serviceAccount}`)
      .setAudience(options.audience ?? this.audience)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(exp)
      .setJti(randomBytes(16).toString('base64url'))
      .sign(this.#privateKey);
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** authenticate implements {@link Authenticator}: see the class comment for null versus thrown outcomes. */
  async authenticate(context: AuthenticationContext): Promise<AuthenticatedCaller | null> {
    const values = context.metadata.get('authorization');
    if (values.length !== 1) return null; // several headers: the local-token authenticator refuses those
    const match = typeof values[0] === 'string' ? /^Bearer\s+(\S+)$/i.exec(values[0]) : null;
    const token = match?.[1];
    if (token === undefined || token.length > MAX_TOKEN_BYTES) return null;
    const verified = await this.verify(token);
    return verified === null ? null : { identity: verified.identity, authenticator: this.name };
  }

  /**
   * verify checks a token and returns what it proves, or null when it is not a JWT of {@link VM_TOKEN_ISSUER}.
   * Throws PkiError `TOKEN_*` (see the class comment) for this issuer's tokens that fail a check.
   */
  async verify(token: string): Promise<VerifiedVmToken | null> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      if (decodeJwt(token).iss !== VM_TOKEN_ISSUER) return null;
      header = decodeProtectedHeader(token);
    } catch {
      return null;
    }
    if (header.alg !== 'ES256') throw new PkiError('TOKEN_MALFORMED', 'token algorithm must be ES256');
    if (header.kid !== this.keyId) throw new PkiError('TOKEN_UNKNOWN_KEY', 'token was signed by an unknown key');
    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(token, this.#publicKey, {
        algorithms: ['ES256'],
        issuer: VM_TOKEN_ISSUER,
        audience: this.audience,
        clockTolerance: this.#clockSkewMs / 1000,
        currentDate: new Date(this.#now()),
        requiredClaims: ['exp', 'iat', 'sub', 'jti'],
      }));
    } catch (err) {
      throw new PkiError(joseReason(err), 'token refused', { cause: err });
    }
    if (typeof payload.iat === 'number' && payload.iat * 1000 - this.#clockSkewMs > this.#now())
      throw new PkiError('TOKEN_NOT_YET_VALID', 'token is not valid yet');
    const subject = typeof payload.sub === 'string' ? SUBJECT.exec(payload.sub) : null;
    const group = payload[VM_TOKEN_GROUP_CLAIM];
    if (subject === null || typeof group !== 'string')
      throw new PkiError('TOKEN_MALFORMED', 'token lacks a service account subject or workload group');
    const identity = { trustDomain: this.trustDomain, namespace: subject[1] ?? '', serviceAccount: subject[2] ?? '' };
    try {
      validateSpiffeIdentity(identity);
    } catch (err) {
      throw new PkiError('TOKEN_MALFORMED', 'token subject is not a valid identity', { cause: err });
    }
    const bound = this.#lookup(identity.namespace, group);
    if (bound === undefined)
      throw new PkiError('TOKEN_BINDING_MISMATCH', `WorkloadGroup ${identity.namespace}/${group} does not exist`);
    if (bound.serviceAccount !== identity.serviceAccount)
      throw new PkiError(
        'TOKEN_BINDING_MISMATCH',
        `WorkloadGroup ${identity.namespace}/${group} runs as ${bound.serviceAccount}, not ${identity.serviceAccount}`,
      );
    return { identity, workloadGroup: group };
  }
}
