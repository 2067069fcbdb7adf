// Certificates: forge.asn1 builds the TBSCertificate, Node's crypto.sign signs its DER (RFC 5280 §4.1).
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import {
  algorithmIdentifier,
  bitString,
  contextConstructed,
  fromDer,
  sequence,
  smallInteger,
  time,
  toDer,
  unsignedInteger,
  type Asn1Node,
} from './asn1.js';
import {
  children,
  content,
  contextTag,
  decodeBoolean,
  decodeOid,
  expect,
  parseDer,
  raw,
  Tag,
  type DerElement,
} from './der.js';
import { extensionsField } from './extensions.js';
import type { SignatureAlgorithm } from './keys.js';

/** A certificate to sign. `issuerName` must be the issuer's subject Name, byte for byte (RFC 5280 §4.1.2.4). */
export interface CertificateTemplate {
  readonly serialNumber: Buffer;
  readonly issuerName: Buffer;
  readonly subjectName: Asn1Node | Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** spki is the subject's DER SubjectPublicKeyInfo as Node exports it; forge cannot represent EC keys. */
  readonly spki: Buffer;
  readonly extensions: Asn1Node[];
}

/** A signing key and the algorithm it signs with. */
export interface Signer {
  readonly privateKey: KeyObject;
  readonly algorithm: SignatureAlgorithm;
}

/** randomSerialNumber returns 128 random bits (RFC 5280 §4.1.2.2 allows up to 20 octets, positive). */
export function randomSerialNumber(): Buffer {
  for (;;) {
    const serial = randomBytes(16);
    if (serial.some((byte) => byte !== 0)) return serial;
  }
}

/** truncateToSeconds drops milliseconds: certificate times have one-second precision. */
export function truncateToSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

function signAsync(algorithm: SignatureAlgorithm, data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    sign(algorithm.hash, data, key, (err, signature) => (err ? reject(err) : resolve(signature)));
  });
}

/** buildTbsCertificate encodes a v3 TBSCertificate with forge.asn1, splicing in the Node-exported SPKI. */
export function buildTbsCertificate(template: CertificateTemplate, algorithm: SignatureAlgorithm): Buffer {
  const subject = Buffer.isBuffer(template.subjectName) ? fromDer(template.subjectName) : template.subjectName;
  const tbs = sequence([
    contextConstructed(0, [smallInteger(2)]),
    unsignedInteger(template.serialNumber),
    algorithmIdentifier(algorithm),
    fromDer(template.issuerName),
    sequence([time(template.notBefore), time(template.notAfter)]),
    subject,
    fromDer(template.spki),
    extensionsField(template.extensions),
  ]);
  return toDer(tbs);
}

/**
 * signCertificate builds the TBSCertificate with forge and signs its DER with Node's `crypto.sign` (off the event
 * loop), returning the DER Certificate.
 */
export async function signCertificate(template: CertificateTemplate, signer: Signer): Promise<Buffer> {
  const tbs = buildTbsCertificate(template, signer.algorithm);
  const signature = await signAsync(signer.algorithm, tbs, signer.privateKey);
  return toDer(sequence([fromDer(tbs), algorithmIdentifier(signer.algorithm), bitString(signature)]));
}

/** A certificate extension as found in a certificate: criticality and the DER of the extension value. */
export interface RawExtension {
  readonly critical: boolean;
  readonly value: DerElement;
}

/** The parts of a certificate the CA needs that Node's X509Certificate does not expose. */
export interface CertificateParts {
  readonly subjectName: Buffer;
  readonly issuerName: Buffer;
  readonly spki: Buffer;
  readonly extensions: ReadonlyMap<string, RawExtension>;
}

/** parseCertificateParts walks a DER certificate (strict DER) for its names, SPKI and extensions. */
export function parseCertificateParts(der: Buffer): CertificateParts {
  const [tbsElement] = children(expect(parseDer(der), Tag.SEQUENCE, 'Certificate'));
  const fields = children(expect(tbsElement, Tag.SEQUENCE, 'TBSCertificate'));
  let i = fields[0]?.tag === contextTag(0, true) ? 1 : 0;
  i += 2; // serialNumber, signature
  const issuer = expect(fields[i++], Tag.SEQUENCE, 'issuer');
  i++; // validity
  const subject = expect(fields[i++], Tag.SEQUENCE, 'subject');
  const spki = expect(fields[i++], Tag.SEQUENCE, 'subjectPublicKeyInfo');
  const extensions = new Map<string, RawExtension>();
  for (const field of fields.slice(i)) {
    if (field.tag !== contextTag(3, true)) continue;
    const [list] = children(field);
    for (const ext of children(expect(list, Tag.SEQUENCE, 'extensions'))) {
      const parts = children(expect(ext, Tag.SEQUENCE, 'extension'));
      const critical = parts.length === 3 && parts[1] !== undefined ? decodeBoolean(parts[1]) : false;
      const valueOctets = expect(parts[parts.length - 1], Tag.OCTET_STRING, 'extnValue');
      const extnId = decodeOid(expect(parts[0], Tag.OID, 'extnID'));
      if (extensions.has(extnId)) throw new Error(`duplicate extension ${extnId}`);
      extensions.set(extnId, { critical, value: parseDer(content(valueOctets)) });
    }
  }
  return { subjectName: raw(subject), issuerName: raw(issuer), spki: raw(spki), extensions };
}
