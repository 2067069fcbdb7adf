// Intermediate CAs under an offline root, in the shape of Istio's tools/certs (intermediate.conf): a CSR made where
// the intermediate's key lives, signed where the root key lives.
import { X509Certificate } from 'node:crypto';
import { checkCaMaterial, spiffeTrustDomains, type CaMaterialPem } from './ca-material.js';
import { buildCsr, parseCsr } from './csr.js';
import { children, decodeOid, expect, parseDer, Tag } from './der.js';
import { PkiError } from './errors.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  keyUsage,
  KeyUsageBit,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import { generateKeyPair, keyIdentifier, spkiDer, type KeyType } from './keys.js';
import { derToPem, splitPemBundle } from './pem.js';
import { caValidity, checkNameValue, DEFAULT_CA_ORG, DEFAULT_INTERMEDIATE_TTL_MS } from './root-ca.js';
import { isValidTrustDomain } from './spiffe.js';
import { randomSerialNumber, signCertificate } from './x509.js';

/** INTERMEDIATE_CA_COMMON_NAME is the subject `CN=` of intermediate CAs (Istio's `INTERMEDIATE_CN`). */
export const INTERMEDIATE_CA_COMMON_NAME = 'Intermediate CA';

const CLUSTER_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;

/** CreateIntermediateCsrOptions: the cluster the intermediate serves, its org and key type. */
export interface CreateIntermediateCsrOptions {
  /** cluster names the cluster; it becomes the subject `L=`. 1–63 letters, digits, `.`, `_`, `-`. */
  readonly cluster: string;
  /** org is the subject `O=`. Default `fedmesh`. */
  readonly org?: string;
  /** keyType is the intermediate key's type. Default `ec-p256`. */
  readonly keyType?: KeyType;
}

/** IntermediateCsr is a new intermediate key and its signed request, both PEM. The key never leaves this host. */
export interface IntermediateCsr {
  readonly csrPem: string;
  /** keyPem is the intermediate's private key (unencrypted PKCS#8): `ca-key.pem`, mode 0600. Never log it. */
  readonly keyPem: string;
}

/**
 * createIntermediateCsr makes an intermediate CA key with Node and a PKCS#10 request for it (RFC 2986), like the
 * `cluster-ca.csr` of Istio's `Makefile.selfsigned.mk`: subject `O=<org>, CN=Intermediate CA, L=<cluster>`, and an
 * extensionRequest for basicConstraints cA=true pathLen 0 and keyUsage keyCertSign + cRLSign. The signer decides the
 * extensions anyway ({@link signIntermediate}). Throws TypeError for a bad cluster name or org.
 */
export async function createIntermediateCsr(options: CreateIntermediateCsrOptions): Promise<IntermediateCsr> {
  if (!CLUSTER_NAME.test(options.cluster)) {
    throw new TypeError('cluster must be 1-63 letters, digits, ".", "_" or "-", starting and ending alphanumeric');
  }
  const subject = {
    organization: checkNameValue('org', options.org ?? DEFAULT_CA_ORG),
    commonName: INTERMEDIATE_CA_COMMON_NAME,
    locality: options.cluster,
  };
  const key = await generateKeyPair(options.keyType ?? 'ec-p256');
  const csrPem = buildCsr(key.privateKey, subject, [
    basicConstraints(true, 0),
    keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
  ]);
  return { csrPem, keyPem: key.privateKeyPem };
}

/** SignIntermediateOptions: the root (certificate and key), the request and the lifetime. */
export interface SignIntermediateOptions {
  readonly rootCertPem: string;
  /** rootKeyPem is the root's private key. It is used only to sign and never logged. */
  readonly rootKeyPem: string;
  readonly csrPem: string;
  /** ttlMs is the lifetime in ms. Default 730 days; never past the root's own notAfter. */
  readonly ttlMs?: number;
  /**
   * trustDomain, when set, is written as the URI SAN `spiffe://<trustDomain>` (then istiod must load the CA with that
   * trust domain). Default: the trust domain of the root's SPIFFE URI SAN, or none when the root has none.
   */
  readonly trustDomain?: string;
}

