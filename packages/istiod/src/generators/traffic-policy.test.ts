/**
 * Behaviour tests for the DestinationRule traffic-policy translation (load balancer, consistent hash, circuit
 * breakers, outlier detection, retry budget) and for locality load balancing in EDS, each output cross-checked
 * with the proxy's own decoders (what istiod emits is what the proxy applies).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAny } from '@fedmesh/api/xds';
import { ClusterLoadAssignmentType, ClusterType, RouteConfigurationType } from '@fedmesh/proxy';
import type { XdsResourceType } from '@fedmesh/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { generateClusters, generateEndpoints, generateRoutes } from './index.js';

const SERVICE = `
apiVersion: v1
kind: Service
metadata: { name: svc, namespace: default }
spec:
  selector: { app: svc }
  ports: [{ name: http, port: 8080, targetPort: 9090 }]
`;

function pod(name: string, ip: string, labels: Record<string, string>): string {
  return `
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: default
  labels: ${JSON.stringify({ app: 'svc', ...labels })}
spec:
  serviceAccountName: svc
  containers: [{ name: app, image: fedmesh/echo }]
status:
  phase: Running
  podIP: ${ip}
  conditions: [{ type: Ready, status: 'True' }]
`;
}

const PODS = [
  pod('a', '127.0.9.11', { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z1', tier: 'gold' }),
  pod('b', '127.0.9.12', { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z2', tier: 'gold' }),
  pod('c', '127.0.9.13', { 'topology.kubernetes.io/region': 'r2', 'topology.kubernetes.io/zone': 'z1', tier: 'gold' }),
  pod('d', '127.0.9.14', { 'topology.kubernetes.io/region': 'r3', 'topology.kubernetes.io/zone': 'z1', tier: 'iron' }),
];

function push(dr: string): PushContext {
  const store = new ConfigStore<StoredObject>();
  const text = [SERVICE, ...PODS, dr].join('\n---\n');
  const res = loadManifestText(store, text, 'test', true, 'test.yaml');
  assert.deepEqual(
    res.errors.filter((e) => e.severity === 'error'),
    [],
  );
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  return new PushContext(
    1,
    {
      trustDomain: 'cluster.local',
      domainSuffix: 'cluster.local',
      rootNamespace: 'istio-system',
      clusterId: 'Kubernetes',
      network: '',
    },
    store,
    [registry],
    '',
  );
}

const CLIENT: ProxyModel = parseProxyNode({
  id: 'sidecar~127.0.9.2~client-0.default~default.svc.cluster.local',
  metadata: {
    NAMESPACE: 'default',
    SERVICE_ACCOUNT: 'client',
    LABELS: { app: 'client', 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': 'z1', tier: 'gold' },
    INSTANCE_IPS: '127.0.9.2',
  },
});

function accepted<T>(type: XdsResourceType<T>, r: GeneratedResource | undefined): T {
  assert.ok(r, 'resource generated');
  const d = type.decode(r.resource);
  assert.ok(!('error' in d), 'error' in d ? d.error : '');
  return (d as { value: T }).value;
}

function dr(trafficPolicy: string): string {
  return `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: svc, namespace: default }
spec:
  host: svc
  trafficPolicy:
${trafficPolicy
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`;
}

const NAME = 'outbound|8080||svc.default.svc.cluster.local';

function cluster(p: PushContext, warnings: string[] = []): Record<string, unknown> {
  const c = generateClusters(p, CLIENT, warnings).find((r) => r.name === NAME);
  accepted(ClusterType, c);
  return decodeAny((c as GeneratedResource).resource);
}

function routeAction(p: PushContext): Record<string, unknown> {
  const r = generateRoutes(p, CLIENT)[0];
  accepted(RouteConfigurationType, r);
  const rc = decodeAny((r as GeneratedResource).resource) as {
    virtual_hosts: {
      name: string;
      include_request_attempt_count?: boolean;
      routes: { route: Record<string, unknown> }[];
    }[];
  };
  const vh = rc.virtual_hosts.find((v) => v.name === 'svc.default.svc.cluster.local:8080');
  assert.equal(vh?.include_request_attempt_count, true);
  return vh?.routes[0]?.route ?? {};
}

function priorities(p: PushContext, proxy = CLIENT): Record<string, { priority: number; weight: number }> {
  const r = generateEndpoints(p, proxy).find((e) => e.name === NAME);
  const cla = accepted(ClusterLoadAssignmentType, r);
  const out: Record<string, { priority: number; weight: number }> = {};
  for (const le of cla.endpoints ?? [])
    for (const e of le.lb_endpoints ?? [])
      out[e.endpoint.address.socket_address.address.slice(-2)] = {
        priority: le.priority ?? 0,
        weight: le.load_balancing_weight?.value ?? 0,
      };
  return out;
}

describe('DestinationRule traffic policy → Envoy cluster', () => {
  it('every cluster gets Istio default circuit breakers (MaxUint32, track_remaining)', () => {
    const c = cluster(push(''));
    assert.deepEqual(c.circuit_breakers, {
      thresholds: [
        {
          max_connections: { value: 4294967295 },
          max_pending_requests: { value: 4294967295 },
          max_requests: { value: 4294967295 },
          max_retries: { value: 4294967295 },
          track_remaining: true,
        },
      ],
    });
  });

  it('connectionPool, retryBudget and outlierDetection translate as Istio does', () => {
    const c = cluster(
      push(
        dr(`
connectionPool:
  tcp: { maxConnections: 3, connectTimeout: 250ms }
  http: { http1MaxPendingRequests: 2, http2MaxRequests: 5, maxRequestsPerConnection: 10, maxRetries: 4, idleTimeout: 30s }
retryBudget: { percent: 25, minRetryConcurrency: 1 }
outlierDetection:
  consecutive5xxErrors: 2
  consecutiveGatewayErrors: 0
  interval: 1s
  baseEjectionTime: 2s
  maxEjectionPercent: 100
  minHealthPercent: 40
loadBalancer: { simple: LEAST_CONN }
`),
      ),
    );
    assert.deepEqual(c.connect_timeout, { seconds: '0', nanos: 250_000_000 });
    assert.equal(c.lb_policy, 'LEAST_REQUEST');
    assert.deepEqual(c.circuit_breakers, {
      thresholds: [
        {
          max_connections: { value: 3 },
          max_pending_requests: { value: 2 },
          max_requests: { value: 5 },
          max_retries: { value: 4 },
          retry_budget: { budget_percent: { value: 25 }, min_retry_concurrency: { value: 1 } },
          track_remaining: true,
        },
      ],
    });
    assert.deepEqual(c.outlier_detection, {
      consecutive_5xx: { value: 2 },
      enforcing_consecutive_5xx: { value: 100 },
      consecutive_gateway_failure: { value: 0 },
      enforcing_consecutive_gateway_failure: { value: 0 },
      interval: { seconds: '1', nanos: 0 },
      base_ejection_time: { seconds: '2', nanos: 0 },
      max_ejection_percent: { value: 100 },
      enforcing_success_rate: { value: 0 },
    });
    assert.deepEqual(c.common_lb_config, { healthy_panic_threshold: { value: 40 }, locality_weighted_lb_config: {} });
    const opts = (c.typed_extension_protocol_options as Record<string, Record<string, unknown>>)[
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions'
    ];
    assert.deepEqual(opts?.common_http_protocol_options, {
      idle_timeout: { seconds: '30', nanos: 0 },
      max_requests_per_connection: { value: 10 },
    });
  });

  it('consistentHash picks RING_HASH (default) or MAGLEV and puts the hash policy on routes', () => {
    const ring = push(
      dr('loadBalancer: { consistentHash: { httpHeaderName: X-User, ringHash: { minimumRingSize: 64 } } }'),
    );
    const c = cluster(ring);
    assert.equal(c.lb_policy, 'RING_HASH');
    assert.deepEqual(c.ring_hash_lb_config, { minimum_ring_size: { value: '64' } });
    assert.deepEqual(routeAction(ring).hash_policy, [{ header: { header_name: 'x-user' } }]);
    const mag = push(dr('loadBalancer: { consistentHash: { useSourceIp: true, maglev: { tableSize: 251 } } }'));
    assert.equal(cluster(mag).lb_policy, 'MAGLEV');
    assert.deepEqual(routeAction(mag).hash_policy, [{ connection_properties: { source_ip: true } }]);
    const cookie = push(dr('loadBalancer: { consistentHash: { httpCookie: { name: sticky, ttl: 60s, path: / } } }'));
    assert.deepEqual(routeAction(cookie).hash_policy, [
      { cookie: { name: 'sticky', ttl: { seconds: '60', nanos: 0 }, path: '/' } },
    ]);
    const query = push(dr('loadBalancer: { consistentHash: { httpQueryParameterName: user } }'));
    assert.deepEqual(routeAction(query).hash_policy, [{ query_parameter: { name: 'user' } }]);
  });

  it('a Maglev table size that is not prime is replaced by the default, with a warning', () => {
    const warnings: string[] = [];
    const c = cluster(
      push(dr('loadBalancer: { consistentHash: { httpHeaderName: x, maglev: { tableSize: 1000 } } }')),
      warnings,
    );
    assert.deepEqual(c.maglev_lb_config, { table_size: { value: '65537' } });
    assert.match(warnings.join('\n'), /tableSize 1000 is not prime/);
  });
});

describe('locality load balancing → EDS priorities and weights, relative to the proxy', () => {
  it('without outlierDetection there is no failover: every locality at priority 0', () => {
    const p = priorities(push(''));
    assert.deepEqual(
      Object.values(p).map((x) => x.priority),
      [0, 0, 0, 0],
    );
  });

  it('with outlierDetection: same zone, then same region, then other regions', () => {
    const p = priorities(push(dr('outlierDetection: { consecutive5xxErrors: 1 }')));
    assert.deepEqual(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.priority])), {
      '11': 0,
      '12': 1,
      '13': 2,
      '14': 2,
    });
  });

  it('failover from r1 to r3 puts r3 before r2', () => {
    const p = priorities(
      push(
        dr(`
outlierDetection: { consecutive5xxErrors: 1 }
loadBalancer: { localityLbSetting: { enabled: true, failover: [{ from: r1, to: r3 }] } }
`),
      ),
    );
    assert.deepEqual(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.priority])), {
      '11': 0,
      '12': 1,
      '13': 3,
      '14': 2,
    });
  });

  it('failoverPriority orders by matching labels, in key order', () => {
    const p = priorities(
      push(
        dr(`
outlierDetection: { consecutive5xxErrors: 1 }
loadBalancer: { localityLbSetting: { failoverPriority: [tier, topology.kubernetes.io/region] } }
`),
      ),
    );
    assert.deepEqual(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.priority])), {
      '11': 0,
      '12': 0,
      '13': 1,
      '14': 2,
    });
  });

  it('explicit failover mode: failoverPriority applies without outlierDetection (networking.fedmesh.io/failover-mode)', () => {
    const explicit = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc
  namespace: default
  annotations: { networking.fedmesh.io/failover-mode: explicit }
spec:
  host: svc
  trafficPolicy:
    loadBalancer: { localityLbSetting: { failoverPriority: [tier, topology.kubernetes.io/region] } }
`;
    const p = priorities(push(explicit));
    assert.deepEqual(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.priority])), {
      '11': 0,
      '12': 0,
      '13': 1,
      '14': 2,
    });
    const c = cluster(push(explicit));
    assert.deepEqual((c.common_lb_config as { locality_weighted_lb_config?: object }).locality_weighted_lb_config, {});
  });

  it("failoverPriority on topology.istio.io/cluster prefers endpoints of the proxy's own cluster", () => {
    const explicit = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc
  namespace: default
  annotations: { networking.fedmesh.io/failover-mode: explicit }
spec:
  host: svc
  trafficPolicy:
    loadBalancer: { localityLbSetting: { failoverPriority: [topology.istio.io/cluster] } }
`;
    const p = priorities(push(explicit));
    assert.deepEqual(
      Object.values(p).map((x) => x.priority),
      [0, 0, 0, 0],
      "all local endpoints share the proxy's cluster",
    );
    const other = priorities(push(explicit), { ...CLIENT, clusterId: 'elsewhere' });
    assert.deepEqual(
      Object.values(other).map((x) => x.priority),
      [0, 0, 0, 0],
      'a single level stays priority 0',
    );
  });

  it('distribute sets locality weights and leaves out localities it does not name', () => {
    const p = priorities(
      push(
        dr(`
loadBalancer:
  localityLbSetting:
    distribute: [{ from: r1/z1/*, to: { 'r1/z1/*': 70, 'r2/*': 30 } }]
`),
      ),
    );
    assert.deepEqual(p, { '11': { priority: 0, weight: 70 }, '13': { priority: 0, weight: 30 } });
  });

  it('enabled: false turns locality load balancing off', () => {
    const p = priorities(
      push(
        dr(`
outlierDetection: { consecutive5xxErrors: 1 }
loadBalancer: { localityLbSetting: { enabled: false } }
`),
      ),
    );
    assert.deepEqual(
      Object.values(p).map((x) => x.priority),
      [0, 0, 0, 0],
    );
  });

  it("the proxy's locality comes from node.locality before its labels", () => {
    const elsewhere = parseProxyNode({
      id: 'sidecar~127.0.9.3~client-1.default~default.svc.cluster.local',
      locality: { region: 'r3', zone: 'z1' },
      metadata: { NAMESPACE: 'default', LABELS: { 'topology.kubernetes.io/region': 'r1' } },
    });
    assert.deepEqual(elsewhere.locality, { region: 'r3', zone: 'z1', subZone: '' });
    const p = priorities(push(dr('outlierDetection: { consecutive5xxErrors: 1 }')), elsewhere);
    assert.equal(p['14']?.priority, 0);
  });
});
