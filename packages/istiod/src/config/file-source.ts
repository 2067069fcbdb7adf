import fs from 'node:fs';
import path from 'node:path';
import { parseManifests, type ManifestError } from '@fedmesh/api';
import type { Logger } from 'pino';
import { configKey, type ConfigStore, type StoredObject } from './store.js';

/** LoadResult is what loading one manifest text produced: the keys stored and the problems found. */
export interface LoadResult {
  applied: string[];
  errors: ManifestError[];
}

/**
 * loadManifestText parses manifest text and writes the valid objects into the store as `owner`. With `replace`,
 * the owner's objects become exactly the file's (others are deleted), except that an object whose new document is
 * invalid keeps its last good version; a file with a document that cannot even be identified (YAML syntax error)
 * changes nothing. Without `replace`, objects are upserted (`fedmesh apply`).
 */
export function loadManifestText(
  store: ConfigStore<StoredObject>,
  text: string,
  owner: string,
  replace: boolean,
  file?: string,
): LoadResult {
  const { resources, errors } = parseManifests(text, file !== undefined ? { file } : {});
  const hard = errors.filter((e) => e.severity === 'error');
  const objects = resources as unknown as StoredObject[];
  if (!replace) {
    const applied = store.apply(objects, owner);
    return { applied: objects.map(configKey).filter((k) => applied.includes(k) || store.get(k) !== undefined), errors };
  }
  if (hard.some((e) => e.kind === undefined || e.name === undefined)) return { applied: [], errors };
  const keep = new Set(hard.map((e) => `${e.kind}/${e.namespace ?? 'default'}/${e.name}`));
  store.replaceOwned(objects, owner, keep);
  return { applied: objects.map(configKey), errors };
}

/**
 * FileConfigSource feeds manifest files into a {@link ConfigStore} and watches them: each file owns the objects it
 * declares (owner `file:<path>`). Changes are re-read after a 50 ms settle delay; problems are logged with the file,
 * document index and field path.
 */
export class FileConfigSource {
  private readonly watchers: fs.FSWatcher[] = [];
  private readonly timers = new Map<string, NodeJS.Timeout>();

  /** constructor stores arguments; no I/O before {@link FileConfigSource.start}. */
  constructor(
    private readonly store: ConfigStore<StoredObject>,
    private readonly files: readonly string[],
    private readonly log: Logger,
  ) {}

  /** start loads every file once (throws if one cannot be read) and then watches their directories. */
  start(signal?: AbortSignal): LoadResult[] {
    const results = this.files.map((f) => this.load(f));
    const dirs = new Set(this.files.map((f) => path.dirname(path.resolve(f))));
    for (const dir of dirs) {
      const w = fs.watch(dir, (_event, name) => {
        if (!name) return;
        const full = path.join(dir, name.toString());
        const hit = this.files.find((f) => path.resolve(f) === full);
        if (hit) this.schedule(hit);
      });
      w.on('error', (err) => this.log.warn({ dir, err: err.message }, 'watch failed'));
      this.watchers.push(w);
    }
    signal?.addEventListener('abort', () => this.close(), { once: true });
    return results;
  }

  /** close stops watching. */
  close(): void {
    for (const w of this.watchers) w.close();
    for (const t of this.timers.values()) clearTimeout(t);
  }

  private schedule(file: string): void {
    const t = this.timers.get(file);
    if (t) clearTimeout(t);
    this.timers.set(
      file,
      setTimeout(() => {
        this.timers.delete(file);
        try {
          this.load(file);
        } catch (err) {
          this.log.warn({ file, err: (err as Error).message }, 'config file unreadable; keeping last good config');
        }
      }, 50),
    );
  }

  private load(file: string): LoadResult {
    const text = fs.readFileSync(file, 'utf8');
    const res = loadManifestText(this.store, text, `file:${path.resolve(file)}`, true, path.basename(file));
    for (const e of res.errors)
      (e.severity === 'error' ? this.log.warn.bind(this.log) : this.log.info.bind(this.log))(
        { file: e.file, index: e.index, kind: e.kind, name: e.name, path: e.path, code: e.code },
        e.message,
      );
    return res;
  }
}