/** SignedIntermediate is the signed intermediate with the files istiod's plug-in layout needs, all PEM. */
export interface SignedIntermediate {
  /** caCertPem is `ca-cert.pem`: the intermediate certificate. */
  readonly caCertPem: string;
  /** rootCertPem is `root-cert.pem`: the root that signed it. */
  readonly rootCertPem: string;
  /** certChainPem is `cert-chain.pem`: the intermediate, then the root (as newer Istio tools write it). */
  readonly certChainPem: string;
  readonly notAfter: Date;
  /** trustDomain is the trust domain in the intermediate's SPIFFE URI SAN, if it has one. */
  readonly trustDomain?: string;
}

/**
 * signIntermediate signs an intermediate CA certificate with an offline root (RFC 5280 §4.2.1.9): basicConstraints
 * cA=true pathLenConstraint 0 (critical), keyUsage keyCertSign + cRLSign (critical), subject and authority key
 * identifiers, the URI SAN `spiffe://<trustDomain>` when there is a trust domain, notBefore now − 1 min and notAfter
 * now + `ttlMs` capped at the root's notAfter. Only the CSR's subject and key are used; the extensions it requests are
 * ignored, as with `openssl x509 -req -extfile` in Istio's Makefile. The CSR's self-signature is verified first.
 * Throws PkiError: `CSR_*` from {@link parseCsr} (weak key, bad signature, malformed, too large), `CSR_MALFORMED`
 * for an empty subject (§4.1.2.6) or one equal to the root's; `CA_*` when the root is not a currently valid
 * self-signed CA, its key does not match, or it names another trust domain; `IDENTITY_INVALID` for a malformed
 * trust domain; `TTL_INVALID`.
 */
export async function signIntermediate(options: SignIntermediateOptions): Promise<SignedIntermediate> {
  const [rootCertPem, ...extra] = splitPemBundle(options.rootCertPem);
  if (rootCertPem === undefined || extra.length > 0) {
    throw new PkiError('CA_CERT_INVALID', 'the root must be exactly one certificate');
  }
  const trustDomain = resolveTrustDomain(rootCertPem, options.trustDomain);
  const root = checkCaMaterial(
    { caCertPem: rootCertPem, caKeyPem: options.rootKeyPem, rootCertPem, certChainPem: '' },
    trustDomain ?? 'cluster.local',
  );
  if (!root.caCert.checkIssued(root.caCert) || !root.caCert.verify(root.caCert.publicKey)) {
    throw new PkiError('CA_CHAIN_INVALID', 'the root certificate is not self-signed');
  }
  const csr = parseCsr(options.csrPem);
  checkIntermediateSubject(csr.subjectName, root.caParts.subjectName);
  const { notBefore, notAfter } = caValidity(
    options.ttlMs ?? DEFAULT_INTERMEDIATE_TTL_MS,
    new Date(root.caCert.validTo).getTime(),
  );
  const spki = spkiDer(csr.publicKey);
  const der = await signCertificate(
    {
      serialNumber: randomSerialNumber(),
      issuerName: root.caParts.subjectName,
      subjectName: csr.subjectName,
      notBefore,
      notAfter,
      spki,
      extensions: [
        basicConstraints(true, 0),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(spki)),
        authorityKeyIdentifier(root.authorityKeyId),
        ...(trustDomain === undefined ? [] : [subjectAltName({ uris: [`spiffe://${trustDomain}`] }, false)]),
      ],
    },
    { privateKey: root.privateKey, algorithm: root.algorithm },
  );
  const caCertPem = derToPem(der);
  return {
    caCertPem,
    rootCertPem,
    certChainPem: caCertPem + rootCertPem,
    notAfter,
    ...(trustDomain === undefined ? {} : { trustDomain }),
  };
}

