/**
 * @fedmesh/api: the contracts every fedmesh package shares: error classes, the Logger seam, SPIFFE IDs,
 * durations, and zod schemas with inferred types for the Kubernetes and Istio resources fedmesh reads, plus
 * manifest parsing. xDS type URLs and proto loading are the separate `@fedmesh/api/xds` entry point
 * (`src/xds/`), so that importing the contracts does not load protobufjs.
 */
export * from './errors.js';
export * from './config.js';
export * from './logger.js';
export * from './spiffe.js';
export * from './duration.js';
export * from './manifests.js';
export * from './schemas/common.js';
export * from './schemas/issues.js';
export * from './schemas/k8s.js';
export * from './schemas/virtual-service.js';
export * from './schemas/destination-rule.js';
export * from './schemas/gateway.js';
export * from './schemas/service-entry.js';
export * from './schemas/security.js';
export * from './schemas/secret.js';
export * from './schemas/resource.js';
export * from './vm.js';
