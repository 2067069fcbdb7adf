import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { CertificateAuthority, certificateFingerprint, splitPemBundle, type CaMaterialPem } from '@fedmesh/pki';
import type { Logger } from 'pino';

/** TrustRoot describes one root of the trust bundle. */
export interface TrustRoot {
  /** fingerprint is the SHA-256 fingerprint as Node prints it (`AB:CD:…`). */
  fingerprint: string;
  subject: string;
  notAfter: string;
  /** primary is true for the first root of the bundle: the one istiod signs under (proxies re-issue towards it). */
  primary: boolean;
  /** signing is true for the root the current signing CA chains to. */
  signing: boolean;
  /** staged is true for the root of a CA that was added and not yet made the signer. */
  staged: boolean;
}

/**
 * TrustChange is what a {@link TrustManager} `'changed'` event carries: the step taken and the bundle after it.
 * `added`: a root and its CA were added (bundle grows, signer unchanged); `activated`: the staged CA now signs and
 * its root is first; `retired`: a root left the bundle.
 */
export interface TrustChange {
  step: 'added' | 'activated' | 'retired';
  fingerprint: string;
  bundle: readonly string[];
}

/** TrustError is a refused trust operation: `status` is the HTTP status the admin API answers with. */
export class TrustError extends Error {
  override readonly name = 'TrustError';
  /** constructor keeps the HTTP status (400 bad input, 404 unknown root, 409 conflicting state). */
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** TrustManagerOptions: the CA istiod started with, where rotation state is kept, and a logger. */
export interface TrustManagerOptions {
  /** initial is the CA loaded at start (plug-in directory or self-signed root). */
  initial: CertificateAuthority;
  /** stateDir keeps `trust/state.json` and added CAs (`trust/ca-<n>/`, key 0600), so a restart resumes rotation. */
  stateDir: string;
  log: Logger;
}

interface PersistedState {
  version: 1;
  /** bundle is the trust bundle, primary first. */
  bundle: string[];
  /** signer and staged name a CA directory under `trust/` (`ca-<n>`), or `initial` for the CA istiod started with. */
  signer: string;
  staged?: string;
  /** retiredCas are CA directories whose root was retired (kept so old certificates stay attributable). */
  history: string[];
}

const PLUGGED = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'] as const;

function normalize(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/**
 * TrustManager owns istiod's signing CA and the trust bundle (SDS `ROOTCA`: a list of roots, primary first) and
 * runs root rotation as add → distribute → re-issue → retire (docs/adr/0004):
 * - {@link TrustManager.addCa} appends a new CA's root to the bundle and stages the CA; the signer is unchanged;
 * - {@link TrustManager.activate} makes the staged CA the signer and moves its root first; proxies whose chain does
 *   not end at the first root re-issue;
 * - {@link TrustManager.retire} removes a root that no longer signs.
 * Each step emits `'changed'` with a {@link TrustChange} (istiod pushes the bundle to every proxy) and is written to
 * `<stateDir>/trust/state.json` before it takes effect in memory. Refusals throw {@link TrustError}.
 */
export class TrustManager extends EventEmitter {
  private signerCa: CertificateAuthority;
  private stagedCa: CertificateAuthority | undefined;
  private roots: string[];
  private readonly cas = new Map<string, CertificateAuthority>();
  private state: PersistedState;

  private constructor(
    private readonly opts: TrustManagerOptions,
    state: PersistedState,
    cas: Map<string, CertificateAuthority>,
  ) {
    super();
    this.state = state;
    for (const [k, v] of cas) this.cas.set(k, v);
    const signer = cas.get(state.signer);
    if (!signer) throw new Error(`trust state names an unknown signer ${state.signer}`);
    this.signerCa = signer;
    this.stagedCa = state.staged === undefined ? undefined : cas.get(state.staged);
    this.roots = state.bundle.map(normalize);
  }

  /**
   * load builds a TrustManager: fresh from `initial` (bundle = its roots), or resumed from
   * `<stateDir>/trust/state.json` when a rotation was started before a restart (the CAs it names are loaded from
   * `trust/ca-<n>/`). Throws when the state file is unreadable or names CA material that no longer loads.
   */
  static async load(opts: TrustManagerOptions): Promise<TrustManager> {
    const dir = path.join(opts.stateDir, 'trust');
    const file = path.join(dir, 'state.json');
    const cas = new Map<string, CertificateAuthority>([['initial', opts.initial]]);
    if (!fs.existsSync(file)) {
      const state: PersistedState = {
        version: 1,
        bundle: opts.initial.rootCertsPem.map(normalize),
        signer: 'initial',
        history: [],
      };
      return new TrustManager(opts, state, cas);
    }
    const state = JSON.parse(fs.readFileSync(file, 'utf8')) as PersistedState;
    for (const name of new Set([state.signer, state.staged, ...state.history])) {
      if (name === undefined || name === 'initial') continue;
      cas.set(
        name,
        await CertificateAuthority.loadPluggedCa(path.join(dir, name), { trustDomain: opts.initial.trustDomain }),
      );
    }
    opts.log.info({ signer: state.signer, staged: state.staged, roots: state.bundle.length }, 'resumed trust state');
    return new TrustManager(opts, state, cas);
  }

  /** signer returns the CA that signs workload and serving certificates now. */
  signer(): CertificateAuthority {
    return this.signerCa;
  }

  /** bundle returns the trust bundle, one PEM per root, primary first. */
  bundle(): readonly string[] {
    return this.roots;
  }

  /** bundlePem returns the trust bundle as one PEM text, primary first (what SDS `ROOTCA` carries). */
  bundlePem(): string {
    return this.roots.join('');
  }

  /** describe lists the bundle's roots with their roles. */
  describe(): TrustRoot[] {
    const signing = certificateFingerprint(this.signerCa.rootCertPem);
    const staged = this.stagedCa ? certificateFingerprint(this.stagedCa.rootCertPem) : undefined;
    return this.roots.map((pem, i) => {
      const x = new X509Certificate(pem);
      return {
        fingerprint: x.fingerprint256,
        subject: x.subject.split('\n').join(', '),
        notAfter: new Date(x.validTo).toISOString(),
        primary: i === 0,
        signing: x.fingerprint256 === signing,
        staged: x.fingerprint256 === staged,
      };
    });
  }

  /**
   * rootOf returns the fingerprint of the root a leaf certificate chains to, as far as istiod can tell: the leaf was
   * issued by a CA istiod has held (its root), or directly by a root of the bundle. Undefined when neither.
   */
  rootOf(leaf: X509Certificate): string | undefined {
    for (const ca of this.cas.values()) {
      const issuer = new X509Certificate(ca.caCertPem);
      if (leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey)) return certificateFingerprint(ca.rootCertPem);
    }
    for (const pem of this.roots) {
      const root = new X509Certificate(pem);
      if (leaf.checkIssued(root) && leaf.verify(root.publicKey)) return root.fingerprint256;
    }
    return undefined;
  }

  /**
   * addCa adds a new signing CA (Istio plug-in material) and appends its root to the bundle without changing the
   * signer. Throws TrustError 400 for material that fails pki's checks or names another trust domain, 409 when a
   * different CA is already staged or the CA's root is already in the bundle. Resolves to the new root's fingerprint.
   */
  async addCa(material: CaMaterialPem): Promise<string> {
    let ca: CertificateAuthority;
    try {
      ca = CertificateAuthority.fromPem(material, this.signerCa.trustDomain);
    } catch (err) {
      throw new TrustError(400, `CA material refused: ${(err as Error).message}`, { cause: err });
    }
    const fingerprint = certificateFingerprint(ca.rootCertPem);
    if (this.stagedCa) throw new TrustError(409, 'another CA is already staged; activate it or restart the rotation');
    if (this.roots.some((r) => certificateFingerprint(r) === fingerprint))
      throw new TrustError(409, `root ${fingerprint} is already in the trust bundle`);
    const name = this.saveCa(material);
    this.cas.set(name, ca);
    this.persist({ ...this.state, bundle: [...this.roots, normalize(ca.rootCertPem)], staged: name });
    this.stagedCa = ca;
    this.roots = this.state.bundle;
    this.opts.log.info({ fingerprint, roots: this.roots.length }, 'trust bundle: root added; CA staged');
    this.emit('changed', { step: 'added', fingerprint, bundle: this.roots } satisfies TrustChange);
    return fingerprint;
  }

  /**
   * activate makes the staged CA the signer and puts its root first in the bundle (the old roots stay, trusted).
   * Throws TrustError 409 when no CA is staged. Resolves to the new signing root's fingerprint.
   */
  activate(): string {
    const staged = this.stagedCa;
    const name = this.state.staged;
    if (!staged || name === undefined) throw new TrustError(409, 'no CA is staged; add one first');
    const fingerprint = certificateFingerprint(staged.rootCertPem);
    const primary = this.roots.filter((r) => certificateFingerprint(r) === fingerprint);
    const rest = this.roots.filter((r) => certificateFingerprint(r) !== fingerprint);
    const { staged: _dropped, ...kept } = this.state;
    this.persist({
      ...kept,
      signer: name,
      bundle: [...primary, ...rest],
      history: [...kept.history, this.state.signer],
    });
    this.signerCa = staged;
    this.stagedCa = undefined;
    this.roots = this.state.bundle;
    this.opts.log.info({ fingerprint }, 'trust bundle: staged CA now signs; its root is primary');
    this.emit('changed', { step: 'activated', fingerprint, bundle: this.roots } satisfies TrustChange);
    return fingerprint;
  }

  /**
   * retire removes the root with `fingerprint` from the bundle. Throws TrustError 404 when it is not in the bundle,
   * 409 when it is the signing root, the staged CA's root, or the last root.
   */
  retire(fingerprint: string): void {
    const norm = fingerprint.toUpperCase();
    const rest = this.roots.filter((r) => certificateFingerprint(r) !== norm);
    if (rest.length === this.roots.length) throw new TrustError(404, `root ${fingerprint} is not in the trust bundle`);
    if (rest.length === 0) throw new TrustError(409, 'refusing to retire the last root');
    if (certificateFingerprint(this.signerCa.rootCertPem) === norm)
      throw new TrustError(409, 'refusing to retire the root the signing CA chains to');
    if (this.stagedCa && certificateFingerprint(this.stagedCa.rootCertPem) === norm)
      throw new TrustError(409, 'refusing to retire the staged CA root');
    this.persist({ ...this.state, bundle: rest });
    this.roots = this.state.bundle;
    this.opts.log.info({ fingerprint: norm, roots: this.roots.length }, 'trust bundle: root retired');
    this.emit('changed', { step: 'retired', fingerprint: norm, bundle: this.roots } satisfies TrustChange);
  }

  private saveCa(material: CaMaterialPem): string {
    const dir = path.join(this.opts.stateDir, 'trust');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    let n = 1;
    while (fs.existsSync(path.join(dir, `ca-${n}`))) n++;
    const caDir = path.join(dir, `ca-${n}`);
    fs.mkdirSync(caDir, { mode: 0o700 });
    const text: Record<(typeof PLUGGED)[number], string> = {
      'ca-cert.pem': material.caCertPem,
      'ca-key.pem': material.caKeyPem,
      'root-cert.pem': material.rootCertPem,
      'cert-chain.pem': material.certChainPem,
    };
    for (const f of PLUGGED)
      fs.writeFileSync(path.join(caDir, f), text[f], { mode: f === 'ca-key.pem' ? 0o600 : 0o644, flag: 'wx' });
    return `ca-${n}`;
  }

  private persist(next: PersistedState): void {
    const dir = path.join(this.opts.stateDir, 'trust');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(dir, 'state.json.tmp');
    fs.writeFileSync(tmp, JSON.stringify(next, null, 2), { mode: 0o600 });
    fs.renameSync(tmp, path.join(dir, 'state.json'));
    this.state = next;
  }
}

/** readCaMaterialDir reads Istio's plug-in files from `dir` as PEM text. Throws TrustError 400 when one is missing. */
export function readCaMaterialDir(dir: string): CaMaterialPem {
  const read = (f: string): string => {
    try {
      return fs.readFileSync(path.join(dir, f), 'utf8');
    } catch (err) {
      throw new TrustError(400, `cannot read ${f} in ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
        cause: err,
      });
    }
  };
  return {
    caCertPem: read('ca-cert.pem'),
    caKeyPem: read('ca-key.pem'),
    rootCertPem: read('root-cert.pem'),
    certChainPem: read('cert-chain.pem'),
  };
}

/** bundleFingerprints lists the SHA-256 fingerprints of the roots in a PEM bundle, in order. */
export function bundleFingerprints(bundlePem: string): string[] {
  return splitPemBundle(bundlePem).map(certificateFingerprint);
}
