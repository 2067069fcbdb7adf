import { parseProtocol, type Server } from '@fedmesh/api';
import { namespaceOf, type GatewayObject, type VirtualServiceObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { PushContext } from '../push-context.js';
import { matchesLabels } from './common.js';

/** IngressTls is how an ingress server terminates TLS: Istio's SIMPLE or MUTUAL with a `credentialName`. */
export interface IngressTls {
  mode: 'SIMPLE' | 'MUTUAL';
  /** credentialName names a `kubernetes.io/tls` Secret in the gateway workload's namespace. */
  credentialName: string;
}

/** IngressServer is one Gateway server an ingress gateway proxy serves, with the Gateway it came from. */
export interface IngressServer {
  gateway: GatewayObject;
  /** gatewayKey is `<namespace>/<name>` of the Gateway, as VirtualServices bind it. */
  gatewayKey: string;
  /** index is the server's position in `spec.servers` (for messages). */
  index: number;
  server: Server;
  /** tls is set for an HTTPS server that terminates TLS; plain HTTP servers have none. */
  tls?: IngressTls;
  /** httpsRedirect: a plain HTTP server that answers every request with a 301 to https (`tls.httpsRedirect`). */
  httpsRedirect: boolean;
}

/** IngressPort is one listener port of an ingress gateway: plain HTTP servers, or TLS-terminating ones. */
export interface IngressPort {
  port: number;
  /** kind is `http` (one filter chain, RDS `http.<port>`) or `https` (one filter chain per server, by SNI). */
  kind: 'http' | 'https';
  servers: IngressServer[];
}

/** SDS_PREFIX is how Istio names the SDS resource of a `credentialName`: `kubernetes://<name>`. */
export const SDS_PREFIX = 'kubernetes://';
/** CACERT_SUFFIX is appended to a MUTUAL server's SDS name for its client CA (`kubernetes://<name>-cacert`). */
export const CACERT_SUFFIX = '-cacert';

/** credentialSdsName is the SDS resource name of a server certificate from Secret `name` (Istio's). */
export function credentialSdsName(name: string): string {
  return `${SDS_PREFIX}${name}`;
}

/** httpRouteName is Istio's RDS name of a port's plain HTTP servers: `http.<port>`. */
export function httpRouteName(port: number): string {
  return `http.${port}`;
}

/**
 * httpsRouteName is Istio's RDS name of one TLS-terminating server: `https.<port>.<portName>.<gateway>.<ns>`
 * (the port name defaults to `https.<port>` when unset, so names stay unique per server).
 */
export function httpsRouteName(s: IngressServer): string {
  const portName = s.server.port.name ?? `https-${s.index}`;
  return `https.${s.server.port.number}.${portName}.${s.gateway.metadata.name}.${namespaceOf(s.gateway)}`;
}

/**
 * splitServerHost splits a Gateway server host into its namespace part and host (`ns/host`; no slash means
 * namespace `*`), with `.` standing for the Gateway's own namespace `gatewayNs`.
 */
export function splitServerHost(serverHost: string, gatewayNs: string): { ns: string; host: string } {
  const slash = serverHost.indexOf('/');
  if (slash < 0) return { ns: '*', host: serverHost };
  const ns = serverHost.slice(0, slash);
  return { ns: ns === '.' ? gatewayNs : ns, host: serverHost.slice(slash + 1) };
}

/** hostCovers reports whether host pattern `pattern` (`*`, `*.suffix` or exact) matches every name `name` does. */
function hostCovers(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1);
    return name.startsWith('*.')
      ? name.slice(1).endsWith(suffix)
      : name.endsWith(suffix) && name.length > suffix.length;
  }
  return !name.startsWith('*') && name === pattern;
}

/**
 * intersectHosts is the host a VirtualService host `vsHost` and a Gateway server host `serverHost` have in common
 * (Istio's gateway host matching): the narrower of the two when one covers the other (`*` and `a.com` give
 * `a.com`; `*.example.com` and `api.example.com` give `api.example.com`), else undefined. Case-insensitive.
 */
export function intersectHosts(vsHost: string, serverHost: string): string | undefined {
  const a = vsHost.toLowerCase();
  const b = serverHost.toLowerCase();
  if (hostCovers(b, a)) return a;
  if (hostCovers(a, b)) return b;
  return undefined;
}

