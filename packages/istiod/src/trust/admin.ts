import path from 'node:path';
import { certificateFingerprint, splitPemBundle } from '@fedmesh/pki';
import type { Logger } from 'pino';
import type { DiscoveryServer } from '../discovery.js';
import { workloadStatus, type WorkloadTrustStatus } from './rotation.js';
import { readCaMaterialDir, TrustError, type TrustManager, type TrustRoot } from './trust-manager.js';
import type { WorkloadCertificates } from './workload-certs.js';

/** CaStatus is the answer of `GET /v1/ca/status`, what `fedmesh ca status` prints. */
export interface CaStatus {
  trustDomain: string;
  /** roots is the trust bundle, primary first. */
  roots: TrustRoot[];
  /** bundlePem is the same bundle as PEM text (what SDS `ROOTCA` carries). */
  bundlePem: string;
  signingRoot: string;
  stagedRoot: string | undefined;
  /**
   * servedRoots are the fingerprints of the bundle in istiod's current push, in the order proxies get it (SDS
   * `ROOTCA`): the bundle a workload's `bundleSynced` refers to. On a federated istiod it is {@link CaStatus.roots}
   * followed by the mesh trust bundle's other roots; otherwise the same roots as {@link CaStatus.roots}.
   */
  servedRoots: string[];
  /** servedBundlePem is that bundle as PEM text (what a restarted proxy needs to trust istiod). */
  servedBundlePem: string;
  /** mesh is set on a federated istiod: the mesh name and the fingerprints of its trust bundle in etcd. */
  mesh?: { name: string; roots: string[] };
  workloads: WorkloadTrustStatus[];
}

/** TrustAdminReply is a status code and a JSON body. */
export interface TrustAdminReply {
  status: number;
  body: unknown;
}

/** TrustAdminDeps: the trust state, the per-workload records and the connected proxies. */
export interface TrustAdminDeps {
  trust: TrustManager;
  records: WorkloadCertificates;
  discovery: DiscoveryServer;
  /**
   * meshTrust is set on a federated istiod: the mesh name and its trust bundle in etcd (PEM roots). A CA may then be
   * added or activated only while its root is in that bundle, since every other cluster's proxies trust exactly that
   * bundle (plus their own roots): a root only this istiod trusted would break cross-cluster mTLS.
   */
  meshTrust?: { mesh: string; roots: () => readonly string[] };
  log: Logger;
}

/** TrustAdmin answers the admin API's CA routes; see {@link createTrustAdmin}. */
export interface TrustAdmin {
  /** handle answers `route` (`METHOD /path`) or resolves undefined when it is not a CA route. */
  handle(route: string, readBody: () => Promise<string>): Promise<TrustAdminReply | undefined>;
}

