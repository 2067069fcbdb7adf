import { shortTypeName, TYPE_URL_ORDER } from '@fedmesh/api/xds';
import {
  SnapshotCache,
  Snapshot,
  createAdsServer,
  type AdsCall as XdsAdsCall,
  type AdsServer,
  type StreamInfo,
  type ResourceEntry,
} from '@fedmesh/xds';
import { TypeUrl } from '@fedmesh/api/xds';
import type { Logger } from 'pino';
import type { ConfigStore, StoredObject } from './config/store.js';
import { createGenerators, type ResourceGenerator } from './generators/index.js';
import { createProxylessGenerators, isProxylessNode } from './generators/proxyless.js';
import type { IstiodMetrics } from './metrics.js';
import { parseProxyNode, type ProxyModel } from './model/proxy.js';
import type { ServiceRegistry } from './model/service.js';
import { PushContext, type MeshSettings } from './push-context.js';
import { IncrementalGenerator } from './incremental.js';

/** DiscoveryOptions wire the discovery server to its inputs. */
export interface DiscoveryOptions {
  store: ConfigStore<StoredObject>;
  registries: ServiceRegistry[];
  mesh: MeshSettings;
  trustBundlePem: () => string;
  log: Logger;
  metrics: IstiodMetrics;
  /** debounceMs is the quiet period before a push (Istio's PILOT_DEBOUNCE_AFTER, 100 ms); debounceMaxMs caps it (1 s). */
  debounceMs?: number;
  debounceMaxMs?: number;
  /**
   * verifyIdentity checks that the stream's peer may speak for the proxy (namespace and service account match
   * its certificate). Throws to refuse. Unset means trust the Node (plaintext loopback port).
   */
  verifyIdentity?: (call: AdsCall, proxy: ProxyModel) => void;
  /** onStreamOpen and onStreamClose observe each ADS stream after it registered and after it closed (VM auto-registration). */
  onStreamOpen?: (stream: StreamInfo) => void;
  onStreamClose?: (stream: StreamInfo) => void;
}

/** AdsCall is one ADS stream as grpc-js hands it to the server, State of the World or Delta. */
export type AdsCall = XdsAdsCall;

/** ProxyStatus is one proxy's sync state per type, as `proxy-status` shows it. */
export interface ProxyStatus {
  id: string;
  namespace: string;
  serviceAccount: string;
  connectedAt: string;
  types: Record<
    string,
    {
      status: 'SYNCED' | 'STALE' | 'NOT SENT' | 'NACKED';
      sent?: string | undefined;
      acked?: string | undefined;
      error?: string | undefined;
    }
  >;
}

interface Connected {
  proxy: ProxyModel;
  /** generators are the sidecar generators, or the proxyless ones for a gRPC client (`GENERATOR: grpc`). */
  generators: Map<string, ResourceGenerator>;
  streams: Set<StreamInfo>;
}

/**
 * DiscoveryServer is istiod's push path: config and registry changes are debounced, an immutable
 * {@link PushContext} is built, and every connected proxy gets a fresh {@link Snapshot} from the per-type
 * generators. The ADS server sends a type only after the previous push of it was ACKed or NACKed, and
 * unchanged types keep their version (content hash), so they are not re-sent.
 */
export class DiscoveryServer {
  readonly cache = new SnapshotCache();
  readonly ads: AdsServer;
  private readonly generators: Map<string, ResourceGenerator>;
  private readonly proxylessGenerators: Map<string, ResourceGenerator>;
  private readonly connected = new Map<string, Connected>();
  private push: PushContext | undefined;
  /** incremental skips generation a change cannot affect (see incremental.ts). */
  readonly incremental = new IncrementalGenerator();
  private pushVersion = 0;
  private timer: NodeJS.Timeout | undefined;
  private firstRequestAt = 0;
  private changeAt = 0;
  private lastWarnings = new Set<string>();

  /** constructor builds the ADS server; nothing is pushed before a proxy connects or a change arrives. */
  constructor(private readonly opts: DiscoveryOptions) {
    this.generators = createGenerators();
    this.proxylessGenerators = createProxylessGenerators();
    const log = opts.log.child({ scope: 'ads' });
    this.ads = createAdsServer(
      this.cache,
      {
        authenticate: (call, node) => {
          const proxy = parseProxyNode(node);
          opts.verifyIdentity?.(call, proxy);
          return proxy;
        },
        onStreamOpen: (s) => {
          this.onOpen(s);
          opts.onStreamOpen?.(s);
        },
        onStreamClose: (s) => {
          this.onClose(s);
          opts.onStreamClose?.(s);
        },
        onPush: (_s, t) => opts.metrics.pushes.inc({ type: shortTypeName(t) }),
        onAck: () => {
          if (this.changeAt > 0) opts.metrics.convergence.observe((Date.now() - this.changeAt) / 1000);
        },
        onNack: (s, t, v, m) => {
          opts.metrics.rejects.inc({ type: shortTypeName(t) });
          opts.log.warn({ nodeId: s.node.id, type: shortTypeName(t), version: v, message: m }, 'proxy rejected config');
        },
      },
      log,
    );
    opts.store.on('change', () => this.requestPush());
  }

