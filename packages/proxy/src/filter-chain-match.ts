/**
 * Filter chain selection as Envoy does it (config.listener.v3.FilterChainMatch): the criteria are applied one
 * level at a time, in Envoy's order, and at each level the most specific value that matches the connection wins:
 * 1. `destination_port`: the chains naming the connection's (original) destination port, else those naming none;
 * 2. `prefix_ranges` (destination IP): the chains whose longest range containing the address is the longest of
 *    all, else those with no ranges;
 * 3. `server_names` (SNI): an exact name, else the longest `*.suffix` wildcard, else chains with no names;
 * 4. `transport_protocol`: the connection's (`tls` or `raw_buffer`, Envoy's default), else chains naming none.
 * A level never falls back to a less specific one: when the chains a level kept refuse the connection at a later
 * level, no chain matches (Envoy would use `default_filter_chain`, which the proxy does not implement, so the
 * connection is closed). The other criteria (application_protocols, source_*) are refused by the Listener schema.
 */
import net from 'node:net';
import { plainIp } from './filters/rbac.js';
import type { EnvoyCidrRange, EnvoyFilterChain } from './xds/envoy-schemas.js';

/** FilterChainFacts are what is known of a connection when its filter chain is chosen. */
export interface FilterChainFacts {
  /** destinationPort is the restored original destination's port in capture mode, else the listener's own port. */
  destinationPort?: number | undefined;
  /** destinationIp is the restored original destination's address, else the listener's local address. */
  destinationIp?: string | undefined;
  /** serverName is the TLS SNI, when the connection is TLS and sent one. */
  serverName?: string | undefined;
  /** transportProtocol is `tls` (a ClientHello was seen, or the listener terminates TLS) or `raw_buffer`. */
  transportProtocol: 'tls' | 'raw_buffer';
}

const compiled = new WeakMap<EnvoyCidrRange, { list: net.BlockList; len: number; family: 4 | 6 }>();

function compileRange(r: EnvoyCidrRange): { list: net.BlockList; len: number; family: 4 | 6 } | undefined {
  let c = compiled.get(r);
  if (c) return c;
  const family = net.isIP(r.address_prefix);
  if (family !== 4 && family !== 6) return undefined; // the schema refuses these; never matches
  const len = r.prefix_len?.value ?? 0;
  const list = new net.BlockList();
  list.addSubnet(r.address_prefix, len, family === 4 ? 'ipv4' : 'ipv6');
  compiled.set(r, (c = { list, len, family }));
  return c;
}

/**
 * prefixMatchLength returns the longest `prefix_len` among a chain's `prefix_ranges` that contains `ip`
 * (IPv4-mapped IPv6 addresses compare as IPv4), -1 when none does, or undefined when the chain has no ranges.
 */
export function prefixMatchLength(chain: EnvoyFilterChain, ip: string | undefined): number | undefined {
  const ranges = chain.filter_chain_match?.prefix_ranges;
  if (!ranges || ranges.length === 0) return undefined;
  const addr = ip === undefined ? '' : plainIp(ip);
  const family = net.isIP(addr);
  let best = -1;
  for (const r of ranges) {
    const c = compileRange(r);
    if (!c || c.family !== family) continue;
    if (c.len > best && c.list.check(addr, family === 4 ? 'ipv4' : 'ipv6')) best = c.len;
  }
  return best;
}

function portOf(chain: EnvoyFilterChain): number | undefined {
  const v = chain.filter_chain_match?.destination_port?.value;
  return v !== undefined && v > 0 ? v : undefined;
}

function byPort<T extends { chain: EnvoyFilterChain }>(chains: readonly T[], port: number | undefined): T[] {
  const exact = port === undefined ? [] : chains.filter((c) => portOf(c.chain) === port);
  return exact.length > 0 ? exact : chains.filter((c) => portOf(c.chain) === undefined);
}

function byPrefix<T extends { chain: EnvoyFilterChain }>(chains: readonly T[], ip: string | undefined): T[] {
  let best = -1;
  const lens = chains.map((c) => prefixMatchLength(c.chain, ip));
  for (const l of lens) if (l !== undefined && l > best) best = l;
  if (best >= 0) return chains.filter((_, i) => lens[i] === best);
  return chains.filter((_, i) => lens[i] === undefined);
}

function names(chain: EnvoyFilterChain): readonly string[] {
  return chain.filter_chain_match?.server_names ?? [];
}

