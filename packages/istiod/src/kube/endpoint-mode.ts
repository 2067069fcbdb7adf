import type { KubeConfig } from '@kubernetes/client-node';
import { ENDPOINT_SLICE_VERSIONS, type EndpointSliceVersion } from './endpoint-kinds.js';
import { kubeRequestJson, statusMessage } from './http.js';

/**
 * EndpointMode selects istiod's endpoint source, after Istio's `PILOT_USE_ENDPOINT_SLICE`: `EndpointSlice` (set
 * true) and `Endpoints` (set false) force one; `auto` (unset) uses EndpointSlices when the API server serves
 * `discovery.k8s.io` v1 or v1beta1, else Endpoints (Istio's own auto-detection wants Kubernetes ≥ 1.21, i.e. v1; we
 * also take 1.17–1.20's v1beta1, whose slices the 1.18+ controller writes by default); `none` mirrors neither
 * (endpoints then come from the pods each Service selects, as without a controller).
 */
export type EndpointMode = 'auto' | 'EndpointSlice' | 'Endpoints' | 'none';

/** EndpointSource is the decided source: EndpointSlices at one `discovery.k8s.io` version, or core v1 Endpoints. */
export type EndpointSource = { kind: 'EndpointSlice'; version: EndpointSliceVersion } | { kind: 'Endpoints' };

/**
 * parseEndpointMode reads `PILOT_USE_ENDPOINT_SLICE`: unset or empty → `auto`, `true`/`1` → `EndpointSlice`,
 * `false`/`0` → `Endpoints` (Go's strconv.ParseBool spellings). Throws an Error naming the variable otherwise.
 */
export function parseEndpointMode(value: string | undefined): EndpointMode {
  if (value === undefined || value === '') return 'auto';
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return 'EndpointSlice';
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return 'Endpoints';
  throw new Error(`PILOT_USE_ENDPOINT_SLICE: must be true or false, got ${JSON.stringify(value)}`);
}

/** DiscoveryOptions bound {@link discoverEndpointSource}'s requests (ms) and report each failed attempt. */
export interface DiscoveryOptions {
  timeoutMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  signal: AbortSignal;
  onError(message: string): void;
}

/**
 * servedSliceVersion asks the API server which `discovery.k8s.io` versions it serves (`GET /apis/discovery.k8s.io`,
 * an `APIGroup`) and returns the first of {@link ENDPOINT_SLICE_VERSIONS} among them, or undefined when the group is
 * not served (404) or serves neither. Throws on any other answer or a network error.
 */
export async function servedSliceVersion(
  kc: KubeConfig,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<EndpointSliceVersion | undefined> {
  const res = await kubeRequestJson(kc, {
    method: 'GET',
    path: '/apis/discovery.k8s.io',
    timeoutMs,
    maxBytes: 1024 * 1024,
    ...(signal ? { signal } : {}),
  });
  if (res.status === 404) return undefined;
  if (res.status !== 200)
    throw new Error(`GET /apis/discovery.k8s.io: HTTP ${res.status}: ${statusMessage(res.body) ?? ''}`);
  const versions = (res.body as { versions?: { version?: unknown }[] } | undefined)?.versions;
  if (!Array.isArray(versions)) throw new Error('GET /apis/discovery.k8s.io: answer has no versions');
  const served = new Set(versions.map((v) => v.version));
  return ENDPOINT_SLICE_VERSIONS.find((v) => served.has(v));
}

/**
 * discoverEndpointSource decides the {@link EndpointSource} for `mode` (not `none`): `Endpoints` at once; otherwise
 * asks {@link servedSliceVersion}, retrying with backoff (doubling from `backoffInitialMs` to `backoffMaxMs`) until
 * it answers or `signal` aborts (then undefined). `auto` falls back to Endpoints when no slice version is served;
 * a forced `EndpointSlice` then still watches v1 (reported as not served, and retried, by its informer).
 */
export async function discoverEndpointSource(
  kc: KubeConfig,
  mode: Exclude<EndpointMode, 'none'>,
  opts: DiscoveryOptions,
): Promise<EndpointSource | undefined> {
  if (mode === 'Endpoints') return { kind: 'Endpoints' };
  for (let attempt = 0; !opts.signal.aborted; attempt++) {
    try {
      const version = await servedSliceVersion(kc, opts.timeoutMs, opts.signal);
      if (version) return { kind: 'EndpointSlice', version };
      return mode === 'auto' ? { kind: 'Endpoints' } : { kind: 'EndpointSlice', version: 'v1' };
    } catch (err) {
      if (opts.signal.aborted) return undefined;
      opts.onError((err as Error).message);
      const base = Math.min(opts.backoffMaxMs, opts.backoffInitialMs * 2 ** attempt);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, base / 2 + (Math.random() * base) / 2);
        opts.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
    }
  }
  return undefined;
}
