import {
  AUTO_REGISTER_GROUP,
  WorkloadEntryAnnotations,
  type WorkloadEntrySpec,
  type WorkloadGroupSpec,
  type WorkloadHealthReport,
} from '@fedmesh/api';
import type { SpiffeIdentity } from '@fedmesh/pki';
import type { StreamInfo } from '@fedmesh/xds';
import type { Logger } from 'pino';
import { configKey, type ConfigStore, type StoredObject } from '../config/store.js';
import type { ConfigObject } from '../model/config.js';
import type { ProxyModel } from '../model/proxy.js';
import type { WorkloadEntryCondition, WorkloadEntryObject } from './workload-entry-registry.js';

/** WorkloadGroupObject is a stored WorkloadGroup. */
export type WorkloadGroupObject = ConfigObject<WorkloadGroupSpec>;

/** AUTO_REGISTRATION_OWNER is the config store owner of auto-registered WorkloadEntries. */
export const AUTO_REGISTRATION_OWNER = 'vm-auto-registration';

/** DEFAULT_GRACE_PERIOD_MS is how long an entry outlives its proxy's last disconnect (Istio's default, 10 s). */
export const DEFAULT_GRACE_PERIOD_MS = 10_000;

/** WorkloadEntryControllerOptions configure {@link WorkloadEntryController}. */
export interface WorkloadEntryControllerOptions {
  store: ConfigStore<StoredObject>;
  /** controller names this istiod in the `istio.io/workloadController` annotation. */
  controller: string;
  /** gracePeriodMs is how long after the last disconnect an entry is removed (default 10 s). */
  gracePeriodMs?: number;
  log: Logger;
  /** now returns the time in ms (tests inject it). */
  now?: () => number;
}

/** HealthResult is the outcome of a health report: the entry updated, or why nothing was. */
export type HealthResult =
  { ok: true; workloadEntry: string } | { ok: false; reason: 'NOT_REGISTERED' | 'IDENTITY_MISMATCH'; message: string };

interface Registration {
  key: string;
  proxyIds: Set<string>;
  streams: Set<number>;
  timer?: NodeJS.Timeout | undefined;
}

function sanitizeName(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '');
}

/**
 * workloadEntryName is Istio's auto-registered entry name: `<group>-<ip>` (`:` of IPv6 made `-`), with
 * `-<network>` appended when the proxy names a network.
 */
export function workloadEntryName(group: string, ip: string, network: string): string {
  return sanitizeName([group, ip, network].filter(Boolean).join('-')).slice(0, 253);
}

/**
 * WorkloadEntryController is Istio's auto-registration (`pilot/pkg/autoregistration`): when a proxy whose ADS stream
 * presented a certificate for its Node's identity ({@link WorkloadEntryController.markVerified}) connects with Node
 * metadata `AUTO_REGISTER_GROUP: <group>`, and the WorkloadGroup `<group>` exists in its namespace with the proxy's
 * ServiceAccount, it writes a WorkloadEntry `<group>-<ip>` from the group's template (address: the proxy's IP; labels:
 * group metadata, template and the proxy's own; ports, ServiceAccount, network, locality and weight from the
 * template, the proxy's network and locality winning). A group with a readiness `probe` makes the entry health-checked
 * (`proxy.istio.io/health-checks-enabled`): it is an endpoint only while the agent reports it healthy
 * ({@link WorkloadEntryController.reportHealth}). When the proxy's last stream closes, the entry is marked
 * `istio.io/disconnectedAt` and removed `gracePeriodMs` later unless the proxy reconnects. Refusals are logged.
 */
export class WorkloadEntryController {
  private readonly verified = new WeakSet<ProxyModel>();
  private readonly byKey = new Map<string, Registration>();
  private readonly byStream = new Map<number, Registration>();
  private readonly byProxyId = new Map<string, Registration>();
  private readonly now: () => number;
  private closed = false;

