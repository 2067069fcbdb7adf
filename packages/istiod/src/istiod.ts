import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, X509Certificate } from 'node:crypto';
import type http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority, generateKeyPair, verifySpiffePeer } from '@fedmesh/pki';
import type { Logger } from 'pino';
import { createAdminApi } from './admin-api.js';
import {
  adsRecord,
  createTrustAdmin,
  issuedRecord,
  TrustManager,
  wireTrustRotation,
  WorkloadCertificates,
} from './trust/index.js';
import {
  CertificateAuthenticator,
  LocalTokenAuthenticator,
  StaticCertificateProvider,
  createCaService,
  createOptionalClientCertCredentials,
} from './ca/index.js';
import { FileConfigSource } from './config/file-source.js';
import { ConfigStore, type StoredObject } from './config/store.js';
import { DiscoveryServer } from './discovery.js';
import { FederationLink, type FederationSettings } from './federation.js';
import { IstiodMetrics } from './metrics.js';
import type { MeshSettings } from './push-context.js';
import { KubeObjectsRegistry } from './registry/kube-objects.js';
import { createVmSupport, type VmSupport } from './vm/index.js';
import { KubeTokenAuthenticator } from './ca/kube-token-authenticator.js';
import {
  KubeConfigSource,
  MIRRORED_KINDS,
  configMapKind,
  loadKubeConfig,
  readConfigMap,
  type EndpointMode,
} from './kube/index.js';
import { MESH_CONFIG_KEY, MeshConfigWatcher } from './mesh-config-watcher.js';
import { readFeatures } from './features.js';

/** IstiodOptions configure one control plane. Ports follow Istio: 15010, 15012, 15014. */
export interface IstiodOptions {
  /** host is the address every listener binds (a loopback address in the local mesh). */
  host: string;
  /** xdsPlainPort serves ADS without TLS (loopback and proxyless clients only); 0 picks a free port. */
  xdsPlainPort: number;
  /** xdsTlsPort serves ADS and the CA over TLS; 0 picks a free port. */
  xdsTlsPort: number;
  /** monitoringPort serves `/metrics`, `/ready` and the admin API; 0 picks a free port. */
  monitoringPort: number;
  /** stateDir holds the self-signed root (when no plug-in CA is given) and the admin token. */
  stateDir: string;
  /** caDir, when set, is an Istio plug-in CA directory (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`). */
  caDir?: string;
  /** configFiles are manifest files to load and watch. */
  configFiles: string[];
  /**
   * kubeconfig, when set, is a kubeconfig file: Services, Pods, Namespaces, ServiceAccounts and Istio CRDs are mirrored
   * from that API server (`/ready` and ADS wait for the first sync), and the CA accepts ServiceAccount tokens
   * (TokenReview, audience `istio-ca`).
   */
  kubeconfig?: string;
  /**
   * endpointMode, with `kubeconfig`, picks the endpoint source (see {@link EndpointMode}). Default: from
   * `PILOT_USE_ENDPOINT_SLICE` (`features.ts`), `auto` when unset.
   */
  endpointMode?: EndpointMode;
  /**
   * serviceCidr, when set, is an IPv4 prefix from which Services with no `spec.clusterIP` get a virtual IP (the
   * local mesh's `10.96.<N>.0/24`), for transparent capture and `<vip>:<port>` routes.
   */
  serviceCidr?: string;
  /** mesh are the command-line mesh settings; a mesh config (below) is applied over them. */
  mesh?: Partial<MeshSettings>;
  /**
   * meshConfigFile, when set, is a MeshConfig YAML file (Istio's `--meshConfig`, e.g. the `mesh` key of the `istio`
   * ConfigMap mounted at /etc/istio/config/mesh), read at start (istiod refuses to start on an invalid one) and
   * watched. Without it, an istiod with `kubeconfig` reads the `mesh` key of the ConfigMap {@link
   * IstiodOptions.meshConfigMap} from the API server, at start and as it changes.
   */
  meshConfigFile?: string;
  /** meshConfigMap is the mesh ConfigMap read with `kubeconfig`. Default `istio-system/istio` (Istio's). */
  meshConfigMap?: { namespace: string; name: string };
  /** federation, when set, joins this istiod to a federated mesh through etcd and NATS. */
  federation?: FederationSettings;
  log: Logger;
}

/** IstiodAddresses are the bound endpoints, `host:port`. */
export interface IstiodAddresses {
  xdsPlain: string;
  xdsTls: string;
  monitoring: string;
}

