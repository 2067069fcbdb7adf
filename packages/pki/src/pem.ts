const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A PEM block: its label (`CERTIFICATE`, `CERTIFICATE REQUEST`, …) and decoded DER. */
export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

/**
 * decodePemBlocks returns every well-formed PEM block in `text` (RFC 7468 "strict" base64 body; whitespace between
 * lines tolerated). Text outside blocks is ignored; a block whose body is not base64 is skipped.
 */
export function decodePemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const label = match[1] ?? '';
    const body = (match[2] ?? '').replace(/\s+/g, '');
    if (body.length === 0 || body.length % 4 !== 0 || !BASE64.test(body)) continue;
    blocks.push({ label, der: Buffer.from(body, 'base64') });
  }
  return blocks;
}

/** derToPem encodes DER bytes as a PEM block with `label`, 64-character lines and a trailing newline (RFC 7468). */
export function derToPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * splitPemBundle splits a PEM bundle (for example `cert-chain.pem` or a trust bundle) into one normalized PEM string
 * per `CERTIFICATE` block, in file order. Other blocks (keys, CSRs) and text between blocks are ignored. Returns an
 * empty array when there is no certificate; does not check that the DER is a valid certificate.
 */
export function splitPemBundle(text: string): string[] {
  return decodePemBlocks(text)
    .filter((block) => block.label === 'CERTIFICATE')
    .map((block) => derToPem(block.der));
}