function resolveTrustDomain(rootCertPem: string, requested: string | undefined): string | undefined {
  if (requested !== undefined && !isValidTrustDomain(requested)) {
    throw new PkiError('IDENTITY_INVALID', 'invalid trust domain');
  }
  let rootDomains: string[];
  try {
    rootDomains = [...new Set(spiffeTrustDomains(new X509Certificate(rootCertPem)))];
  } catch (err) {
    throw new PkiError('CA_CERT_INVALID', 'the root is not a valid X.509 certificate', { cause: err });
  }
  if (rootDomains.length > 1) throw new PkiError('CA_TRUST_DOMAIN_MISMATCH', 'the root names several trust domains');
  if (requested !== undefined && rootDomains.length === 1 && rootDomains[0] !== requested) {
    throw new PkiError('CA_TRUST_DOMAIN_MISMATCH', `the root is for trust domain ${rootDomains[0]}, not ${requested}`);
  }
  return requested ?? rootDomains[0];
}

/** checkIntermediateSubject requires a non-empty, well-formed Name that differs from the root's. */
function checkIntermediateSubject(subject: Buffer, rootSubject: Buffer): void {
  let rdns: ReturnType<typeof children>;
  try {
    rdns = children(expect(parseDer(subject), Tag.SEQUENCE, 'Name'));
    for (const rdn of rdns) {
      const attributes = children(expect(rdn, Tag.SET, 'RelativeDistinguishedName'));
      if (attributes.length === 0) throw new Error('empty RelativeDistinguishedName');
      for (const attribute of attributes) {
        const [type, value, more] = children(expect(attribute, Tag.SEQUENCE, 'AttributeTypeAndValue'));
        decodeOid(expect(type, Tag.OID, 'attribute type'));
        if (value === undefined || more !== undefined) throw new Error('bad AttributeTypeAndValue');
      }
    }
  } catch (err) {
    throw new PkiError('CSR_MALFORMED', 'the CSR subject is not a well-formed Name', { cause: err });
  }
  if (rdns.length === 0) throw new PkiError('CSR_MALFORMED', 'an intermediate CA needs a subject (RFC 5280 §4.1.2.6)');
  if (subject.equals(rootSubject)) throw new PkiError('CSR_MALFORMED', "the CSR subject equals the root's subject");
}

/** CreateIntermediateCaOptions: {@link createIntermediateCsr} and {@link signIntermediate} in one go. */
export interface CreateIntermediateCaOptions extends CreateIntermediateCsrOptions {
  readonly rootCertPem: string;
  readonly rootKeyPem: string;
  readonly ttlMs?: number;
  readonly trustDomain?: string;
}

/**
 * createIntermediateCa makes an intermediate key, its CSR, and signs it with the root, returning Istio's plug-in
 * material (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem` = intermediate + root), checked the way
 * `CertificateAuthority.loadPluggedCa` checks it. Throws the errors of {@link createIntermediateCsr} and
 * {@link signIntermediate}.
 */
export async function createIntermediateCa(options: CreateIntermediateCaOptions): Promise<CaMaterialPem> {
  const { csrPem, keyPem } = await createIntermediateCsr(options);
  const signed = await signIntermediate({
    rootCertPem: options.rootCertPem,
    rootKeyPem: options.rootKeyPem,
    csrPem,
    ...(options.ttlMs === undefined ? {} : { ttlMs: options.ttlMs }),
    ...(options.trustDomain === undefined ? {} : { trustDomain: options.trustDomain }),
  });
  const material = {
    caCertPem: signed.caCertPem,
    caKeyPem: keyPem,
    rootCertPem: signed.rootCertPem,
    certChainPem: signed.certChainPem,
  };
  checkCaMaterial(material, signed.trustDomain ?? 'cluster.local');
  return material;
}
