import type { ClusterManager } from './cluster-manager.js';
import type { MirrorPolicy } from './route-table.js';
import { sendAttempt, type UpstreamRequestSpec } from './upstream.js';

/** MIRROR_DEFAULT_TIMEOUT_MS bounds a mirrored request when its route has no timeout (Istio's default routes). */
export const MIRROR_DEFAULT_TIMEOUT_MS = 15_000;

/**
 * shadowAuthority is Envoy's shadow host: `-shadow` appended to the host part of the authority, before any port
 * (`reviews:9080` → `reviews-shadow:9080`).
 */
export function shadowAuthority(authority: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(authority);
  if (!m) return `${authority}-shadow`;
  return `${m[1] ?? ''}-shadow${m[2] ?? ''}`;
}

/** MirrorDeps are what mirroring needs from the proxy. */
export interface MirrorDeps {
  clusters: ClusterManager;
  random: () => number;
  onError?: (cluster: string, reason: string) => void;
}

/**
 * sendMirrors fires Envoy's `request_mirror_policies` for one request: each policy is drawn independently with
 * its `runtime_fraction`; a drawn one sends a copy of the request (same method, path, headers and buffered body)
 * to a host of the mirror cluster, through its circuit breaker, with the authority's host suffixed `-shadow`
 * (unless disabled). Fire and forget: nothing is awaited, the response is drained and ignored, and failures
 * (unknown cluster, no host, overflow, errors, the timeout) only reach `onError`. Returns the clusters mirrored to.
 */
export function sendMirrors(
  deps: MirrorDeps,
  policies: readonly MirrorPolicy[],
  spec: Omit<UpstreamRequestSpec, 'body'> & { body: Buffer | undefined },
  timeoutMs: number,
  hash: number | undefined,
): string[] {
  const sent: string[] = [];
  for (const p of policies) {
    if (deps.random() >= p.fraction) continue;
    sent.push(p.cluster);
    const timeout = timeoutMs > 0 ? timeoutMs : MIRROR_DEFAULT_TIMEOUT_MS;
    void mirrorOne(deps, p, spec, timeout, hash).catch((err: unknown) =>
      deps.onError?.(p.cluster, err instanceof Error ? err.message : String(err)),
    );
  }
  return sent;
}

async function mirrorOne(
  deps: MirrorDeps,
  p: MirrorPolicy,
  spec: Omit<UpstreamRequestSpec, 'body'> & { body: Buffer | undefined },
  timeoutMs: number,
  hash: number | undefined,
): Promise<void> {
  const cluster = deps.clusters.get(p.cluster);
  if (!cluster) return deps.onError?.(p.cluster, 'unknown cluster');
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const admission = await cluster.breaker.acquire(ac.signal);
    if (!admission.ok) return deps.onError?.(p.cluster, admission.reason);
    const ep = deps.clusters.pickEndpoint(cluster, { hash });
    if (!ep) {
      admission.release();
      return deps.onError?.(p.cluster, 'no healthy upstream');
    }
    const remaining = Math.max(1, timeoutMs);
    const r = await sendAttempt(
      deps.clusters,
      cluster,
      ep,
      {
        ...spec,
        authority: p.appendShadowSuffix ? shadowAuthority(spec.authority) : spec.authority,
      },
      remaining,
      'timeout',
      admission.release,
    );
    if (r.res) {
      const res = r.res;
      const bodyTimer = setTimeout(() => res.destroy(), remaining);
      res.on('close', () => clearTimeout(bodyTimer));
      res.resume();
    } else deps.onError?.(p.cluster, r.failureReason ?? 'failed');
  } finally {
    clearTimeout(timer);
  }
}