  /** pushContext returns the current push context (built on first use). */
  pushContext(): PushContext {
    if (!this.push) this.push = this.buildPush();
    return this.push;
  }

  /** requestPush schedules a full push after the debounce window (quiet period, capped by the max delay). */
  requestPush(): void {
    const now = Date.now();
    if (this.firstRequestAt === 0) {
      this.firstRequestAt = now;
      this.changeAt = now;
    }
    if (this.timer) clearTimeout(this.timer);
    const quiet = this.opts.debounceMs ?? 100;
    const max = this.opts.debounceMaxMs ?? 1000;
    const delay = Math.max(0, Math.min(quiet, this.firstRequestAt + max - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstRequestAt = 0;
      this.pushAll();
    }, delay);
  }

  /** pushAll rebuilds the push context and every connected proxy's snapshot now. */
  pushAll(): void {
    this.push = this.buildPush();
    for (const c of this.connected.values()) this.pushProxy(c.proxy);
  }

  /** status returns every connected proxy's sync state per type. */
  status(): ProxyStatus[] {
    return this.ads.streams().map((s) => {
      const p = s.identity as ProxyModel | undefined;
      const snap = this.cache.getSnapshot(s.node.id);
      const types: ProxyStatus['types'] = {};
      for (const t of TYPE_URL_ORDER) {
        const st = s.types.get(t);
        const want = snap?.version(t);
        const name = shortTypeName(t);
        if (!st?.sentVersion) types[name] = { status: 'NOT SENT' };
        else if (st.nack && st.nack.version === want)
          types[name] = { status: 'NACKED', sent: st.sentVersion, error: st.nack.message };
        else if (st.ackedVersion === want)
          types[name] = { status: 'SYNCED', sent: st.sentVersion, acked: st.ackedVersion };
        else
          types[name] = {
            status: 'STALE',
            sent: st.sentVersion,
            ...(st.ackedVersion ? { acked: st.ackedVersion } : {}),
          };
      }
      return {
        id: s.node.id,
        namespace: p?.namespace ?? '',
        serviceAccount: p?.serviceAccount ?? '',
        connectedAt: new Date(s.connectedAt).toISOString(),
        types,
      };
    });
  }

  /** snapshotFor returns the snapshot last pushed to a proxy, for `/debug/config_dump` and `proxy-config`. */
  snapshotFor(nodeId: string): Snapshot | undefined {
    return this.cache.getSnapshot(nodeId);
  }

  /** close cancels a pending push. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private buildPush(): PushContext {
    this.pushVersion++;
    // A copy per push: the mesh settings change in place when the mesh config does, and a push must not see that.
    return new PushContext(
      this.pushVersion,
      structuredClone(this.opts.mesh),
      this.opts.store,
      this.opts.registries,
      this.opts.trustBundlePem(),
    );
  }

  private pushProxy(proxy: ProxyModel): void {
    const push = this.pushContext();
    const warnings: string[] = [];
    const resources: Record<string, ResourceEntry[]> = {};
    const generators = this.connected.get(proxy.id)?.generators ?? this.generators;
    for (const [typeUrl, gen] of generators) resources[typeUrl] = this.incremental.generate(gen, push, proxy, warnings);
    const snapshot = new Snapshot(resources, {
      [TypeUrl.RouteConfiguration]: ['outbound'],
    });
    for (const w of warnings) {
      if (this.lastWarnings.has(w)) continue;
      this.lastWarnings.add(w);
      this.opts.log.warn({ proxy: proxy.id }, w);
    }
    this.cache.setSnapshot(proxy.id, snapshot);
  }

  private onOpen(s: StreamInfo): void {
    const proxy = s.identity as ProxyModel;
    let c = this.connected.get(proxy.id);
    if (!c) {
      const generators = isProxylessNode(s.node) ? this.proxylessGenerators : this.generators;
      c = { proxy, generators, streams: new Set() };
      this.connected.set(proxy.id, c);
    }
    c.streams.add(s);
    this.opts.metrics.connected.set(this.connected.size);
    this.opts.log.info(
      { nodeId: proxy.id, peer: s.peer, protocol: s.protocol, proxyless: c.generators === this.proxylessGenerators },
      'proxy connected',
    );
    this.pushProxy(proxy);
  }

  private onClose(s: StreamInfo): void {
    const proxy = s.identity as ProxyModel | undefined;
    if (!proxy) return;
    const c = this.connected.get(proxy.id);
    c?.streams.delete(s);
    if (c && c.streams.size === 0) {
      this.connected.delete(proxy.id);
      this.cache.clearSnapshot(proxy.id);
      this.incremental.forget(proxy.id);
    }
    this.opts.metrics.connected.set(this.connected.size);
    this.opts.log.info({ nodeId: proxy.id }, 'proxy disconnected');
  }
}
