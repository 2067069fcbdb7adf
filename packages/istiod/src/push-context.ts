import type { ConfigStore, StoredObject } from './config/store.js';
import { EXPORT_ANNOTATION } from './registry/federated.js';
import {
  namespaceOf,
  type AuthorizationPolicyObject,
  type DestinationRuleObject,
  type GatewayObject,
  type ServiceObject,
  type PeerAuthenticationObject,
  type TlsSecretObject,
  type VirtualServiceObject,
} from './model/config.js';
import type { MeshService, ServiceInstance, ServiceRegistry } from './model/service.js';

/** MeshSettings are the mesh-wide settings generators need (Istio's MeshConfig subset). */
export interface MeshSettings {
  trustDomain: string;
  /** domainSuffix is the cluster DNS suffix (`cluster.local`). */
  domainSuffix: string;
  /** rootNamespace holds mesh-wide config (`istio-system`). */
  rootNamespace: string;
  clusterId: string;
  network: string;
  /**
   * pathNormalization is Istio's `meshConfig.pathNormalization.normalization` for inbound HTTP: NONE, BASE
   * (default), MERGE_SLASHES or DECODE_AND_MERGE_SLASHES (see generators/inbound.ts).
   */
  pathNormalization?: 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES' | undefined;
  /**
   * trustDomainAliases are Istio's `meshConfig.trustDomainAliases`: trust domains also accepted for peers (client
   * certificates on 15012, the SANs a client cluster accepts).
   */
  trustDomainAliases?: readonly string[] | undefined;
  /** enableAutoMtls is Istio's `meshConfig.enableAutoMtls` (default true): false leaves only `ISTIO_MUTUAL`. */
  enableAutoMtls?: boolean | undefined;
  /** defaultServiceExportTo applies to Services with no `networking.istio.io/exportTo` (Istio's meshConfig). */
  defaultServiceExportTo?: readonly string[] | undefined;
  /** defaultVirtualServiceExportTo applies to VirtualServices with no `exportTo`. */
  defaultVirtualServiceExportTo?: readonly string[] | undefined;
  /** defaultDestinationRuleExportTo applies to DestinationRules with no `exportTo`. */
  defaultDestinationRuleExportTo?: readonly string[] | undefined;
  /**
   * outboundTrafficPolicy is Istio's `meshConfig.outboundTrafficPolicy.mode`: where a capture-mode sidecar sends
   * connections to destinations the mesh does not know, `ALLOW_ANY` (default: PassthroughCluster, the original
   * destination) or `REGISTRY_ONLY` (BlackHoleCluster: closed). See generators/capture-outbound.ts.
   */
  outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY' | undefined;
  /** defaultConfig is the part of `meshConfig.defaultConfig` (ProxyConfig) istiod hands on (VM bootstrap). */
  defaultConfig?: { discoveryAddress?: string } | undefined;
}

/** orDefault returns an object's own `exportTo` when it has one, else the mesh default for its kind. */
function orDefault(
  own: readonly string[] | undefined,
  def: readonly string[] | undefined,
): readonly string[] | undefined {
  return own !== undefined && own.length > 0 ? own : def;
}

function byCreation<
  T extends { metadata: { name: string; namespace?: string | undefined; creationTimestamp?: string | undefined } },
>(a: T, b: T): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace ?? ''}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace ?? ''}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** visibleTo applies Istio's `exportTo` rules: empty or `*` is every namespace, `.` is the owner's namespace. */
export function visibleTo(exportTo: readonly string[] | undefined, ownerNs: string, viewerNs: string): boolean {
  if (!exportTo || exportTo.length === 0) return true;
  return exportTo.some((e) => e === '*' || (e === '.' && ownerNs === viewerNs) || e === viewerNs);
}

/**
 * gatewayKey resolves a Gateway reference as written in a VirtualService (`gateways`, `match[].gateways`):
 * `<namespace>/<name>` as is, a short `<name>` in the VirtualService's namespace `vsNamespace` (Istio's rule).
 * The reserved `mesh` stays `mesh`.
 */
export function gatewayKey(ref: string, vsNamespace: string): string {
  if (ref === 'mesh' || ref.includes('/')) return ref;
  return `${vsNamespace}/${ref}`;
}

/**
 * PushContext is an immutable view of the mesh for one push (Istio's `PushContext`): services from every
 * registry, VirtualServices and DestinationRules indexed by host, the trust bundle, and the settings. Generators
 * read only from it, so a push never sees a half-applied change.
 */
