import fs from 'node:fs';
import path from 'node:path';
import type { MeshResource } from '@fedmesh/api';
import { INGRESS_DEFAULT_LABELS } from './gateway.js';

/** GatewayState is one gateway process of a local mesh in `state.json`. */
export interface GatewayState {
  name: string;
  namespace: string;
  mode: 'ingress';
  serviceAccount: string;
  labels: Record<string, string>;
  address: string;
  spiffeId: string;
  pid: number;
  admin: string;
}

/** INGRESS_GATEWAY_POD is the local ingress gateway's pod: Istio's default ingress gateway names. */
export const INGRESS_GATEWAY_POD = {
  name: 'istio-ingressgateway-0',
  namespace: 'istio-system',
  serviceAccount: 'istio-ingressgateway-service-account',
  labels: INGRESS_DEFAULT_LABELS,
} as const;

/**
 * wantsIngressGateway reports whether manifests hold an Istio Gateway that Istio's default ingress gateway would
 * serve: its `selector` matches `istio: ingressgateway` (and `app: istio-ingressgateway`) and one of its servers is
 * not TLS AUTO_PASSTHROUGH (east-west). `fedmesh up` then starts one, as Istio's default profile installs one.
 */
export function wantsIngressGateway(resources: readonly MeshResource[]): boolean {
  const labels: Record<string, string> = INGRESS_DEFAULT_LABELS;
  return resources.some(
    (r) =>
      r.kind === 'Gateway' &&
      Object.entries(r.spec.selector ?? {}).every(([k, v]) => labels[k] === v) &&
      r.spec.servers.some((s) => s.tls?.mode !== 'AUTO_PASSTHROUGH'),
  );
}

/** LocalGatewayDeps are what starting a local gateway needs from the mesh that runs it. */
export interface LocalGatewayDeps {
  stateDir: string;
  /** discovery is istiod's TLS xDS and CA address. */
  discovery: string;
  rootCertFile: string;
  cluster: string;
  /** token mints a bootstrap token for a ServiceAccount (istiod's admin API). */
  token: (namespace: string, serviceAccount: string) => Promise<string>;
  /** spawn starts `fedmesh <args…>` detached, logging to `<stateDir>/logs/<logName>.log`; returns its pid. */
  spawn: (logName: string, args: string[]) => number;
}

/**
 * startIngressGateway starts a local mesh's ingress gateway: `fedmesh gateway --mode ingress` on `ip` as
 * `istio-ingressgateway-0` in `istio-system` (labels `istio: ingressgateway`, ServiceAccount
 * `istio-ingressgateway-service-account`, a bootstrap token in a 0600 file), and returns its state. The caller
 * waits for its admin `/ready`.
 */
export async function startIngressGateway(deps: LocalGatewayDeps, ip: string): Promise<GatewayState> {
  const p = INGRESS_GATEWAY_POD;
  const dir = path.join(deps.stateDir, 'pods', p.name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, await deps.token(p.namespace, p.serviceAccount), { mode: 0o600 });
  const pid = deps.spawn(`${p.name}.gateway`, [
    'gateway',
    '--mode',
    'ingress',
    '--ip',
    ip,
    '--pod',
    p.name,
    '--namespace',
    p.namespace,
    '--service-account',
    p.serviceAccount,
    '--labels',
    JSON.stringify(p.labels),
    '--cluster-id',
    deps.cluster,
    '--discovery',
    deps.discovery,
    '--root-cert',
    deps.rootCertFile,
    '--token-file',
    tokenFile,
  ]);
  return {
    name: p.name,
    namespace: p.namespace,
    mode: 'ingress',
    serviceAccount: p.serviceAccount,
    labels: { ...p.labels },
    address: ip,
    spiffeId: `spiffe://cluster.local/ns/${p.namespace}/sa/${p.serviceAccount}`,
    pid,
    admin: `${ip}:15000`,
  };
}
