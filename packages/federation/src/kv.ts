import { Etcd3, type Lease as EtcdLease, type Watcher } from 'etcd3';

/** KvEvent is one change under a watched prefix. */
export interface KvEvent {
  type: 'put' | 'delete';
  key: string;
  value?: string;
  /** revision is the store's modification revision of the change. */
  revision: string;
}

/** KvLease is a lease: keys written under it vanish when it expires or is revoked. */
export interface KvLease {
  put(key: string, value: string): Promise<void>;
  revoke(): Promise<void>;
  /** onLost registers a callback for a lease that could not be kept alive (the keys are gone). */
  onLost(cb: (err: Error) => void): void;
}

/**
 * KvStore is the strongly consistent store federation keeps membership, the trust bundle and endpoint snapshots
 * in (DESIGN.md, Federation). Keys are strings under `/fedmesh/<mesh>/`; values are JSON text.
 */
export interface KvStore {
  get(key: string): Promise<string | undefined>;
  getPrefix(prefix: string): Promise<Map<string, string>>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  /** watchPrefix calls `onEvent` for every change under `prefix` until the returned handle is closed. */
  watchPrefix(prefix: string, onEvent: (ev: KvEvent) => void): Promise<{ close(): Promise<void> }>;
  /** grantLease creates a lease with a TTL in seconds, kept alive until revoked or lost. */
  grantLease(ttlSeconds: number): Promise<KvLease>;
  close(): void;
}

/** EtcdKvStoreOptions configure {@link EtcdKvStore}. */
export interface EtcdKvStoreOptions {
  /** endpoints are etcd client URLs, e.g. `http://127.0.0.1:2379`. */
  endpoints: string[];
  /** auth, when set, logs in as an etcd user (per-cluster roles restrict writes to the cluster's own keys). */
  auth?: { username: string; password: string };
  /** dialTimeoutMs bounds each call (default 5,000 ms). */
  dialTimeoutMs?: number;
}

/** EtcdKvStore is the {@link KvStore} on etcd v3 through the `etcd3` client. */
export class EtcdKvStore implements KvStore {
  private readonly client: Etcd3;

  /** constructor creates the client (connections are made lazily by the first call). */
  constructor(opts: EtcdKvStoreOptions) {
    this.client = new Etcd3({
      hosts: opts.endpoints,
      ...(opts.auth ? { auth: opts.auth } : {}),
      dialTimeout: opts.dialTimeoutMs ?? 5_000,
      defaultCallOptions: () => ({ deadline: new Date(Date.now() + (opts.dialTimeoutMs ?? 5_000)) }),
    });
  }

  /** get implements {@link KvStore.get}. */
  async get(key: string): Promise<string | undefined> {
    return (await this.client.get(key).string()) ?? undefined;
  }

  /** getPrefix implements {@link KvStore.getPrefix}. */
  async getPrefix(prefix: string): Promise<Map<string, string>> {
    const all = await this.client.getAll().prefix(prefix).strings();
    return new Map(Object.entries(all));
  }

  /** put implements {@link KvStore.put}. */
  async put(key: string, value: string): Promise<void> {
    await this.client.put(key).value(value);
  }

  /** delete implements {@link KvStore.delete}. */
  async delete(key: string): Promise<void> {
    await this.client.delete().key(key);
  }

  /** watchPrefix implements {@link KvStore.watchPrefix}; the watcher reconnects on its own after errors. */
  async watchPrefix(prefix: string, onEvent: (ev: KvEvent) => void): Promise<{ close(): Promise<void> }> {
    const w: Watcher = await this.client.watch().prefix(prefix).create();
    w.on('put', (kv) =>
      onEvent({ type: 'put', key: kv.key.toString(), value: kv.value.toString(), revision: kv.mod_revision }),
    );
    w.on('delete', (kv) => onEvent({ type: 'delete', key: kv.key.toString(), revision: kv.mod_revision }));
    w.on('error', () => undefined);
    return { close: () => w.cancel() };
  }

  /** grantLease implements {@link KvStore.grantLease}. */
  async grantLease(ttlSeconds: number): Promise<KvLease> {
    const lease: EtcdLease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
    await lease.grant();
    return {
      put: async (key, value) => {
        await lease.put(key).value(value);
      },
      revoke: async () => {
        await lease.revoke();
      },
      onLost: (cb) => {
        lease.on('lost', (err: Error) => cb(err));
      },
    };
  }

  /** close closes the client. */
  close(): void {
    this.client.close();
  }
}
