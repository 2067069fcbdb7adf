// SPIFFE X509-SVID peer checks, on Node's X509Certificate (never forge's verifier).
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { PkiError } from './errors.js';
import { OID } from './extensions.js';
import { parseNodeSubjectAltName } from './san.js';
import { parseSpiffeUri, sameIdentity, type SpiffeIdentity } from './spiffe.js';

/** PeerCertificateInput is a Node X509Certificate, or anything with the DER in `raw` (tls.PeerCertificate). */
export type PeerCertificateInput = X509Certificate | Pick<PeerCertificate, 'raw'>;

/** PeerRole is what the peer acts as in the TLS connection, which decides the extended key usage it needs. */
export type PeerRole = 'client' | 'server';

/** VerifySpiffePeerOptions: the trust domains accepted and the peer's TLS role. */
export interface VerifySpiffePeerOptions {
  /** trustDomains lists the trust domains whose identities are accepted. */
  readonly trustDomains: readonly string[];
  /** peerRole is `client` (default: the peer sent a client certificate) or `server`. */
  readonly peerRole?: PeerRole;
  /** now is the time validity is checked at. Default: the current time. */
  readonly now?: Date;
}

const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

function toX509(cert: PeerCertificateInput): X509Certificate {
  if (cert instanceof X509Certificate) return cert;
  if (!Buffer.isBuffer(cert.raw) || cert.raw.length === 0) throw new PkiError('PEER_MALFORMED', 'no peer certificate');
  try {
    return new X509Certificate(cert.raw);
  } catch (err) {
    throw new PkiError('PEER_MALFORMED', 'peer certificate is not a valid X.509 certificate', { cause: err });
  }
}

function inspectPeer(
  input: PeerCertificateInput,
  trustDomains: readonly string[] | undefined,
  role: PeerRole,
  now: Date,
): SpiffeIdentity {
  const cert = toX509(input);
  if (cert.ca) throw new PkiError('PEER_IS_CA', 'peer certificate is a CA certificate');
  if (now < new Date(cert.validFrom) || now > new Date(cert.validTo)) {
    throw new PkiError('PEER_EXPIRED', 'peer certificate is outside its validity period');
  }
  let uris: string[];
  try {
    uris = parseNodeSubjectAltName(cert.subjectAltName).uris;
  } catch (err) {
    throw new PkiError('PEER_MALFORMED', 'peer subjectAltName is unreadable', { cause: err });
  }
  if (uris.length > 1) throw new PkiError('PEER_MULTIPLE_URI_SANS', 'an X509-SVID has exactly one URI SAN');
  const uri = uris[0];
  if (uri?.startsWith('spiffe://') !== true) throw new PkiError('PEER_NO_SPIFFE_ID', 'peer has no SPIFFE ID');
  const identity = parseSpiffeUri(uri);
  if (identity === undefined) {
    throw new PkiError('PEER_BAD_SPIFFE_ID', 'peer SPIFFE ID is not of the form spiffe://<td>/ns/<ns>/sa/<sa>');
  }
  if (trustDomains !== undefined && !trustDomains.includes(identity.trustDomain)) {
    throw new PkiError('PEER_WRONG_TRUST_DOMAIN', `peer trust domain ${identity.trustDomain} is not accepted`);
  }
  const purposes = cert.keyUsage as string[] | undefined; // Node names the extended key usage `keyUsage`.
  const needed = role === 'client' ? OID.clientAuth : OID.serverAuth;
  if (purposes !== undefined && !purposes.includes(needed) && !purposes.includes(ANY_EXTENDED_KEY_USAGE)) {
    throw new PkiError(
      role === 'client' ? 'PEER_MISSING_CLIENT_AUTH' : 'PEER_MISSING_SERVER_AUTH',
      `peer certificate is not valid for TLS ${role} authentication`,
    );
  }
  return identity;
}

/**
 * verifySpiffePeer returns the SPIFFE identity of a peer's leaf certificate per the SPIFFE X509-SVID spec, using
 * Node's `X509Certificate`. It does not verify the signature chain: call it on certificates the TLS layer has already
 * verified against the trust bundle (`rejectUnauthorized`, or `socket.authorized`). Throws PkiError:
 * `PEER_MALFORMED` (no or unparsable certificate), `PEER_IS_CA` (basicConstraints cA), `PEER_EXPIRED`,
 * `PEER_MULTIPLE_URI_SANS` (an SVID has exactly one URI SAN), `PEER_NO_SPIFFE_ID`, `PEER_BAD_SPIFFE_ID` (not
 * `spiffe://<td>/ns/<ns>/sa/<sa>`), `PEER_WRONG_TRUST_DOMAIN`, and `PEER_MISSING_CLIENT_AUTH` /
 * `PEER_MISSING_SERVER_AUTH` when an extendedKeyUsage extension is present without the role's purpose (an absent
 * extension allows any purpose, RFC 5280 §4.2.1.12).
 */
export function verifySpiffePeer(cert: PeerCertificateInput, options: VerifySpiffePeerOptions): SpiffeIdentity {
  return inspectPeer(cert, options.trustDomains, options.peerRole ?? 'client', options.now ?? new Date());
}

/** ExpectedServerIdentity narrows which SPIFFE servers a client accepts. Omitted fields accept anything. */
export interface ExpectedServerIdentity {
  readonly trustDomains?: readonly string[];
  /** identities lists the acceptable server identities; when set, the server must be one of them. */
  readonly identities?: readonly SpiffeIdentity[];
}

/**
 * spiffeCheckServerIdentity returns a `checkServerIdentity` for `tls.connect` (or grpc-js `verifyOptions`) that
 * accepts a server by its SPIFFE ID instead of Node's DNS-name check. Node calls it only after the chain verified.
 * The returned function yields a PkiError (`PEER_*`, or `PEER_UNEXPECTED_IDENTITY` when `identities` is set and the
 * server is none of them) or undefined when the server is accepted; the hostname is ignored.
 */
export function spiffeCheckServerIdentity(
  expected: ExpectedServerIdentity = {},
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    try {
      const identity = inspectPeer(cert, expected.trustDomains, 'server', new Date());
      if (expected.identities !== undefined && !expected.identities.some((id) => sameIdentity(id, identity))) {
        return new PkiError('PEER_UNEXPECTED_IDENTITY', 'server SPIFFE ID is not one of the expected identities');
      }
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new PkiError('PEER_MALFORMED', 'server certificate rejected');
    }
  };
}
