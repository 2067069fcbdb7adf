import { generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';

/** IssueTokenOptions describe a ServiceAccount token to issue, as the TokenRequest API takes them. */
export interface IssueTokenOptions {
  namespace: string;
  serviceAccount: string;
  /** audiences of the token. Default the API server's own, `https://kubernetes.default.svc`. */
  audiences?: string[];
  /** ttlSeconds is the lifetime; negative issues an already expired token. Default 3600. */
  ttlSeconds?: number;
}

/** TokenReviewStatus is the `status` of a TokenReview (authentication.k8s.io/v1). */
export interface TokenReviewStatus {
  authenticated: boolean;
  user?: { username: string; uid: string; groups: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** FAKE_ISSUER is the `iss` of the fake's tokens, that of a default kubeadm cluster. */
export const FAKE_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const API_AUDIENCES = ['https://kubernetes.default.svc'];

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * FakeTokenIssuer issues bound ServiceAccount tokens shaped like the real ones (ES256 JWTs with `iss`, `sub`
 * `system:serviceaccount:<ns>:<sa>`, `aud`, `exp`, `iat`, `nbf` and the `kubernetes.io` claim) and reviews them as
 * the API server's TokenReview does: signature, expiry, audience intersection with the review's audiences (the
 * API audiences when none are given), and that the ServiceAccount still exists.
 */
export class FakeTokenIssuer {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;

  /** constructor makes the signing key (P-256, in memory). */
  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
  }

  /** issue returns a compact JWT for the ServiceAccount. */
  issue(o: IssueTokenOptions): string {
    const now = Math.floor(Date.now() / 1000);
    const ttl = o.ttlSeconds ?? 3600;
    const claims = {
      aud: o.audiences ?? API_AUDIENCES,
      exp: now + ttl,
      iat: Math.min(now, now + ttl - 1),
      nbf: Math.min(now, now + ttl - 1),
      iss: FAKE_ISSUER,
      'kubernetes.io': { namespace: o.namespace, serviceaccount: { name: o.serviceAccount, uid: randomUUID() } },
      sub: `system:serviceaccount:${o.namespace}:${o.serviceAccount}`,
    };
    const input = `${b64({ alg: 'ES256', kid: 'fake' })}.${b64(claims)}`;
    const sig = sign('sha256', Buffer.from(input), { key: this.#privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }

  /** review checks a token as the TokenReview API does and returns the review's status. */
  review(
    token: string,
    audiences: string[] | undefined,
    serviceAccountExists: (namespace: string, name: string) => boolean,
  ): TokenReviewStatus {
    const denied = (why: string): TokenReviewStatus => ({
      authenticated: false,
      error: `[invalid bearer token, ${why}]`,
    });
    const [h, p, s] = token.split('.');
    if (h === undefined || p === undefined || s === undefined) return denied('token is malformed');
    const ok = verify(
      'sha256',
      Buffer.from(`${h}.${p}`),
      { key: this.#publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(s, 'base64url'),
    );
    if (!ok) return denied('square/go-jose: error in cryptographic primitive');
    const c = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as {
      aud: string[];
      exp: number;
      sub: string;
      'kubernetes.io': { namespace: string; serviceaccount: { name: string; uid: string } };
    };
    if (c.exp * 1000 <= Date.now()) return denied('Token has expired.');
    const wanted = audiences ?? API_AUDIENCES;
    const common = c.aud.filter((a) => wanted.includes(a));
    if (common.length === 0)
      return denied(
        `token audiences ${JSON.stringify(c.aud)} is invalid for the target audiences ${JSON.stringify(wanted)}`,
      );
    const { namespace, serviceaccount } = c['kubernetes.io'];
    if (!serviceAccountExists(namespace, serviceaccount.name))
      return denied(`serviceaccounts "${serviceaccount.name}" not found`);
    return {
      authenticated: true,
      user: {
        username: c.sub,
        uid: serviceaccount.uid,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
      },
      audiences: common,
    };
  }
}
