import { PkiError } from './errors.js';

/**
 * SpiffeIdentity is an Istio workload identity: `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
 */
export interface SpiffeIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
/** The SPIFFE ID spec caps a SPIFFE ID (as a URI) at 2048 bytes. */
const MAX_SPIFFE_ID_BYTES = 2048;

/**
 * isValidTrustDomain tells whether `name` is a trust domain name per the SPIFFE ID spec §2.1:
 * lowercase letters, digits, `.`, `-` and `_` only, 1–255 characters.
 */
export function isValidTrustDomain(name: string): boolean {
  return name.length > 0 && name.length <= 255 && TRUST_DOMAIN.test(name);
}

function isValidSegment(segment: string): boolean {
  return PATH_SEGMENT.test(segment) && segment !== '.' && segment !== '..';
}

/**
 * validateSpiffeIdentity throws PkiError `IDENTITY_INVALID` unless every part of `identity` is allowed by the
 * SPIFFE ID spec (trust domain charset §2.1, path segment charset §2.2).
 */
export function validateSpiffeIdentity(identity: SpiffeIdentity): void {
  if (!isValidTrustDomain(identity.trustDomain)) {
    throw new PkiError('IDENTITY_INVALID', 'trust domain is not a valid SPIFFE trust domain name');
  }
  if (!isValidSegment(identity.namespace) || !isValidSegment(identity.serviceAccount)) {
    throw new PkiError('IDENTITY_INVALID', 'namespace or service account is not a valid SPIFFE path segment');
  }
}

/**
 * spiffeUri renders `identity` as its SPIFFE ID `spiffe://<td>/ns/<ns>/sa/<sa>` (Istio's form).
 * Throws PkiError `IDENTITY_INVALID` when a part breaks the SPIFFE ID spec's character rules.
 */
export function spiffeUri(identity: SpiffeIdentity): string {
  validateSpiffeIdentity(identity);
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

/**
 * parseSpiffeUri parses an Istio-shaped SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`) strictly per the SPIFFE ID spec
 * (lowercase scheme and trust domain, no port, user info, query, fragment, percent-encoding, empty, `.` or `..`
 * segments; at most 2048 bytes). Returns undefined for anything else.
 */
export function parseSpiffeUri(uri: string): SpiffeIdentity | undefined {
  if (Buffer.byteLength(uri) > MAX_SPIFFE_ID_BYTES || !uri.startsWith('spiffe://')) return undefined;
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  if (slash < 0) return undefined;
  const trustDomain = rest.slice(0, slash);
  if (!isValidTrustDomain(trustDomain)) return undefined;
  const segments = rest.slice(slash + 1).split('/');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') return undefined;
  const namespace = segments[1] ?? '';
  const serviceAccount = segments[3] ?? '';
  if (!isValidSegment(namespace) || !isValidSegment(serviceAccount)) return undefined;
  return { trustDomain, namespace, serviceAccount };
}

/** sameIdentity tells whether two identities name the same SPIFFE ID. */
export function sameIdentity(a: SpiffeIdentity, b: SpiffeIdentity): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}
