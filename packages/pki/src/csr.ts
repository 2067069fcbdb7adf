// PKCS#10 certificate requests (RFC 2986). forge.asn1 builds; Node signs and verifies (forge has no EC support).
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import {
  algorithmIdentifier,
  bitString,
  contextConstructed,
  fromDer,
  name,
  oid,
  sequence,
  set,
  smallInteger,
  toDer,
  type Asn1Node,
  type NameAttributes,
} from './asn1.js';
import {
  bitStringBytes,
  children,
  content,
  contextTag,
  decodeOid,
  decodeSmallInteger,
  DerError,
  expect,
  parseDer,
  raw,
  Tag,
  type DerElement,
} from './der.js';
import { PkiError } from './errors.js';
import { decodeGeneralNames, OID, subjectAltName, type SubjectAltNames } from './extensions.js';
import {
  describePublicKey,
  publicKeyFromSpki,
  SIGNATURE_ALGORITHMS,
  signatureAlgorithmFor,
  spkiDer,
  type PublicKeyInfo,
  type SignatureAlgorithm,
} from './keys.js';
import { decodePemBlocks, derToPem } from './pem.js';

/** CreateCsrOptions: the key to certify and optional subject and SANs (SANs go in an extensionRequest). */
export interface CreateCsrOptions {
  /** privateKey signs the request: a KeyObject or PEM (PKCS#8, PKCS#1 or SEC1). RSA ≥ 2048 or EC P-256/P-384. */
  readonly privateKey: KeyObject | string;
  readonly subject?: NameAttributes;
  readonly subjectAltNames?: Partial<SubjectAltNames>;
}

/**
 * createCsr builds a PKCS#10 CertificationRequest (RFC 2986) for `privateKey` and returns it as PEM
 * (`CERTIFICATE REQUEST`). The structure is assembled with forge.asn1 around the SubjectPublicKeyInfo Node exports,
 * and signed with Node's crypto (ecdsa-with-SHA256/384 or sha256WithRSAEncryption). Throws PkiError
 * `KEY_UNSUPPORTED` for other keys. A CA ignores the SANs here: identity comes from authentication.
 */
export function createCsr(options: CreateCsrOptions): string {
  const sans = options.subjectAltNames;
  const hasSans = sans !== undefined && [sans.uris, sans.dns, sans.ips].some((list) => (list?.length ?? 0) > 0);
  return buildCsr(options.privateKey, options.subject ?? {}, hasSans ? [subjectAltName(sans, false)] : []);
}

/**
 * buildCsr assembles and signs a PKCS#10 request whose extensionRequest attribute (RFC 2985 §5.4.2) holds
 * `extensions` (none: no attribute). Throws PkiError `KEY_UNSUPPORTED` for keys fedmesh does not sign with.
 */
export function buildCsr(key: KeyObject | string, subject: NameAttributes, extensions: Asn1Node[]): string {
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key;
  const algorithm = signatureAlgorithmFor(describePublicKey(privateKey, 'KEY_UNSUPPORTED'));
  const attributes = extensions.length > 0 ? [sequence([oid(OID.extensionRequest), set([sequence(extensions)])])] : [];
  const info = toDer(
    sequence([
      smallInteger(0),
      name(subject),
      fromDer(spkiDer(createPublicKey(privateKey))),
      contextConstructed(0, attributes),
    ]),
  );
  const signature = sign(algorithm.hash, info, privateKey);
  const der = toDer(sequence([fromDer(info), algorithmIdentifier(algorithm), bitString(signature)]));
  return derToPem(der, 'CERTIFICATE REQUEST');
}

/** ParsedCsr is a verified certificate request: its public key, the key's kind and what it asked for. */
export type ParsedCsr = PublicKeyInfo & {
  readonly publicKey: KeyObject;
  /** subjectName is the DER of the requested subject Name, byte for byte (an empty SEQUENCE when none). */
  readonly subjectName: Buffer;
  /** subjectAltNames the requester asked for. Informational only: never use them as the identity. */
  readonly subjectAltNames: SubjectAltNames;
  /** extensionsRequested lists the OIDs of every extension in the extensionRequest attribute. */
  readonly extensionsRequested: readonly string[];
};

/** ParseCsrOptions bounds the input. */
export interface ParseCsrOptions {
  /** maxBytes is the largest PEM accepted, in bytes (UTF-8). Default 16 KiB. */
  readonly maxBytes?: number;
}

