import fs from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ConfigStore, StoredObject } from '../config/store.js';
import { EndpointsKind, endpointSliceKind } from './endpoint-kinds.js';
import { discoverEndpointSource, type EndpointMode, type EndpointSource } from './endpoint-mode.js';
import { KindWatcher, type KindStatus, type KindWatcherLimits } from './kind-watcher.js';
import { MIRRORED_KINDS, type KubeObject, type MirroredKind } from './kinds.js';

/** KUBE_OWNER is the ConfigStore owner of every object mirrored from the Kubernetes API. */
export const KUBE_OWNER = 'kube';

/** KubeConfigSourceOptions configure {@link KubeConfigSource}. Times are in ms unless named otherwise. */
export interface KubeConfigSourceOptions {
  store: ConfigStore<StoredObject>;
  /** kubeConfig is a loaded `KubeConfig` (see {@link loadKubeConfig}); its current context is used. */
  kubeConfig: KubeConfig;
  log: Logger;
  /** kinds to mirror. Default {@link MIRRORED_KINDS}. */
  kinds?: readonly MirroredKind[];
  /**
   * endpointMode picks where endpoints come from (Istio's `PILOT_USE_ENDPOINT_SLICE`, see {@link EndpointMode}):
   * `auto` (default) mirrors EndpointSlices when the API server serves `discovery.k8s.io` v1 or v1beta1 (asked once
   * at start, retried with backoff until it answers), else core v1 Endpoints; `none` mirrors neither.
   */
  endpointMode?: EndpointMode;
  /** requestTimeoutMs bounds each list page and each watch's connect. Default 30 s. */
  requestTimeoutMs?: number;
  /** watchTimeoutSeconds makes the API server end each watch (it is resumed from its resourceVersion). Default 300. */
  watchTimeoutSeconds?: number;
  /** idleTimeoutMs aborts a watch silent for this long. Default `watchTimeoutSeconds` + 60 s. */
  idleTimeoutMs?: number;
  /** pageSize is the `limit` of each list page. Default 500. */
  pageSize?: number;
  /** maxPageBytes bounds one list page's body. Default 64 MiB. */
  maxPageBytes?: number;
  /** backoffInitialMs and backoffMaxMs bound the informer restart delay. Default 500 ms doubling to 30 s. */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

/** SERVICE_ACCOUNT_DIR is where Kubernetes mounts a pod's ServiceAccount token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * loadKubeConfig reads a kubeconfig file and checks that it names a current context with a cluster server. Given a
 * directory ending in {@link SERVICE_ACCOUNT_DIR} (a pod's ServiceAccount mount, holding `token` and `ca.crt`), it
 * builds the in-cluster config instead: server from `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the token
 * re-read from its file as it rotates. Throws an Error naming the path for a missing or unreadable file, bad YAML, no
 * usable current context, or an incomplete ServiceAccount directory.
 */
export function loadKubeConfig(file: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (fs.statSync(file).isDirectory()) loadInCluster(kc, file);
    else kc.loadFromFile(file);
  } catch (err) {
    throw new Error(`kubeconfig ${file}: ${(err as Error).message}`, { cause: err });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`kubeconfig ${file}: no current context with a cluster server`);
  return kc;
}

function loadInCluster(kc: KubeConfig, dir: string): void {
  const clean = path.resolve(dir);
  if (!clean.endsWith(SERVICE_ACCOUNT_DIR))
    throw new Error(`a directory must be a ServiceAccount mount (${SERVICE_ACCOUNT_DIR})`);
  for (const f of ['token', 'ca.crt']) fs.accessSync(path.join(clean, f), fs.constants.R_OK);
  const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port } = process.env;
  if (!host || !port) throw new Error('in-cluster config needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT');
  kc.loadFromCluster(clean.slice(0, clean.length - SERVICE_ACCOUNT_DIR.length));
}

/**
 * KubeConfigSource mirrors objects from a Kubernetes API server into istiod's {@link ConfigStore} (owner
 * {@link KUBE_OWNER}): Services, Pods, Namespaces, ServiceAccounts and Istio's networking/security kinds, each
 * through a `@kubernetes/client-node` informer (see {@link KindWatcher}). Every object is validated
 * (`validateResource` from @fedmesh/api); an invalid one is logged with its field paths and its last good version
 * stays in the store. Changes are written in batches (one store change per event-loop turn). When the API server
 * is unreachable or a watch fails, the last known state is kept and the informer is restarted with backoff;
 * {@link KubeConfigSource.synced} is false until every kind has been listed once.
 */
