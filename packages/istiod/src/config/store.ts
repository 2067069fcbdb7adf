import { EventEmitter } from 'node:events';

/** StoredObject is the part of every config object the store reads: kind and metadata name/namespace. */
export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string | undefined };
}

/** configKey returns the store key `Kind/namespace/name` (namespace defaults to `default`). */
export function configKey(o: StoredObject): string {
  return `${o.kind}/${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
}

/** ConfigEvent describes one store change: the keys added, updated or deleted. */
export interface ConfigEvent {
  revision: number;
  changed: string[];
  deleted: string[];
  kinds: Set<string>;
}

/**
 * ConfigStore holds the mesh's config objects (Istio and Kubernetes kinds) keyed by `Kind/namespace/name`, with
 * the owner that wrote each (a file path, `api`, `kube`). Objects are validated before they reach the store, so
 * what it holds is the last good config. Emits `'change'` with a {@link ConfigEvent} after each write.
 */
export class ConfigStore<T extends StoredObject = StoredObject> extends EventEmitter {
  private readonly objects = new Map<string, { obj: T; owner: string }>();
  private rev = 0;

  /** revision is a counter bumped by every write that changed something. */
  get revision(): number {
    return this.rev;
  }

  /** list returns every object of a kind (all kinds when omitted), optionally in one namespace. */
  list<K extends T = T>(kind?: string, namespace?: string): K[] {
    const out: K[] = [];
    for (const { obj } of this.objects.values()) {
      if (kind !== undefined && obj.kind !== kind) continue;
      if (namespace !== undefined && (obj.metadata.namespace ?? 'default') !== namespace) continue;
      out.push(obj as K);
    }
    return out;
  }

  /** get returns one object by key. */
  get(key: string): T | undefined {
    return this.objects.get(key)?.obj;
  }

  /** ownerOf returns who wrote an object. */
  ownerOf(key: string): string | undefined {
    return this.objects.get(key)?.owner;
  }

  /**
   * apply upserts objects as `owner`. Objects equal (JSON) to what is stored are skipped. Returns the keys that
   * changed and emits one `'change'` event when any did.
   */
  apply(objects: readonly T[], owner: string): string[] {
    const changed: string[] = [];
    const kinds = new Set<string>();
    for (const obj of objects) {
      const key = configKey(obj);
      const prev = this.objects.get(key);
      if (prev && prev.owner === owner && JSON.stringify(prev.obj) === JSON.stringify(obj)) continue;
      this.objects.set(key, { obj, owner });
      changed.push(key);
      kinds.add(obj.kind);
    }
    if (changed.length > 0) this.emitChange(changed, [], kinds);
    return changed;
  }

  /** remove deletes objects by key (any owner); emits `'change'` when any existed. */
  remove(keys: readonly string[]): string[] {
    const deleted: string[] = [];
    const kinds = new Set<string>();
    for (const k of keys) {
      const prev = this.objects.get(k);
      if (!prev) continue;
      this.objects.delete(k);
      deleted.push(k);
      kinds.add(prev.obj.kind);
    }
    if (deleted.length > 0) this.emitChange([], deleted, kinds);
    return deleted;
  }

  /**
   * replaceOwned makes `owner`'s objects exactly `objects` (apply them, delete the owner's other keys except
   * those in `keep`), in one change event. Used by file sources: `keep` holds keys whose new document was invalid,
   * so their last good version stays.
   */
  replaceOwned(objects: readonly T[], owner: string, keep: ReadonlySet<string> = new Set()): void {
    const want = new Set(objects.map(configKey));
    const stale = [...this.objects.entries()]
      .filter(([k, v]) => v.owner === owner && !want.has(k) && !keep.has(k))
      .map(([k]) => k);
    const changed: string[] = [];
    const kinds = new Set<string>();
    for (const obj of objects) {
      const key = configKey(obj);
      const prev = this.objects.get(key);
      if (prev && JSON.stringify(prev.obj) === JSON.stringify(obj)) continue;
      this.objects.set(key, { obj, owner });
      changed.push(key);
      kinds.add(obj.kind);
    }
    for (const k of stale) {
      const prev = this.objects.get(k);
      if (prev) kinds.add(prev.obj.kind);
      this.objects.delete(k);
    }
    if (changed.length > 0 || stale.length > 0) this.emitChange(changed, stale, kinds);
  }

  private emitChange(changed: string[], deleted: string[], kinds: Set<string>): void {
    this.rev++;
    const ev: ConfigEvent = { revision: this.rev, changed, deleted, kinds };
    this.emit('change', ev);
  }
}
