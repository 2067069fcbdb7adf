import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import type { EchoResponse } from './echo-app.js';
import { applyText, meshDown, meshUp, type MeshState } from './local-mesh.js';

/** DemoReport is what `fedmesh demo` prints (and `--json` prints as JSON). */
export interface DemoReport {
  requests: number;
  failed: number;
  versions: Record<string, number>;
  split: { expected: string; v1: number; bounds: [number, number]; withinBounds: boolean };
  /** callers counts the caller SPIFFE IDs reviews saw (from `x-forwarded-client-cert`). */
  callers: Record<string, number>;
  mtls: { everyCallHadSpiffeId: boolean; reviewsInboundMutualTls: number };
  headerRouting: {
    jason: Record<string, number>;
    anonymous: Record<string, number>;
    ok: boolean;
    propagationMs: number;
  };
  ok: boolean;
}

/** samplesDir finds the repository's `samples/istio` (unchanged Istio sample files). */
export function samplesDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../samples/istio');
}

/**
 * binomialBounds returns the [low, high] counts for `n` trials with success probability `p` within `z` standard
 * deviations (normal approximation; z = 3.89 is a two-sided 99.99% interval).
 */
export function binomialBounds(n: number, p: number, z = 3.89): [number, number] {
  const sd = Math.sqrt(n * p * (1 - p));
  return [Math.max(0, Math.floor(n * p - z * sd)), Math.min(n, Math.ceil(n * p + z * sd))];
}

async function callReviews(pool: Pool, headers: Record<string, string> = {}): Promise<EchoResponse | undefined> {
  const res = await pool.request({
    path: '/reviews/0',
    method: 'GET',
    headers: { host: 'reviews:9080', ...headers },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  if (res.statusCode !== 200) {
    await res.body.dump();
    return undefined;
  }
  return (await res.body.json()) as EchoResponse;
}

async function sendMany(
  pool: Pool,
  n: number,
  headers: Record<string, string> = {},
  concurrency = 8,
): Promise<(EchoResponse | undefined)[]> {
  const out: (EchoResponse | undefined)[] = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (i < n) {
        i++;
        out.push(await callReviews(pool, headers).catch(() => undefined));
      }
    }),
  );
  return out;
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}