export class KubeConfigSource {
  private readonly watchers: KindWatcher[];
  private endpointWatcher: KindWatcher | undefined;
  private endpointChoice: EndpointSource | undefined;
  private readonly discovery = new AbortController();
  private discoveryError: string | undefined;
  private discoveryAttempts = 0;
  private readonly makeWatcher: (k: MirroredKind) => KindWatcher;
  private readonly limits: KindWatcherLimits;
  private readonly pending = new Map<string, StoredObject | null>();
  /** invalid maps the store key of an object whose current version is invalid to that version's resourceVersion. */
  private readonly invalid = new Map<string, string>();
  private flushScheduled = false;
  private syncWaiters: (() => void)[] = [];
  private started = false;

  /** constructor validates options and builds one informer per kind; no I/O before {@link KubeConfigSource.start}. */
  constructor(private readonly opts: KubeConfigSourceOptions) {
    const watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    const limits: KindWatcherLimits = {
      requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
      watchTimeoutSeconds,
      idleTimeoutMs: opts.idleTimeoutMs ?? watchTimeoutSeconds * 1000 + 60_000,
      pageSize: opts.pageSize ?? 500,
      maxPageBytes: opts.maxPageBytes ?? 64 * 1024 * 1024,
      maxPages: 10_000,
      backoffInitialMs: opts.backoffInitialMs ?? 500,
      backoffMaxMs: opts.backoffMaxMs ?? 30_000,
    };
    for (const [k, v] of Object.entries(limits))
      if (!(Number.isFinite(v) && v > 0)) throw new TypeError(`KubeConfigSource: ${k} must be > 0, got ${v}`);
    if (limits.backoffMaxMs < limits.backoffInitialMs)
      throw new TypeError('KubeConfigSource: backoffMaxMs must be >= backoffInitialMs');
    const log = opts.log;
    const handlers = {
      upsert: (k: MirroredKind, o: KubeObject) => this.upsert(k, o),
      remove: (k: MirroredKind, o: KubeObject) => this.remove(k, o),
      listed: () => this.onListed(),
    };
    this.limits = limits;
    this.makeWatcher = (k) => new KindWatcher(opts.kubeConfig, k, handlers, limits, log);
    this.watchers = (opts.kinds ?? MIRRORED_KINDS).map(this.makeWatcher);
  }

