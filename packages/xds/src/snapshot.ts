import { createHash } from 'node:crypto';
import { TypeUrl, type AnyMessage } from '@fedmesh/api/xds';

/** ResourceEntry is one named xDS resource in a {@link Snapshot}, already serialized as `Any`. */
export interface ResourceEntry {
  name: string;
  resource: AnyMessage;
}

/** ResourceSet is every resource of one type URL in a {@link Snapshot}, with its content-derived version. */
export interface ResourceSet {
  /** version is a hash of the names and bytes, so an unchanged set keeps its version and is not re-pushed. */
  readonly version: string;
  readonly items: ReadonlyMap<string, AnyMessage>;
}

/** SnapshotReferences lists, per type URL, the resource names other resources of the snapshot refer to. */
export type SnapshotReferences = Partial<Record<string, readonly string[]>>;

/**
 * Snapshot is an immutable, versioned set of xDS resources for one node, one {@link ResourceSet} per type URL,
 * as go-control-plane's `cache.Snapshot`. Types not given are present and empty.
 */
export class Snapshot {
  private readonly sets: ReadonlyMap<string, ResourceSet>;

  /**
   * Snapshot builds a snapshot from resources grouped by type URL. `references` names what LDS/CDS point at
   * (RDS route names, EDS service names, SDS secret names) so {@link Snapshot.consistent} can check them.
   * Throws if one type holds two resources with the same name.
   */
  constructor(
    resources: Partial<Record<string, readonly ResourceEntry[]>>,
    readonly references: SnapshotReferences = {},
  ) {
    const sets = new Map<string, ResourceSet>();
    for (const typeUrl of new Set([...Object.values(TypeUrl), ...Object.keys(resources)])) {
      const entries = [...(resources[typeUrl] ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const items = new Map<string, AnyMessage>();
      const hash = createHash('sha256');
      for (const e of entries) {
        if (items.has(e.name)) throw new Error(`snapshot: duplicate ${typeUrl} resource ${e.name}`);
        items.set(e.name, e.resource);
        hash.update(e.name).update('\0').update(e.resource.type_url).update('\0').update(e.resource.value).update('\0');
      }
      sets.set(typeUrl, { version: hash.digest('hex').slice(0, 16), items });
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
