/**
 * Trust: istiod's signing CA and trust bundle, root rotation (add → distribute → re-issue → retire) and the record of
 * which root each connected workload's certificate chains to. See docs/adr/0004-root-rotation.md.
 */
export {
  bundleFingerprints,
  readCaMaterialDir,
  TrustError,
  TrustManager,
  type TrustChange,
  type TrustManagerOptions,
  type TrustRoot,
} from './trust-manager.js';
export { MAX_RECORDS, NODE_ID_METADATA, WorkloadCertificates, type WorkloadCertRecord } from './workload-certs.js';
export {
  adsRecord,
  issuedRecord,
  wireTrustRotation,
  workloadStatus,
  type TrustWiringDeps,
  type WorkloadTrustStatus,
} from './rotation.js';
export {
  createTrustAdmin,
  type CaStatus,
  type TrustAdmin,
  type TrustAdminDeps,
  type TrustAdminReply,
} from './admin.js';
