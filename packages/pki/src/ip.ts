import { isIPv4, isIPv6 } from 'node:net';

/** ipToBytes encodes an IPv4 (4 octets) or IPv6 (16 octets) address as used by an iPAddress GeneralName. */
export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip)) throw new TypeError(`not an IP address: ${ip}`);
  let text = ip.replace(/%.*$/, '');
  let tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1] !== undefined) {
    const [a = 0, b = 0, c = 0, d = 0] = v4[1].split('.').map(Number);
    tail = [(a << 8) | b, (c << 8) | d];
    text = text.slice(0, -v4[1].length);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head = '', rest] = text.split('::');
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const missing = 8 - tail.length - left.length - right.length;
  const groups = [...left, ...new Array<number>(Math.max(0, missing)).fill(0), ...right, ...tail];
  const out = Buffer.alloc(16);
  groups.slice(0, 8).forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** bytesToIp renders a 4- or 16-octet iPAddress GeneralName: dotted IPv4, or eight uncompressed hex groups. */
export function bytesToIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  throw new TypeError(`iPAddress must have 4 or 16 octets, got ${bytes.length}`);
}
