// Loading and checking CA material in Istio's plug-in layout (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem).
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.js';
import { KeyUsageBit, OID } from './extensions.js';
import { describePublicKey, keyIdentifier, signatureAlgorithmFor, type SignatureAlgorithm } from './keys.js';
import { derToPem, splitPemBundle } from './pem.js';
import { parseNodeSubjectAltName } from './san.js';
import { content, Tag } from './der.js';
import { parseCertificateParts, type CertificateParts } from './x509.js';

/** CaMaterialPem is the PEM text of a signing CA, as found in Istio's plug-in files. */
export interface CaMaterialPem {
  /** caCertPem is `ca-cert.pem`: the signing CA certificate (first block; later blocks join the chain). */
  readonly caCertPem: string;
  /** caKeyPem is `ca-key.pem`: its private key, unencrypted PKCS#8, PKCS#1 or SEC1 PEM. */
  readonly caKeyPem: string;
  /** certChainPem is `cert-chain.pem`: the CA cert and its intermediates, root optional. May be empty. */
  readonly certChainPem: string;
  /** rootCertPem is `root-cert.pem`: one or more trusted roots (the trust bundle). */
  readonly rootCertPem: string;
}

/** CheckedCaMaterial is CA material that passed every check in {@link checkCaMaterial}. */
export interface CheckedCaMaterial {
  readonly caCert: X509Certificate;
  readonly caParts: CertificateParts;
  readonly privateKey: KeyObject;
  readonly algorithm: SignatureAlgorithm;
  readonly authorityKeyId: Buffer;
  readonly rootCertsPem: readonly string[];
  readonly rootCertPem: string;
  readonly certChainPem: readonly string[];
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new PkiError('CA_CERT_INVALID', `${what} is not a valid X.509 certificate`, { cause: err });
  }
}

function hasKeyCertSign(parts: CertificateParts): boolean {
  const ku = parts.extensions.get(OID.keyUsage);
  if (ku === undefined) return true;
  const bits = content(ku.value);
  const byte = bits[1 + (KeyUsageBit.keyCertSign >> 3)] ?? 0;
  return (byte & (0x80 >> (KeyUsageBit.keyCertSign & 7))) !== 0;
}

/** spiffeTrustDomains lists the trust domains named by a certificate's `spiffe://` URI SANs. */
export function spiffeTrustDomains(cert: X509Certificate): string[] {
  return parseNodeSubjectAltName(cert.subjectAltName)
    .uris.filter((uri) => uri.startsWith('spiffe://'))
    .map((uri) => uri.slice('spiffe://'.length).split('/')[0] ?? '');
}

function isWithinValidity(cert: X509Certificate, now: Date): boolean {
  return now >= new Date(cert.validFrom) && now <= new Date(cert.validTo);
}

function issuedBy(child: X509Certificate, parent: X509Certificate): boolean {
  return parent.ca && child.checkIssued(parent) && child.verify(parent.publicKey);
}

function checkKey(caCert: X509Certificate, caKeyPem: string): { privateKey: KeyObject; algorithm: SignatureAlgorithm } {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(caKeyPem);
  } catch (err) {
    throw new PkiError('CA_KEY_INVALID', 'CA key is not a readable unencrypted private key', { cause: err });
  }
  const algorithm = signatureAlgorithmFor(describePublicKey(privateKey, 'CA_KEY_INVALID'));
  if (!caCert.checkPrivateKey(privateKey)) {
    throw new PkiError('CA_KEY_MISMATCH', 'CA key does not match the CA certificate');
  }
  return { privateKey, algorithm };
}

/**
 * checkCaMaterial validates plugged CA material: the CA certificate is a currently valid CA (basicConstraints cA,
 * keyCertSign when keyUsage is present), the key is supported and matches it, and the chain verifies, certificate by
 * certificate with `X509Certificate.verify`, up to one of the roots. A SPIFFE URI SAN on the CA, if any, must name
 * `trustDomain`. Throws PkiError `CA_*`.
 */
