import { parseManifests } from '@fedmesh/api';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { namespaceOf, type DestinationRuleObject, type VirtualServiceObject } from '../model/config.js';
import type { ClientTLSSettings } from '@fedmesh/api';
import { PushContext, type MeshSettings } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';

/** AnalysisLevel is Istio's message level. */
export type AnalysisLevel = 'Error' | 'Warning' | 'Info';

/** AnalysisMessage is one finding, shaped like `istioctl analyze` output. */
export interface AnalysisMessage {
  /** code is Istio's message code, e.g. `IST0101`. */
  code: string;
  /** name is Istio's message name, e.g. `ReferencedResourceNotFound`. */
  name: string;
  level: AnalysisLevel;
  /** resource is `Kind namespace/name`. */
  resource: string;
  /** origin is `file:line` when known. */
  origin?: string;
  message: string;
}

/** AnalysisInput is one manifest file to analyze. */
export interface AnalysisInput {
  file: string;
  text: string;
}

/** formatAnalysisMessage renders a message as istioctl does: `Error [IST0101] (VirtualService default/reviews a.yaml:3) …`. */
export function formatAnalysisMessage(m: AnalysisMessage): string {
  return `${m.level} [${m.code}] (${m.resource}${m.origin ? ` ${m.origin}` : ''}) ${m.message}`;
}

const MESH: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};

/** DELEGATE_PROBLEM words why a delegate reference does not resolve (nothing more when it does not exist). */
const DELEGATE_PROBLEM: Record<'not found' | 'has hosts' | 'not exported', (rootNs: string) => string> = {
  'not found': () => '',
  'has hosts': () => ' (it has hosts, so it is not a delegate)',
  'not exported': (rootNs) => ` (its exportTo does not include namespace ${rootNs})`,
};

function needsCa(tls: ClientTLSSettings | undefined): boolean {
  if (!tls) return false;
  if (tls.mode !== 'SIMPLE' && tls.mode !== 'MUTUAL') return false;
  return tls.caCertificates === undefined && tls.credentialName === undefined && tls.insecureSkipVerify !== true;
}

/**
 * analyze runs fedmesh's analyzers over manifest files, with Istio's message codes and levels
 * (https://istio.io/latest/docs/reference/config/analysis/):
 * - IST0106 SchemaValidationError: a document that does not validate (with its field path);
 * - IST0101 ReferencedResourceNotFound: a VirtualService destination host, host+subset, or gateway that does not
 *   exist among the given Services, ServiceEntries, DestinationRules and Gateways, or an `http[].delegate` that
 *   names no delegate VirtualService (none by that name, one with hosts, or one not exported to the root's
 *   namespace: istiod leaves that route out);
 * - IST0109 ConflictingMeshGatewayVirtualServiceHosts: two VirtualServices bound to `mesh` define the same host;
 * - IST0128 / IST0129 NoServerCertificateVerification{Destination,Port}Level: a DestinationRule with TLS mode SIMPLE
 *   or MUTUAL and no `caCertificates` (nor `credentialName`, nor `insecureSkipVerify`), at the top or port level.
 * Messages are sorted by resource then code.
 */
