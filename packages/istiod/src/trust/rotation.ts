import type { X509Certificate } from 'node:crypto';
import { certificateFingerprint, spiffeUri, type GeneratedKeyPair, type SpiffeIdentity } from '@fedmesh/pki';
import type { Logger } from 'pino';
import type { IssuedEvent, StaticCertificateProvider } from '../ca/index.js';
import type { DiscoveryServer } from '../discovery.js';
import type { TrustChange, TrustManager } from './trust-manager.js';
import { NODE_ID_METADATA, type WorkloadCertificates, type WorkloadCertRecord } from './workload-certs.js';

/** TrustWiringDeps are the parts of istiod a trust change touches. */
export interface TrustWiringDeps {
  trust: TrustManager;
  discovery: DiscoveryServer;
  /** provider is 15012's TLS material: the bundle verifies client certificates, the serving chain is presented. */
  provider: StaticCertificateProvider;
  servingKey: GeneratedKeyPair;
  /** servingChainPem is the serving chain 15012 presents now (leaf first). */
  servingChainPem: string;
  servingNames: { dnsNames: string[]; ips: string[] };
  /** trustBundlePem is the bundle 15012 verifies clients with (the federated bundle when federated). */
  trustBundlePem: () => string;
  log: Logger;
}

/**
 * wireTrustRotation makes istiod follow its {@link TrustManager}: on every change the bundle goes to every connected
 * proxy at once (a full push, no debounce, so `ca status` sees the new snapshot immediately) and to 15012's client
 * verification; on `activated` istiod's serving certificate is re-issued by the new signer (new connections to
 * 15012 get it; proxies trust it because the bundle holding its root was distributed first). A failed re-issue is
 * logged and the old serving certificate stays.
 */
export function wireTrustRotation(deps: TrustWiringDeps): void {
  let servingChainPem = deps.servingChainPem;
  const update = (): void =>
    deps.provider.update({
      rootCertsPem: deps.trustBundlePem(),
      certChainPem: servingChainPem,
      privateKeyPem: deps.servingKey.privateKeyPem,
    });
  deps.trust.on('changed', (change: TrustChange) => {
    deps.discovery.pushAll();
    if (change.step !== 'activated') return void update();
    deps.trust
      .signer()
      .signServing({ publicKey: deps.servingKey.publicKey, ...deps.servingNames })
      .then((serving) => {
        servingChainPem = serving.chainPem.join('');
        update();
        deps.log.info({ serial: serving.serialNumber }, 'serving certificate re-issued by the new signing CA');
      })
      .catch((err: unknown) => {
        update();
        deps.log.error({ err: (err as Error).message }, 'serving certificate re-issue failed; keeping the old one');
      });
  });
}

/**
 * issuedRecord turns a CA issuance into a workload record when the CSR named its xDS node (metadata
 * `fedmesh.io/node-id`). The identity is the authenticated caller's; undefined without a node claim.
 */
export function issuedRecord(e: IssuedEvent): WorkloadCertRecord | undefined {
  const nodeId = e.metadata[NODE_ID_METADATA];
  if (nodeId === undefined || nodeId.length === 0) return undefined;
  return {
    nodeId,
    namespace: e.identity.namespace,
    serviceAccount: e.identity.serviceAccount,
    spiffeId: spiffeUri(e.identity),
    serialNumber: e.serialNumber.toUpperCase(),
    notBefore: e.notBefore.toISOString(),
    notAfter: e.notAfter.toISOString(),
    rootFingerprint: certificateFingerprint(e.rootCertPem),
    source: 'csr',
  };
}

/** adsRecord turns the verified client certificate of an ADS stream into a workload record. */
export function adsRecord(
  nodeId: string,
  identity: SpiffeIdentity,
  leaf: X509Certificate,
  trust: TrustManager,
): WorkloadCertRecord {
  return {
    nodeId,
    namespace: identity.namespace,
    serviceAccount: identity.serviceAccount,
    spiffeId: spiffeUri(identity),
    serialNumber: leaf.serialNumber.toUpperCase(),
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    rootFingerprint: trust.rootOf(leaf),
    source: 'ads',
  };
}

/** WorkloadTrustStatus is one connected workload's line in `fedmesh ca status`. */
export interface WorkloadTrustStatus {
  nodeId: string;
  namespace: string;
  serviceAccount: string;
  spiffeId: string | undefined;
  serialNumber: string | undefined;
  notAfter: string | undefined;
  /** rootFingerprint is the root its current certificate chains to (undefined: not known to istiod). */
  rootFingerprint: string | undefined;
  source: 'csr' | 'ads' | undefined;
  /** bundleSynced is true when the proxy ACKed the trust bundle istiod holds now (SDS `ROOTCA` SYNCED). */
  bundleSynced: boolean;
}

/** workloadStatus joins the connected proxies with what istiod knows of their certificates. */
export function workloadStatus(discovery: DiscoveryServer, records: WorkloadCertificates): WorkloadTrustStatus[] {
  return discovery
    .status()
    .map((p) => {
      const r = records.for(p.id, p);
      return {
        nodeId: p.id,
        namespace: p.namespace,
        serviceAccount: p.serviceAccount,
        spiffeId: r?.spiffeId,
        serialNumber: r?.serialNumber,
        notAfter: r?.notAfter,
        rootFingerprint: r?.rootFingerprint,
        source: r?.source,
        bundleSynced: p.types.SDS?.status === 'SYNCED',
      };
    })
    .sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
}
