import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { name } from './asn1.js';
import { checkCaMaterial, type CaMaterialPem, type CheckedCaMaterial } from './ca-material.js';
import { PkiError } from './errors.js';
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
import { describePublicKey, keyIdentifier, spkiDer } from './keys.js';
import type { PkiLogger } from './logger.js';
import { derToPem } from './pem.js';
import { createSelfSignedRoot, PLUGGED_CA_FILES, readOrCreateState } from './self-signed.js';
import { isValidTrustDomain, spiffeUri, validateSpiffeIdentity, type SpiffeIdentity } from './spiffe.js';
import { randomSerialNumber, signCertificate, truncateToSeconds, type Signer } from './x509.js';

/** DEFAULT_CERT_TTL_MS is the default certificate lifetime: 24 h, in ms (Istio's default workload TTL). */
export const DEFAULT_CERT_TTL_MS = 24 * 60 * 60 * 1000;
/** MAX_CERT_TTL_MS is the longest lifetime the CA signs: 90 days, in ms. Longer requests are refused, not clamped. */
export const MAX_CERT_TTL_MS = 90 * 24 * 60 * 60 * 1000;
/** CLOCK_SKEW_MS is how far notBefore is backdated, in ms, so peers with slow clocks accept new certificates. */
export const CLOCK_SKEW_MS = 60 * 1000;
/** DEFAULT_TRUST_DOMAIN is Istio's default trust domain. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** IssuedCertificate is a freshly signed certificate. */
export interface IssuedCertificate {
  /** certPem is the leaf certificate. */
  readonly certPem: string;
  /** chainPem is the leaf followed by the CA's intermediates (never the root): what a TLS endpoint presents. */
  readonly chainPem: readonly string[];
  readonly notBefore: Date;
  /** notAfter is when the certificate expires: now + TTL, capped at the CA certificate's own expiry. */
  readonly notAfter: Date;
  /** serialNumber is the certificate serial (128 random bits) in lowercase hex, without leading zero octets. */
  readonly serialNumber: string;
}

/** SignWorkloadOptions: the key to certify, the authenticated identity and the lifetime. */
export interface SignWorkloadOptions {
  /** publicKey is the workload's key (a private KeyObject is accepted too): RSA ≥ 2048 or EC P-256/P-384. */
  readonly publicKey: KeyObject;
  /** identity is the authenticated identity. Never take it from a CSR. */
  readonly identity: SpiffeIdentity;
  /** ttlMs is the lifetime in ms. Default 24 h; more than 90 days throws `TTL_TOO_LONG`. */
  readonly ttlMs?: number;
  /** organization, when set, becomes the subject `O=`; otherwise the subject is empty and the SAN critical. */
  readonly organization?: string;
}

/** SignServingOptions: a TLS server certificate for istiod itself. */
export interface SignServingOptions {
  readonly publicKey: KeyObject;
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  /** ttlMs is the lifetime in ms. Default 24 h; more than 90 days throws `TTL_TOO_LONG`. */
  readonly ttlMs?: number;
}

/** LoadPluggedCaOptions: the trust domain the CA issues for (default `cluster.local`) and an optional logger. */
export interface LoadPluggedCaOptions {
  readonly trustDomain?: string;
  readonly logger?: PkiLogger;
}

/** CreateSelfSignedOptions: where the root lives and what it names. */
export interface CreateSelfSignedOptions {
  /** stateDir holds the plug-in files; created (mode 0700) on first start. */
  readonly stateDir: string;
  readonly trustDomain: string;
  /** org is the root's subject `O=`. Default: the trust domain. */
  readonly org?: string;
  readonly logger?: PkiLogger;
}

/** checkTtl validates a lifetime in ms: positive and finite (`TTL_INVALID`), at most 90 days (`TTL_TOO_LONG`). */
export function checkTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs < 1000) throw new PkiError('TTL_INVALID', 'TTL must be at least 1 s');
  if (ttlMs > MAX_CERT_TTL_MS) throw new PkiError('TTL_TOO_LONG', 'TTL exceeds the 90-day maximum');
  return ttlMs;
}

/**
 * CertificateAuthority signs workload certificates (SPIFFE X509-SVIDs) and istiod's serving certificate. It holds
 * either a plugged CA (Istio's plug-in layout: an intermediate under an offline root) or a self-signed root. Build one
 * with {@link CertificateAuthority.loadPluggedCa}, {@link CertificateAuthority.createSelfSigned} or
 * {@link CertificateAuthority.fromPem}. Certificates are built with forge and signed with Node's crypto.
 */
