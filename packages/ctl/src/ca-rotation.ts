import path from 'node:path';
import { request } from 'undici';
import { CertificateAuthority, certificateFingerprint } from '@fedmesh/pki';
import type { CaStatus, WorkloadTrustStatus } from '@fedmesh/istiod';

/** IstiodAdmin is how the CLI reaches istiod's admin API: the monitoring address and the bearer token. */
export interface IstiodAdmin {
  /** monitoring is istiod's `host:port` (15014). */
  monitoring: string;
  token: string;
}

/** CaApiError is a refusal from istiod's CA routes: `status` is the HTTP status, the message istiod's `error`. */
export class CaApiError extends Error {
  override readonly name = 'CaApiError';
  /** constructor keeps the HTTP status istiod answered with. */
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * adminCall calls one route of istiod's admin API (`http://<monitoring><route>`, bearer token, JSON body when
 * `body` is given; 10 s for headers and for the body) and returns the parsed JSON answer. Throws
 * {@link CaApiError} with istiod's `error` for a status other than 200, and for an answer that is not JSON.
 */
export async function adminCall<T>(
  admin: IstiodAdmin,
  method: 'GET' | 'POST',
  route: string,
  body?: unknown,
): Promise<T> {
  const res = await request(`http://${admin.monitoring}${route}`, {
    method,
    headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CaApiError(res.statusCode, `istiod answered ${res.statusCode} with a body that is not JSON`);
  }
  if (res.statusCode !== 200)
    throw new CaApiError(res.statusCode, (parsed as { error?: string }).error ?? `istiod answered ${res.statusCode}`);
  return parsed as T;
}

/** caStatus fetches `GET /v1/ca/status`: the trust bundle's roots and each connected workload's certificate. */
export function caStatus(admin: IstiodAdmin): Promise<CaStatus> {
  return adminCall<CaStatus>(admin, 'GET', '/v1/ca/status');
}

/** RotationStep names the phases of {@link rotateRoot}, in order. */
export type RotationStep = 'add' | 'distribute' | 'activate' | 're-issue' | 'retire' | 'distribute-retired';

/** RotateRootOptions configure {@link rotateRoot}. */
export interface RotateRootOptions {
  admin: IstiodAdmin;
  /** newCaDir is the new CA in Istio's plug-in layout; istiod reads it (the key never crosses the API). */
  newCaDir: string;
  /** phaseTimeoutMs bounds each wait (distribute, re-issue, distribute again). Default 120,000 ms. */
  phaseTimeoutMs?: number;
  /** pollMs is how often progress is polled. Default 250 ms. */
  pollMs?: number;
  /** log receives one progress line per change, for people. */
  log?: (line: string) => void;
  /** onBundle is told the trust bundle PEM after each change (the local mesh keeps `root-cert.pem` current). */
  onBundle?: (bundlePem: string) => void;
}

/** RotationReport is what a finished rotation did and how long each phase took (ms since the start). */
export interface RotationReport {
  newRoot: string;
  retiredRoots: string[];
  workloads: number;
  /** phases gives the elapsed ms at which each step finished. */
  phases: Partial<Record<RotationStep, number>>;
  totalMs: number;
}

/** shortFingerprint keeps the first four bytes of a fingerprint (`AB:CD:EF:01`), enough to tell roots apart. */
export function shortFingerprint(fp: string | undefined): string {
  return fp === undefined ? 'unknown' : fp.slice(0, 11);
}

/** podOf turns Istio's node ID `sidecar~<ip>~<pod>.<ns>~…` into `<pod>.<ns>` (the ID itself otherwise). */
export function podOf(nodeId: string): string {
  return nodeId.split('~')[2] ?? nodeId;
}

async function waitFor(
  opts: RotateRootOptions,
  what: string,
  done: (w: WorkloadTrustStatus) => boolean,
): Promise<CaStatus> {
  const deadline = Date.now() + (opts.phaseTimeoutMs ?? 120_000);
  let last = '';
  for (;;) {
    const status = await caStatus(opts.admin);
    const ready = status.workloads.filter(done).length;
    const line = `${what}: ${ready}/${status.workloads.length} workloads`;
    if (line !== last) opts.log?.(line);
    last = line;
    if (ready === status.workloads.length) return status;
    if (Date.now() > deadline) {
      const behind = status.workloads.filter((w) => !done(w)).map((w) => podOf(w.nodeId));
      throw new Error(
        `${what}: timed out after ${opts.phaseTimeoutMs ?? 120_000} ms; still waiting for ${behind.join(', ')}. ` +
          'Nothing was rolled back; run the command again to resume.',
      );
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 250));
  }
}