export class PushContext {
  readonly services: readonly MeshService[];
  private readonly byHost = new Map<string, MeshService>();
  /** registriesOf lists every registry that has a host: namespace sameness merges their instances. */
  private readonly registriesOf = new Map<string, ServiceRegistry[]>();
  private readonly vs: VirtualServiceObject[];
  private readonly dr: DestinationRuleObject[];
  /** gateways are the Istio Gateways, oldest first (gateway proxies pick theirs by selector). */
  readonly gateways: readonly GatewayObject[];
  /**
   * exportDisabled holds the hostnames of Services annotated or labelled `networking.fedmesh.io/export: "false"`:
   * kept out of the federation and of this cluster's east-west gateways.
   */
  readonly exportDisabled: ReadonlySet<string>;
  /** authorizationPolicies are the AuthorizationPolicies, oldest first. */
  readonly authorizationPolicies: readonly AuthorizationPolicyObject[];
  /** peerAuthentications are the PeerAuthentications, oldest first (the oldest wins a tie, as in Istio). */
  readonly peerAuthentications: readonly PeerAuthenticationObject[];
  /** tlsSecrets are the `kubernetes.io/tls` Secrets by `<namespace>/<name>` (Gateway `credentialName`s). */
  private readonly tlsSecrets = new Map<string, TlsSecretObject>();
  private readonly instanceCache = new Map<string, ServiceInstance[]>();
  private byAddress: Map<string, ServiceInstance[]> | undefined;

  /** constructor snapshots the store and registries at `version`. */
  constructor(
    readonly version: number,
    readonly mesh: MeshSettings,
    store: ConfigStore<StoredObject>,
    registries: readonly ServiceRegistry[],
    readonly trustBundlePem: string,
  ) {
    const services: MeshService[] = [];
    for (const r of registries)
      for (const s of r.services()) {
        this.registriesOf.set(s.hostname, [...(this.registriesOf.get(s.hostname) ?? []), r]);
        if (this.byHost.has(s.hostname)) continue;
        this.byHost.set(s.hostname, s);
        services.push(s);
      }
    this.services = services;
    this.vs = store.list<VirtualServiceObject & StoredObject>('VirtualService').sort(byCreation);
    this.dr = store.list<DestinationRuleObject & StoredObject>('DestinationRule').sort(byCreation);
    this.gateways = store.list<GatewayObject & StoredObject>('Gateway').sort(byCreation);
    this.exportDisabled = new Set(
      store
        .list<ServiceObject & StoredObject>('Service')
        .filter(
          (s) =>
            s.metadata.annotations?.[EXPORT_ANNOTATION] === 'false' ||
            s.metadata.labels?.[EXPORT_ANNOTATION] === 'false',
        )
        .map((s) => `${s.metadata.name}.${namespaceOf(s)}.svc.${mesh.domainSuffix}`),
    );
    this.authorizationPolicies = store
      .list<AuthorizationPolicyObject & StoredObject>('AuthorizationPolicy')
      .sort(byCreation);
    this.peerAuthentications = store
      .list<PeerAuthenticationObject & StoredObject>('PeerAuthentication')
      .sort(byCreation);
    for (const s of store.list<TlsSecretObject & StoredObject>('Secret'))
      this.tlsSecrets.set(`${namespaceOf(s)}/${s.metadata.name}`, s);
  }

  /**
   * tlsSecret returns the `kubernetes.io/tls` Secret `name` in `namespace` (a Gateway server's `credentialName`,
   * looked up in the gateway workload's namespace as Istio does), or undefined.
   */
  tlsSecret(namespace: string, name: string): TlsSecretObject | undefined {
    return this.tlsSecrets.get(`${namespace}/${name}`);
  }

  /**
   * virtualServicesForGateway returns the VirtualServices visible from `namespace` (`exportTo`) that bind the
   * Gateway `gateway` (`<namespace>/<name>`) in their `gateways` field, oldest first. A short name there is
   * resolved in the VirtualService's own namespace; `mesh` binds no Gateway.
   */
  virtualServicesForGateway(gateway: string, namespace: string): VirtualServiceObject[] {
    return this.vs.filter((v) => {
      const ns = namespaceOf(v);
      if (!visibleTo(orDefault(v.spec.exportTo, this.mesh.defaultVirtualServiceExportTo), ns, namespace)) return false;
      return (v.spec.gateways ?? []).some((g) => gatewayKey(g, ns) === gateway);
    });
  }

  /** service returns a service by hostname. */
  service(hostname: string): MeshService | undefined {
    return this.byHost.get(hostname);
  }

  /** servicesFor returns the services visible from a namespace (`exportTo`). */
  servicesFor(namespace: string): MeshService[] {
    const def = this.mesh.defaultServiceExportTo;
    return this.services.filter((s) => visibleTo(orDefault(s.exportTo, def), s.namespace, namespace));
  }