export class CertificateAuthority {
  /** trustDomain is the SPIFFE trust domain this CA issues identities in. */
  readonly trustDomain: string;
  /** rootCertsPem is the trust bundle: every root in root-cert.pem, one PEM each (several during rotation). */
  readonly rootCertsPem: readonly string[];
  /** rootCertPem is the root (one of rootCertsPem) the signing chain verifies up to. */
  readonly rootCertPem: string;
  /** certChainPem is the chain appended to issued leaves: the signing CA and its intermediates, never the root. */
  readonly certChainPem: readonly string[];
  /** caCertPem is the signing CA certificate. */
  readonly caCertPem: string;
  /** caNotAfter is when the signing CA certificate expires; no certificate outlives it. */
  readonly caNotAfter: Date;

  readonly #material: CheckedCaMaterial;
  readonly #signer: Signer;

  private constructor(material: CheckedCaMaterial, trustDomain: string) {
    this.#material = material;
    this.#signer = { privateKey: material.privateKey, algorithm: material.algorithm };
    this.trustDomain = trustDomain;
    this.rootCertsPem = Object.freeze([...material.rootCertsPem]);
    this.rootCertPem = material.rootCertPem;
    this.certChainPem = Object.freeze([...material.certChainPem]);
    this.caCertPem = derToPem(material.caCert.raw);
    this.caNotAfter = new Date(material.caCert.validTo);
  }

  /**
   * fromPem builds a CA from PEM material in Istio's plug-in shape. Throws PkiError `CA_*` when the material fails
   * the checks of `checkCaMaterial` (CA cert is a valid CA, key matches, chain verifies up to a root), or
   * `IDENTITY_INVALID` for a malformed trust domain.
   */
  static fromPem(pem: CaMaterialPem, trustDomain: string = DEFAULT_TRUST_DOMAIN): CertificateAuthority {
    if (!isValidTrustDomain(trustDomain)) throw new PkiError('IDENTITY_INVALID', 'invalid trust domain');
    return new CertificateAuthority(checkCaMaterial(pem, trustDomain), trustDomain);
  }

  /**
   * loadPluggedCa loads Istio's plug-in CA files from `dir`: `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
   * `cert-chain.pem` (Istio's samples/certs load as they are). Throws PkiError `CA_FILES_MISSING` when a file can't
   * be read, and the errors of {@link CertificateAuthority.fromPem}.
   */
  static async loadPluggedCa(dir: string, options: LoadPluggedCaOptions = {}): Promise<CertificateAuthority> {
    const read = async (file: string): Promise<string> => {
      try {
        return await readFile(join(dir, file), 'utf8');
      } catch (err) {
        throw new PkiError('CA_FILES_MISSING', `cannot read ${file} in ${dir}`, { cause: err });
      }
    };
    // Settled in file order, so the error reported is always the first missing file's (Promise.all would race them).
    const settled = await Promise.allSettled(PLUGGED_CA_FILES.map(read));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const [caCertPem, caKeyPem, rootCertPem, certChainPem] = settled.map((r) =>
      r.status === 'fulfilled' ? r.value : '',
    );
    const ca = CertificateAuthority.fromPem(
      {
        caCertPem: caCertPem ?? '',
        caKeyPem: caKeyPem ?? '',
        rootCertPem: rootCertPem ?? '',
        certChainPem: certChainPem ?? '',
      },
      options.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    );
    options.logger?.info(
      { dir, trustDomain: ca.trustDomain, caNotAfter: ca.caNotAfter.toISOString(), roots: ca.rootCertsPem.length },
      'loaded plugged CA',
    );
    return ca;
  }

  /**
   * createSelfSigned gives a CA whose signing certificate is a self-signed root kept in `stateDir` in the plug-in
   * layout (ca-cert = root-cert = cert-chain, ca-key mode 0600). On first start it makes an ECDSA P-256 root valid
   * 10 years (P-256: keys are instant and match workload keys; Istio's RSA samples still load through
   * loadPluggedCa), with subject `O=<org>, CN=fedmesh root CA` and URI SAN `spiffe://<trustDomain>`. Later starts
   * load it. Throws PkiError `CA_FILES_MISSING` if only some files exist (never overwrites), `CA_TRUST_DOMAIN_MISMATCH`
   * if the stored root names another trust domain, and the errors of {@link CertificateAuthority.fromPem}.
   */
  static async createSelfSigned(options: CreateSelfSignedOptions): Promise<CertificateAuthority> {
    if (!isValidTrustDomain(options.trustDomain)) throw new PkiError('IDENTITY_INVALID', 'invalid trust domain');
    const state = await readOrCreateState(options.stateDir, () =>
      createSelfSignedRoot({ trustDomain: options.trustDomain, organization: options.org ?? options.trustDomain }),
    );
    if (state.insecureKeyMode) {
      options.logger?.warn({ stateDir: options.stateDir }, 'ca-key.pem is readable by group or others');
    }
    const ca = CertificateAuthority.fromPem(state.pem, options.trustDomain);
    options.logger?.info(
      { stateDir: options.stateDir, created: state.created, trustDomain: ca.trustDomain },
      state.created ? 'created self-signed root CA' : 'loaded self-signed root CA',
    );
    return ca;
  }

