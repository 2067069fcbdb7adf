// A minimal, strict DER (X.690) reader: enough to walk certificates and CSRs and to slice out the exact bytes a
// signature covers. Definite lengths in minimal form, low tag numbers only, no trailing bytes.

/** A DER element: its tag byte and where its header and content lie in the source buffer. */
export interface DerElement {
  /** tag is the identifier octet (class, constructed bit and tag number < 31). */
  readonly tag: number;
  /** start is the offset of the identifier octet. */
  readonly start: number;
  /** contentStart is the offset of the first content octet. */
  readonly contentStart: number;
  /** end is the offset just past the content. */
  readonly end: number;
  readonly source: Buffer;
}

/** DerError reports input that is not strict DER or not the expected structure. */
export class DerError extends Error {
  override readonly name = 'DerError';
}

/** Universal tags used by X.509 and PKCS#10. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  SEQUENCE: 0x30,
  SET: 0x31,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
} as const;

/** contextTag returns the tag octet of `[n]`, constructed or primitive. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/** readElement reads one element at `offset` of `source`, ending at or before `limit`. */
export function readElement(source: Buffer, offset: number, limit = source.length): DerElement {
  if (offset + 2 > limit) throw new DerError('truncated element header');
  const tag = source[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not supported');
  let lengthByte = source[offset + 1] ?? 0;
  let contentStart = offset + 2;
  let length: number;
  if (lengthByte < 0x80) {
    length = lengthByte;
  } else {
    const count = lengthByte & 0x7f;
    if (count === 0) throw new DerError('indefinite length is not DER');
    if (count > 4) throw new DerError('length too large');
    if (contentStart + count > limit) throw new DerError('truncated length');
    length = 0;
    for (let i = 0; i < count; i++) {
      lengthByte = source[contentStart + i] ?? 0;
      if (i === 0 && lengthByte === 0) throw new DerError('non-minimal length');
      length = length * 256 + lengthByte;
    }
    if (length < 0x80) throw new DerError('non-minimal length');
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError('truncated content');
  return { tag, start: offset, contentStart, end, source };
}

/** parseDer reads the single element that must make up all of `der`. */
export function parseDer(der: Buffer): DerElement {
  const element = readElement(der, 0);
  if (element.end !== der.length) throw new DerError('trailing bytes after element');
  return element;
}

/** children returns the elements inside a constructed element. */
export function children(element: DerElement): DerElement[] {
  if ((element.tag & 0x20) === 0) throw new DerError('element is not constructed');
  const out: DerElement[] = [];
  let offset = element.contentStart;
  while (offset < element.end) {
    const child = readElement(element.source, offset, element.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

/** expect returns `element` when its tag is `tag`, and throws otherwise. */
export function expect(element: DerElement | undefined, tag: number, what: string): DerElement {
  if (element === undefined) throw new DerError(`missing ${what}`);
  if (element.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${element.tag.toString(16)}`);
  return element;
}

/** raw returns the whole encoding (header and content) of `element`. */
export function raw(element: DerElement): Buffer {
  return element.source.subarray(element.start, element.end);
}

/** content returns the content octets of `element`. */
export function content(element: DerElement): Buffer {
  return element.source.subarray(element.contentStart, element.end);
}

/** decodeOid decodes an OBJECT IDENTIFIER element into dotted form. */
export function decodeOid(element: DerElement): string {
  const bytes = content(expect(element, Tag.OID, 'object identifier'));
  if (bytes.length === 0 || (bytes[bytes.length - 1] ?? 0) & 0x80) throw new DerError('bad object identifier');
  const arcs: number[] = [];
  let value = 0;
  let first = true;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] ?? 0;
    if (value === 0 && byte === 0x80) throw new DerError('non-minimal object identifier arc');
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('object identifier arc too large');
    if ((byte & 0x80) === 0) {
      if (first) {
        const top = value < 40 ? 0 : value < 80 ? 1 : 2;
        arcs.push(top, value - top * 40);
        first = false;
      } else {
        arcs.push(value);
      }
      value = 0;
    }
  }
  return arcs.join('.');
}

/** decodeInteger decodes a small non-negative INTEGER element (up to 2^48). */
export function decodeSmallInteger(element: DerElement): number {
  const bytes = content(expect(element, Tag.INTEGER, 'integer'));
  if (bytes.length === 0 || bytes.length > 6 || (bytes[0] ?? 0) & 0x80) throw new DerError('bad small integer');
  return bytes.readUIntBE(0, bytes.length);
}

/** decodeBoolean decodes a DER BOOLEAN (0x00 or 0xff). */
export function decodeBoolean(element: DerElement): boolean {
  const bytes = content(expect(element, Tag.BOOLEAN, 'boolean'));
  if (bytes.length !== 1 || (bytes[0] !== 0 && bytes[0] !== 0xff)) throw new DerError('bad boolean');
  return bytes[0] === 0xff;
}

/** bitStringBytes returns the octets of a BIT STRING that has no unused bits (keys and signatures). */
export function bitStringBytes(element: DerElement): Buffer {
  const bytes = content(expect(element, Tag.BIT_STRING, 'bit string'));
  if (bytes.length === 0 || bytes[0] !== 0) throw new DerError('bit string with unused bits');
  return bytes.subarray(1);
}
