/**
 * murmur3 is MurmurHash3 (x86, 32-bit) of a string's UTF-8 bytes with a seed: the hash the proxy's consistent
 * hashing uses for ring points, Maglev permutations and request keys (Envoy uses xxHash64; any well-mixed hash
 * gives the same guarantees, and nothing outside one proxy compares hash values). Returns an unsigned 32-bit
 * integer.
 */
export function murmur3(key: string, seed = 0): number {
  const data = Buffer.from(key, 'utf8');
  const len = data.length;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = len & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = (data[i] ?? 0) | ((data[i + 1] ?? 0) << 8) | ((data[i + 2] ?? 0) << 16) | ((data[i + 3] ?? 0) << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = len & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= (data[blocks + 2] ?? 0) << 16;
    if (tail >= 2) k ^= (data[blocks + 1] ?? 0) << 8;
    k ^= data[blocks] ?? 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