export function checkCaMaterial(pem: CaMaterialPem, trustDomain: string, now = new Date()): CheckedCaMaterial {
  const [caCertPem, ...extraPem] = splitPemBundle(pem.caCertPem);
  if (caCertPem === undefined) throw new PkiError('CA_CERT_INVALID', 'ca-cert.pem holds no certificate');
  const caCert = parseCert(caCertPem, 'ca-cert.pem');
  const caParts = parseCertificateParts(caCert.raw);
  if (!caCert.ca || !hasKeyCertSign(caParts)) {
    throw new PkiError('CA_NOT_A_CA', 'ca-cert.pem is not a CA certificate (basicConstraints cA, keyCertSign)');
  }
  if (!isWithinValidity(caCert, now)) throw new PkiError('CA_EXPIRED', 'CA certificate is outside its validity');
  if (spiffeTrustDomains(caCert).some((td) => td !== trustDomain)) {
    throw new PkiError('CA_TRUST_DOMAIN_MISMATCH', `CA certificate names a trust domain other than ${trustDomain}`);
  }
  const { privateKey, algorithm } = checkKey(caCert, pem.caKeyPem);

  const rootCertsPem = splitPemBundle(pem.rootCertPem);
  const roots = rootCertsPem.map((root) => parseCert(root, 'root-cert.pem'));
  if (roots.length === 0) throw new PkiError('CA_CHAIN_INVALID', 'root-cert.pem holds no certificate');
  if (roots.some((root) => !root.ca)) throw new PkiError('CA_CHAIN_INVALID', 'a root certificate is not a CA');
  const isRoot = (cert: X509Certificate): boolean => roots.some((root) => root.fingerprint256 === cert.fingerprint256);

  // The path from the CA up to (not including) a root: ca-cert, then the chain's certificates until a root.
  const path: X509Certificate[] = [caCert];
  for (const chainPem of [...extraPem, ...splitPemBundle(pem.certChainPem)]) {
    const cert = parseCert(chainPem, 'cert-chain.pem');
    if (cert.fingerprint256 === caCert.fingerprint256) continue;
    if (isRoot(cert) || isRoot(path[path.length - 1] ?? caCert)) break;
    path.push(cert);
  }
  const anchorIndex = checkPath(path, roots, isRoot);
  const anchor = roots[anchorIndex];
  if (anchor === undefined || !isWithinValidity(anchor, now)) {
    throw new PkiError('CA_EXPIRED', 'the root the CA chains to is outside its validity');
  }

  const ski = caParts.extensions.get(OID.subjectKeyIdentifier);
  const authorityKeyId =
    ski !== undefined && ski.value.tag === Tag.OCTET_STRING
      ? Buffer.from(content(ski.value))
      : keyIdentifier(caParts.spki);
  const selfIsRoot = isRoot(caCert);
  return {
    caCert,
    caParts,
    privateKey,
    algorithm,
    authorityKeyId,
    rootCertsPem,
    rootCertPem: rootCertsPem[anchorIndex] ?? '',
    certChainPem: selfIsRoot ? [] : path.map((cert) => derToPem(cert.raw)),
  };
}

/** checkPath verifies each link of `path` and returns the index of the root the last element chains to. */
function checkPath(path: X509Certificate[], roots: X509Certificate[], isRoot: (c: X509Certificate) => boolean): number {
  for (let i = 0; i + 1 < path.length; i++) {
    const child = path[i];
    const parent = path[i + 1];
    if (child === undefined || parent === undefined || !issuedBy(child, parent)) {
      throw new PkiError('CA_CHAIN_INVALID', `cert-chain.pem certificate ${i + 1} did not issue certificate ${i}`);
    }
  }
  const top = path[path.length - 1];
  if (top === undefined) throw new PkiError('CA_CHAIN_INVALID', 'empty chain');
  const index = isRoot(top)
    ? roots.findIndex((root) => root.fingerprint256 === top.fingerprint256)
    : roots.findIndex((root) => issuedBy(top, root));
  if (index < 0) throw new PkiError('CA_CHAIN_INVALID', 'the CA chain does not verify up to any root in root-cert.pem');
  return index;
}
