/**
 * The east-west gateway and multi-network endpoints as a user notices them: Istio's own
 * `multicluster/expose-services.yaml` makes a gateway proxy serve one SNI-matched tcp_proxy chain per exported
 * service port and subset, and a sidecar on another network reaches a peer's workloads through that gateway's
 * 15443, weighted by how many endpoints stand behind it. The proxy's own decoders and ClusterManager decide.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ClusterRecord, ExportedService, FederationMember } from '@fedmesh/federation';
import {
  ClusterLoadAssignmentType,
  ClusterManager,
  ClusterType,
  endpointsFromAssignment,
  GatewayListenerType,
  ListenerType,
  type EnvoyCluster,
} from '@fedmesh/proxy';
import type { XdsResourceType } from '@fedmesh/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import type { ServiceRegistry } from '../model/service.js';
import { PushContext } from '../push-context.js';
import { FederatedRegistry, parseGatewayAddress } from '../registry/federated.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import type { GeneratedResource } from './common.js';
import { createGenerators } from './index.js';
import { TypeUrl } from '@fedmesh/api/xds';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const PODS = path.resolve(here, '../../testdata/bookinfo-pods.yaml');
const REVIEWS = 'reviews.default.svc.cluster.local';
const generators = createGenerators();

function generate(typeUrl: string, push: PushContext, proxy: ProxyModel, warnings: string[] = []): GeneratedResource[] {
  const g = generators.get(typeUrl);
  assert.ok(g);
  return g(push, proxy, warnings);
}

function accepted<T>(type: XdsResourceType<T>, r: GeneratedResource | undefined): T {
  assert.ok(r, 'resource generated');
  const res = type.decode(r.resource);
  assert.ok('value' in res, `${r.name} would be NACKed: ${'error' in res ? res.error : ''}`);
  return res.value;
}

function store(files: string[], extra = ''): ConfigStore<StoredObject> {
  const s = new ConfigStore<StoredObject>();
  for (const f of files) loadManifestText(s, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
  if (extra) assert.deepEqual(loadManifestText(s, extra, 'api', false).errors, []);
  return s;
}

function push(s: ConfigStore<StoredObject>, network: string, extra: ServiceRegistry[] = []): PushContext {
  const local = new KubeObjectsRegistry(s, { cluster: 'west', network, domainSuffix: 'cluster.local' });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'west',
    network,
  };
  return new PushContext(
    1,
    mesh,
    s,
    [local, ...extra],
    fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8'),
  );
}

const bookinfo = [
  path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'),
  PODS,
  path.join(SAMPLES, 'bookinfo/networking/destination-rule-all-mtls.yaml'),
];
const exposeServices = path.join(SAMPLES, 'multicluster/expose-services.yaml');

function router(labels: Record<string, string>): ProxyModel {
  return parseProxyNode({
    id: 'router~127.0.9.200~istio-eastwestgateway-0.istio-system~istio-system.svc.cluster.local',
    metadata: { NAMESPACE: 'istio-system', SERVICE_ACCOUNT: 'istio-eastwestgateway', LABELS: labels },
  });
}
const EASTWEST = router({ istio: 'eastwestgateway', app: 'istio-eastwestgateway' });
const SLEEP = parseProxyNode({
  id: 'sidecar~127.0.9.100~sleep-0.default~default.svc.cluster.local',
  metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'sleep', LABELS: { app: 'sleep' } },
});

describe('east-west gateway from expose-services.yaml (TLS AUTO_PASSTHROUGH)', () => {
  const p = push(store([...bookinfo, exposeServices]), 'net-west');

  it('serves 15443 with the tls_inspector and one SNI-matched tcp_proxy chain per service port and subset', () => {
    const lds = generate(TypeUrl.Listener, p, EASTWEST);
    assert.deepEqual(
      lds.map((l) => l.name),
      ['127.0.9.200_15443'],
    );
    const l = accepted(GatewayListenerType, lds[0]);
    assert.equal(l.address.socket_address.port_value, 15443);
    assert.equal(l.listener_filters[0]?.name, 'envoy.filters.listener.tls_inspector');
    const names = l.filter_chains.map((c) => c.filter_chain_match?.server_names?.[0]);
    // productpage (v1), details (v1, v2), ratings (v1, v2, v2-mysql, v2-mysql-vm), reviews (v1, v2, v3), each + ''
    assert.equal(names.length, 14);
    for (const sni of [`outbound_.9080_.v2_.${REVIEWS}`, `outbound_.9080_._.${REVIEWS}`])
      assert.ok(names.includes(sni));
    for (const c of l.filter_chains) {
      const tcp = c.filters[0]?.typed_config;
      assert.equal(tcp?.cluster, c.filter_chain_match?.server_names?.[0], 'tcp_proxy to the cluster named by the SNI');
      assert.ok(tcp?.idle_timeout, 'explicit idle timeout');
    }
    assert.ok(l.listener_filters_timeout, 'explicit ClientHello timeout');
  });

  it('its clusters pass TLS through (no transport_socket) and its endpoints are the sidecars at 15006', () => {
    const cds = generate(TypeUrl.Cluster, p, EASTWEST).map((r) => accepted(ClusterType, r));
    assert.equal(cds.length, 14);
    assert.ok(cds.every((c: EnvoyCluster) => c.transport_socket === undefined && c.type === 'EDS'));
    const eds = generate(TypeUrl.ClusterLoadAssignment, p, EASTWEST);
    const v2 = accepted(
      ClusterLoadAssignmentType,
      eds.find((r) => r.name === `outbound_.9080_.v2_.${REVIEWS}`),
    );
    assert.deepEqual(
      endpointsFromAssignment(v2).map((e) => `${e.address}:${e.port}`),
      ['127.0.9.5:15006'],
    );
    const all = accepted(
      ClusterLoadAssignmentType,
      eds.find((r) => r.name === `outbound_.9080_._.${REVIEWS}`),
    );
    assert.equal(endpointsFromAssignment(all).length, 3);
    assert.deepEqual(generate(TypeUrl.RouteConfiguration, p, EASTWEST), []);
  });

  it('a Service with networking.fedmesh.io/export: "false" is not reachable through the gateway', () => {
    const local = `apiVersion: v1
kind: Service
metadata:
  name: details
  namespace: default
  annotations: { networking.fedmesh.io/export: "false" }
spec:
  selector: { app: details }
  ports: [{ name: http, port: 9080 }]
`;
    const l = accepted(
      GatewayListenerType,
      generate(TypeUrl.Listener, push(store([...bookinfo, exposeServices], local), 'net-west'), EASTWEST)[0],
    );
    const names = l.filter_chains.map((c) => c.filter_chain_match?.server_names?.[0] ?? '');
    assert.equal(names.filter((n) => n.endsWith('details.default.svc.cluster.local')).length, 0);
    assert.equal(names.length, 11);
  });

  it('a gateway the selector does not match gets nothing; sidecars keep their own listeners', () => {
    assert.deepEqual(generate(TypeUrl.Listener, p, router({ istio: 'ingressgateway' })), []);
    const sidecarLds = generate(TypeUrl.Listener, p, SLEEP);
    assert.ok(sidecarLds.some((r) => r.name === 'virtualOutbound'));
    accepted(
      ListenerType,
      sidecarLds.find((r) => r.name === 'virtualOutbound'),
    );
  });

  it('a server of another TLS mode is reported and left out', () => {
    const extra = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: other, namespace: istio-system }
spec:
  selector: { istio: eastwestgateway }
  servers:
    - port: { number: 15444, name: tls-simple, protocol: TLS }
      tls: { mode: PASSTHROUGH }
      hosts: ["*.local"]
`;
    const warnings: string[] = [];
    const lds = generate(TypeUrl.Listener, push(store([...bookinfo, exposeServices], extra), ''), EASTWEST, warnings);
    assert.equal(lds.length, 1);
    assert.match(warnings.join('\n'), /only TLS AUTO_PASSTHROUGH is served/);
  });
});

/** fakeMember is the slice of FederationMember a FederatedRegistry reads. */
function fakeMember(remotes: { record: ClusterRecord; services: ExportedService[] }[]): FederationMember {
  const m = new EventEmitter() as EventEmitter & { remote: () => typeof remotes };
  m.remote = () => remotes;
  return m as unknown as FederationMember;
}

