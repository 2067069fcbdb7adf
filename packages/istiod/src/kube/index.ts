/**
 * Kubernetes discovery for istiod: informers that mirror the API server's objects into the ConfigStore. The fake API
 * server for tests is in `./testing` (the `@fedmesh/istiod/testing` entry point), never imported from here.
 */
export {
  KUBE_OWNER,
  KubeConfigSource,
  loadKubeConfig,
  SERVICE_ACCOUNT_DIR,
  type KubeConfigSourceOptions,
} from './source.js';
export { KubeApiError, type KindStatus } from './kind-watcher.js';
export { MIRRORED_KINDS, apiVersionOf, collectionPath, type KubeObject, type MirroredKind } from './kinds.js';
export { kubeRequestJson, type KubeRequestOptions, type KubeResponse } from './http.js';
export {
  ENDPOINT_SLICE_VERSIONS,
  SERVICE_NAME_LABEL,
  endpointSliceKind,
  EndpointsKind,
  parseEndpointSlice,
  parseEndpoints,
  type EndpointSliceEndpoint,
  type EndpointSliceObject,
  type EndpointSliceVersion,
  type EndpointsAddress,
  type EndpointsObject,
} from './endpoint-kinds.js';
export {
  discoverEndpointSource,
  parseEndpointMode,
  servedSliceVersion,
  type EndpointMode,
  type EndpointSource,
} from './endpoint-mode.js';
export { configMapKind, readConfigMap, type ConfigMapObject } from './config-map.js';
