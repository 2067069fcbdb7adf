/**
 * outboundClusterName builds Istio's outbound cluster name `outbound|<port>|<subset>|<host>`
 * (istio/istio pilot/pkg/model `BuildSubsetKey`).
 */
export function outboundClusterName(port: number, subset: string, hostname: string): string {
  return `outbound|${port}|${subset}|${hostname}`;
}

/** inboundClusterName builds Istio's inbound cluster name `inbound|<targetPort>||`. */
export function inboundClusterName(targetPort: number): string {
  return `inbound|${targetPort}||`;
}

/**
 * parseClusterName splits an Istio cluster name into direction, port, subset and host; returns undefined for a
 * name not of that form.
 */
export function parseClusterName(
  name: string,
): { direction: 'inbound' | 'outbound'; port: number; subset: string; host: string } | undefined {
  const parts = name.split('|');
  if (parts.length !== 4) return undefined;
  const [direction, port, subset, host] = parts as [string, string, string, string];
  if (direction !== 'inbound' && direction !== 'outbound') return undefined;
  const n = Number(port);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) return undefined;
  return { direction, port: n, subset, host };
}

/**
 * mtlsSni builds the SNI a proxy sends to a peer for a cluster, Istio's
 * `outbound_.<port>_.<subset>_.<host>` (also what an east-west gateway's AUTO_PASSTHROUGH routes on).
 */
export function mtlsSni(port: number, subset: string, hostname: string): string {
  return `outbound_.${port}_.${subset}_.${hostname}`;
}

/** parseMtlsSni parses an SNI built by {@link mtlsSni}; returns undefined for any other server name. */
export function parseMtlsSni(sni: string): { port: number; subset: string; host: string } | undefined {
  const m = /^outbound_\.(\d{1,5})_\.([^_]*)_\.(.+)$/.exec(sni);
  if (!m) return undefined;
  const port = Number(m[1]);
  if (port <= 0 || port > 65535) return undefined;
  return { port, subset: m[2] ?? '', host: m[3] ?? '' };
}
