// ASN.1 building blocks on top of forge.asn1. forge builds the structures; Node signs them (see x509.ts).
import forge from 'node-forge';
import type { SignatureAlgorithm } from './keys.js';

const { asn1 } = forge;
const { Class, Type } = asn1;

/** Asn1Node is a forge ASN.1 node. */
export type Asn1Node = forge.asn1.Asn1;

const bin = (bytes: Uint8Array): string => Buffer.from(bytes).toString('binary');

/** sequence builds a SEQUENCE of `nodes`. */
export function sequence(nodes: Asn1Node[]): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, nodes);
}

/** set builds a SET of `nodes` (callers keep DER order; fedmesh writes single-element SETs). */
export function set(nodes: Asn1Node[]): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.SET, true, nodes);
}

/** oid builds an OBJECT IDENTIFIER from dotted form. */
export function oid(dotted: string): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer(dotted).getBytes());
}

/** smallInteger builds an INTEGER from a small non-negative number. */
export function smallInteger(value: number): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.INTEGER, false, asn1.integerToDer(value).getBytes());
}

/** unsignedInteger encodes big-endian magnitude bytes as a minimal, positive DER INTEGER. */
export function unsignedInteger(magnitude: Uint8Array): Asn1Node {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let bytes = Buffer.from(magnitude.subarray(start));
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.of(0), bytes]);
  return asn1.create(Class.UNIVERSAL, Type.INTEGER, false, bin(bytes));
}

/** boolean builds a DER BOOLEAN (0xff for true). */
export function boolean(value: boolean): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.BOOLEAN, false, value ? '\xff' : '\x00');
}

/** octetString builds an OCTET STRING holding raw bytes or the DER of a node. */
export function octetString(value: Uint8Array | Asn1Node): Asn1Node {
  const bytes = value instanceof Uint8Array ? bin(value) : asn1.toDer(value).getBytes();
  return asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, bytes);
}

/** bitString encodes octets with `unusedBits` trailing unused bits in the last octet. */
export function bitString(value: Uint8Array, unusedBits = 0): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, String.fromCharCode(unusedBits) + bin(value));
}

/** utf8String builds a UTF8String. */
export function utf8String(value: string): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.UTF8, false, forge.util.encodeUtf8(value));
}

/** nullNode builds NULL. */
export function nullNode(): Asn1Node {
  return asn1.create(Class.UNIVERSAL, Type.NULL, false, '');
}

/** contextPrimitive is `[n] IMPLICIT` over a primitive type, with raw content octets. */
export function contextPrimitive(n: number, contentOctets: Uint8Array): Asn1Node {
  return asn1.create(Class.CONTEXT_SPECIFIC, n, false, bin(contentOctets));
}

/** contextConstructed is `[n]` around `nodes` (EXPLICIT tagging, or IMPLICIT over a SET/SEQUENCE). */
export function contextConstructed(n: number, nodes: Asn1Node[]): Asn1Node {
  return asn1.create(Class.CONTEXT_SPECIFIC, n, true, nodes);
}

/** fromDer parses a canonical DER element into a forge node so it can be spliced into a structure unchanged. */
export function fromDer(der: Uint8Array): Asn1Node {
  const options = { strict: true, parseAllBytes: true, decodeBitStrings: false };
  return (asn1.fromDer as unknown as (bytes: string, options: object) => Asn1Node)(bin(der), options);
}

/** toDer serializes a node to DER bytes. */
export function toDer(node: Asn1Node): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary');
}

/** time encodes a certificate time per RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
export function time(date: Date): Asn1Node {
  return date.getUTCFullYear() < 2050
    ? asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

/** algorithmIdentifier encodes a signature AlgorithmIdentifier (NULL params for RSA, absent for ECDSA). */
export function algorithmIdentifier(algorithm: SignatureAlgorithm): Asn1Node {
  return sequence(algorithm.nullParams ? [oid(algorithm.oid), nullNode()] : [oid(algorithm.oid)]);
}

/** NameAttributes are the distinguished-name attributes fedmesh writes (as UTF8String, RFC 5280 §4.1.2.4). */
export interface NameAttributes {
  readonly organization?: string;
  readonly commonName?: string;
  /** locality is `L=`; Istio's intermediate CAs carry the cluster name there. */
  readonly locality?: string;
}

/**
 * name encodes a Name (RDNSequence) with O, then CN, then L (the order of Istio's `tools/certs` configs); an empty
 * object gives the empty sequence.
 */
export function name(attributes: NameAttributes): Asn1Node {
  const rdns: Asn1Node[] = [];
  const add = (type: string, value: string | undefined): void => {
    if (value !== undefined) rdns.push(set([sequence([oid(type), utf8String(value)])]));
  };
  add('2.5.4.10', attributes.organization);
  add('2.5.4.3', attributes.commonName);
  add('2.5.4.7', attributes.locality);
  return sequence(rdns);
}