  /** constructor stores options; nothing happens until a stream opens. */
  constructor(private readonly opts: WorkloadEntryControllerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** markVerified records that this proxy's stream presented a certificate for its Node's namespace and SA. */
  markVerified(proxy: ProxyModel): void {
    this.verified.add(proxy);
  }

  /** onStreamOpen registers (or re-connects) the proxy's WorkloadEntry when its Node asks for auto-registration. */
  onStreamOpen(stream: StreamInfo): void {
    const group = stream.node.metadata?.[AUTO_REGISTER_GROUP];
    const proxy = stream.identity as ProxyModel | undefined;
    if (typeof group !== 'string' || proxy === undefined || this.closed) return;
    const log = this.opts.log.child({ nodeId: proxy.id, workloadGroup: `${proxy.namespace}/${group}` });
    if (!this.verified.has(proxy)) {
      log.warn('auto-registration refused: the stream has no verified workload certificate (use 15012)');
      return;
    }
    const wg = this.opts.store.get(`WorkloadGroup/${proxy.namespace}/${group}`) as WorkloadGroupObject | undefined;
    if (!wg) {
      log.warn('auto-registration refused: no such WorkloadGroup');
      return;
    }
    const groupSa = wg.spec.template.serviceAccount ?? 'default';
    if (groupSa !== proxy.serviceAccount) {
      log.warn(
        { groupServiceAccount: groupSa, serviceAccount: proxy.serviceAccount },
        'auto-registration refused: ServiceAccount mismatch',
      );
      return;
    }
    const network = typeof stream.node.metadata?.['NETWORK'] === 'string' ? stream.node.metadata['NETWORK'] : '';
    const entry = this.entryFromGroup(wg, group, proxy, network);
    const key = configKey(entry);
    let reg = this.byKey.get(key);
    if (!reg) {
      reg = { key, proxyIds: new Set(), streams: new Set() };
      this.byKey.set(key, reg);
    }
    if (reg.timer) clearTimeout(reg.timer);
    reg.timer = undefined;
    reg.streams.add(stream.id);
    reg.proxyIds.add(proxy.id);
    this.byStream.set(stream.id, reg);
    this.byProxyId.set(proxy.id, reg);
    const prev = this.opts.store.get(key) as WorkloadEntryObject | undefined;
    // A reconnect keeps the health the agent last reported; a new entry of a probed group starts unhealthy.
    const status =
      prev?.status ??
      (wg.spec.probe ? { conditions: [condition(false, 'waiting for the first probe', this.now())] } : undefined);
    this.opts.store.apply([{ ...entry, ...(status ? { status } : {}) }], AUTO_REGISTRATION_OWNER);
    log.info({ workloadEntry: key, address: proxy.ip, reconnect: prev !== undefined }, 'WorkloadEntry auto-registered');
  }

  /** onStreamClose starts the grace period when the entry's last stream closed. */
  onStreamClose(stream: StreamInfo): void {
    const reg = this.byStream.get(stream.id);
    if (!reg) return;
    this.byStream.delete(stream.id);
    reg.streams.delete(stream.id);
    if (reg.streams.size > 0 || this.closed) return;
    const prev = this.opts.store.get(reg.key) as WorkloadEntryObject | undefined;
    if (prev) {
      const annotations = {
        ...prev.metadata.annotations,
        [WorkloadEntryAnnotations.disconnectedAt]: new Date(this.now()).toISOString(),
      };
      this.opts.store.apply(
        [{ ...prev, metadata: { ...prev.metadata, annotations } } as StoredObject],
        AUTO_REGISTRATION_OWNER,
      );
    }
    const grace = this.opts.gracePeriodMs ?? DEFAULT_GRACE_PERIOD_MS;
    this.opts.log.info(
      { workloadEntry: reg.key, gracePeriodMs: grace },
      'workload disconnected; entry removed after the grace period unless it reconnects',
    );
    reg.timer = setTimeout(() => this.expire(reg), grace);
    reg.timer.unref();
  }

  /**
   * reportHealth records a readiness probe result for the entry of the connected proxy `report.proxyId`, from a
   * caller authenticated as `caller` (its client certificate). The entry must be registered and belong to the
   * caller's namespace and ServiceAccount. Only a change of health writes the store (and so pushes EDS).
   */
  reportHealth(caller: SpiffeIdentity, report: WorkloadHealthReport): HealthResult {
    const reg = this.byProxyId.get(report.proxyId);
    const we =
      reg && reg.streams.size > 0 ? (this.opts.store.get(reg.key) as WorkloadEntryObject | undefined) : undefined;
    if (!reg || !we)
      return {
        ok: false,
        reason: 'NOT_REGISTERED',
        message: 'no connected auto-registered workload with this proxy ID',
      };
    if (
      (we.metadata.namespace ?? 'default') !== caller.namespace ||
      (we.spec.serviceAccount ?? 'default') !== caller.serviceAccount
    )
      return { ok: false, reason: 'IDENTITY_MISMATCH', message: 'the WorkloadEntry belongs to another identity' };
    const current = we.status?.conditions?.find((c) => c.type === 'Healthy');
    const want = report.healthy ? 'True' : 'False';
    if (current?.status !== want || (current.message ?? '') !== report.message) {
      const conditions = [
        ...(we.status?.conditions ?? []).filter((c) => c.type !== 'Healthy'),
        condition(report.healthy, report.message, this.now(), current),
      ];
      this.opts.store.apply([{ ...we, status: { ...we.status, conditions } } as StoredObject], AUTO_REGISTRATION_OWNER);
      if (current?.status !== want)
        this.opts.log.info(
          { workloadEntry: reg.key, healthy: report.healthy, message: report.message },
          'workload health changed',
        );
    }
    return { ok: true, workloadEntry: reg.key.slice('WorkloadEntry/'.length) };
  }

  /** close cancels grace timers (entries stay in the store; they die with the process). */
  close(): void {
    this.closed = true;
    for (const reg of this.byKey.values()) if (reg.timer) clearTimeout(reg.timer);
  }

  private expire(reg: Registration): void {
    reg.timer = undefined;
    if (reg.streams.size > 0) return;
    this.byKey.delete(reg.key);
    for (const id of reg.proxyIds) if (this.byProxyId.get(id) === reg) this.byProxyId.delete(id);
    if (this.opts.store.ownerOf(reg.key) === AUTO_REGISTRATION_OWNER) this.opts.store.remove([reg.key]);
    this.opts.log.info({ workloadEntry: reg.key }, 'WorkloadEntry removed after the grace period');
  }

  private entryFromGroup(
    wg: WorkloadGroupObject,
    group: string,
    proxy: ProxyModel,
    network: string,
  ): WorkloadEntryObject {
    const t = wg.spec.template;
    const labels = { ...wg.spec.metadata?.labels, ...t.labels, ...proxy.labels };
    const locality = [proxy.locality.region, proxy.locality.zone, proxy.locality.subZone].filter(Boolean).join('/');
    const spec: WorkloadEntrySpec = {
      ...t,
      address: proxy.ip,
      labels,
      serviceAccount: t.serviceAccount ?? 'default',
      ...(network || t.network ? { network: network || t.network } : {}),
      ...(locality || t.locality ? { locality: locality || t.locality } : {}),
    };
    const namespace = proxy.namespace;
    return {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: {
        name: workloadEntryName(group, proxy.ip, network),
        namespace,
        labels,
        annotations: {
          ...wg.spec.metadata?.annotations,
          [WorkloadEntryAnnotations.autoRegistrationGroup]: group,
          [WorkloadEntryAnnotations.connectedAt]: new Date(this.now()).toISOString(),
          [WorkloadEntryAnnotations.workloadController]: this.opts.controller,
          ...(wg.spec.probe ? { [WorkloadEntryAnnotations.healthChecksEnabled]: 'true' } : {}),
        },
        ownerReferences: [{ kind: 'WorkloadGroup', name: group }],
      },
      spec,
    };
  }
}

function condition(
  healthy: boolean,
  message: string,
  now: number,
  prev?: WorkloadEntryCondition,
): WorkloadEntryCondition {
  const status = healthy ? 'True' : 'False';
  const at = new Date(now).toISOString();
  return {
    type: 'Healthy',
    status,
    lastProbeTime: at,
    lastTransitionTime: prev?.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : at,
    ...(message ? { message } : {}),
  };
}