  /**
   * signWorkload issues a SPIFFE X509-SVID for `identity`: exactly one URI SAN (the SPIFFE ID; critical when the
   * subject is empty, RFC 5280 §4.2.1.6), basicConstraints cA=false (critical), keyUsage digitalSignature (plus
   * keyEncipherment for RSA keys; critical), extKeyUsage serverAuth+clientAuth, random 128-bit serial, notBefore =
   * now − 1 min, subject empty or `O=<organization>`, subject and authority key identifiers. Throws PkiError
   * `TTL_TOO_LONG` (> 90 days), `TTL_INVALID`, `KEY_UNSUPPORTED`, `IDENTITY_INVALID`, `IDENTITY_WRONG_TRUST_DOMAIN`.
   */
  async signWorkload(options: SignWorkloadOptions): Promise<IssuedCertificate> {
    const ttlMs = checkTtl(options.ttlMs ?? DEFAULT_CERT_TTL_MS);
    validateSpiffeIdentity(options.identity);
    if (options.identity.trustDomain !== this.trustDomain) {
      throw new PkiError('IDENTITY_WRONG_TRUST_DOMAIN', `this CA issues only in trust domain ${this.trustDomain}`);
    }
    const emptySubject = options.organization === undefined;
    return this.#issue(options.publicKey, ttlMs, emptySubject ? {} : { organization: options.organization }, (rsa) => [
      subjectAltName({ uris: [spiffeUri(options.identity)] }, emptySubject),
      keyUsage(rsa ? [KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment] : [KeyUsageBit.digitalSignature]),
      extKeyUsage([OID.serverAuth, OID.clientAuth]),
    ]);
  }

  /**
   * signServing issues a TLS server certificate (extKeyUsage serverAuth) for istiod's own endpoints, with the given
   * DNS and IP SANs (at least one) and an empty subject. Throws PkiError `IDENTITY_INVALID` without names, and the
   * TTL and key errors of {@link CertificateAuthority.signWorkload}.
   */
  async signServing(options: SignServingOptions): Promise<IssuedCertificate> {
    const ttlMs = checkTtl(options.ttlMs ?? DEFAULT_CERT_TTL_MS);
    const dns = options.dnsNames ?? [];
    const ips = options.ips ?? [];
    if (dns.length + ips.length === 0) throw new PkiError('IDENTITY_INVALID', 'a serving certificate needs a name');
    return this.#issue(options.publicKey, ttlMs, {}, (rsa) => [
      subjectAltName({ dns, ips }, true),
      keyUsage(rsa ? [KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment] : [KeyUsageBit.digitalSignature]),
      extKeyUsage([OID.serverAuth]),
    ]);
  }

  async #issue(
    key: KeyObject,
    ttlMs: number,
    subject: { organization?: string },
    extensionsFor: (rsa: boolean) => ReturnType<typeof keyUsage>[],
  ): Promise<IssuedCertificate> {
    const publicKey = key.type === 'public' ? key : createPublicKey(key);
    const info = describePublicKey(publicKey, 'KEY_UNSUPPORTED');
    const spki = spkiDer(publicKey);
    const now = Date.now();
    const notBefore = truncateToSeconds(new Date(now - CLOCK_SKEW_MS));
    const notAfter = truncateToSeconds(new Date(Math.min(now + ttlMs, this.caNotAfter.getTime())));
    const serialNumber = randomSerialNumber();
    const der = await signCertificate(
      {
        serialNumber,
        issuerName: this.#material.caParts.subjectName,
        subjectName: name(subject),
        notBefore,
        notAfter,
        spki,
        extensions: [
          basicConstraints(false),
          ...extensionsFor(info.keyType === 'rsa'),
          subjectKeyIdentifier(keyIdentifier(spki)),
          authorityKeyIdentifier(this.#material.authorityKeyId),
        ],
      },
      this.#signer,
    );
    const certPem = derToPem(der);
    return {
      certPem,
      chainPem: [certPem, ...this.certChainPem],
      notBefore,
      notAfter,
      serialNumber: serialNumber.toString('hex').replace(/^(00)+(?=.)/, ''),
    };
  }
}