  /** instances returns the endpoints of a service port, cached for the push. */
  instances(hostname: string, port: number): ServiceInstance[] {
    const key = `${hostname}:${port}`;
    let hit = this.instanceCache.get(key);
    if (!hit) {
      hit = (this.registriesOf.get(hostname) ?? []).flatMap((r) => r.instances(hostname, port));
      this.instanceCache.set(key, hit);
    }
    return hit;
  }

  /**
   * instancesAt returns every service endpoint at one address (a proxy's own workload), over all services and
   * ports, in service then port order; cached for the push. Generators that only need a proxy's own endpoints
   * should ask for them here rather than scan every service's endpoints, so that istiod can tell that endpoints
   * added elsewhere do not change their output (`incremental.ts`).
   */
  instancesAt(address: string): readonly ServiceInstance[] {
    if (!this.byAddress) {
      this.byAddress = new Map();
      for (const svc of this.services)
        for (const port of svc.ports)
          for (const i of this.instances(svc.hostname, port.port)) {
            const list = this.byAddress.get(i.endpoint.address) ?? [];
            list.push(i);
            this.byAddress.set(i.endpoint.address, list);
          }
    }
    return this.byAddress.get(address) ?? [];
  }

  /**
   * resolveHost turns a short host as written in a VirtualService or DestinationRule into an FQDN relative to
   * the object's namespace (`reviews` in `default` → `reviews.default.svc.cluster.local`), as Istio does.
   */
  resolveHost(host: string, namespace: string): string {
    if (host.includes('.') || host === '*') {
      const parts = host.split('.');
      if (parts.length === 2 && this.byHost.has(`${host}.svc.${this.mesh.domainSuffix}`))
        return `${host}.svc.${this.mesh.domainSuffix}`;
      return host;
    }
    return `${host}.${namespace}.svc.${this.mesh.domainSuffix}`;
  }

  /**
   * virtualServiceFor returns the VirtualService bound to `mesh` that a proxy in `namespace` uses for `hostname`:
   * the oldest visible one listing the host (Istio picks one per host for sidecars).
   */
  virtualServiceFor(hostname: string, namespace: string): VirtualServiceObject | undefined {
    return this.vs.find((v) => {
      const ns = namespaceOf(v);
      if (!visibleTo(orDefault(v.spec.exportTo, this.mesh.defaultVirtualServiceExportTo), ns, namespace)) return false;
      const gws = v.spec.gateways ?? [];
      if (gws.length > 0 && !gws.includes('mesh')) return false;
      return (v.spec.hosts ?? []).some((h) => this.resolveHost(h, ns) === hostname);
    });
  }

  /**
   * delegateVirtualService resolves a root VirtualService's `http[].delegate` as Istio's delegate index does: the
   * VirtualService `namespace/name` is the delegate (`{vs}`) when it exists, has no `hosts`, and its `exportTo`
   * (else the mesh default) makes it visible in `rootNamespace`; otherwise `{problem}` says why not. Generators
   * call this rather than scan VirtualServices, so a change to a delegate re-generates exactly its roots' readers.
   */
  delegateVirtualService(
    name: string,
    namespace: string,
    rootNamespace: string,
  ): { vs: VirtualServiceObject } | { problem: 'not found' | 'has hosts' | 'not exported' } {
    const vs = this.vs.find((v) => v.metadata.name === name && namespaceOf(v) === namespace);
    if (!vs) return { problem: 'not found' };
    if ((vs.spec.hosts ?? []).length > 0) return { problem: 'has hosts' };
    const exportTo = orDefault(vs.spec.exportTo, this.mesh.defaultVirtualServiceExportTo);
    if (!visibleTo(exportTo, namespace, rootNamespace)) return { problem: 'not exported' };
    return { vs };
  }

  /**
   * destinationRuleFor returns the DestinationRule for a host as Istio looks it up: the proxy's namespace first,
   * then the service's namespace, then the root namespace; the oldest wins within one.
   */
  destinationRuleFor(hostname: string, proxyNamespace: string): DestinationRuleObject | undefined {
    const svcNs = this.byHost.get(hostname)?.namespace;
    const order = [proxyNamespace, svcNs, this.mesh.rootNamespace].filter((x): x is string => x !== undefined);
    for (const ns of order) {
      const hit = this.dr.find(
        (d) =>
          namespaceOf(d) === ns &&
          visibleTo(orDefault(d.spec.exportTo, this.mesh.defaultDestinationRuleExportTo), ns, proxyNamespace) &&
          this.resolveHost(d.spec.host, ns) === hostname,
      );
      if (hit) return hit;
    }
    return undefined;
  }
}
