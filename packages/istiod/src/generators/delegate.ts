/**
 * VirtualService delegation (Istio's `mergeVirtualServicesIfNeeded`, istio/istio pilot/pkg/model/virtualservice.go):
 * a root VirtualService's `http[i]` with `delegate: {name, namespace}` is replaced by the delegate's own `http`
 * routes, each merged under the root route's matches. Only one level exists: a delegate has no `hosts` and may
 * not delegate again (the API schema refuses that).
 */
import type { HTTPMatchRequest, HTTPRoute, HeaderMatch } from '@fedmesh/api';
import { namespaceOf, type VirtualServiceObject } from '../model/config.js';
import { gatewayKey, type PushContext } from '../push-context.js';

/** EffectiveRoute is one `http` route as it is routed, with the index that names it (`3`, or `3.1` for a delegate's). */
export interface EffectiveRoute {
  route: HTTPRoute;
  index: string;
}

type Match = HeaderMatch;

/**
 * stringMatchConflict is Istio's rule for a delegate's string match `leaf` under the root's `root`: none when
 * either is unset; a regex on either side conflicts with anything on the other; under an exact root only the
 * same exact value fits; under a prefix root only an exact value or prefix that starts with it fits; anything
 * else (a presence-only root header) conflicts.
 */
function stringMatchConflict(root: Match | undefined, leaf: Match | undefined): boolean {
  if (root === undefined || leaf === undefined) return false;
  const set = (m: Match): boolean => m.exact !== undefined || m.prefix !== undefined || m.regex !== undefined;
  if (root.regex !== undefined && set(leaf)) return true;
  if (leaf.regex !== undefined && set(root)) return true;
  if (root.exact !== undefined) return leaf.prefix !== undefined || leaf.exact !== root.exact;
  if (root.prefix !== undefined) {
    if (leaf.prefix !== undefined) return !leaf.prefix.startsWith(root.prefix);
    if (leaf.exact !== undefined) return !leaf.exact.startsWith(root.prefix);
  }
  return true;
}

function mapConflict(
  root: Readonly<Record<string, HeaderMatch>> | undefined,
  leaf: Readonly<Record<string, HeaderMatch>> | undefined,
): boolean {
  return Object.entries(leaf ?? {}).some(([k, v]) => stringMatchConflict(root?.[k], v));
}

/**
 * hasConflict is Istio's test of whether a delegate match `leaf` can live under the root match `root`: their
 * uri, scheme, method and authority, headers, withoutHeaders and queryParams must nest ({@link stringMatchConflict}),
 * `ignoreUriCase` must agree, ports and `sourceNamespace` must not differ, `sourceLabels` must not disagree on a
 * key, and the leaf's `gateways` must be among the root's.
 */
function hasConflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest): boolean {
  for (const k of ['uri', 'scheme', 'method', 'authority'] as const)
    if (stringMatchConflict(root[k], leaf[k])) return true;
  if (mapConflict(root.headers, leaf.headers)) return true;
  if (mapConflict(root.withoutHeaders, leaf.withoutHeaders)) return true;
  if (mapConflict(root.queryParams, leaf.queryParams)) return true;
  if ((root.ignoreUriCase === true) !== (leaf.ignoreUriCase === true)) return true;
  if (root.port !== undefined && leaf.port !== undefined && root.port !== leaf.port) return true;
  if (root.sourceNamespace !== undefined && leaf.sourceNamespace !== root.sourceNamespace) return true;
  for (const [k, v] of Object.entries(leaf.sourceLabels ?? {})) {
    const r = root.sourceLabels?.[k];
    if (r !== undefined && r !== v) return true;
  }
  if (root.gateways && root.gateways.length > 0 && leaf.gateways && leaf.gateways.length > 0)
    if (leaf.gateways.some((g) => !root.gateways?.includes(g))) return true;
  return false;
}

function joinNames(root: string | undefined, leaf: string | undefined): string | undefined {
  if (leaf === undefined) return root;
  return root === undefined ? leaf : `${root}-${leaf}`;
}

function mergeMaps<V>(
  root: Readonly<Record<string, V>> | undefined,
  leaf: Readonly<Record<string, V>> | undefined,
): Record<string, V> | undefined {
  if (root === undefined && leaf === undefined) return undefined;
  return { ...root, ...leaf };
}

/**
 * mergeMatch is Istio's `mergeHTTPMatchRequest`: the delegate's match with what it leaves unset taken from the
 * root's (uri, scheme, method, authority, port, sourceNamespace, gateways), header, withoutHeaders, queryParams
 * and sourceLabels maps united (the delegate's entry wins a key), and the names joined `root-leaf`.
 */
function mergeMatch(root: HTTPMatchRequest, leaf: HTTPMatchRequest): HTTPMatchRequest {
  const out: HTTPMatchRequest = { ...leaf };
  const name = joinNames(root.name, leaf.name);
  if (name !== undefined) out.name = name;
  for (const k of ['uri', 'scheme', 'method', 'authority'] as const) if (out[k] === undefined) out[k] = root[k];
  const headers = mergeMaps(root.headers, leaf.headers);
  if (headers) out.headers = headers;
  const without = mergeMaps(root.withoutHeaders, leaf.withoutHeaders);
  if (without) out.withoutHeaders = without;
  const query = mergeMaps(root.queryParams, leaf.queryParams);
  if (query) out.queryParams = query;
  if (out.port === undefined && root.port !== undefined) out.port = root.port;
  const labels = mergeMaps(root.sourceLabels, leaf.sourceLabels);
  if (labels) out.sourceLabels = labels;
  if (out.sourceNamespace === undefined && root.sourceNamespace !== undefined)
    out.sourceNamespace = root.sourceNamespace;
  if ((out.gateways ?? []).length === 0 && root.gateways !== undefined) out.gateways = root.gateways;
  return stripUndefined(out);
}

function stripUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * mergeMatches is Istio's `mergeHTTPMatchRequests`: with no root matches the delegate's stand, with no delegate
 * matches the root's do; otherwise every delegate match is merged (ANDed) with each root match it does not
 * conflict with, and a delegate match that fits under none makes the whole route conflict (undefined).
 */
function mergeMatches(
  root: readonly HTTPMatchRequest[] | undefined,
  leaf: readonly HTTPMatchRequest[] | undefined,
): HTTPMatchRequest[] | undefined {
  if (!root || root.length === 0) return leaf ? [...leaf] : [];
  if (!leaf || leaf.length === 0) return [...root];
  const out: HTTPMatchRequest[] = [];
  for (const l of leaf) {
    const fits = root.filter((r) => !hasConflict(r, l));
    if (fits.length === 0) return undefined;
    for (const r of fits) out.push(mergeMatch(r, l));
  }
  return out;
}

/**
 * mergeRoute is Istio's `mergeHTTPRoute`: the delegate route under the root route's matches (undefined on a
 * conflict), named `root-leaf`, taking from the root what it does not set itself: rewrite, timeout, retries,
 * fault, mirror, mirrorPercent, mirrorPercentage, corsPolicy and headers.
 */
function mergeRoute(root: HTTPRoute, leaf: HTTPRoute): HTTPRoute | undefined {
  const match = mergeMatches(root.match, leaf.match);
  if (match === undefined) return undefined;
  const out: HTTPRoute = { ...leaf };
  if (match.length > 0) out.match = match;
  else delete out.match;
  const name = joinNames(root.name, leaf.name);
  if (name !== undefined) out.name = name;
  const inherited = [
    'rewrite',
    'timeout',
    'retries',
    'fault',
    'mirror',
    'mirrorPercent',
    'mirrorPercentage',
    'corsPolicy',
    'headers',
  ] as const;
  const from = root as Record<(typeof inherited)[number], unknown>;
  const to = out as Record<(typeof inherited)[number], unknown>;
  for (const k of inherited) if (to[k] === undefined && from[k] !== undefined) to[k] = from[k];
  return out;
}

/**
 * inNamespace makes a delegate route's references independent of the VirtualService it is merged into: short
 * destination and mirror hosts become FQDNs in the delegate's namespace `ns`, and match `gateways` become
 * `<namespace>/<name>`, as Istio resolves every VirtualService in its own namespace before merging.
 */
function inNamespace(push: PushContext, r: HTTPRoute, ns: string): HTTPRoute {
  const out: HTTPRoute = { ...r };
  const host = <D extends { host: string }>(d: D): D => ({ ...d, host: push.resolveHost(d.host, ns) });
  if (r.route) out.route = r.route.map((d) => ({ ...d, destination: host(d.destination) }));
  if (r.mirror) out.mirror = host(r.mirror);
  if (r.mirrors) out.mirrors = r.mirrors.map((m) => ({ ...m, destination: host(m.destination) }));
  if (r.match)
    out.match = r.match.map((m) => (m.gateways ? { ...m, gateways: m.gateways.map((g) => gatewayKey(g, ns)) } : m));
  return out;
}

/**
 * effectiveHttpRoutes lists a VirtualService's `http` routes as they are routed: its own, and in place of each
 * `delegate` route the delegate's routes merged under it ({@link mergeRoute}), in order. A delegate that does not
 * exist, has `hosts`, or is not exported to the root's namespace leaves its route out, as does a delegate route
 * whose matches conflict with the root's; each is reported in `warnings`. Delegates are looked up through
 * `push.delegateVirtualService`, so incremental generation re-runs a root's readers when its delegate changes.
 */
export function effectiveHttpRoutes(push: PushContext, vs: VirtualServiceObject, warnings: string[]): EffectiveRoute[] {
  const ns = namespaceOf(vs);
  const out: EffectiveRoute[] = [];
  (vs.spec.http ?? []).forEach((r, i) => {
    if (!r.delegate) {
      out.push({ route: r, index: String(i) });
      return;
    }
    const where = `${vs.metadata.name}.${ns} http[${i}]`;
    const dns = r.delegate.namespace ?? ns;
    const found = push.delegateVirtualService(r.delegate.name, dns, ns);
    if ('problem' in found) {
      warnings.push(`${where}: delegate VirtualService ${dns}/${r.delegate.name} ${found.problem}; route left out`);
      return;
    }
    (found.vs.spec.http ?? []).forEach((leaf, k) => {
      if (leaf.delegate) {
        warnings.push(`${where}: delegate ${dns}/${r.delegate?.name} http[${k}] delegates again; route left out`);
        return;
      }
      const merged = mergeRoute(r, inNamespace(push, leaf, dns));
      if (merged) out.push({ route: merged, index: `${i}.${k}` });
      else
        warnings.push(
          `${where}: delegate ${dns}/${r.delegate?.name} http[${k}] matches conflict with the root's; route left out`,
        );
    });
  });
  return out;
}
