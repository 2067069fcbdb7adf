import type { SpiffeIdentity } from '@fedmesh/pki';

/** WorkloadCertRecord is what istiod last learnt about one workload's certificate. */
export interface WorkloadCertRecord {
  /** nodeId is the xDS node ID of the proxy holding the certificate. */
  nodeId: string;
  namespace: string;
  serviceAccount: string;
  spiffeId: string;
  /** serialNumber is uppercase hex, as Node prints it. */
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  /** rootFingerprint is the SHA-256 fingerprint of the root the certificate chains to (undefined: unknown root). */
  rootFingerprint: string | undefined;
  /** source says how istiod learnt it: `csr` (it issued it) or `ads` (the client certificate of the ADS stream). */
  source: 'csr' | 'ads';
}

/** NODE_ID_METADATA is the CSR metadata key under which a proxy names its xDS node (`fedmesh.io/node-id`). */
export const NODE_ID_METADATA = 'fedmesh.io/node-id';

/** MAX_RECORDS bounds the records kept (the oldest are dropped first). */
export const MAX_RECORDS = 10_000;

/**
 * WorkloadCertificates records, per xDS node, which certificate the workload holds and which root it chains to, for
 * `fedmesh ca status` and `ca rotate-root`. Two sources feed it: certificates istiod issues to a CSR that names its
 * node (CSR metadata {@link NODE_ID_METADATA}; the identity is the authenticated one, never the claim), and the
 * client certificate of an ADS stream. The record with the latest notBefore wins. The node claim is not proof: a
 * record counts only for a connected proxy of the same namespace and ServiceAccount ({@link WorkloadCertificates.for}),
 * and the data is informational (it never grants anything). At most {@link MAX_RECORDS} are kept.
 */
export class WorkloadCertificates {
  private readonly records = new Map<string, WorkloadCertRecord>();

  /** record stores `r` unless a record with a later notBefore is already held for its node. */
  record(r: WorkloadCertRecord): void {
    const cur = this.records.get(r.nodeId);
    if (cur && Date.parse(cur.notBefore) > Date.parse(r.notBefore)) return;
    this.records.delete(r.nodeId);
    this.records.set(r.nodeId, r);
    if (this.records.size > MAX_RECORDS) {
      const oldest = this.records.keys().next().value;
      if (oldest !== undefined) this.records.delete(oldest);
    }
  }

  /** for returns the record of a connected proxy if its identity matches the proxy's namespace and ServiceAccount. */
  for(nodeId: string, proxy: Pick<SpiffeIdentity, 'namespace' | 'serviceAccount'>): WorkloadCertRecord | undefined {
    const r = this.records.get(nodeId);
    if (!r || r.namespace !== proxy.namespace || r.serviceAccount !== proxy.serviceAccount) return undefined;
    return r;
  }
}
