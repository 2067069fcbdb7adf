// An offline root CA, as Istio's tools/certs makes it (root-ca.conf), built with forge.asn1 and signed by Node.
import { name, toDer } from './asn1.js';
import { PkiError } from './errors.js';
import { basicConstraints, keyUsage, KeyUsageBit, subjectAltName, subjectKeyIdentifier } from './extensions.js';
import {
  describePublicKey,
  generateKeyPair,
  keyIdentifier,
  signatureAlgorithmFor,
  spkiDer,
  type KeyType,
} from './keys.js';
import { derToPem } from './pem.js';
import { isValidTrustDomain } from './spiffe.js';
import { randomSerialNumber, signCertificate, truncateToSeconds } from './x509.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** DEFAULT_ROOT_TTL_MS is a root CA's default lifetime: 3650 days (Istio's `ROOTCA_DAYS`), in ms. */
export const DEFAULT_ROOT_TTL_MS = 3650 * DAY_MS;
/** DEFAULT_INTERMEDIATE_TTL_MS is an intermediate CA's default lifetime: 730 days (`INTERMEDIATE_DAYS`), in ms. */
export const DEFAULT_INTERMEDIATE_TTL_MS = 730 * DAY_MS;
/** DEFAULT_CA_ORG is the subject `O=` of roots and intermediates when no org is given. */
export const DEFAULT_CA_ORG = 'fedmesh';
/** How far notBefore is backdated, in ms, so peers with slow clocks accept a new CA at once. */
const BACKDATE_MS = 60 * 1000;
/** The last instant RFC 5280 §4.1.2.5 times can express. */
const MAX_CERT_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59);

/** CreateRootCaOptions: what the root names, how long it lives and its key type. */
export interface CreateRootCaOptions {
  /** trustDomain, when set, is put in a URI SAN `spiffe://<trustDomain>` that ties the root to one trust domain. */
  readonly trustDomain?: string;
  /** org is the subject `O=`. Default `fedmesh` (Istio's Makefile uses `Istio`). */
  readonly org?: string;
  /** commonName is the subject `CN=`. Default `Root CA` (Istio's `ROOTCA_CN`). */
  readonly commonName?: string;
  /** ttlMs is the lifetime in ms. Default 3650 days. */
  readonly ttlMs?: number;
  /** keyType is the root key's type. Default `ec-p256` (see the pki README for why). */
  readonly keyType?: KeyType;
}

/** RootCa is a new root: its self-signed certificate and its private key (unencrypted PKCS#8), both PEM. */
export interface RootCa {
  readonly rootCertPem: string;
  /** rootKeyPem is the root's private key. Keep it offline, mode 0600; never log it. */
  readonly rootKeyPem: string;
  readonly notAfter: Date;
}

/**
 * caValidity returns a CA certificate's validity: notBefore now − 1 min, notAfter now + `ttlMs`, capped at
 * `capMs` (an issuer's own notAfter), both truncated to seconds. Throws PkiError `TTL_INVALID` when `ttlMs` is not a
 * finite number of at least 1 s, or ends after 9999-12-31 (RFC 5280 §4.1.2.5).
 */
export function caValidity(ttlMs: number, capMs = Infinity): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  if (!Number.isFinite(ttlMs) || ttlMs < 1000 || now + ttlMs > MAX_CERT_TIME_MS) {
    throw new PkiError('TTL_INVALID', 'CA lifetime must be at least 1 s and end by 9999-12-31');
  }
  return {
    notBefore: truncateToSeconds(new Date(now - BACKDATE_MS)),
    notAfter: truncateToSeconds(new Date(Math.min(now + ttlMs, capMs))),
  };
}

/** checkNameValue throws TypeError unless `value` is a usable distinguished-name attribute (1–64 characters). */
export function checkNameValue(what: string, value: string): string {
  // RFC 5280 Appendix A upper bounds: ub-organization-name and ub-common-name are 64.
  const hasControl = [...value].some((char) => (char.codePointAt(0) ?? 0) < 0x20 || char === '\u007f');
  if (value.length === 0 || value.length > 64 || hasControl) {
    throw new TypeError(`${what} must be 1-64 characters without control characters`);
  }
  return value;
}

/**
 * createRootCa makes a self-signed root CA in the shape of Istio's `tools/certs` `root-ca.conf`: subject
 * `O=<org>, CN=<commonName>`, basicConstraints cA=true (critical, no path length), keyUsage keyCertSign + cRLSign
 * (critical; RFC 5280 §4.2.1.3), subjectKeyIdentifier (§4.2.1.2 method 1), and with `trustDomain` a URI SAN
 * `spiffe://<trustDomain>`. The key is made by Node (`ec-p256` by default, signing ecdsa-with-SHA256; `rsa-2048`
 * signs sha256WithRSAEncryption); forge builds the TBSCertificate and Node signs it. Throws PkiError
 * `IDENTITY_INVALID` for a malformed trust domain, `TTL_INVALID` for a bad lifetime, and TypeError for a bad org or
 * common name.
 */
export async function createRootCa(options: CreateRootCaOptions = {}): Promise<RootCa> {
  const { trustDomain } = options;
  if (trustDomain !== undefined && !isValidTrustDomain(trustDomain)) {
    throw new PkiError('IDENTITY_INVALID', 'invalid trust domain');
  }
  const subject = toDer(
    name({
      organization: checkNameValue('org', options.org ?? DEFAULT_CA_ORG),
      commonName: checkNameValue('commonName', options.commonName ?? 'Root CA'),
    }),
  );
  const { notBefore, notAfter } = caValidity(options.ttlMs ?? DEFAULT_ROOT_TTL_MS);
  const key = await generateKeyPair(options.keyType ?? 'ec-p256');
  const spki = spkiDer(key.publicKey);
  const der = await signCertificate(
    {
      serialNumber: randomSerialNumber(),
      issuerName: subject,
      subjectName: subject,
      notBefore,
      notAfter,
      spki,
      extensions: [
        basicConstraints(true),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(spki)),
        ...(trustDomain === undefined ? [] : [subjectAltName({ uris: [`spiffe://${trustDomain}`] }, false)]),
      ],
    },
    {
      privateKey: key.privateKey,
      algorithm: signatureAlgorithmFor(describePublicKey(key.publicKey, 'KEY_UNSUPPORTED')),
    },
  );
  return { rootCertPem: derToPem(der), rootKeyPem: key.privateKeyPem, notAfter };
}