function byServerName<T extends { chain: EnvoyFilterChain }>(chains: readonly T[], sni: string | undefined): T[] {
  const name = sni?.toLowerCase();
  if (name) {
    const exact = chains.filter((c) => names(c.chain).some((n) => n.toLowerCase() === name));
    if (exact.length > 0) return exact;
    let bestLen = 0;
    let best: T[] = [];
    for (const c of chains)
      for (const n of names(c.chain)) {
        const suffix = n.startsWith('*.') ? n.slice(1).toLowerCase() : undefined;
        if (!suffix || !name.endsWith(suffix)) continue;
        if (n.length > bestLen) {
          bestLen = n.length;
          best = [c];
        } else if (n.length === bestLen && !best.includes(c)) best.push(c);
      }
    if (best.length > 0) return best;
  }
  return chains.filter((c) => names(c.chain).length === 0);
}

function byTransport<T extends { chain: EnvoyFilterChain }>(chains: readonly T[], transport: string): T[] {
  const exact = chains.filter((c) => c.chain.filter_chain_match?.transport_protocol === transport);
  return exact.length > 0 ? exact : chains.filter((c) => c.chain.filter_chain_match?.transport_protocol === undefined);
}

/**
 * findFilterChain selects the filter chain of a connection from `facts`, level by level as the module comment
 * describes (Envoy's FilterChainMatch order). Returns undefined when no chain matches. Listeners are checked for
 * ambiguous chains when accepted ({@link duplicateFilterChainMatch}), so at most one chain is left; should two be,
 * the first wins.
 */
export function findFilterChain<T extends { chain: EnvoyFilterChain }>(
  chains: readonly T[],
  facts: FilterChainFacts,
): T | undefined {
  let level: T[] = byPort(chains, facts.destinationPort);
  if (level.length > 0) level = byPrefix(level, facts.destinationIp);
  if (level.length > 0) level = byServerName(level, facts.serverName);
  if (level.length > 0) level = byTransport(level, facts.transportProtocol);
  return level[0];
}

/** ipv4Network renders an IPv4 range as its network (`10.0.0.7/24` is `10.0.0.0/24`); IPv6 is kept as written. */
function ipv4Network(address: string, len: number): string {
  if (net.isIP(address) !== 4) return `${address.toLowerCase()}/${len}`;
  const n = address.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const masked = n - (n % 2 ** (32 - len));
  return `${[24, 16, 8, 0].map((s) => (masked >>> s) & 255).join('.')}/${len}`;
}

/**
 * needsInspection tells whether a connection's filter chain depends on what a `tls_inspector` reads (the SNI, TLS or
 * not): true when a chain left after the destination port and address levels matches on `server_names` or
 * `transport_protocol`, or terminates TLS. When false the chain can be chosen at once, so a server-first protocol
 * (the server speaks before the client: MySQL, SMTP) is not held waiting for a first client byte that never comes;
 * Istio gets the same by disabling its `tls_inspector` for such destination ports (`filter_disabled`).
 */
export function needsInspection<T extends { chain: EnvoyFilterChain }>(
  chains: readonly T[],
  facts: Pick<FilterChainFacts, 'destinationPort' | 'destinationIp'>,
): boolean {
  let level: T[] = byPort(chains, facts.destinationPort);
  if (level.length > 0) level = byPrefix(level, facts.destinationIp);
  return level.some((c) => {
    const m = c.chain.filter_chain_match;
    return (m?.server_names?.length ?? 0) > 0 || m?.transport_protocol !== undefined || c.chain.transport_socket;
  });
}

function matchKeys(chain: EnvoyFilterChain): string[] {
  const m = chain.filter_chain_match;
  const port = String(portOf(chain) ?? '*');
  const prefixes = (m?.prefix_ranges ?? []).map((r) => ipv4Network(r.address_prefix, r.prefix_len?.value ?? 0));
  const sni = (m?.server_names ?? []).map((n) => n.toLowerCase());
  const transport = m?.transport_protocol ?? '*';
  const out: string[] = [];
  for (const p of prefixes.length > 0 ? prefixes : ['*'])
    for (const n of sni.length > 0 ? sni : ['*']) out.push(`${port}|${p}|${n}|${transport}`);
  return out;
}

/**
 * duplicateFilterChainMatch finds two filter chains of a Listener that match the same connections: Envoy refuses
 * such a Listener ("multiple filter chains with the same matching rules are defined"), because the choice between
 * them would be arbitrary. Each chain is expanded into its (port, prefix range, server name, transport protocol)
 * combinations, unset criteria as wildcards; a combination two chains share is a duplicate. Returns the message
 * with the field path of the later chain, or undefined.
 */
export function duplicateFilterChainMatch(chains: readonly EnvoyFilterChain[]): string | undefined {
  const seen = new Map<string, number>();
  for (const [i, c] of chains.entries())
    for (const k of new Set(matchKeys(c))) {
      const prev = seen.get(k);
      if (prev !== undefined)
        return `filter_chains[${i}].filter_chain_match: matches the same connections as filter_chains[${prev}]`;
      seen.set(k, i);
    }
  return undefined;
}
