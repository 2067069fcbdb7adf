import { createHash } from 'node:crypto';
import { TypeUrl, type AnyMessage } from '@fedmesh/api/xds';

/**
 * ResourceEntry is one named xDS resource in a {@link Snapshot}, already serialized as `Any`. `version`, when
 * given, must be a content hash of `resource` (equal bytes, equal version); generators that reuse one encoded
 * resource across proxies pass it so the bytes are hashed once. When absent, the snapshot hashes the bytes.
 */
export interface ResourceEntry {
  name: string;
  resource: AnyMessage;
  version?: string | undefined;
}

/** ResourceSet is every resource of one type URL in a {@link Snapshot}, with its content-derived version. */
export interface ResourceSet {
  /** version is a hash of the names and contents, so an unchanged set keeps its version and is not re-pushed. */
  readonly version: string;
  readonly items: ReadonlyMap<string, AnyMessage>;
}

/** SnapshotReferences lists, per type URL, the resource names other resources of the snapshot refer to. */
export type SnapshotReferences = Partial<Record<string, readonly string[]>>;

/**
 * resourceVersion returns the per-resource version fedmesh uses in Delta xDS: the first 16 hex digits of the
 * SHA-256 of the `Any`'s type URL and bytes. Equal bytes give equal versions on every istiod, so a reconnecting
 * Delta client's `initial_resource_versions` stay valid across restarts.
 */
export function resourceVersion(resource: AnyMessage): string {
  return createHash('sha256').update(resource.type_url).update('\0').update(resource.value).digest('hex').slice(0, 16);
}

interface TypeSet extends ResourceSet {
  /** given holds versions supplied with the entries; computed ones are added lazily by resourceVersion(). */
  readonly versions: Map<string, string>;
}

function buildSet(typeUrl: string, given: readonly ResourceEntry[]): TypeSet {
  const entries = [...given].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const items = new Map<string, AnyMessage>();
  const versions = new Map<string, string>();
  const hash = createHash('sha256');
  // A supplied version stands for the bytes (it is their hash), so hashing it instead keeps the set version a
  // function of the content while hashing far less; supplied versions are gathered and hashed in one call.
  let text = '';
  for (const e of entries) {
    if (items.has(e.name)) throw new Error(`snapshot: duplicate ${typeUrl} resource ${e.name}`);
    items.set(e.name, e.resource);
    if (e.version !== undefined) {
      versions.set(e.name, e.version);
      text += `${e.name}\0v\0${e.version}\0`;
    } else {
      hash.update(text).update(e.name).update('\0b\0').update(e.resource.type_url).update('\0');
      hash.update(e.resource.value).update('\0');
      text = '';
    }
  }
  hash.update(text);
  return { version: hash.digest('hex').slice(0, 16), items, versions };
}

/**
 * Snapshot is an immutable, versioned set of xDS resources for one node, one {@link ResourceSet} per type URL,
 * as go-control-plane's `cache.Snapshot`. Types not given are present and empty. Per-resource versions (for
 * Delta xDS) are content hashes, computed on first use unless the entries carry them.
 */
export class Snapshot {
  /**
   * setsByEntries remembers the set built from each entries array, so an array shared by many snapshots (one
   * generated once for every proxy of a namespace) is sorted and hashed once. Entries arrays must not be mutated
   * after they are given to a snapshot.
   */
  private static readonly setsByEntries = new WeakMap<readonly ResourceEntry[], TypeSet>();
  private readonly sets: ReadonlyMap<string, TypeSet>;

  /**
   * Snapshot builds a snapshot from resources grouped by type URL. `references` names what LDS/CDS point at
   * (RDS route names, EDS service names, SDS secret names) so {@link Snapshot.consistent} can check them.
   * Throws if one type holds two resources with the same name.
   */
  constructor(
    resources: Partial<Record<string, readonly ResourceEntry[]>>,
    readonly references: SnapshotReferences = {},
  ) {
    const sets = new Map<string, TypeSet>();
    for (const typeUrl of new Set([...Object.values(TypeUrl), ...Object.keys(resources)])) {
      const given = resources[typeUrl];
      let set = given ? Snapshot.setsByEntries.get(given) : undefined;
      if (!set) {
        set = buildSet(typeUrl, given ?? []);
        if (given) Snapshot.setsByEntries.set(given, set);
      }
      sets.set(typeUrl, set);
    }
    this.sets = sets;
  }

  /** version returns the version of one type URL's resources (a 16-hex-digit content hash). */
  version(typeUrl: string): string {
    return this.sets.get(typeUrl)?.version ?? '';
  }

  /** resources returns one type URL's resources by name (empty for an unknown type). */
  resources(typeUrl: string): ReadonlyMap<string, AnyMessage> {
    return this.sets.get(typeUrl)?.items ?? new Map();
  }

  /**
   * resourceVersion returns the version of one resource (see the module function {@link resourceVersion}), or
   * undefined when the snapshot does not hold it. Memoized: the bytes are hashed at most once per snapshot.
   */
  resourceVersion(typeUrl: string, name: string): string | undefined {
    const set = this.sets.get(typeUrl);
    if (!set) return undefined;
    let v = set.versions.get(name);
    if (v !== undefined) return v;
    const r = set.items.get(name);
    if (!r) return undefined;
    v = resourceVersion(r);
    set.versions.set(name, v);
    return v;
  }

  /**
   * consistent returns the dangling references: names referenced (per {@link SnapshotReferences}) that the
   * snapshot does not hold, as `typeUrl name`. An empty array means every RDS/EDS/SDS name referenced from
   * LDS/CDS is present (go-control-plane's `Snapshot.Consistent`).
   */
  consistent(): string[] {
    const missing: string[] = [];
    for (const [typeUrl, names] of Object.entries(this.references)) {
      const have = this.resources(typeUrl);
      for (const n of names ?? []) if (!have.has(n)) missing.push(`${typeUrl} ${n}`);
    }
    return missing;
  }
}