function listenHttp(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

function bindGrpc(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
}

/** markCalls wraps every handler of a service implementation so the calls it serves are recorded in `calls`. */
function markCalls(impl: grpc.UntypedServiceImplementation, calls: WeakSet<object>): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    const h = handler as (call: object, ...rest: unknown[]) => unknown;
    out[name] = ((call: object, ...rest: unknown[]) => {
      calls.add(call);
      return h(call, ...rest);
    }) as grpc.UntypedHandleCall;
  }
  return out;
}

/**
 * Istiod is the fedmesh control plane for one cluster: a config store fed by manifest files and the admin API,
 * a registry of services and pods, the xDS push path, and the CA. {@link Istiod.start} binds everything and
 * writes `<stateDir>/admin-token` (0600); {@link Istiod.stop} releases it all.
 */
export class Istiod {
  readonly store = new ConfigStore<StoredObject>();
  readonly metrics = new IstiodMetrics();
  readonly mesh: MeshSettings;
  discovery!: DiscoveryServer;
  /** ca is the CA that signs now (it changes when a root rotation activates a new CA). */
  ca!: CertificateAuthority;
  /** trust holds the signing CA and the trust bundle and runs root rotation (docs/adr/0004). */
  trust!: TrustManager;
  /** workloadCerts records which certificate, under which root, each connected workload holds. */
  readonly workloadCerts = new WorkloadCertificates();
  tokens!: LocalTokenAuthenticator;
  /** vm is the VM machinery: bootstrap tokens, WorkloadEntry auto-registration and health reports (src/vm). */
  vm!: VmSupport;
  /** kube mirrors the Kubernetes API into {@link Istiod.store} when `kubeconfig` is set. */
  kube: KubeConfigSource | undefined;
  /** meshConfig applies the mesh config (file or ConfigMap) to {@link Istiod.mesh}. */
  meshConfig!: MeshConfigWatcher;
  addresses!: IstiodAddresses;
  private readonly grpcPlain = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
  });
  private readonly grpcTls = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
  });
  private http: http.Server | undefined;
  private files: FileConfigSource | undefined;
  private started = false;

  /** constructor stores options; no I/O before {@link Istiod.start}. */
  constructor(private readonly opts: IstiodOptions) {
    this.mesh = {
      trustDomain: 'cluster.local',
      domainSuffix: 'cluster.local',
      rootNamespace: 'istio-system',
      clusterId: 'Kubernetes',
      network: '',
      ...opts.mesh,
    };
  }

  /** start loads the CA and config, then binds 15010, 15012 and 15014. Throws on a bad CA directory or a bind failure. */
  async start(signal?: AbortSignal): Promise<IstiodAddresses> {
    const log = this.opts.log;
    fs.mkdirSync(this.opts.stateDir, { recursive: true, mode: 0o700 });
    const kc = this.opts.kubeconfig === undefined ? undefined : loadKubeConfig(this.opts.kubeconfig);
    const meshMap = this.opts.meshConfigMap ?? { namespace: 'istio-system', name: 'istio' };
    const meshMapKey = `ConfigMap/${meshMap.namespace}/${meshMap.name}`;
    this.meshConfig = new MeshConfigWatcher({
      mesh: this.mesh,
      log: log.child({ scope: 'mesh' }),
      onChange: () => this.discovery?.requestPush(),
    });
    if (this.opts.meshConfigFile !== undefined) this.meshConfig.loadFile(this.opts.meshConfigFile);
    else if (kc) await this.readMeshConfigMap(kc, meshMap, meshMapKey);
    const initialCa = this.opts.caDir
      ? await CertificateAuthority.loadPluggedCa(this.opts.caDir, { trustDomain: this.mesh.trustDomain })
      : await CertificateAuthority.createSelfSigned({
          stateDir: path.join(this.opts.stateDir, 'ca'),
          trustDomain: this.mesh.trustDomain,
        });
    // A root rotation in progress before a restart resumes from <stateDir>/trust.
    this.trust = await TrustManager.load({ initial: initialCa, stateDir: this.opts.stateDir, log });
    this.ca = this.trust.signer();
    this.trust.on('changed', () => (this.ca = this.trust.signer()));
    this.tokens = new LocalTokenAuthenticator({ trustDomain: this.mesh.trustDomain });
    this.vm = await createVmSupport({
      store: this.store,
      stateDir: this.opts.stateDir,
      mesh: this.mesh,
      discoveryAddress: () => this.mesh.defaultConfig?.discoveryAddress ?? this.addresses.xdsTls,
      trustBundlePem: () => this.trust.bundlePem(),
      log,
    });
    if (kc) {
      const watchMap = this.opts.meshConfigFile === undefined;
      this.kube = new KubeConfigSource({
        store: this.store,
        kubeConfig: kc,
        kinds: watchMap ? [...MIRRORED_KINDS, configMapKind(meshMap.namespace, meshMap.name)] : MIRRORED_KINDS,
        endpointMode: this.opts.endpointMode ?? readFeatures().endpointMode,
        log: log.child({ scope: 'kube' }),
      });
      this.kube.start(signal);
    }
    const registry = new KubeObjectsRegistry(this.store, {
      cluster: this.mesh.clusterId,
      network: this.mesh.network,
      domainSuffix: this.mesh.domainSuffix,
      ...(this.opts.serviceCidr !== undefined ? { serviceCidr: this.opts.serviceCidr } : {}),
    });
    const trustBundle = (): string => this.trust.bundlePem();
    const fed = this.opts.federation
      ? await FederationLink.start({
          settings: this.opts.federation,
          store: this.store,
          local: registry,
          istiodAddress: `${this.opts.host}:${this.opts.xdsTlsPort}`,
          localRoots: () => this.trust.bundle(),
          log: log.child({ scope: 'federation' }),
        })
      : undefined;
    this.federation = fed;
    const tlsCalls = new WeakSet<object>();
    this.discovery = new DiscoveryServer({
      store: this.store,
      registries: [registry, this.vm.registry, ...(fed ? [fed.registry] : [])],
      mesh: this.mesh,
      trustBundlePem: () => (fed ? fed.trustBundlePem() : trustBundle()),
      log: log.child({ scope: 'xds' }),
      metrics: this.metrics,
      onStreamOpen: (s) => this.vm.onStreamOpen(s),
      onStreamClose: (s) => this.vm.onStreamClose(s),
      // Over TLS (15012) a stream must present a workload certificate matching its Node; on the plaintext port
      // (15010, loopback and proxyless clients) the Node is trusted, as in Istio.
      verifyIdentity: (call, proxy) => {
        // As Istio: no discovery before the Kubernetes caches have synced (the proxy retries).
        if (this.kube && !this.kube.synced()) throw new Error('istiod is not yet synced with Kubernetes');
        // Streams on 15010 trust their Node. On 15012 a verified client certificate is required: grpc-js reports an
        // unverified or absent one as an empty auth context, which must not read as "plaintext, trusted".
        if (!tlsCalls.has(call)) return;
        const peer = call.getAuthContext().sslPeerCertificate;
        if (!peer?.raw) throw new Error('no verified client certificate');
        const leaf = new X509Certificate(peer.raw);
        const id = verifySpiffePeer(leaf, {
          trustDomains: [this.mesh.trustDomain, ...(this.mesh.trustDomainAliases ?? [])],
          peerRole: 'client',
        });
        if (id.namespace !== proxy.namespace || id.serviceAccount !== proxy.serviceAccount)
          throw new Error(
            `certificate ${id.namespace}/${id.serviceAccount} does not match node ${proxy.namespace}/${proxy.serviceAccount}`,
          );
        this.vm.markVerified(proxy);
        this.workloadCerts.record(adsRecord(proxy.id, id, leaf, this.trust));
      },
    });
    fed?.onChange(() => this.discovery.requestPush());
    if (this.opts.meshConfigFile !== undefined) this.meshConfig.watchFile(this.opts.meshConfigFile);
    else if (kc) this.meshConfig.watchStore(this.store, meshMapKey);
    this.meshConfig.markStarted();
    this.files = new FileConfigSource(this.store, this.opts.configFiles, log.child({ scope: 'config' }));
    this.files.start(signal);

    // 15010: plaintext ADS (the Node is trusted, as Istio's 15010).
    this.grpcPlain.addService(this.discovery.ads.service, this.discovery.ads.implementation);
    const plainPort = await bindGrpc(
      this.grpcPlain,
      `${this.opts.host}:${this.opts.xdsPlainPort}`,
      grpc.ServerCredentials.createInsecure(),
    );

    // 15012: ADS and the CA over TLS (client certificates requested, optional for token-authenticated CSRs).
    const caService = createCaService({
      ca: () => this.trust.signer(),
      onIssued: (e) => {
        const r = issuedRecord(e);
        if (r) this.workloadCerts.record(r);
      },
      authenticators: [
        new CertificateAuthenticator({
          trustDomains: [this.mesh.trustDomain, ...(this.mesh.trustDomainAliases ?? [])],
        }),
        this.tokens,
        this.vm.authenticator,
        ...(kc ? [new KubeTokenAuthenticator({ kubeConfig: kc, trustDomain: this.mesh.trustDomain })] : []),
      ],
      logger: log.child({ scope: 'ca' }),
    });
    const key = await generateKeyPair('ec-p256');
    const servingNames = { dnsNames: ['istiod.istio-system.svc', 'istiod', 'localhost'], ips: [this.opts.host] };
    const serving = await this.ca.signServing({ publicKey: key.publicKey, ...servingNames });
    const provider = new StaticCertificateProvider({
      rootCertsPem: trustBundle(),
      certChainPem: serving.chainPem.join(''),
      privateKeyPem: key.privateKeyPem,
    });
    wireTrustRotation({
      trust: this.trust,
      discovery: this.discovery,
      provider,
      servingKey: key,
      servingChainPem: serving.chainPem.join(''),
      servingNames,
      trustBundlePem: trustBundle,
      log: log.child({ scope: 'trust' }),
    });
    this.grpcTls.addService(this.discovery.ads.service, markCalls(this.discovery.ads.implementation, tlsCalls));
    this.grpcTls.addService(caService.definition, caService.implementation);
    this.grpcTls.addService(this.vm.healthService.definition, this.vm.healthService.implementation);
    const tlsPort = await bindGrpc(
      this.grpcTls,
      `${this.opts.host}:${this.opts.xdsTlsPort}`,
      createOptionalClientCertCredentials(provider),
    );

    const adminToken = randomBytes(24).toString('hex');
    fs.writeFileSync(path.join(this.opts.stateDir, 'admin-token'), adminToken, { mode: 0o600 });
    this.http = createAdminApi({
      store: this.store,
      discovery: this.discovery,
      metrics: this.metrics,
      tokens: this.tokens,
      adminToken,
      ready: () => this.started && (this.kube?.synced() ?? true),
      federation: () => this.federation?.status(),
      trust: createTrustAdmin({
        trust: this.trust,
        records: this.workloadCerts,
        discovery: this.discovery,
        // Federated: a CA may be added or activated only under a root of the mesh trust bundle (docs/adr/0004).
        ...(fed ? { meshTrust: { mesh: fed.mesh, roots: () => fed.meshTrustBundle() } } : {}),
        log: log.child({ scope: 'trust' }),
      }),
      vm: this.vm.admin,
      log: log.child({ scope: 'admin' }),
    });
    const monPort = await listenHttp(this.http, this.opts.host, this.opts.monitoringPort);
    this.addresses = {
      xdsPlain: `${this.opts.host}:${plainPort}`,
      xdsTls: `${this.opts.host}:${tlsPort}`,
      monitoring: `${this.opts.host}:${monPort}`,
    };
    this.started = true;
    log.info(
      { ...this.addresses, trustDomain: this.mesh.trustDomain, ca: this.opts.caDir ?? 'self-signed' },
      'istiod ready',
    );
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    return this.addresses;
  }

  /**
   * readMeshConfigMap reads the mesh ConfigMap once before the CA is made, so its `trustDomain` counts from the
   * start. An unreachable API server is logged and the command-line settings are used until the ConfigMap is
   * mirrored; an invalid mesh config stops the start with an Error (field paths in the log).
   */
  private async readMeshConfigMap(
    kc: ReturnType<typeof loadKubeConfig>,
    map: { namespace: string; name: string },
    key: string,
  ): Promise<void> {
    let data: Record<string, string> | undefined;
    try {
      data = await readConfigMap(kc, map.namespace, map.name, 10_000);
    } catch (err) {
      this.opts.log.warn(
        { err: (err as Error).message, configMap: key },
        'mesh ConfigMap not readable at start; using the command-line settings until it is',
      );
      return;
    }
    if (!this.meshConfig.apply(data?.[MESH_CONFIG_KEY], key)) throw new Error(`mesh config ${key} is invalid`);
  }

  /** federation is the link to the federated mesh, when configured. */
  federation: FederationLink | undefined;

  /** stop closes every listener (and leaves the federation, so peers withdraw this cluster at once). */
  async stop(): Promise<void> {
    await this.federation?.close();
    this.files?.close();
    this.meshConfig?.close();
    this.vm?.close();
    await this.kube?.stop();
    this.discovery?.close();
    this.grpcPlain.forceShutdown();
    this.grpcTls.forceShutdown();
    const srv = this.http;
    if (srv) {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  }
}
