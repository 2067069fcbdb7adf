import type {
  AuthorizationPolicySpec,
  DestinationRuleSpec,
  GatewaySpec,
  PeerAuthenticationSpec,
  PodSpec,
  PodStatus,
  ServiceSpec,
  TlsSecret,
  VirtualServiceSpec,
} from '@fedmesh/api';

/** ObjectMetadata is the metadata istiod reads from any config object. */
export interface ObjectMetadata {
  name: string;
  namespace?: string | undefined;
  labels?: Record<string, string> | undefined;
  annotations?: Record<string, string> | undefined;
  ownerReferences?: { kind: string; name: string }[] | undefined;
  creationTimestamp?: string | undefined;
}

/** ConfigObject is a validated config object of one kind with its spec (and status, for Pods). */
export interface ConfigObject<S = unknown, St = unknown> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMetadata;
  spec: S;
  status?: St | undefined;
}

/** VirtualServiceObject is a stored `networking.istio.io` VirtualService. */
export type VirtualServiceObject = ConfigObject<VirtualServiceSpec>;
/** DestinationRuleObject is a stored DestinationRule. */
export type DestinationRuleObject = ConfigObject<DestinationRuleSpec>;
/** ServiceObject is a stored Kubernetes `v1` Service. */
export type ServiceObject = ConfigObject<ServiceSpec>;
/** GatewayObject is a stored `networking.istio.io` Gateway. */
export type GatewayObject = ConfigObject<GatewaySpec>;
/** PodObject is a stored Kubernetes `v1` Pod. */
export type PodObject = ConfigObject<PodSpec, PodStatus>;

/** namespaceOf returns an object's namespace (`default` when unset). */
export function namespaceOf(o: { metadata: ObjectMetadata }): string {
  return o.metadata.namespace ?? 'default';
}

/** AuthorizationPolicyObject is a stored `security.istio.io` AuthorizationPolicy. */
export type AuthorizationPolicyObject = ConfigObject<AuthorizationPolicySpec>;
/** PeerAuthenticationObject is a stored `security.istio.io` PeerAuthentication. */
export type PeerAuthenticationObject = ConfigObject<PeerAuthenticationSpec>;
/** TlsSecretObject is a stored Kubernetes `v1` Secret of type `kubernetes.io/tls` (key material: never log it). */
export type TlsSecretObject = Pick<TlsSecret, 'apiVersion' | 'kind' | 'type' | 'data' | 'stringData'> & {
  metadata: ObjectMetadata;
};