const DEFAULT_MAX_CSR_BYTES = 16 * 1024;
const CSR_LABELS = new Set(['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);

/**
 * parseCsr decodes one PEM PKCS#10 request (RFC 2986), checks its key and verifies its self-signature with Node's
 * `crypto.verify`. Throws PkiError: `CSR_TOO_LARGE` (PEM over `maxBytes`, checked before parsing), `CSR_MALFORMED`
 * (not exactly one request block, not strict DER, version ≠ 0, unreadable key or attributes), `CSR_WEAK_KEY` (RSA
 * below 2048 or above 8192 bits, EC other than P-256/P-384, other algorithms), `CSR_BAD_SIGNATURE` (signature
 * algorithm unknown or not matching the key, or the signature does not verify).
 */
export function parseCsr(pem: string, options: ParseCsrOptions = {}): ParsedCsr {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CSR_BYTES;
  if (Buffer.byteLength(pem) > maxBytes) throw new PkiError('CSR_TOO_LARGE', `CSR exceeds ${maxBytes} bytes`);
  const blocks = decodePemBlocks(pem);
  const block = blocks[0];
  if (blocks.length !== 1 || block === undefined || !CSR_LABELS.has(block.label)) {
    throw new PkiError('CSR_MALFORMED', 'expected exactly one PEM CERTIFICATE REQUEST block');
  }
  let parts: CsrParts;
  try {
    parts = splitCsr(block.der);
  } catch (err) {
    throw new PkiError('CSR_MALFORMED', 'CSR is not a well-formed PKCS#10 request', { cause: err });
  }
  const keyInfo = describePublicKey(parts.publicKey, 'CSR_WEAK_KEY');
  verifyCsrSignature(parts, keyInfo);
  let requested: { names: SubjectAltNames; oids: string[] };
  try {
    requested = readExtensionRequest(parts.attributes);
  } catch (err) {
    throw new PkiError('CSR_MALFORMED', 'CSR attributes are malformed', { cause: err });
  }
  return {
    ...keyInfo,
    publicKey: parts.publicKey,
    subjectName: parts.subjectName,
    subjectAltNames: requested.names,
    extensionsRequested: requested.oids,
  };
}

interface CsrParts {
  readonly info: Buffer;
  readonly subjectName: Buffer;
  readonly publicKey: KeyObject;
  readonly attributes: DerElement;
  readonly algorithmOid: string;
  readonly algorithmParams: DerElement | undefined;
  readonly signature: Buffer;
}

function splitCsr(der: Buffer): CsrParts {
  const [info, algorithm, signature, extra] = children(expect(parseDer(der), Tag.SEQUENCE, 'CertificationRequest'));
  if (extra !== undefined) throw new DerError('unexpected fields after signature');
  const [version, subject, spki, attributes, more] = children(expect(info, Tag.SEQUENCE, 'CertificationRequestInfo'));
  if (more !== undefined) throw new DerError('unexpected fields in CertificationRequestInfo');
  if (decodeSmallInteger(expect(version, Tag.INTEGER, 'version')) !== 0) throw new DerError('version must be 0');
  const spkiDerBytes = raw(expect(spki, Tag.SEQUENCE, 'subjectPKInfo'));
  const [algorithmOid, algorithmParams] = children(expect(algorithm, Tag.SEQUENCE, 'signatureAlgorithm'));
  return {
    info: raw(expect(info, Tag.SEQUENCE, 'CertificationRequestInfo')),
    subjectName: Buffer.from(raw(expect(subject, Tag.SEQUENCE, 'subject'))),
    publicKey: publicKeyFromSpki(spkiDerBytes),
    attributes: expect(attributes, contextTag(0, true), 'attributes'),
    algorithmOid: decodeOid(expect(algorithmOid, Tag.OID, 'algorithm')),
    algorithmParams,
    signature: bitStringBytes(expect(signature, Tag.BIT_STRING, 'signature')),
  };
}

function verifyCsrSignature(parts: CsrParts, keyInfo: PublicKeyInfo): void {
  const algorithm = (SIGNATURE_ALGORITHMS as Record<string, SignatureAlgorithm | undefined>)[parts.algorithmOid];
  const isRsaAlgorithm = algorithm?.nullParams === true;
  const paramsOk = isRsaAlgorithm
    ? parts.algorithmParams === undefined || parts.algorithmParams.tag === Tag.NULL
    : parts.algorithmParams === undefined;
  if (algorithm === undefined || isRsaAlgorithm !== (keyInfo.keyType === 'rsa') || !paramsOk) {
    throw new PkiError('CSR_BAD_SIGNATURE', 'CSR signature algorithm is not supported for its key');
  }
  let valid = false;
  try {
    valid = verify(algorithm.hash, parts.info, parts.publicKey, parts.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new PkiError('CSR_BAD_SIGNATURE', 'CSR signature does not verify');
}

function readExtensionRequest(attributes: DerElement): { names: SubjectAltNames; oids: string[] } {
  let names: SubjectAltNames = { uris: [], dns: [], ips: [] };
  const oids: string[] = [];
  for (const attribute of children(attributes)) {
    const [type, values] = children(expect(attribute, Tag.SEQUENCE, 'attribute'));
    if (decodeOid(expect(type, Tag.OID, 'attribute type')) !== OID.extensionRequest) continue;
    for (const extensions of children(expect(values, Tag.SET, 'attribute values'))) {
      for (const ext of children(expect(extensions, Tag.SEQUENCE, 'extensions'))) {
        const fields = children(expect(ext, Tag.SEQUENCE, 'extension'));
        const extnId = decodeOid(expect(fields[0], Tag.OID, 'extnID'));
        oids.push(extnId);
        if (extnId === OID.subjectAltName) {
          const value = expect(fields[fields.length - 1], Tag.OCTET_STRING, 'extnValue');
          names = decodeGeneralNames(expect(parseDer(content(value)), Tag.SEQUENCE, 'GeneralNames'));
        }
      }
    }
  }
  return { names, oids };
}