function parseJson(text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new TrustError(400, 'body is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TrustError(400, 'body must be a JSON object');
  return v as Record<string, unknown>;
}

function str(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new TrustError(400, `${key}: must be a string`);
  return v;
}

/**
 * createTrustAdmin serves the root-rotation endpoints of istiod's admin API (bearer token checked by the caller):
 * - `GET /v1/ca/status` → {@link CaStatus}: the bundle's roots with their roles and, per connected workload, its
 *   SPIFFE ID, serial, notAfter, the root its certificate chains to and whether it ACKed the current bundle;
 * - `POST /v1/ca/roots` `{caDir}` (a plug-in directory istiod reads) or `{caCertPem, caKeyPem, certChainPem,
 *   rootCertPem}` → adds the CA's root to the bundle and stages the CA (`{fingerprint}`);
 * - `POST /v1/ca/activate` → the staged CA signs from now on and its root becomes primary (`{fingerprint}`);
 * - `POST /v1/ca/retire` `{fingerprint, force?}` → removes a root; refused (409) while a connected workload's
 *   certificate chains to it or is not known to istiod, unless `force`.
 * On a federated istiod (`meshTrust`), adding or activating a CA whose root is not in the mesh trust bundle is
 * refused (409): publish the root to etcd first (`fedmesh ca rotate-root --federation` does, then waits until every
 * cluster's proxies hold it). Refusals answer `{error}` with 400 (bad input), 404 (unknown root) or 409 (conflicting
 * state); nothing changes.
 */
export function createTrustAdmin(deps: TrustAdminDeps): TrustAdmin {
  const status = (): CaStatus => {
    const roots = deps.trust.describe();
    // The push context's bundle, not the TrustManager's: `bundleSynced` compares each proxy's ACK with that push.
    const servedBundlePem = deps.discovery.pushContext().trustBundlePem;
    const meshTrust = deps.meshTrust;
    return {
      trustDomain: deps.trust.signer().trustDomain,
      roots,
      bundlePem: deps.trust.bundlePem(),
      signingRoot: roots.find((r) => r.signing)?.fingerprint ?? '',
      stagedRoot: roots.find((r) => r.staged)?.fingerprint,
      servedRoots: splitPemBundle(servedBundlePem).map(certificateFingerprint),
      servedBundlePem,
      ...(meshTrust ? { mesh: { name: meshTrust.mesh, roots: meshTrust.roots().map(certificateFingerprint) } } : {}),
      workloads: workloadStatus(deps.discovery, deps.records),
    };
  };

  /** requireInMesh refuses (409) a root that a federated mesh's other clusters do not trust. */
  const requireInMesh = (fingerprint: string, what: string): void => {
    const meshTrust = deps.meshTrust;
    if (!meshTrust) return;
    if (meshTrust.roots().some((pem) => certificateFingerprint(pem) === fingerprint)) return;
    throw new TrustError(
      409,
      `${what} ${fingerprint.slice(0, 11)} is not in mesh ${meshTrust.mesh}'s trust bundle: the other clusters would ` +
        'refuse certificates under it; publish it first (fedmesh ca rotate-root --federation)',
    );
  };

  async function route(route: string, readBody: () => Promise<string>): Promise<TrustAdminReply | undefined> {
    switch (route) {
      case 'GET /v1/ca/status':
        return { status: 200, body: status() };
      case 'POST /v1/ca/roots': {
        const body = parseJson(await readBody());
        const caDir = str(body, 'caDir');
        let material;
        if (caDir !== undefined) {
          if (!path.isAbsolute(caDir)) throw new TrustError(400, 'caDir: must be an absolute path');
          material = readCaMaterialDir(caDir);
        } else {
          const [caCertPem, caKeyPem, certChainPem, rootCertPem] = [
            str(body, 'caCertPem'),
            str(body, 'caKeyPem'),
            str(body, 'certChainPem') ?? '',
            str(body, 'rootCertPem'),
          ];
          if (caCertPem === undefined || caKeyPem === undefined || rootCertPem === undefined)
            throw new TrustError(400, 'give caDir, or caCertPem, caKeyPem and rootCertPem (certChainPem optional)');
          material = { caCertPem, caKeyPem, certChainPem, rootCertPem };
        }
        let root: string | undefined;
        try {
          root = certificateFingerprint(material.rootCertPem);
        } catch {
          root = undefined; // not a certificate: addCa refuses it with the reason (400)
        }
        if (root !== undefined) requireInMesh(root, 'root');
        const fingerprint = await deps.trust.addCa(material);
        return { status: 200, body: { fingerprint, status: status() } };
      }
      case 'POST /v1/ca/activate': {
        const staged = deps.trust.describe().find((r) => r.staged);
        if (staged) requireInMesh(staged.fingerprint, 'the staged root');
        const fingerprint = deps.trust.activate();
        return { status: 200, body: { fingerprint, status: status() } };
      }
      case 'POST /v1/ca/retire': {
        const body = parseJson(await readBody());
        const fingerprint = str(body, 'fingerprint');
        if (fingerprint === undefined) throw new TrustError(400, 'fingerprint: required');
        const force = body.force === true;
        const holding = workloadStatus(deps.discovery, deps.records).filter(
          (w) => w.rootFingerprint === undefined || w.rootFingerprint === fingerprint.toUpperCase(),
        );
        if (holding.length > 0 && !force)
          throw new TrustError(
            409,
            `${holding.length} workload(s) still hold a certificate from this root or one istiod cannot place: ` +
              holding
                .slice(0, 5)
                .map((w) => w.nodeId)
                .join(', '),
          );
        deps.trust.retire(fingerprint);
        return { status: 200, body: { retired: fingerprint.toUpperCase(), status: status() } };
      }
      default:
        return undefined;
    }
  }

  return {
    async handle(r, readBody) {
      try {
        return await route(r, readBody);
      } catch (err) {
        if (!(err instanceof TrustError)) throw err;
        deps.log.warn({ route: r, status: err.status, err: err.message }, 'trust operation refused');
        return { status: err.status, body: { error: err.message } };
      }
    },
  };
}
