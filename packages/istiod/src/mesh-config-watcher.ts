import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ConfigEvent, ConfigStore, StoredObject } from './config/store.js';
import type { ConfigMapObject } from './kube/config-map.js';
import { meshSettingsFrom, parseMeshConfig } from './mesh-config.js';
import type { MeshSettings } from './push-context.js';

/** MESH_CONFIG_KEY is the key of Istio's mesh ConfigMap that holds MeshConfig YAML. */
export const MESH_CONFIG_KEY = 'mesh';

/** MeshConfigWatcherOptions configure {@link MeshConfigWatcher}. */
export interface MeshConfigWatcherOptions {
  /** mesh is the live settings object istiod hands out; it is updated in place (each push copies it). */
  mesh: MeshSettings;
  log: Logger;
  /** onChange is called after the settings changed (istiod requests a push). */
  onChange(): void;
}

/**
 * MeshConfigWatcher applies Istio's MeshConfig (see `mesh-config.ts`) to istiod's {@link MeshSettings}, from a file
 * (`--mesh-config`) or from the `mesh` key of the `istio` ConfigMap mirrored by the kube source. The settings at
 * construction (from the command line) are the base every MeshConfig is applied over, so a field removed from the
 * MeshConfig returns to the command line's value. A MeshConfig with a wrong type is rejected with each field path
 * logged, and the last good one keeps serving; unknown and not-honoured fields are warned about once per content.
 * `trustDomain` is fixed once istiod has started (its CA and every issued certificate carry it): a later change
 * is logged as needing a restart and not applied.
 */
export class MeshConfigWatcher {
  private readonly base: MeshSettings;
  private lastText: string | undefined = undefined;
  private started = false;
  private watcher: fs.FSWatcher | undefined;
  /** applied counts MeshConfigs applied; rejected counts those refused (for tests and status). */
  applied = 0;
  rejected = 0;

  /** constructor records the command-line settings as the base; no I/O. */
  constructor(private readonly opts: MeshConfigWatcherOptions) {
    this.base = structuredClone(opts.mesh);
  }

  /**
   * apply parses MeshConfig YAML (undefined: none, Istio's defaults) from `origin` and applies it. Returns false,
   * leaving the settings as they were, when it is invalid. Unchanged text is a no-op.
   */
  apply(text: string | undefined, origin: string): boolean {
    if (text === this.lastText && this.applied + this.rejected > 0) return true;
    const log = this.opts.log;
    const parsed = parseMeshConfig(text ?? '');
    if (!parsed.ok) {
      this.rejected++;
      for (const e of parsed.errors)
        log.error(
          { origin, path: e.path },
          `invalid mesh config ${origin}: ${e.path === '' ? '' : `${e.path}: `}${e.message}; keeping the last good one`,
        );
      return false;
    }
    this.lastText = text;
    for (const w of parsed.warnings)
      log.warn({ origin, path: w.path }, `mesh config ${origin}: ${w.path}: ${w.message}`);
    const next = meshSettingsFrom(this.base, parsed.config);
    if (this.started && next.trustDomain !== this.opts.mesh.trustDomain) {
      log.warn(
        { origin, running: this.opts.mesh.trustDomain, wanted: next.trustDomain },
        `mesh config ${origin}: trustDomain change to ${next.trustDomain} needs an istiod restart; keeping ${this.opts.mesh.trustDomain}`,
      );
      next.trustDomain = this.opts.mesh.trustDomain;
    }
    const changed = JSON.stringify(next) !== JSON.stringify(this.opts.mesh);
    for (const k of Object.keys(this.opts.mesh)) delete (this.opts.mesh as unknown as Record<string, unknown>)[k];
    Object.assign(this.opts.mesh, next);
    this.applied++;
    if (changed) {
      log.info({ origin }, 'mesh config applied');
      if (this.started) this.opts.onChange();
    }
    return true;
  }

  /**
   * loadFile reads and applies a MeshConfig file once. Throws an Error naming the file (and the field paths) when
   * it cannot be read or is invalid: istiod does not start on a bad mesh config.
   */
  loadFile(file: string): void {
    const text = fs.readFileSync(file, 'utf8');
    if (!this.apply(text, file)) throw new Error(`mesh config ${file} is invalid (see the log for field paths)`);
  }

  /**
   * watchFile re-reads `file` whenever its directory changes (a mounted ConfigMap is swapped through a `..data`
   * symlink, so the file's own name may not be reported). Read errors are logged and the last good config kept.
   */
  watchFile(file: string): void {
    this.started = true;
    const dir = path.dirname(path.resolve(file));
    this.watcher = fs.watch(dir, () => {
      let text: string;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        this.opts.log.warn({ file, err: (err as Error).message }, 'mesh config unreadable; keeping the last good one');
        return;
      }
      this.apply(text, file);
    });
    this.watcher.on('error', (err) => this.opts.log.warn({ file, err: err.message }, 'mesh config watch failed'));
  }

  /**
   * watchStore applies the `mesh` key of the ConfigMap stored under `key` (`ConfigMap/<namespace>/<name>`, mirrored
   * by the kube source) now and whenever it changes; a deleted ConfigMap means Istio's defaults.
   */
  watchStore(store: ConfigStore<StoredObject>, key: string): void {
    this.started = true;
    const read = (): void => {
      const cm = store.get(key) as unknown as ConfigMapObject | undefined;
      this.apply(cm?.data[MESH_CONFIG_KEY], key);
    };
    store.on('change', (e: ConfigEvent) => {
      if (e.changed.includes(key) || e.deleted.includes(key)) read();
    });
    if (store.get(key)) read();
  }

  /** markStarted fixes the trust domain from now on (call once the CA is made). */
  markStarted(): void {
    this.started = true;
  }

  /** close stops watching a file. */
  close(): void {
    this.watcher?.close();
  }
}
