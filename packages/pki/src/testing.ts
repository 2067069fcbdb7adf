/**
 * `@fedmesh/pki/testing`: helpers for tests that need deliberately bad certificates (expired, foreign trust domain,
 * two URI SANs, a CA used as a leaf, no clientAuth). Production code never imports this entry point: the mesh CA
 * ({@link CertificateAuthority}) refuses to issue any of these.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { name, type NameAttributes } from './asn1.js';
import type { CertificateAuthority } from './ca.js';
import { content, Tag } from './der.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  extKeyUsage,
  keyUsage,
  KeyUsageBit,
  OID,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import { describePublicKey, keyIdentifier, signatureAlgorithmFor, spkiDer } from './keys.js';
import { derToPem } from './pem.js';
import { parseCertificateParts, randomSerialNumber, signCertificate, truncateToSeconds } from './x509.js';

/** TestIssuer is a signing CA as PEM: its certificate and its unencrypted private key. */
export interface TestIssuer {
  readonly certPem: string;
  readonly keyPem: string;
}

/** TestCertificateOptions describe one certificate to issue, good or deliberately bad. */
export interface TestCertificateOptions {
  /** issuer signs the certificate; its subject becomes the issuer name and its key identifier the AKI. */
  readonly issuer: TestIssuer;
  /** publicKey is the subject's key (a private KeyObject is accepted; its public half is used). */
  readonly publicKey: KeyObject;
  /** uris are the URI SANs (any number, including zero or several). */
  readonly uris?: readonly string[];
  readonly dns?: readonly string[];
  /** notBefore defaults to now − 1 min; notAfter to now + 1 h. Either may be in the past or the future. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** ca makes basicConstraints cA=true with keyUsage keyCertSign, cRLSign and digitalSignature. Default false. */
  readonly ca?: boolean;
  /**
   * extKeyUsage lists the key purposes: `serverAuth`, `clientAuth`. Default both; `'omit'` leaves the extension out
   * (any purpose, RFC 5280 §4.2.1.12).
   */
  readonly extKeyUsage?: readonly ('serverAuth' | 'clientAuth')[] | 'omit';
  /** subject is the subject Name; default empty (the SAN is then critical, as RFC 5280 §4.2.1.6 requires). */
  readonly subject?: NameAttributes;
}

/**
 * issueTestCertificate signs a certificate exactly as described, with no policy checks: forge builds the
 * TBSCertificate and Node's `crypto.sign` signs it with the issuer's key, as the mesh CA does. Returns the leaf PEM.
 * Throws when the issuer's certificate or key can't be parsed, or the key is of a kind fedmesh does not sign with.
 */
export async function issueTestCertificate(options: TestCertificateOptions): Promise<string> {
  const issuerCert = new X509Certificate(options.issuer.certPem);
  const issuerParts = parseCertificateParts(issuerCert.raw);
  const issuerKey = createPrivateKey(options.issuer.keyPem);
  const ski = issuerParts.extensions.get(OID.subjectKeyIdentifier);
  const authorityKeyId =
    ski !== undefined && ski.value.tag === Tag.OCTET_STRING
      ? Buffer.from(content(ski.value))
      : keyIdentifier(issuerParts.spki);
  const publicKey = options.publicKey.type === 'public' ? options.publicKey : createPublicKey(options.publicKey);
  const rsa = describePublicKey(publicKey, 'KEY_UNSUPPORTED').keyType === 'rsa';
  const spki = spkiDer(publicKey);
  const now = Date.now();
  const purposes = options.extKeyUsage ?? ['serverAuth', 'clientAuth'];
  const uris = options.uris ?? [];
  const dns = options.dns ?? [];
  const subject = options.subject ?? {};
  const emptySubject = Object.keys(subject).length === 0;
  const usage = options.ca
    ? [KeyUsageBit.digitalSignature, KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]
    : rsa
      ? [KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment]
      : [KeyUsageBit.digitalSignature];
  const der = await signCertificate(
    {
      serialNumber: randomSerialNumber(),
      issuerName: issuerParts.subjectName,
      subjectName: name(subject),
      notBefore: truncateToSeconds(options.notBefore ?? new Date(now - 60_000)),
      notAfter: truncateToSeconds(options.notAfter ?? new Date(now + 3_600_000)),
      spki,
      extensions: [
        basicConstraints(options.ca === true),
        keyUsage(usage),
        ...(purposes === 'omit' ? [] : [extKeyUsage(purposes.map((p) => OID[p]))]),
        ...(uris.length + dns.length > 0 ? [subjectAltName({ uris, dns }, emptySubject)] : []),
        subjectKeyIdentifier(keyIdentifier(spki)),
        authorityKeyIdentifier(authorityKeyId),
      ],
    },
    { privateKey: issuerKey, algorithm: signatureAlgorithmFor(describePublicKey(issuerKey, 'KEY_UNSUPPORTED')) },
  );
  return derToPem(der);
}

/**
 * chainFor returns what a TLS endpoint presents for a leaf issued by `ca`'s signing certificate: the leaf PEM
 * followed by the CA's chain (its signing certificate and intermediates, never the root), concatenated.
 */
export function chainFor(leafPem: string, ca: Pick<CertificateAuthority, 'certChainPem'>): string {
  return [leafPem, ...ca.certChainPem].map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}
