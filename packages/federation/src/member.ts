import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { KvLease, KvStore } from './kv.js';
import {
  keys,
  subjects,
  type ClusterRecord,
  type EndpointDelta,
  type ExportedService,
  type Heartbeat,
  type Locality,
} from './model.js';
import type { Transport } from './transport.js';

/** FederationLogger is the slice of pino's API federation logs through. */
export interface FederationLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** FederationOptions configure a {@link FederationMember}. Times are in milliseconds unless named otherwise. */
export interface FederationOptions {
  mesh: string;
  cluster: string;
  network: string;
  gatewayAddress?: string;
  istiodAddress: string;
  version?: string;
  locality?: Locality;
  kv: KvStore;
  transport: Transport;
  log: FederationLogger;
  /** heartbeatIntervalMs is how often this cluster beats on NATS (default 500 ms). */
  heartbeatIntervalMs?: number;
  /** withdrawAfterMs is the liveness budget: a cluster silent this long has its endpoints withdrawn (default 3,000 ms). */
  withdrawAfterMs?: number;
  /** readmitAfterBeats is how many consecutive beats a withdrawn cluster needs to be re-admitted (hysteresis; default 3). */
  readmitAfterBeats?: number;
  /** leaseTtlSeconds is the etcd lease TTL of the cluster record and snapshots (default 10 s). */
  leaseTtlSeconds?: number;
}

/** PeerState is what this member knows of another cluster. */
export interface PeerState {
  record: ClusterRecord | undefined;
  live: boolean;
  lastBeatAt: number;
  beatsSinceWithdrawal: number;
  lastSeq: number;
  services: Map<string, ExportedService>;
  withdrawnAt?: number;
  admittedAt?: number;
  /** firstBeatAfterWithdrawalAt is when the first beat after a withdrawal arrived (hysteresis spans time too). */
  firstBeatAfterWithdrawalAt?: number;
  /** advertised is the `seq` and `committed` of the peer's latest beat. */
  advertised?: { seq: number; committed: number };
  /** ackedOurSeq is the highest of our sequence numbers this peer reports having applied. */
  ackedOurSeq?: number;
}

/** ClusterStatus is one cluster's line in `fedmesh cluster status`. */
export interface ClusterStatus {
  cluster: string;
  network: string;
  live: boolean;
  self: boolean;
  services: number;
  endpoints: number;
  seq: number;
  lastBeatAgoMs: number | null;
  /** ackedSeq is, for a peer, the highest of our sequence numbers it has acknowledged (null for ourselves). */
  ackedSeq: number | null;
}

/** rootFingerprint identifies a root in the trust bundle: the SHA-256 of its PEM without white space (32 hex digits). */
export function rootFingerprint(pem: string): string {
  return fingerprint(pem);
}

/**
 * retiredTrustKey is where {@link retireTrustRoot} leaves a retired root's tombstone:
 * `/fedmesh/<mesh>/trust-retired/<fingerprint>` (outside the `/fedmesh/<mesh>/trust/` prefix members watch, so a
 * tombstone never reads as a trusted root). With etcd auth on, only the admin role may write it, as the bundle.
 */
export function retiredTrustKey(mesh: string, fingerprint: string): string {
  return `/fedmesh/${mesh}/trust-retired/${fingerprint}`;
}

/** RetiredTrustRoot is a tombstone's value: when the root left the bundle, and the root itself (PEM). */
export interface RetiredTrustRoot {
  retiredAt: string;
  pem: string;
}

/**
 * retiredTrustRoot reads the tombstone of a root retired from the mesh trust bundle (by {@link rootFingerprint}), or
 * undefined when the root was never retired (or its tombstone was deleted to trust it again).
 */
export async function retiredTrustRoot(
  kv: KvStore,
  mesh: string,
  fingerprint: string,
): Promise<RetiredTrustRoot | undefined> {
  const v = await kv.get(retiredTrustKey(mesh, fingerprint));
  return v === undefined ? undefined : (JSON.parse(v) as RetiredTrustRoot);
}

function retiredMessage(mesh: string, fp: string, r: RetiredTrustRoot): string {
  return (
    `root ${fp.slice(0, 16)}… was retired from mesh ${mesh}'s trust bundle at ${r.retiredAt}: a cluster under it ` +
    `cannot join; give it an intermediate of the current root (fedmesh ca intermediate create --root <current root> ` +
    `--cluster <name>), or delete ${retiredTrustKey(mesh, fp)} to trust the old root again`
  );
}

