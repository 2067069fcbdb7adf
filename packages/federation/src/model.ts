/** Locality is a region/zone/sub-zone triple (Envoy `config.core.v3.Locality`). */
export interface Locality {
  region: string;
  zone: string;
  subZone: string;
}

/** ClusterRecord is a member cluster in etcd at `/fedmesh/<mesh>/clusters/<cluster>`, held under its lease. */
export interface ClusterRecord {
  mesh: string;
  cluster: string;
  network: string;
  /** gatewayAddress is the cluster's east-west gateway `host:port` (15443), or '' when it has none. */
  gatewayAddress: string;
  /** istiodAddress is the cluster's istiod `host:port` (15012). */
  istiodAddress: string;
  version: string;
  locality?: Locality;
  joinedAt: string;
}

/** ExportedPort is one port of an exported service. */
export interface ExportedPort {
  name: string;
  port: number;
  protocol: string;
}

/** ExportedEndpoint is one workload behind an exported service, as the owning cluster sees it. */
export interface ExportedEndpoint {
  address: string;
  /** targetPorts maps each service port to the workload port it reaches. */
  targetPorts: Record<string, number>;
  labels: Record<string, string>;
  namespace: string;
  serviceAccount: string;
  workloadName: string;
  podName: string;
  locality: Locality;
  healthy: boolean;
  weight: number;
}

/**
 * ExportedService is one service's endpoints in one cluster: the snapshot in etcd at
 * `/fedmesh/<mesh>/endpoints/<cluster>/<hostname>` (under the cluster's lease) and the payload of a delta on NATS.
 * `seq` is the exporting cluster's sequence number of the change that produced it.
 */
export interface ExportedService {
  hostname: string;
  name: string;
  namespace: string;
  ports: ExportedPort[];
  endpoints: ExportedEndpoint[];
  seq: number;
}

/** EndpointDelta is a message on `fedmesh.<mesh>.endpoints.<cluster>`: one service changed (or was withdrawn). */
export interface EndpointDelta {
  cluster: string;
  seq: number;
  hostname: string;
  /** service is the new state, or null when the cluster no longer exports the host. */
  service: ExportedService | null;
}

/** Heartbeat is a message on `fedmesh.<mesh>.heartbeat.<cluster>`. */
export interface Heartbeat {
  cluster: string;
  /** seq is the highest endpoint sequence number the sender has published, so peers can detect a missed delta. */
  seq: number;
  /**
   * committed is the highest sequence number whose change the sender has written to etcd: a peer that reads etcd
   * after this beat sees every change up to it (deletions included). Below `seq` while an export is failing.
   */
  committed?: number;
  sentAt: number;
  /** acks maps each peer cluster to the highest of its sequence numbers this sender has applied. */
  acks?: Record<string, number>;
}

/** keys are the etcd key layout of DESIGN.md. */
export const keys = {
  cluster: (mesh: string, cluster: string): string => `/fedmesh/${mesh}/clusters/${cluster}`,
  clusters: (mesh: string): string => `/fedmesh/${mesh}/clusters/`,
  trust: (mesh: string, fingerprint: string): string => `/fedmesh/${mesh}/trust/${fingerprint}`,
  trustPrefix: (mesh: string): string => `/fedmesh/${mesh}/trust/`,
  endpoints: (mesh: string, cluster: string, hostname: string): string =>
    `/fedmesh/${mesh}/endpoints/${cluster}/${hostname}`,
  endpointsOf: (mesh: string, cluster: string): string => `/fedmesh/${mesh}/endpoints/${cluster}/`,
};

/** subjects are the NATS subject layout of DESIGN.md. */
export const subjects = {
  endpoints: (mesh: string, cluster: string): string => `fedmesh.${mesh}.endpoints.${cluster}`,
  heartbeat: (mesh: string, cluster: string): string => `fedmesh.${mesh}.heartbeat.${cluster}`,
  allEndpoints: (mesh: string): string => `fedmesh.${mesh}.endpoints.*`,
  allHeartbeats: (mesh: string): string => `fedmesh.${mesh}.heartbeat.*`,
};
