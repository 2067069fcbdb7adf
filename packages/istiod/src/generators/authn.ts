/**
 * PeerAuthentication (security.istio.io): which mutual TLS mode a workload port accepts, composed as Istio
 * composes it (`model.GetPeerAuthenticationsForWorkload` + `ComposePeerAuthentication`,
 * https://istio.io/latest/docs/reference/config/security/peer_authentication/): the mesh policy (root namespace,
 * no selector), then the namespace policy (no selector), then the workload policy (selector matching the
 * workload's labels), then the workload policy's `portLevelMtls` for the port. Each level overrides the one
 * above unless its mode is UNSET (or absent), which inherits. Several policies at one level: the oldest wins.
 *
 * fedmesh's implicit default, when no level sets a mode, is STRICT rather than Istio's PERMISSIVE: the inbound
 * port of an explicit-mode sidecar stays mesh-only until a PeerAuthentication opens it (docs/adr/0010).
 */
import type { PeerAuthenticationObject } from '../model/config.js';
import { namespaceOf } from '../model/config.js';
import type { ServiceInstance } from '../model/service.js';
import type { PushContext } from '../push-context.js';
import { matchesLabels } from './common.js';

/** MtlsMode is the effective mutual TLS mode of a workload port. */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** DEFAULT_MTLS_MODE is the mode of a port no PeerAuthentication sets (fedmesh: STRICT; Istio: PERMISSIVE). */
export const DEFAULT_MTLS_MODE: MtlsMode = 'STRICT';

/** WorkloadMtls is a workload's composed mTLS settings: its mode, and per-port overrides (workload port numbers). */
export interface WorkloadMtls {
  mode: MtlsMode;
  ports: ReadonlyMap<number, MtlsMode>;
}

function setMode(m: { mode?: string | undefined } | undefined): MtlsMode | undefined {
  const v = m?.mode;
  return v === 'STRICT' || v === 'PERMISSIVE' || v === 'DISABLE' ? v : undefined;
}

function hasSelector(pa: PeerAuthenticationObject): boolean {
  return Object.keys(pa.spec.selector?.matchLabels ?? {}).length > 0;
}

/**
 * workloadMtls composes the PeerAuthentications that apply to a workload in `namespace` with `labels`. A
 * selector only selects workloads in the policy's own namespace (also in the root namespace).
 */
export function workloadMtls(push: PushContext, namespace: string, labels: Record<string, string>): WorkloadMtls {
  const all = push.peerAuthentications;
  const root = push.mesh.rootNamespace;
  const mesh = all.find((p) => namespaceOf(p) === root && !hasSelector(p));
  const ns = namespace === root ? undefined : all.find((p) => namespaceOf(p) === namespace && !hasSelector(p));
  const workload = all.find(
    (p) => namespaceOf(p) === namespace && hasSelector(p) && matchesLabels(p.spec.selector?.matchLabels ?? {}, labels),
  );
  let mode = DEFAULT_MTLS_MODE;
  for (const p of [mesh, ns, workload]) mode = setMode(p?.spec.mtls) ?? mode;
  const ports = new Map<number, MtlsMode>();
  for (const [port, m] of Object.entries(workload?.spec.portLevelMtls ?? {}))
    ports.set(Number(port), setMode(m) ?? mode);
  return { mode, ports };
}

/** portMtlsMode is the effective mode of one workload port (target port). */
export function portMtlsMode(w: WorkloadMtls, port: number): MtlsMode {
  return w.ports.get(port) ?? w.mode;
}

/**
 * serverMtlsModes returns the effective mode at each instance's target port, as a client's auto mTLS needs it
 * (Istio reads PeerAuthentication to decide whether to originate mTLS).
 */
export function serverMtlsModes(push: PushContext, instances: readonly ServiceInstance[]): MtlsMode[] {
  return instances.map((i) =>
    portMtlsMode(workloadMtls(push, i.endpoint.namespace, i.endpoint.labels), i.servicePort.targetPort),
  );
}

/**
 * autoMtlsToServers is the PeerAuthentication half of Istio's auto mTLS for a client cluster whose endpoints all
 * have sidecars: false (originate plaintext) when every endpoint's port is DISABLE, true (originate mTLS)
 * otherwise. With a mix, mTLS is kept and the DISABLE endpoints, which will refuse it, are reported in
 * `warnings` (Istio picks per endpoint with transport socket matches, which fedmesh's proxy does not implement).
 */
export function autoMtlsToServers(
  push: PushContext,
  instances: readonly ServiceInstance[],
  cluster: string,
  warnings: string[],
): boolean {
  const modes = serverMtlsModes(push, instances);
  const disabled = modes.filter((m) => m === 'DISABLE').length;
  if (disabled > 0 && disabled === modes.length) return false;
  if (disabled > 0)
    warnings.push(
      `${cluster}: ${disabled} of ${modes.length} endpoints have PeerAuthentication DISABLE; they will refuse mTLS`,
    );
  return true;
}