  /** start lists and watches every kind; failures are logged and retried, never thrown. Stops on `signal`. */
  start(signal?: AbortSignal): void {
    if (this.started) return;
    this.started = true;
    for (const w of this.watchers) w.start();
    void this.startEndpoints();
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /**
   * endpointSource is where endpoints are mirrored from, once decided: EndpointSlices at a `discovery.k8s.io`
   * version, or core Endpoints; undefined before the API server has answered discovery, or with mode `none`.
   */
  endpointSource(): EndpointSource | undefined {
    return this.endpointChoice;
  }

  private async startEndpoints(): Promise<void> {
    const mode = this.opts.endpointMode ?? 'auto';
    if (mode === 'none') return;
    const choice = await discoverEndpointSource(this.opts.kubeConfig, mode, {
      timeoutMs: this.limits.requestTimeoutMs,
      backoffInitialMs: this.limits.backoffInitialMs,
      backoffMaxMs: this.limits.backoffMaxMs,
      signal: this.discovery.signal,
      onError: (err) => {
        this.discoveryAttempts++;
        this.discoveryError = err;
        if (this.discoveryAttempts === 1)
          this.opts.log.warn({ err, mode }, 'kubernetes API discovery of discovery.k8s.io failed; retrying');
      },
    });
    if (!choice || this.discovery.signal.aborted) return;
    this.endpointChoice = choice;
    this.opts.log.info(
      { mode, ...choice },
      `endpoints from ${choice.kind}${'version' in choice ? ` ${choice.version}` : ''}`,
    );
    const kind = choice.kind === 'EndpointSlice' ? endpointSliceKind(choice.version) : EndpointsKind;
    this.endpointWatcher = this.makeWatcher(kind);
    this.endpointWatcher.start();
  }

  /** stop ends every informer; the mirrored objects stay in the store. */
  async stop(): Promise<void> {
    this.discovery.abort();
    await Promise.all([...this.watchers, ...(this.endpointWatcher ? [this.endpointWatcher] : [])].map((w) => w.stop()));
    this.flush();
    for (const w of this.syncWaiters.splice(0)) w();
  }

  /** synced is true once every kind has been listed and applied to the store (Istio's `HasSynced`). */
  synced(): boolean {
    if (!this.started || !this.watchers.every((w) => w.status().synced)) return false;
    return (this.opts.endpointMode ?? 'auto') === 'none' || (this.endpointWatcher?.status().synced ?? false);
  }

  /**
   * waitForSync resolves when {@link KubeConfigSource.synced} is true, or rejects after `timeoutMs` with an Error
   * naming the kinds not yet listed and their last errors. Also resolves if the source is stopped meanwhile.
   */
  async waitForSync(timeoutMs: number): Promise<void> {
    if (this.synced()) return;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        waiter = resolve;
        this.syncWaiters.push(resolve);
        timer = setTimeout(() => {
          const missing = this.status()
            .filter((s) => !s.synced)
            .map((s) => `${s.kind}${s.lastError ? ` (${s.lastError})` : ''}`);
          reject(new Error(`Kubernetes not synced after ${timeoutMs} ms: ${missing.join(', ')}`));
        }, timeoutMs);
      });
    } finally {
      clearTimeout(timer);
      this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
    }
  }

  /** status returns every kind's {@link KindStatus}. */
  status(): KindStatus[] {
    const out = this.watchers.map((w) => w.status());
    if (this.endpointWatcher) out.push(this.endpointWatcher.status());
    else if (this.started && (this.opts.endpointMode ?? 'auto') !== 'none')
      out.push({
        kind: 'EndpointSlice',
        synced: false,
        watching: false,
        served: true,
        lists: 0,
        restarts: this.discoveryAttempts,
        ...(this.discoveryError !== undefined ? { lastError: this.discoveryError } : {}),
      });
    return out;
  }

  private upsert(kind: MirroredKind, obj: KubeObject): void {
    const key = keyOf(kind, obj);
    const v = kind.validate(obj);
    if (v.ok) {
      this.invalid.delete(key);
      this.pending.set(key, v.object);
      this.scheduleFlush();
      return;
    }
    const rv = obj.metadata?.resourceVersion ?? '';
    if (this.invalid.get(key) === rv) return;
    this.invalid.set(key, rv);
    const kept = this.pending.get(key) ?? this.opts.store.get(key);
    for (const issue of v.issues)
      this.opts.log.warn(
        { kind: kind.kind, namespace: obj.metadata?.namespace, name: obj.metadata?.name, path: issue.path },
        `invalid ${kind.kind} ${key.slice(kind.kind.length + 1)}: ${issue.path === '' ? '' : `${issue.path}: `}${issue.message}; ${kept ? 'keeping its last good version' : 'ignored'}`,
      );
  }

  private remove(kind: MirroredKind, obj: KubeObject): void {
    const key = keyOf(kind, obj);
    this.invalid.delete(key);
    this.pending.set(key, null);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.size === 0) return;
    const upserts: StoredObject[] = [];
    const deletes: string[] = [];
    for (const [key, obj] of this.pending) {
      if (obj) upserts.push(obj);
      else if (this.opts.store.ownerOf(key) === KUBE_OWNER) deletes.push(key);
    }
    this.pending.clear();
    if (upserts.length > 0) this.opts.store.apply(upserts, KUBE_OWNER);
    if (deletes.length > 0) this.opts.store.remove(deletes);
  }

  private onListed(): void {
    this.flush();
    if (!this.synced()) return;
    for (const w of this.syncWaiters.splice(0)) w();
  }
}

/** keyOf gives the ConfigStore key (`Kind/namespace/name`, namespace `default` when unset, as `configKey`). */
function keyOf(kind: MirroredKind, obj: KubeObject): string {
  return `${kind.kind}/${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
}
