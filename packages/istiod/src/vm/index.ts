/**
 * VM support in istiod: bootstrap tokens (`../ca/vm-token-authenticator.ts`), WorkloadEntry auto-registration with
 * health, the WorkloadEntry registry, the health-report gRPC service and the `/v1/vm/bootstrap` admin route.
 * {@link createVmSupport} builds them all for {@link Istiod}; see README.md here.
 */
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { StreamInfo } from '@fedmesh/xds';
import type { Logger } from 'pino';
import { VmTokenAuthenticator } from '../ca/vm-token-authenticator.js';
import type { ConfigStore, StoredObject } from '../config/store.js';
import type { ProxyModel } from '../model/proxy.js';
import type { MeshSettings } from '../push-context.js';
import { WorkloadEntryController, type WorkloadGroupObject } from './auto-registration.js';
import { createWorkloadHealthService } from './health-service.js';
import { createVmAdmin, type VmAdmin } from './vm-admin.js';
import { WorkloadEntryRegistry } from './workload-entry-registry.js';

export * from './auto-registration.js';
export * from './health-service.js';
export * from './vm-admin.js';
export * from './workload-entry-registry.js';

/** VmSupportOptions are what {@link createVmSupport} wires together. */
export interface VmSupportOptions {
  store: ConfigStore<StoredObject>;
  /** stateDir is istiod's state directory; the token signing key lives in `<stateDir>/vm-token/signing-key.pem`. */
  stateDir: string;
  mesh: MeshSettings;
  /** discoveryAddress returns istiod's 15012 `host:port` (known once bound). */
  discoveryAddress: () => string;
  trustBundlePem: () => string;
  /** gracePeriodMs before a disconnected VM's entry is removed (default 10 s, Istio's). */
  gracePeriodMs?: number;
  log: Logger;
}

/** VmSupport is istiod's VM machinery, ready to be plugged into the CA chain, registries, ADS hooks and servers. */
export interface VmSupport {
  authenticator: VmTokenAuthenticator;
  registry: WorkloadEntryRegistry;
  controller: WorkloadEntryController;
  healthService: { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation };
  admin: VmAdmin;
  /** markVerified, onStreamOpen and onStreamClose feed ADS stream events to auto-registration. */
  markVerified(proxy: ProxyModel): void;
  onStreamOpen(stream: StreamInfo): void;
  onStreamClose(stream: StreamInfo): void;
  close(): void;
}

/**
 * createVmSupport loads (or creates, 0600) the VM token signing key and builds the VM parts. Throws when the key file
 * is unreadable or not a P-256 key.
 */
export async function createVmSupport(opts: VmSupportOptions): Promise<VmSupport> {
  const { store, mesh, log } = opts;
  const authenticator = await VmTokenAuthenticator.load({
    keyFile: path.join(opts.stateDir, 'vm-token', 'signing-key.pem'),
    trustDomain: mesh.trustDomain,
    workloadGroup: (namespace, name) => {
      const wg = store.get(`WorkloadGroup/${namespace}/${name}`) as WorkloadGroupObject | undefined;
      return wg ? { serviceAccount: wg.spec.template.serviceAccount ?? 'default' } : undefined;
    },
  });
  const controller = new WorkloadEntryController({
    store,
    controller: `istiod-${mesh.clusterId}`,
    ...(opts.gracePeriodMs !== undefined ? { gracePeriodMs: opts.gracePeriodMs } : {}),
    log: log.child({ scope: 'vm.autoregistration' }),
  });
  return {
    authenticator,
    registry: new WorkloadEntryRegistry(store, {
      cluster: mesh.clusterId,
      network: mesh.network,
      domainSuffix: mesh.domainSuffix,
    }),
    controller,
    healthService: createWorkloadHealthService({
      controller,
      trustDomains: [mesh.trustDomain],
      log: log.child({ scope: 'vm.health' }),
    }),
    admin: createVmAdmin({
      store,
      tokens: authenticator,
      mesh,
      discoveryAddress: opts.discoveryAddress,
      trustBundlePem: opts.trustBundlePem,
      log: log.child({ scope: 'vm.admin' }),
    }),
    markVerified: (proxy) => controller.markVerified(proxy),
    onStreamOpen: (s) => controller.onStreamOpen(s),
    onStreamClose: (s) => controller.onStreamClose(s),
    close: () => controller.close(),
  };
}