async function mutualTlsRequests(state: MeshState): Promise<number> {
  let total = 0;
  for (const p of state.pods.filter((x) => x.app === 'reviews')) {
    const res = await request(`http://${p.admin}/stats/prometheus`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
    const text = await res.body.text();
    for (const line of text.split('\n'))
      if (
        line.startsWith('istio_requests_total{') &&
        line.includes('reporter="destination"') &&
        line.includes('connection_security_policy="mutual_tls"')
      )
        total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** DemoOptions configure {@link runDemo}. */
export interface DemoOptions {
  requests?: number;
  stateDir?: string;
  log?: (line: string) => void;
}

/**
 * runDemo runs the README's demo: a local mesh of Istio's Bookinfo with `destination-rule-all-mtls.yaml` and
 * `virtual-service-reviews-90-10.yaml` (unchanged), `requests` calls from `sleep` to `reviews` (default 400), then
 * `virtual-service-reviews-test-v2.yaml` applied and `end-user: jason` checked to land on v2, then everything
 * stopped. The mesh is always stopped, even on failure.
 */
export async function runDemo(opts: DemoOptions = {}): Promise<DemoReport> {
  const log = opts.log ?? (() => undefined);
  const n = opts.requests ?? 400;
  const dir = samplesDir();
  const stateDir = opts.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-demo-'));
  const state = await meshUp({
    files: ['bookinfo.yaml', 'destination-rule-all-mtls.yaml', 'virtual-service-reviews-90-10.yaml'].map((f) =>
      path.join(dir, f),
    ),
    stateDir,
    log,
  });
  const pool = new Pool(`http://${state.sleep.outbound}`, { connections: 8, keepAliveTimeout: 10_000 });
  try {
    log(`sending ${n} requests from sleep to reviews (90% v1, 10% v2)`);
    const results = await sendMany(pool, n);
    const ok = results.filter((r): r is EchoResponse => r !== undefined);
    const versions = countBy(ok, (r) => r.version);
    const callers = countBy(ok, (r) => r.callerPrincipal ?? 'none');
    const bounds = binomialBounds(n, 0.9);
    const v1 = versions.v1 ?? 0;

    log('applying virtual-service-reviews-test-v2.yaml');
    const applied = await applyText(
      state,
      fs.readFileSync(path.join(dir, 'virtual-service-reviews-test-v2.yaml'), 'utf8'),
      'virtual-service-reviews-test-v2.yaml',
    );
    if (applied.errors.length > 0) throw new Error(applied.errors.map((e) => e.text).join('; '));
    const t0 = Date.now();
    let propagationMs = -1;
    while (Date.now() - t0 < 15_000) {
      const probe = await sendMany(pool, 10, { 'end-user': 'jason' }, 1);
      const anon = await sendMany(pool, 10, {}, 1);
      if (probe.every((r) => r?.version === 'v2') && anon.every((r) => r?.version === 'v1')) {
        propagationMs = Date.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const jason = countBy(await sendMany(pool, 50, { 'end-user': 'jason' }), (r) => r?.version ?? 'failed');
    const anonymous = countBy(await sendMany(pool, 50), (r) => r?.version ?? 'failed');
    const reviewsInboundMutualTls = await mutualTlsRequests(state);
    const everyCallHadSpiffeId =
      ok.length > 0 && ok.every((r) => r.callerPrincipal === 'spiffe://cluster.local/ns/default/sa/sleep');
    const headerOk = jason.v2 === 50 && anonymous.v1 === 50;
    const report: DemoReport = {
      requests: n,
      failed: n - ok.length,
      versions,
      split: {
        expected: '90:10',
        v1,
        bounds,
        withinBounds: v1 >= bounds[0] && v1 <= bounds[1] && v1 + (versions.v2 ?? 0) === n,
      },
      callers,
      mtls: { everyCallHadSpiffeId, reviewsInboundMutualTls },
      headerRouting: { jason, anonymous, ok: headerOk, propagationMs },
      ok: false,
    };
    report.ok = report.failed === 0 && report.split.withinBounds && everyCallHadSpiffeId && headerOk;
    return report;
  } finally {
    await pool.close();
    await meshDown(stateDir);
    if (!opts.stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

/** formatReport renders a {@link DemoReport} for people. */
export function formatReport(r: DemoReport): string {
  const pct = (x: number): string => `${((100 * x) / r.requests).toFixed(1)}%`;
  const lines = [
    '',
    'fedmesh demo: Istio Bookinfo on a local mesh',
    '',
    `1. ${r.requests} requests sleep -> reviews with virtual-service-reviews-90-10.yaml`,
    ...Object.entries(r.versions)
      .sort()
      .map(([v, c]) => `     reviews ${v}: ${String(c).padStart(4)}  (${pct(c)})`),
    `     failed:     ${String(r.failed).padStart(4)}`,
    `     v1 count ${r.split.v1} is ${r.split.withinBounds ? 'within' : 'OUTSIDE'} the 99.99% binomial bounds [${r.split.bounds[0]}, ${r.split.bounds[1]}] for 90:10`,
    '',
    '2. Caller identities seen by reviews (x-forwarded-client-cert, set by its sidecar from the verified peer certificate)',
    ...Object.entries(r.callers).map(([id, c]) => `     ${id}: ${c}`),
    `     mTLS held: ${r.mtls.everyCallHadSpiffeId ? 'yes' : 'NO'} (every call carried the caller's SPIFFE ID; reviews' sidecars counted ${r.mtls.reviewsInboundMutualTls} inbound requests with connection_security_policy="mutual_tls")`,
    '',
    `3. Applied virtual-service-reviews-test-v2.yaml (in effect after ${r.headerRouting.propagationMs} ms)`,
    `     end-user: jason -> ${Object.entries(r.headerRouting.jason)
      .map(([v, c]) => `${v}: ${c}`)
      .join(', ')}`,
    `     anonymous       -> ${Object.entries(r.headerRouting.anonymous)
      .map(([v, c]) => `${v}: ${c}`)
      .join(', ')}`,
    '',
    r.ok ? 'Result: PASS' : 'Result: FAIL',
    '',
  ];
  return lines.join('\n');
}
