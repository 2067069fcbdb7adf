import { createHash } from 'node:crypto';

/** Ipv4Cidr is a parsed IPv4 prefix: the network address as a 32-bit number and the prefix length. */
export interface Ipv4Cidr {
  base: number;
  bits: number;
}

function ipToNumber(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * parseIpv4Cidr parses `a.b.c.d/n` with 8 ≤ n ≤ 30 (the host bits are cleared). Throws an Error naming the
 * problem otherwise.
 */
export function parseIpv4Cidr(cidr: string): Ipv4Cidr {
  const [ip, len] = cidr.split('/');
  const n = ip === undefined ? undefined : ipToNumber(ip);
  const bits = Number(len);
  if (n === undefined || !/^\d+$/.test(len ?? '') || bits < 8 || bits > 30)
    throw new Error(`service CIDR ${JSON.stringify(cidr)}: want an IPv4 prefix a.b.c.d/8..30`);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (n & mask) >>> 0, bits };
}

/** cidrContains reports whether `ip` (dotted IPv4) lies in `cidr`. */
export function cidrContains(cidr: Ipv4Cidr, ip: string): boolean {
  const n = ipToNumber(ip);
  if (n === undefined) return false;
  const size = 2 ** (32 - cidr.bits);
  return n >= cidr.base && n < cidr.base + size;
}

/**
 * allocateVips gives each hostname without a virtual IP one from `cidr`, the way Istio auto-allocates
 * ServiceEntry addresses: a hash of the hostname picks the first candidate and collisions probe forward, so a
 * service keeps its address when others come and go (unless they collide with it), and the same set of hostnames
 * always gets the same addresses. The network and broadcast addresses and everything in `taken` are skipped.
 * Hostnames are processed in sorted order; when the range is full, the rest get none.
 */
export function allocateVips(
  hostnames: readonly string[],
  cidr: Ipv4Cidr,
  taken: ReadonlySet<string>,
): Map<string, string> {
  const size = 2 ** (32 - cidr.bits);
  const usable = size - 2;
  const used = new Set<number>();
  for (const ip of taken) {
    const n = ipToNumber(ip);
    if (n !== undefined && n > cidr.base && n < cidr.base + size - 1) used.add(n - cidr.base);
  }
  const out = new Map<string, string>();
  for (const host of [...new Set(hostnames)].sort()) {
    if (used.size >= usable) break;
    let slot = (createHash('sha256').update(host).digest().readUInt32BE(0) % usable) + 1;
    while (used.has(slot)) slot = (slot % usable) + 1;
    used.add(slot);
    out.set(host, numberToIp(cidr.base + slot));
  }
  return out;
}
