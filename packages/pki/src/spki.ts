// SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) to and from Node KeyObjects, fast. Under OpenSSL 3 importing a DER SPKI
// costs ~0.1 ms for P-256 and RSA alike, and exporting one about as much: together more than building and signing
// the certificate. JWK (EC) and PKCS#1 (RSA) imports are 3-30× cheaper, and the CA need not export a CSR's key again.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { bitStringBytes, children, content, decodeOid, expect, parseDer, Tag } from './der.js';

const RSA_ENCRYPTION = '1.2.840.113549.1.1.1'; // RFC 3279 §2.3.1
const EC_PUBLIC_KEY = '1.2.840.10045.2.1'; // RFC 5480 §2.1.1
const NAMED_CURVES: Readonly<Record<string, { crv: 'P-256' | 'P-384'; size: number }>> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', size: 32 }, // prime256v1
  '1.3.132.0.34': { crv: 'P-384', size: 48 }, // secp384r1
};

/**
 * The DER each key made by {@link publicKeyFromSpki} was made from. A memo of immutable facts (KeyObjects never
 * change), and entries go with their keys.
 */
const spkiOfKey = new WeakMap<KeyObject, Buffer>();

/**
 * fastImport imports the two shapes a CSR normally carries without OpenSSL's SPKI decoder: rsaEncryption with NULL
 * parameters and a strict-DER RSAPublicKey (as PKCS#1), and an uncompressed point on a named P-256/P-384 curve (as a
 * JWK, whose import checks the point is on the curve). Anything else returns undefined for the general path.
 */
function fastImport(der: Buffer): KeyObject | undefined {
  const [algorithm, subjectPublicKey, extra] = children(expect(parseDer(der), Tag.SEQUENCE, 'SubjectPublicKeyInfo'));
  if (extra !== undefined) return undefined;
  const [algorithmOid, parameters, more] = children(expect(algorithm, Tag.SEQUENCE, 'AlgorithmIdentifier'));
  if (more !== undefined || parameters === undefined) return undefined;
  const key = bitStringBytes(expect(subjectPublicKey, Tag.BIT_STRING, 'subjectPublicKey'));
  const type = decodeOid(expect(algorithmOid, Tag.OID, 'algorithm'));
  if (type === RSA_ENCRYPTION && parameters.tag === Tag.NULL && content(parameters).length === 0) {
    const [modulus, exponent, rest] = children(expect(parseDer(key), Tag.SEQUENCE, 'RSAPublicKey'));
    expect(modulus, Tag.INTEGER, 'modulus');
    expect(exponent, Tag.INTEGER, 'publicExponent');
    return rest === undefined ? createPublicKey({ key, format: 'der', type: 'pkcs1' }) : undefined;
  }
  const curve = type === EC_PUBLIC_KEY && parameters.tag === Tag.OID ? NAMED_CURVES[decodeOid(parameters)] : undefined;
  if (curve === undefined || key.length !== 1 + 2 * curve.size || key[0] !== 0x04) return undefined;
  const x = key.subarray(1, 1 + curve.size).toString('base64url');
  const y = key.subarray(1 + curve.size).toString('base64url');
  return createPublicKey({ key: { kty: 'EC', crv: curve.crv, x, y }, format: 'jwk' });
}

/**
 * publicKeyFromSpki makes a public KeyObject from a DER SubjectPublicKeyInfo and remembers `der`, so
 * {@link spkiDer} returns those exact bytes (a CSR's key goes into the certificate as requested, as
 * `openssl x509 -req` does). RSA and uncompressed P-256/P-384 keys take a fast path; any other input, or input the
 * fast path cannot read, goes through Node's SPKI import. Throws what that import throws for unreadable keys.
 */
export function publicKeyFromSpki(der: Buffer): KeyObject {
  let key: KeyObject | undefined;
  try {
    key = fastImport(der);
  } catch {
    key = undefined;
  }
  key ??= createPublicKey({ key: der, format: 'der', type: 'spki' });
  spkiOfKey.set(key, Buffer.from(der));
  return key;
}

/**
 * spkiDer returns the DER SubjectPublicKeyInfo of a key (public, or the public half of a private key): the bytes a
 * key from {@link publicKeyFromSpki} was made from, or Node's export. Callers must not modify the result.
 */
export function spkiDer(key: KeyObject): Buffer {
  return spkiOfKey.get(key) ?? key.export({ type: 'spki', format: 'der' });
}
