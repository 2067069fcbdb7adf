// X.509 v3 extensions (RFC 5280 §4.2): encoding with forge.asn1, and decoding of GeneralNames with the DER reader.
import {
  bitString,
  boolean,
  contextPrimitive,
  octetString,
  oid,
  sequence,
  smallInteger,
  contextConstructed,
  type Asn1Node,
} from './asn1.js';
import { children, content, contextTag, type DerElement } from './der.js';
import { bytesToIp, ipToBytes } from './ip.js';

/** OID holds the object identifiers of the extensions and key purposes fedmesh reads and writes. */
export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** KeyUsage named bits (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

/** SubjectAltNames are the GeneralNames fedmesh reads and writes: URIs, DNS names and IP addresses. */
export interface SubjectAltNames {
  readonly uris: readonly string[];
  readonly dns: readonly string[];
  readonly ips: readonly string[];
}

/** extension encodes an Extension; `critical` is omitted when false (DER DEFAULT rule). */
export function extension(extnId: string, critical: boolean, value: Asn1Node): Asn1Node {
  return sequence(critical ? [oid(extnId), boolean(true), octetString(value)] : [oid(extnId), octetString(value)]);
}

/** basicConstraints encodes BasicConstraints; a non-CA encodes as the empty SEQUENCE (cA DEFAULT FALSE). */
export function basicConstraints(ca: boolean, pathLength?: number): Asn1Node {
  const fields: Asn1Node[] = [];
  if (ca) fields.push(boolean(true));
  if (ca && pathLength !== undefined) fields.push(smallInteger(pathLength));
  return extension(OID.basicConstraints, true, sequence(fields));
}

/** keyUsage encodes KeyUsage as a DER named-bit list (trailing zero bits dropped), marked critical. */
export function keyUsage(bits: readonly number[]): Asn1Node {
  const highest = Math.max(...bits);
  const octets = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) octets[bit >> 3] = (octets[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  const unused = octets.length * 8 - (highest + 1);
  return extension(OID.keyUsage, true, bitString(octets, unused));
}

/** extKeyUsage encodes ExtKeyUsageSyntax (RFC 5280 §4.2.1.12), not critical. */
export function extKeyUsage(purposes: readonly string[]): Asn1Node {
  return extension(OID.extKeyUsage, false, sequence(purposes.map(oid)));
}

/** subjectAltName encodes GeneralNames: uniformResourceIdentifier [6], dNSName [2], iPAddress [7]. */
export function subjectAltName(names: Partial<SubjectAltNames>, critical: boolean): Asn1Node {
  const general: Asn1Node[] = [
    ...(names.uris ?? []).map((uri) => contextPrimitive(6, Buffer.from(uri, 'ascii'))),
    ...(names.dns ?? []).map((dns) => contextPrimitive(2, Buffer.from(dns, 'ascii'))),
    ...(names.ips ?? []).map((ip) => contextPrimitive(7, ipToBytes(ip))),
  ];
  return extension(OID.subjectAltName, critical, sequence(general));
}

/** subjectKeyIdentifier encodes SubjectKeyIdentifier (RFC 5280 §4.2.1.2). */
export function subjectKeyIdentifier(keyId: Buffer): Asn1Node {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyId));
}

/** authorityKeyIdentifier encodes AuthorityKeyIdentifier with only keyIdentifier [0]. */
export function authorityKeyIdentifier(keyId: Buffer): Asn1Node {
  return extension(OID.authorityKeyIdentifier, false, sequence([contextPrimitive(0, keyId)]));
}

/** extensionsField wraps Extensions in the TBSCertificate's `[3] EXPLICIT`. */
export function extensionsField(extensions: Asn1Node[]): Asn1Node {
  return contextConstructed(3, [sequence(extensions)]);
}

const ASCII_PRINTABLE = /^[\x21-\x7e]*$/;

/**
 * decodeGeneralNames reads a GeneralNames SEQUENCE, keeping URIs, DNS names and IP addresses. Other name forms are
 * skipped. Throws (DerError or TypeError) on malformed names or non-printable ASCII.
 */
export function decodeGeneralNames(generalNames: DerElement): SubjectAltNames {
  const uris: string[] = [];
  const dns: string[] = [];
  const ips: string[] = [];
  for (const name of children(generalNames)) {
    const bytes = content(name);
    if (name.tag === contextTag(6, false) || name.tag === contextTag(2, false)) {
      const text = bytes.toString('latin1');
      if (!ASCII_PRINTABLE.test(text)) throw new TypeError('GeneralName is not printable ASCII');
      (name.tag === contextTag(6, false) ? uris : dns).push(text);
    } else if (name.tag === contextTag(7, false)) {
      ips.push(bytesToIp(bytes));
    }
  }
  return { uris, dns, ips };
}