/**
 * rotateRoot drives a root rotation through istiod's admin API (docs/adr/0004): add the new CA (its root joins the
 * bundle, not yet signing) → distribute (wait until every connected proxy ACKed the bundle) → activate (the new CA
 * signs; its root is primary, so proxies re-issue) → re-issue (wait until every workload's certificate chains to the
 * new root) → retire every other root → distribute again. Each wait is bounded by `phaseTimeoutMs`; on timeout it
 * throws naming the workloads still behind and leaves istiod where it is, so running it again resumes (an already
 * staged or already signing new CA is not added twice). Throws when the new CA does not load (pki's `CA_*` reasons)
 * or istiod refuses a step ({@link CaApiError}).
 */
export async function rotateRoot(opts: RotateRootOptions): Promise<RotationReport> {
  const started = Date.now();
  const phases: RotationReport['phases'] = {};
  const mark = (s: RotationStep): void => void (phases[s] = Date.now() - started);
  const log = opts.log ?? (() => undefined);
  const caDir = path.resolve(opts.newCaDir);
  let status = await caStatus(opts.admin);
  const ca = await CertificateAuthority.loadPluggedCa(caDir, { trustDomain: status.trustDomain });
  const newRoot = certificateFingerprint(ca.rootCertPem);
  log(`new root ${shortFingerprint(newRoot)} (${caDir}); ${status.workloads.length} workloads connected`);

  if (status.signingRoot !== newRoot && status.stagedRoot !== newRoot) {
    await adminCall(opts.admin, 'POST', '/v1/ca/roots', { caDir });
    status = await caStatus(opts.admin);
    opts.onBundle?.(status.bundlePem);
    log(`add: root ${shortFingerprint(newRoot)} is in the trust bundle (${status.roots.length} roots), not signing`);
  } else log(`add: root ${shortFingerprint(newRoot)} already added`);
  mark('add');
  await waitFor(opts, 'distribute: proxies holding the new bundle', (w) => w.bundleSynced);
  mark('distribute');

  if (status.signingRoot !== newRoot) {
    await adminCall(opts.admin, 'POST', '/v1/ca/activate');
    status = await caStatus(opts.admin);
    opts.onBundle?.(status.bundlePem);
    log(`activate: the new CA signs; root ${shortFingerprint(newRoot)} is primary`);
  }
  mark('activate');
  status = await waitFor(
    opts,
    `re-issue: workloads on root ${shortFingerprint(newRoot)}`,
    (w) => w.rootFingerprint === newRoot && w.bundleSynced,
  );
  mark('re-issue');

  const retired: string[] = [];
  for (const root of status.roots) {
    if (root.fingerprint === newRoot) continue;
    await adminCall(opts.admin, 'POST', '/v1/ca/retire', { fingerprint: root.fingerprint });
    retired.push(root.fingerprint);
    log(`retire: root ${shortFingerprint(root.fingerprint)} left the trust bundle`);
  }
  status = await caStatus(opts.admin);
  opts.onBundle?.(status.bundlePem);
  mark('retire');
  await waitFor(opts, 'distribute: proxies holding the final bundle', (w) => w.bundleSynced);
  mark('distribute-retired');
  const totalMs = Date.now() - started;
  log(`done in ${(totalMs / 1000).toFixed(1)} s: ${status.workloads.length} workloads on ${shortFingerprint(newRoot)}`);
  return { newRoot, retiredRoots: retired, workloads: status.workloads.length, phases, totalMs };
}