export function analyze(inputs: readonly AnalysisInput[]): AnalysisMessage[] {
  const out: AnalysisMessage[] = [];
  const store = new ConfigStore<StoredObject>();
  const origins = new Map<string, string>();
  for (const { file, text } of inputs) {
    const { resources, errors } = parseManifests(text, { file });
    for (const e of errors) {
      if (e.severity !== 'error') continue;
      out.push({
        code: 'IST0106',
        name: 'SchemaValidationError',
        level: 'Error',
        resource: `${e.kind ?? 'Unknown'} ${e.namespace ?? 'default'}/${e.name ?? `document ${e.index}`}`,
        origin: `${file}${e.line !== undefined ? `:${e.line}` : ''}`,
        message: `Schema validation error: ${e.path ? `${e.path}: ` : ''}${e.message}`,
      });
    }
    store.apply(resources, file);
    for (const r of resources) origins.set(`${r.kind}/${r.metadata.namespace ?? 'default'}/${r.metadata.name}`, file);
  }
  const push = new PushContext(
    0,
    MESH,
    store,
    [new KubeObjectsRegistry(store, { cluster: MESH.clusterId, network: '', domainSuffix: MESH.domainSuffix })],
    '',
  );
  const knownHosts = new Set(push.services.map((s) => s.hostname));
  for (const se of store.list<StoredObject & { spec: { hosts?: string[] } }>('ServiceEntry'))
    for (const h of se.spec.hosts ?? []) knownHosts.add(h);
  const gateways = new Set(store.list('Gateway').map((g) => `${g.metadata.namespace ?? 'default'}/${g.metadata.name}`));
  const drs = store.list<DestinationRuleObject & StoredObject>('DestinationRule');
  const ref = (
    kind: string,
    o: { metadata: { name: string; namespace?: string | undefined } },
  ): Pick<AnalysisMessage, 'resource' | 'origin'> => {
    const key = `${kind}/${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
    const origin = origins.get(key);
    return {
      resource: `${kind} ${o.metadata.namespace ?? 'default'}/${o.metadata.name}`,
      ...(origin ? { origin } : {}),
    };
  };
  const notFound = (
    kind: string,
    o: { metadata: { name: string; namespace?: string | undefined } },
    message: string,
  ): void => {
    out.push({ code: 'IST0101', name: 'ReferencedResourceNotFound', level: 'Error', ...ref(kind, o), message });
  };

  const meshHosts = new Map<string, string[]>();
  for (const vs of store.list<VirtualServiceObject & StoredObject>('VirtualService')) {
    const ns = namespaceOf(vs);
    for (const g of vs.spec.gateways ?? []) {
      if (g === 'mesh') continue;
      const key = g.includes('/') ? g : `${ns}/${g}`;
      if (!gateways.has(key)) notFound('VirtualService', vs, `Referenced gateway not found: "${g}"`);
    }
    for (const d of (vs.spec.http ?? []).flatMap((r) => (r.delegate ? [r.delegate] : []))) {
      const dns = d.namespace ?? ns;
      const found = push.delegateVirtualService(d.name, dns, ns);
      if ('problem' in found)
        notFound(
          'VirtualService',
          vs,
          `Referenced delegate VirtualService not found: "${dns}/${d.name}"${DELEGATE_PROBLEM[found.problem](ns)}`,
        );
    }
    const routes = [
      ...(vs.spec.http ?? []).flatMap((r) => [...(r.route ?? []), ...(r.mirror ? [{ destination: r.mirror }] : [])]),
      ...(vs.spec.tcp ?? []).flatMap((r) => r.route ?? []),
      ...(vs.spec.tls ?? []).flatMap((r) => r.route ?? []),
    ];
    for (const d of routes) {
      const host = push.resolveHost(d.destination.host, ns);
      if (!knownHosts.has(host) && !knownHosts.has(d.destination.host)) {
        notFound('VirtualService', vs, `Referenced host not found: "${d.destination.host}"`);
        continue;
      }
      const subset = d.destination.subset;
      if (
        subset &&
        !drs.some(
          (dr) =>
            push.resolveHost(dr.spec.host, namespaceOf(dr)) === host &&
            (dr.spec.subsets ?? []).some((s) => s.name === subset),
        )
      )
        notFound(
          'VirtualService',
          vs,
          `Referenced host+subset in destinationrule not found: "${d.destination.host}+${subset}"`,
        );
    }
    const gws = vs.spec.gateways ?? [];
    if (gws.length === 0 || gws.includes('mesh'))
      for (const h of vs.spec.hosts ?? []) {
        const host = push.resolveHost(h, ns);
        meshHosts.set(host, [...(meshHosts.get(host) ?? []), `${ns}/${vs.metadata.name}`]);
      }
  }
  for (const [host, names] of meshHosts) {
    if (names.length < 2) continue;
    for (const n of names) {
      const [ns = 'default', name = ''] = n.split('/');
      out.push({
        code: 'IST0109',
        name: 'ConflictingMeshGatewayVirtualServiceHosts',
        level: 'Error',
        ...ref('VirtualService', { metadata: { name, namespace: ns } }),
        message: `The VirtualServices ${names.join(',')} associated with mesh gateway define the same host "${host}" which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
      });
    }
  }
  for (const dr of drs) {
    const ns = namespaceOf(dr);
    const policies = [dr.spec.trafficPolicy, ...(dr.spec.subsets ?? []).map((s) => s.trafficPolicy)];
    for (const p of policies) {
      if (needsCa(p?.tls))
        out.push({
          code: 'IST0128',
          name: 'NoServerCertificateVerificationDestinationLevel',
          level: 'Error',
          ...ref('DestinationRule', dr),
          message: `DestinationRule ${ns}/${dr.metadata.name} in namespace ${ns} has TLS mode set to ${p?.tls?.mode} but no caCertificates are set to validate server identity for host: ${dr.spec.host}`,
        });
      for (const pl of p?.portLevelSettings ?? [])
        if (needsCa(pl.tls))
          out.push({
            code: 'IST0129',
            name: 'NoServerCertificateVerificationPortLevel',
            level: 'Error',
            ...ref('DestinationRule', dr),
            message: `DestinationRule ${ns}/${dr.metadata.name} in namespace ${ns} has TLS mode set to ${pl.tls?.mode} but no caCertificates are set to validate server identity for host: ${dr.spec.host} at port number:${pl.port?.number ?? '?'}`,
          });
    }
  }
  return out.sort((a, b) =>
    a.resource === b.resource ? (a.code < b.code ? -1 : 1) : a.resource < b.resource ? -1 : 1,
  );
}