/**
 * publishTrustRoot adds a root to a mesh's trust bundle in etcd: a mesh admin's act (with etcd auth on, only the
 * admin role may write `/fedmesh/<mesh>/trust/`). Resolves to the key written. Rejects, writing nothing, when the
 * root was retired ({@link retireTrustRoot}): re-trusting a retired root is a deliberate act (delete its tombstone),
 * never a side effect of a cluster joining with old material.
 */
export async function publishTrustRoot(kv: KvStore, mesh: string, pem: string): Promise<string> {
  const fp = fingerprint(pem);
  const retired = await retiredTrustRoot(kv, mesh, fp);
  if (retired) throw new Error(retiredMessage(mesh, fp, retired));
  const key = keys.trust(mesh, fp);
  await kv.put(key, pem);
  return key;
}

/**
 * retireTrustRoot removes a root from a mesh's trust bundle in etcd (a mesh admin's act, the last step of a root
 * rotation, docs/adr/0004): it writes the tombstone {@link retiredTrustKey} first, then deletes
 * `/fedmesh/<mesh>/trust/<fingerprint>`, so from the moment the root leaves the bundle no join and no
 * {@link publishTrustRoot} can bring it back unnoticed. Every member's watch drops the root from the bundle its
 * istiod serves. `fp` is a {@link rootFingerprint}. Resolves to whether the root was in the bundle (false: already
 * retired, or never there; the tombstone is written either way). Rejects when etcd refuses (nothing or only the
 * tombstone was written; running it again completes it).
 */
export async function retireTrustRoot(kv: KvStore, mesh: string, fp: string): Promise<boolean> {
  const key = keys.trust(mesh, fp);
  const pem = await kv.get(key);
  const prior = await retiredTrustRoot(kv, mesh, fp);
  if (!prior && pem !== undefined) {
    const tombstone: RetiredTrustRoot = { retiredAt: new Date().toISOString(), pem };
    await kv.put(retiredTrustKey(mesh, fp), JSON.stringify(tombstone));
  }
  if (pem === undefined) return false;
  await kv.delete(key);
  return true;
}