function record(cluster: string, network: string, gatewayAddress: string): ClusterRecord {
  return { mesh: 'm', cluster, network, gatewayAddress, istiodAddress: '', version: '0', joinedAt: '' };
}

function reviewsExport(versions: { v: string; ip: string; healthy?: boolean }[]): ExportedService {
  return {
    hostname: REVIEWS,
    name: 'reviews',
    namespace: 'default',
    ports: [{ name: 'http', port: 9080, protocol: 'HTTP' }],
    seq: 1,
    endpoints: versions.map(({ v, ip, healthy }) => ({
      address: ip,
      targetPorts: { '9080': 9080 },
      labels: { app: 'reviews', version: v },
      namespace: 'default',
      serviceAccount: 'bookinfo-reviews',
      workloadName: `reviews-${v}`,
      podName: `reviews-${v}-0`,
      locality: { region: '', zone: '', subZone: '' },
      healthy: healthy ?? true,
      weight: 1,
    })),
  };
}

describe('multi-network endpoints through the peer network\u2019s east-west gateway', () => {
  const east = reviewsExport([
    { v: 'v1', ip: '127.0.5.4' },
    { v: 'v2', ip: '127.0.5.5' },
    { v: 'v3', ip: '127.0.5.6' },
    { v: 'v3', ip: '127.0.5.7', healthy: false },
  ]);

  it('parses gateway addresses and refuses malformed ones', () => {
    assert.deepEqual(parseGatewayAddress('10.77.0.2:15443'), { host: '10.77.0.2', port: 15443 });
    assert.deepEqual(parseGatewayAddress('[fd00::2]:15443'), { host: 'fd00::2', port: 15443 });
    for (const bad of ['', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:70000', 'a:b:c'])
      assert.equal(parseGatewayAddress(bad), undefined, bad);
  });

  it("a peer's healthy endpoints become its gateway, weighted by their number per subset, dialled at 15443", () => {
    const fed = new FederatedRegistry(
      fakeMember([{ record: record('east', 'net-east', '10.77.0.2:15443'), services: [east] }]),
      'net-west',
    );
    const inst = fed.instances(REVIEWS, 9080);
    assert.equal(inst.length, 3, 'the unhealthy endpoint is left out');
    assert.ok(inst.every((i) => i.endpoint.address === '10.77.0.2' && i.servicePort.targetPort === 15443));
    assert.ok(inst.every((i) => i.endpoint.networkGateway === 'net-east'));

    const p = push(store(bookinfo), 'net-west', [fed]);
    const eds = generate(TypeUrl.ClusterLoadAssignment, p, SLEEP);
    const cla = (subset: string) =>
      endpointsFromAssignment(
        accepted(
          ClusterLoadAssignmentType,
          eds.find((r) => r.name === `outbound|9080|${subset}|${REVIEWS}`),
        ),
      );
    const all = cla('');
    const gw = all.filter((e) => e.address === '10.77.0.2');
    assert.equal(gw.length, 1, 'one endpoint per gateway');
    assert.equal(gw[0]?.weight, 3, 'weighted by the 3 healthy endpoints behind it');
    assert.equal(gw[0]?.workload?.cluster, 'east');
    assert.equal(all.filter((e) => e.address.startsWith('127.0.9.')).length, 3, 'local reviews pods stay');
    assert.equal(cla('v3').find((e) => e.address === '10.77.0.2')?.weight, 1, 'subset v3: one healthy endpoint');
    assert.equal(cla('v1').find((e) => e.address === '10.77.0.2')?.weight, 1);

    // The proxy dials the gateway at 15443 and a local sidecar at 15006, with the same SNI and peer SANs.
    const cds = generate(TypeUrl.Cluster, p, SLEEP).map((r) => accepted(ClusterType, r));
    const cm = new ClusterManager({ mtlsPort: 15006 });
    cm.setClusters(new Map(cds.map((c) => [c.name, c])));
    const name = `outbound|9080||${REVIEWS}`;
    cm.setAssignments(new Map(eds.map((r) => [r.name, accepted(ClusterLoadAssignmentType, r)] as const)));
    const c = cm.get(name);
    assert.ok(c?.mtls);
    assert.equal(c.mtls.sni, `outbound_.9080_._.${REVIEWS}`);
    assert.ok(c.mtls.allowedSans.includes('spiffe://cluster.local/ns/default/sa/bookinfo-reviews'));
    const targets = c.endpoints.map((e) => cm.upstreamTarget(c, e));
    assert.ok(targets.some((t) => t.host === '10.77.0.2' && t.port === 15443));
    assert.ok(targets.filter((t) => t.host.startsWith('127.0.9.')).every((t) => t.port === 15006));
    cm.close();

    // West's own gateway never re-exports east's gateway endpoint (no loops between gateways).
    const gwEds = generate(
      TypeUrl.ClusterLoadAssignment,
      push(store([...bookinfo, exposeServices]), 'net-west', [fed]),
      EASTWEST,
    );
    for (const r of gwEds)
      for (const e of endpointsFromAssignment(accepted(ClusterLoadAssignmentType, r)))
        assert.notEqual(e.address, '10.77.0.2');
  });

  it('a peer on another network without a gateway is skipped (reported once); a same-network peer is direct', () => {
    const skipped: string[] = [];
    const fed = new FederatedRegistry(
      fakeMember([
        { record: record('east', 'net-east', ''), services: [east] },
        { record: record('south', 'net-west', ''), services: [reviewsExport([{ v: 'v1', ip: '127.0.7.4' }])] },
      ]),
      'net-west',
      (cluster, network) => skipped.push(`${cluster}/${network}`),
    );
    const inst = fed.instances(REVIEWS, 9080);
    assert.deepEqual(
      inst.map((i) => `${i.endpoint.address}:${i.servicePort.targetPort}:${i.endpoint.networkGateway ?? '-'}`),
      ['127.0.7.4:9080:-'],
    );
    fed.services();
    assert.deepEqual(skipped, ['east/net-east']);
  });
});