/**
 * boundHosts returns the virtual host names a VirtualService `vs` gets on a Gateway server: every VS host
 * intersected with every server host whose namespace part admits the VS's namespace (`*`, the Gateway's own for
 * `.`, or that name; `~` admits none), deduplicated in order. An empty list means the VS does not apply there.
 */
export function boundHosts(vs: VirtualServiceObject, serverHosts: readonly string[], gatewayNs: string): string[] {
  const vsNs = namespaceOf(vs);
  const out: string[] = [];
  for (const sh of serverHosts) {
    const { ns, host } = splitServerHost(sh, gatewayNs);
    if (ns === '~' || (ns !== '*' && ns !== vsNs)) continue;
    for (const vh of vs.spec.hosts ?? []) {
      const h = intersectHosts(vh, host);
      if (h !== undefined && !out.includes(h)) out.push(h);
    }
  }
  return out;
}

function classify(
  gwKey: string,
  idx: number,
  server: Server,
  warnings: string[],
): Omit<IngressServer, 'gateway' | 'gatewayKey' | 'index' | 'server'> | undefined {
  const where = `Gateway ${gwKey} servers[${idx}]`;
  const protocol = parseProtocol(server.port.protocol);
  const mode = server.tls?.mode;
  if (mode === 'AUTO_PASSTHROUGH') return undefined; // east-west (gateway-passthrough.ts)
  if (protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC') {
    if (server.tls && !server.tls.httpsRedirect)
      warnings.push(`${where}: tls settings on a ${protocol} server are ignored (only httpsRedirect applies)`);
    return { httpsRedirect: server.tls?.httpsRedirect === true };
  }
  if (protocol === 'HTTPS' && (mode === 'SIMPLE' || mode === 'MUTUAL')) {
    const credentialName = server.tls?.credentialName;
    if (credentialName === undefined) {
      warnings.push(
        `${where}: tls mode ${mode} needs credentialName (certificate files on the gateway are not read); server left out`,
      );
      return undefined;
    }
    return { tls: { mode, credentialName }, httpsRedirect: false };
  }
  warnings.push(
    `${where}: port protocol ${protocol}${mode ? ` with tls mode ${mode}` : ''} is not served by ingress gateways (HTTP, and HTTPS with SIMPLE or MUTUAL, are); server left out`,
  );
  return undefined;
}

/**
 * ingressPorts finds what an ingress gateway proxy serves (Istio's gateway listener building): every Gateway, in
 * any namespace, whose `selector` matches the proxy's labels (Istio's default: a Gateway selects gateway
 * workloads by label only, PILOT_SCOPE_GATEWAY_TO_NAMESPACE off); each of its servers that is plain HTTP
 * (HTTP, HTTP2, GRPC; optionally `httpsRedirect`) or HTTPS terminating TLS (SIMPLE or MUTUAL with a
 * `credentialName`), grouped by port. A port holds either plain or TLS servers: the first Gateway (oldest) decides
 * and conflicting servers are left out. AUTO_PASSTHROUGH servers belong to east-west gateways; other servers
 * are reported in `warnings` and left out.
 */
export function ingressPorts(push: PushContext, proxy: ProxyModel, warnings: string[]): IngressPort[] {
  const byPort = new Map<number, IngressPort>();
  for (const gw of push.gateways) {
    if (!matchesLabels(gw.spec.selector ?? {}, proxy.labels)) continue;
    const key = `${namespaceOf(gw)}/${gw.metadata.name}`;
    gw.spec.servers.forEach((server, index) => {
      const c = classify(key, index, server, warnings);
      if (!c) return;
      const kind = c.tls ? 'https' : 'http';
      const port = byPort.get(server.port.number) ?? { port: server.port.number, kind, servers: [] };
      if (port.kind !== kind) {
        warnings.push(
          `Gateway ${key} servers[${index}]: port ${port.port} already serves ${port.kind} servers; server left out`,
        );
        return;
      }
      byPort.set(port.port, port);
      port.servers.push({ gateway: gw, gatewayKey: key, index, server, ...c });
    });
  }
  return [...byPort.values()].sort((a, b) => a.port - b.port);
}
