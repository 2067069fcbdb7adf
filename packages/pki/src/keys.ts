import { createHash, generateKeyPair as nodeGenerateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { bitStringBytes, children, parseDer } from './der.js';
import { PkiError, type PkiReason } from './errors.js';

const generate = promisify(nodeGenerateKeyPair);

/** KeyType names the key kinds fedmesh makes: ECDSA P-256 (workloads, default) and RSA-2048 (CA interop). */
export type KeyType = 'ec-p256' | 'rsa-2048';

/** GeneratedKeyPair is a key pair made by Node's crypto: the private key as PKCS#8 PEM and as a KeyObject. */
export interface GeneratedKeyPair {
  readonly privateKeyPem: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/**
 * generateKeyPair makes a key pair with Node's crypto (off the event loop): `ec-p256` (about 0.05 ms) or `rsa-2048`
 * (about 190 ms). Workload keys are `ec-p256`. The private key PEM is unencrypted PKCS#8.
 */
export async function generateKeyPair(type: KeyType = 'ec-p256'): Promise<GeneratedKeyPair> {
  const { publicKey, privateKey } =
    type === 'ec-p256'
      ? await generate('ec', { namedCurve: 'P-256' })
      : await generate('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  return { publicKey, privateKey, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** PublicKeyInfo describes an accepted public key: RSA with its modulus size, or EC with its curve. */
export type PublicKeyInfo =
  { readonly keyType: 'rsa'; readonly keyBits: number } | { readonly keyType: 'ec'; readonly curve: 'P-256' | 'P-384' };

const CURVES: Record<string, 'P-256' | 'P-384'> = { prime256v1: 'P-256', secp384r1: 'P-384' };
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

/**
 * describePublicKey returns the kind of `key` if fedmesh accepts it (RSA 2048–8192 bits, EC P-256 or P-384) and
 * throws PkiError `reason` otherwise. The key may be a public or private KeyObject.
 */
export function describePublicKey(key: KeyObject, reason: PkiReason): PublicKeyInfo {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
      throw new PkiError(reason, `RSA keys must have ${MIN_RSA_BITS}-${MAX_RSA_BITS} bits, got ${bits}`);
    }
    return { keyType: 'rsa', keyBits: bits };
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = CURVES[details.namedCurve ?? ''];
    if (curve === undefined) throw new PkiError(reason, 'EC keys must use P-256 or P-384');
    return { keyType: 'ec', curve };
  }
  throw new PkiError(reason, `unsupported key algorithm ${key.asymmetricKeyType ?? 'unknown'}`);
}

/** A signature algorithm: its OID, the Node hash name and whether the AlgorithmIdentifier carries NULL params. */
export interface SignatureAlgorithm {
  readonly oid: string;
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  readonly nullParams: boolean;
}

/** SIGNATURE_ALGORITHMS are the signature algorithms accepted on CSRs, by OID. */
export const SIGNATURE_ALGORITHMS = {
  // RFC 4055 §5: sha*WithRSAEncryption, parameters NULL.
  '1.2.840.113549.1.1.11': { oid: '1.2.840.113549.1.1.11', hash: 'sha256', nullParams: true },
  '1.2.840.113549.1.1.12': { oid: '1.2.840.113549.1.1.12', hash: 'sha384', nullParams: true },
  '1.2.840.113549.1.1.13': { oid: '1.2.840.113549.1.1.13', hash: 'sha512', nullParams: true },
  // RFC 5758 §3.2: ecdsa-with-SHA*, parameters absent.
  '1.2.840.10045.4.3.2': { oid: '1.2.840.10045.4.3.2', hash: 'sha256', nullParams: false },
  '1.2.840.10045.4.3.3': { oid: '1.2.840.10045.4.3.3', hash: 'sha384', nullParams: false },
  '1.2.840.10045.4.3.4': { oid: '1.2.840.10045.4.3.4', hash: 'sha512', nullParams: false },
} as const satisfies Record<string, SignatureAlgorithm>;

/** signatureAlgorithmFor picks how a key signs: sha256WithRSAEncryption, or ECDSA with the curve's hash size. */
export function signatureAlgorithmFor(info: PublicKeyInfo): SignatureAlgorithm {
  if (info.keyType === 'rsa') return SIGNATURE_ALGORITHMS['1.2.840.113549.1.1.11'];
  return info.curve === 'P-384'
    ? SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.3']
    : SIGNATURE_ALGORITHMS['1.2.840.10045.4.3.2'];
}

export { publicKeyFromSpki, spkiDer } from './spki.js';

/**
 * keyIdentifier computes a key identifier per RFC 5280 §4.2.1.2 method (1): the SHA-1 of the subjectPublicKey BIT
 * STRING value (without tag, length and unused-bits octet) of a DER SubjectPublicKeyInfo.
 */
export function keyIdentifier(spki: Buffer): Buffer {
  const [, subjectPublicKey] = children(parseDer(spki));
  if (subjectPublicKey === undefined) throw new Error('SubjectPublicKeyInfo without subjectPublicKey');
  return createHash('sha1').update(bitStringBytes(subjectPublicKey)).digest();
}