function fingerprint(pem: string): string {
  return createHash('sha256').update(pem.replace(/\s+/g, '')).digest('hex').slice(0, 32);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * FederationMember is one cluster's membership in a federated mesh (DESIGN.md, Federation):
 * - etcd holds its ClusterRecord and its exported-endpoint snapshots under one lease, and the mesh trust bundle;
 * - NATS carries its endpoint deltas (per-cluster sequence numbers: a gap makes peers resync from etcd) and its
 *   heartbeats;
 * - a peer that misses heartbeats for `withdrawAfterMs`, or whose lease expires, has its endpoints withdrawn; it is
 *   re-admitted after `readmitAfterBeats` consecutive beats and a resync from etcd (hysteresis, no flapping).
 * Emits `'change'` when the set of live remote endpoints changes and `'trust'` when the trust bundle changes.
 */
export class FederationMember extends EventEmitter {
  private readonly peers = new Map<string, PeerState>();
  private readonly exported = new Map<string, string>();
  private trust = new Map<string, string>();
  private lease: KvLease | undefined;
  private seq = 0;
  private timers: NodeJS.Timeout[] = [];
  private closers: (() => Promise<void> | void)[] = [];
  private readonly hbMs: number;
  private readonly withdrawMs: number;
  private readonly readmitBeats: number;
  private lastOwnEchoAt = 0;
  /** committedSeq is the highest of our sequence numbers whose change is in etcd (see {@link Heartbeat.committed}). */
  private committedSeq = 0;
  /** transportRecoveredAt is when our own beats came back after stopping; peers' silence is counted from here. */
  private transportRecoveredAt = 0;
  private closed = false;
  private readonly exportedSeq = new Map<string, number>();
  /** desired is the last state {@link FederationMember.export} was asked to publish; syncing serializes writes. */
  private desired: readonly Omit<ExportedService, 'seq'>[] | undefined;
  private syncing: Promise<void> = Promise.resolve();

  /** constructor stores options; no I/O before {@link FederationMember.join}. */
  constructor(private readonly opts: FederationOptions) {
    super();
    this.hbMs = opts.heartbeatIntervalMs ?? 500;
    this.withdrawMs = opts.withdrawAfterMs ?? 3_000;
    this.readmitBeats = opts.readmitAfterBeats ?? 3;
  }

  /** cluster is this member's cluster name. */
  get cluster(): string {
    return this.opts.cluster;
  }

  /**
   * join checks that `rootsPem` are in the mesh trust bundle (or, with `publishTrust` — a mesh admin's act — adds
   * them), registers the cluster (record under a lease), loads every peer's record and snapshots, subscribes to
   * deltas and heartbeats, and starts beating. Rejects if etcd is unreachable or a root is not trusted by the mesh;
   * a root retired from the bundle ({@link retireTrustRoot}) is refused even with `publishTrust`, and the message
   * says when it was retired and what to do.
   */
  async join(rootsPem: readonly string[], publishTrust = false): Promise<void> {
    const { kv, transport, mesh, cluster } = this.opts;
    // Resume our own sequence numbers after a restart so that peers never see them go backwards.
    for (const v of (await kv.getPrefix(keys.endpointsOf(mesh, cluster))).values()) {
      const s = JSON.parse(v) as ExportedService;
      this.seq = Math.max(this.seq, s.seq);
    }
    this.committedSeq = this.seq;
    const existing = await kv.getPrefix(keys.trustPrefix(mesh));
    for (const pem of rootsPem) {
      const fp = fingerprint(pem);
      if (existing.has(keys.trust(mesh, fp))) continue;
      const retired = await retiredTrustRoot(kv, mesh, fp);
      if (retired) throw new Error(`this cluster's ${retiredMessage(mesh, fp, retired)}`);
      if (!publishTrust)
        throw new Error(
          `this cluster's root (${fp.slice(0, 16)}…) is not in the mesh trust bundle; a mesh admin must add it (fedmesh cluster join --root, or publishTrustRoot)`,
        );
      await publishTrustRoot(kv, mesh, pem);
    }
    await this.register();
    for (const [k, pem] of await kv.getPrefix(keys.trustPrefix(mesh))) this.trust.set(k, pem);

    const sub1 = transport.subscribe(subjects.allEndpoints(mesh), (data) => this.onDelta(data));
    const sub2 = transport.subscribe(subjects.allHeartbeats(mesh), (data) => this.onHeartbeat(data));
    this.closers.push(
      () => sub1.unsubscribe(),
      () => sub2.unsubscribe(),
    );
    const w1 = await kv.watchPrefix(keys.clusters(mesh), (ev) => {
      const name = ev.key.slice(keys.clusters(mesh).length);
      if (name === cluster) return;
      if (ev.type === 'put' && ev.value) void this.onRecord(name, JSON.parse(ev.value) as ClusterRecord);
      else this.onRecordGone(name);
    });
    const w2 = await kv.watchPrefix(keys.trustPrefix(mesh), (ev) => {
      if (ev.type === 'put' && ev.value) this.trust.set(ev.key, ev.value);
      else this.trust.delete(ev.key);
      this.emit('trust', this.trustBundle());
    });
    this.closers.push(
      () => w1.close(),
      () => w2.close(),
    );
    for (const [k, v] of await kv.getPrefix(keys.clusters(mesh))) {
      const name = k.slice(keys.clusters(mesh).length);
      if (name !== cluster) await this.onRecord(name, JSON.parse(v) as ClusterRecord, true);
    }
    this.timers.push(setInterval(() => this.beat(), this.hbMs));
    this.timers.push(setInterval(() => this.checkLiveness(), Math.max(50, Math.floor(this.hbMs / 4))));
    this.beat();
    this.opts.log.info(
      { mesh, cluster, network: this.opts.network, peers: [...this.peers.keys()] },
      'joined federation',
    );
    this.emit('change');
  }

  /**
   * export publishes this cluster's exported services: each changed service is written to etcd under the lease
   * and sent as a delta with the next sequence number; services no longer exported are deleted and sent as null.
   * Rejects when etcd refuses; the services are kept as the desired state, which a re-registration (new lease)
   * writes before the cluster record, so peers never admit this cluster with a state older than it has.
   */
  async export(services: readonly Omit<ExportedService, 'seq'>[]): Promise<void> {
    if (!this.lease) throw new Error('export before join');
    this.desired = services;
    const run = this.syncing.then(() => this.sync(services));
    this.syncing = run.catch(() => undefined);
    await run;
  }

  private async sync(services: readonly Omit<ExportedService, 'seq'>[]): Promise<void> {
    if (!this.lease) throw new Error('export before join');
    const { kv, transport, mesh, cluster } = this.opts;
    const want = new Map(services.map((s) => [s.hostname, s]));
    for (const [host, s] of want) {
      const body = JSON.stringify(s);
      if (this.exported.get(host) === body) continue;
      const seq = ++this.seq;
      const full: ExportedService = { ...s, seq };
      await this.lease.put(keys.endpoints(mesh, cluster, host), JSON.stringify(full));
      this.committedSeq = seq;
      this.exported.set(host, body);
      this.exportedSeq.set(host, seq);
      const delta: EndpointDelta = { cluster, seq, hostname: host, service: full };
      transport.publish(subjects.endpoints(mesh, cluster), encoder.encode(JSON.stringify(delta)));
    }
    for (const host of [...this.exported.keys()]) {
      if (want.has(host)) continue;
      const seq = ++this.seq;
      await kv.delete(keys.endpoints(mesh, cluster, host));
      this.committedSeq = seq;
      this.exported.delete(host);
      this.exportedSeq.delete(host);
      const delta: EndpointDelta = { cluster, seq, hostname: host, service: null };
      transport.publish(subjects.endpoints(mesh, cluster), encoder.encode(JSON.stringify(delta)));
    }
  }

  /** remote returns every live peer with its record and exported services. */
  remote(): { record: ClusterRecord; services: ExportedService[] }[] {
    const out: { record: ClusterRecord; services: ExportedService[] }[] = [];
    for (const p of this.peers.values())
      if (p.live && p.record) out.push({ record: p.record, services: [...p.services.values()] });
    return out.sort((a, b) => (a.record.cluster < b.record.cluster ? -1 : 1));
  }

  /** peer returns what this member knows of one cluster (for tests and status). */
  peer(cluster: string): PeerState | undefined {
    return this.peers.get(cluster);
  }

  /** trustBundle returns every root in the mesh trust bundle (PEM), sorted by key. */
  trustBundle(): string[] {
    return [...this.trust.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
  }

  /** status lists this cluster and every known peer. */
  status(): ClusterStatus[] {
    const now = Date.now();
    const self: ClusterStatus = {
      cluster: this.opts.cluster,
      network: this.opts.network,
      live: true,
      self: true,
      services: this.exported.size,
      endpoints: [...this.exported.values()].reduce(
        (n, s) => n + (JSON.parse(s) as ExportedService).endpoints.length,
        0,
      ),
      seq: this.seq,
      lastBeatAgoMs: null,
      ackedSeq: null,
    };
    const peers = [...this.peers.entries()].map(([name, p]) => ({
      cluster: name,
      network: p.record?.network ?? '',
      live: p.live,
      self: false,
      services: p.services.size,
      endpoints: [...p.services.values()].reduce((n, s) => n + s.endpoints.length, 0),
      seq: p.lastSeq,
      lastBeatAgoMs: p.lastBeatAt > 0 ? now - p.lastBeatAt : null,
      ackedSeq: p.ackedOurSeq ?? null,
    }));
    return [self, ...peers].sort((a, b) => (a.cluster < b.cluster ? -1 : 1));
  }

  /** leave revokes the lease (peers withdraw this cluster at once) and stops. */
  async leave(): Promise<void> {
    await this.lease?.revoke().catch(() => undefined);
    await this.close();
  }

  /** close stops beating and listening, without revoking the lease (peers withdraw after the liveness budget). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const c of this.closers) await c();
    this.closers = [];
  }

  /**
   * register grants a lease and writes the ClusterRecord and every exported snapshot under it. When the lease is
   * lost (etcd unreachable past its TTL), it registers again with a new lease, retrying with backoff.
   */
  private async register(): Promise<void> {
    const { kv, mesh, cluster } = this.opts;
    const lease = await kv.grantLease(this.opts.leaseTtlSeconds ?? 10);
    this.lease = lease;
    lease.onLost((err) => {
      if (this.closed) return;
      this.opts.log.warn({ err: err.message }, 'federation lease lost; registering again');
      const retry = (attempt: number): void => {
        if (this.closed) return;
        this.register().catch(() => setTimeout(() => retry(attempt + 1), Math.min(5_000, 250 * 2 ** attempt)));
      };
      retry(0);
    });
    const record: ClusterRecord = {
      mesh,
      cluster,
      network: this.opts.network,
      gatewayAddress: this.opts.gatewayAddress ?? '',
      istiodAddress: this.opts.istiodAddress,
      version: this.opts.version ?? '0.1.0',
      ...(this.opts.locality ? { locality: this.opts.locality } : {}),
      joinedAt: new Date().toISOString(),
    };
    // Snapshots first, then any change not yet written (an export failed while etcd was unreachable), the record
    // last: a peer resyncs when the record appears, and must find the current state.
    for (const [host, body] of this.exported) {
      const s = JSON.parse(body) as Omit<ExportedService, 'seq'>;
      await lease.put(
        keys.endpoints(mesh, cluster, host),
        JSON.stringify({ ...s, seq: this.exportedSeq.get(host) ?? this.seq }),
      );
    }
    const desired = this.desired;
    if (desired) {
      const run = this.syncing.then(() => this.sync(desired));
      this.syncing = run.catch(() => undefined);
      await run;
    }
    await lease.put(keys.cluster(mesh, cluster), JSON.stringify(record));
  }

  private peerState(name: string): PeerState {
    let p = this.peers.get(name);
    if (!p) {
      p = { record: undefined, live: false, lastBeatAt: 0, beatsSinceWithdrawal: 0, lastSeq: 0, services: new Map() };
      this.peers.set(name, p);
    }
    return p;
  }

  private async onRecord(name: string, record: ClusterRecord, initial = false): Promise<void> {
    const p = this.peerState(name);
    const isNew = p.record === undefined;
    p.record = record;
    if (isNew) {
      await this.resync(name);
      p.live = true;
      p.lastBeatAt = Date.now();
      p.admittedAt = Date.now();
      this.opts.log.info({ peer: name, network: record.network, services: p.services.size }, 'peer cluster admitted');
      if (!initial) this.emit('change');
    }
  }

  private onRecordGone(name: string): void {
    const p = this.peers.get(name);
    if (!p) return;
    p.record = undefined;
    // The lease is the second signal: with heartbeats still arriving, the peer is alive and will re-register.
    if (p.live && Date.now() - p.lastBeatAt > this.withdrawMs) this.withdraw(name, p, 'lease expired');
    else if (!p.live) return;
    else
      this.opts.log.warn({ peer: name }, 'peer lease gone but heartbeats continue; keeping it until it re-registers');
  }

  private withdraw(name: string, p: PeerState, why: string): void {
    p.live = false;
    p.beatsSinceWithdrawal = 0;
    p.withdrawnAt = Date.now();
    this.opts.log.warn({ peer: name, why, silentMs: Date.now() - p.lastBeatAt }, 'peer cluster withdrawn');
    this.emit('change');
  }

  /**
   * resync replaces a peer's services with its snapshots in etcd. `atLeast` is a sequence number the peer had
   * committed to etcd before this read (from a beat or a delta), so the read reflects every change up to it.
   */
  private async resync(name: string, atLeast = 0): Promise<void> {
    const p = this.peerState(name);
    const snap = await this.opts.kv.getPrefix(keys.endpointsOf(this.opts.mesh, name));
    const services = new Map<string, ExportedService>();
    let maxSeq = 0;
    for (const v of snap.values()) {
      const s = JSON.parse(v) as ExportedService;
      services.set(s.hostname, s);
      maxSeq = Math.max(maxSeq, s.seq);
    }
    p.services = services;
    p.lastSeq = Math.max(p.lastSeq, maxSeq, atLeast);
    this.opts.log.debug({ peer: name, services: services.size, seq: p.lastSeq }, 'resynced from etcd');
  }

  private onDelta(data: Uint8Array): void {
    let d: EndpointDelta;
    try {
      d = JSON.parse(decoder.decode(data)) as EndpointDelta;
    } catch {
      return;
    }
    if (d.cluster === this.opts.cluster) return;
    const p = this.peerState(d.cluster);
    if (d.seq <= p.lastSeq) return;
    if (d.seq !== p.lastSeq + 1) {
      this.opts.log.info(
        { peer: d.cluster, expected: p.lastSeq + 1, got: d.seq },
        'endpoint delta gap; resyncing from etcd',
      );
      // Without its record the peer is re-registering (its lease expired): its snapshots may be missing, so keep
      // what we have until the record is back (onRecord resyncs then).
      if (!p.record) return;
      void this.resync(d.cluster, d.seq).then(() => {
        if (p.live) this.emit('change');
      });
      return;
    }
    p.lastSeq = d.seq;
    if (d.service) p.services.set(d.hostname, d.service);
    else p.services.delete(d.hostname);
    if (p.live) this.emit('change');
  }

  private onHeartbeat(data: Uint8Array): void {
    let hb: Heartbeat;
    try {
      hb = JSON.parse(decoder.decode(data)) as Heartbeat;
    } catch {
      return;
    }
    if (hb.cluster === this.opts.cluster) {
      const now = Date.now();
      // Our own beats stopped coming back (transport or this process stalled) and now do again: silence before this
      // moment says nothing about peers, whose beats may still be on their way.
      if (now - this.lastOwnEchoAt > Math.max(2 * this.hbMs, 250)) this.transportRecoveredAt = now;
      this.lastOwnEchoAt = now;
      return;
    }
    const p = this.peerState(hb.cluster);
    p.lastBeatAt = Date.now();
    const acked = hb.acks?.[this.opts.cluster];
    if (acked !== undefined) p.ackedOurSeq = acked;
    const committed = hb.committed ?? hb.seq;
    p.advertised = { seq: hb.seq, committed };
    if (!p.live) {
      if (p.beatsSinceWithdrawal === 0) p.firstBeatAfterWithdrawalAt = Date.now();
      p.beatsSinceWithdrawal++;
      // Re-admit after enough beats spread over time (beats buffered during a partition arrive in a burst, and say
      // nothing about now), and only while the peer's latest beat says etcd holds all its changes (no stale resync).
      const spread = Date.now() - (p.firstBeatAfterWithdrawalAt ?? 0) >= ((this.readmitBeats - 1) * this.hbMs) / 2;
      if (p.record && p.beatsSinceWithdrawal >= this.readmitBeats && spread && committed >= hb.seq) {
        void this.resync(hb.cluster, committed).then(() => {
          if (p.live || !p.record) return;
          if (p.advertised && p.advertised.committed < p.advertised.seq) return;
          p.live = true;
          p.admittedAt = Date.now();
          this.opts.log.info({ peer: hb.cluster }, 'peer cluster re-admitted');
          this.emit('change');
        });
      }
      return;
    }
    if (committed > p.lastSeq && p.record) {
      void this.resync(hb.cluster, committed).then(() => this.emit('change'));
    }
  }

  private beat(): void {
    const acks: Record<string, number> = {};
    for (const [name, p] of this.peers) if (p.live) acks[name] = p.lastSeq;
    const hb: Heartbeat = {
      cluster: this.opts.cluster,
      seq: this.seq,
      committed: this.committedSeq,
      sentAt: Date.now(),
      acks,
    };
    this.opts.transport.publish(
      subjects.heartbeat(this.opts.mesh, this.opts.cluster),
      encoder.encode(JSON.stringify(hb)),
    );
  }

  /**
   * transportHealthy reports whether our own heartbeats come back to us over NATS: the last one within two
   * heartbeat intervals. When they do not, silence from peers says nothing about them, and only the etcd lease (the
   * second signal) can withdraw a peer. The window is much shorter than the liveness budget, so that a transport
   * (or this process) stalling just before a peer's silence reaches the budget is not mistaken for that peer dying.
   */
  transportHealthy(): boolean {
    return Date.now() - this.lastOwnEchoAt <= Math.max(2 * this.hbMs, 250);
  }

  private checkLiveness(): void {
    const now = Date.now();
    const natsOk = this.transportHealthy();
    for (const [name, p] of this.peers) {
      if (!p.live || now - p.lastBeatAt <= this.withdrawMs) continue;
      // A peer is withdrawn when it is silent on a working transport (silence counted only while the transport
      // worked), or silent and its lease is gone.
      if (natsOk && now - this.transportRecoveredAt <= this.withdrawMs) continue;
      if (natsOk) this.withdraw(name, p, 'missed heartbeats');
      else if (!p.record) this.withdraw(name, p, 'lease expired and no heartbeats');
    }
  }
}
