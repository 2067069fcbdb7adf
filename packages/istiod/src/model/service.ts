/**
 * ServicePort is one port of a mesh service: `port` is the service port clients dial, `targetPort` the port the
 * workload listens on (Kubernetes `Service.spec.ports[].targetPort`, resolved to a number).
 */
export interface ServicePort {
  name: string;
  port: number;
  targetPort: number;
  /** protocol is Istio's protocol selection: from `appProtocol`, else the port name prefix, else TCP. */
  protocol: 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS' | 'HTTPS';
}

/** MeshService is one service in the registry, keyed by its fully qualified hostname. */
export interface MeshService {
  /** hostname is `<name>.<namespace>.svc.<domain>` for Kubernetes services. */
  hostname: string;
  name: string;
  namespace: string;
  ports: ServicePort[];
  /** selector selects the pods behind the service (Kubernetes `Service.spec.selector`). */
  selector: Record<string, string>;
  /** exportTo is the set of namespaces that see the service ('*' all, '.' own); empty means all. */
  exportTo: string[];
  labels: Record<string, string>;
  /**
   * addresses are the service's virtual IPs (Kubernetes `spec.clusterIPs`, Istio's ClusterVIPs), reached through
   * transparent capture: each gets `<vip>:<port>` virtual-host domains. Absent or empty for a service without one.
   */
  addresses?: string[];
}

/**
 * ServiceInstance is one workload endpoint of a service port: where a client sends traffic, and who answers.
 */
export interface ServiceInstance {
  service: MeshService;
  servicePort: ServicePort;
  endpoint: WorkloadEndpoint;
}

/** WorkloadEndpoint is one workload (pod, WorkloadEntry) with its address and identity. */
export interface WorkloadEndpoint {
  address: string;
  labels: Record<string, string>;
  namespace: string;
  serviceAccount: string;
  /** workloadName is the owning Deployment (or the pod's name when it has none). */
  workloadName: string;
  podName: string;
  /** tlsMode 'istio' marks a workload with a sidecar: it is reached over mutual TLS. */
  tlsMode: 'istio' | 'disabled';
  locality: { region: string; zone: string; subZone: string };
  network: string;
  cluster: string;
  healthy: boolean;
  weight: number;
  /**
   * networkGateway, when set, names the network whose east-west gateway stands in for this remote workload:
   * `address` and the instance's `targetPort` are the gateway's (15443); the other fields still describe the
   * workload (its labels select subsets, its service account is the peer SAN the client checks). docs/adr/0006.
   */
  networkGateway?: string;
}

/** ServiceRegistry is one source of services and their workload endpoints (Istio's `ServiceDiscovery`). */
export interface ServiceRegistry {
  readonly provider: string;
  readonly cluster: string;
  services(): MeshService[];
  /** instances returns the endpoints of one service port, healthy or not. */
  instances(hostname: string, port: number): ServiceInstance[];
  /** workloadByAddress returns the workload at an IP, for a proxy to learn its own labels and services. */
  workloadByAddress(address: string): WorkloadEndpoint | undefined;
}

/**
 * protocolFromPort applies Istio's protocol selection rules
 * (https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/): `appProtocol` wins,
 * else the port name's prefix before `-` (`http`, `http2`, `grpc`, `tcp`, `tls`, `https`), else TCP.
 */
export function protocolFromPort(name: string | undefined, appProtocol: string | undefined): ServicePort['protocol'] {
  const pick = (s: string): ServicePort['protocol'] | undefined => {
    const p = s.toLowerCase().split('-')[0] ?? '';
    if (p === 'http') return 'HTTP';
    if (p === 'http2' || p === 'h2c') return 'HTTP2';
    if (p === 'grpc' || p === 'grpc-web') return 'GRPC';
    if (p === 'tcp' || p === 'mongo' || p === 'mysql' || p === 'redis') return 'TCP';
    if (p === 'tls') return 'TLS';
    if (p === 'https') return 'HTTPS';
    return undefined;
  };
  return (appProtocol ? pick(appProtocol) : undefined) ?? (name ? pick(name) : undefined) ?? 'TCP';
}

/** isHttpProtocol reports whether a port's protocol is handled by the HTTP connection manager. */
export function isHttpProtocol(p: ServicePort['protocol']): boolean {
  return p === 'HTTP' || p === 'HTTP2' || p === 'GRPC';
}
