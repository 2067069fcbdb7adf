import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import {
  LocalTokenAuthenticator,
  StaticCertificateProvider,
  createCaService,
  createOptionalClientCertCredentials,
} from '@fedmesh/istiod';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { Sidecar } from '@fedmesh/proxy';
import { Snapshot, SnapshotCache, createAdsServer, type ResourceEntry } from '@fedmesh/xds';
import { freeSubnet, get, startBackend, testLogger, waitUntil, type CountingBackend } from './harness.js';

// A hand-written control plane (ADS over a snapshot cache, plus the CA) drives one real sidecar, so the test can
// push resources istiod would never generate.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-nack-'));
const cache = new SnapshotCache();
const nacks: { type: string; message: string }[] = [];
const server = new grpc.Server();
let sidecar: Sidecar;
let ip = '';
let backendA: CountingBackend;
let backendB: CountingBackend;

function listener(): ResourceEntry {
  return {
    name: 'virtualOutbound',
    resource: encodeAny(TypeUrl.Listener, {
      name: 'virtualOutbound',
      address: { socket_address: { address: ip, port_value: 15001 } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'outbound',
                rds: { route_config_name: 'outbound', config_source: { ads: {}, resource_api_version: 'V3' } },
                http_filters: [
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                  },
                ],
              },
            },
          ],
        },
      ],
    }),
  };
}

function route(cluster: string, pathMatch: object = { prefix: '/' }): ResourceEntry {
  return {
    name: 'outbound',
    resource: encodeAny(TypeUrl.RouteConfiguration, {
      name: 'outbound',
      virtual_hosts: [
        {
          name: 'svc',
          domains: ['svc', 'svc:80'],
          routes: [{ match: pathMatch, route: { cluster, timeout: { seconds: 5 } } }],
        },
      ],
    }),
  };
}

function staticCluster(name: string, port: number, extra: object = {}): ResourceEntry {
  return {
    name,
    resource: encodeAny(TypeUrl.Cluster, {
      name,
      type: 'STATIC',
      connect_timeout: { seconds: 1 },
      load_assignment: {
        cluster_name: name,
        endpoints: [
          { lb_endpoints: [{ endpoint: { address: { socket_address: { address: ip, port_value: port } } } }] },
        ],
      },
      ...extra,
    }),
  };
}

before(async () => {
  const subnet = await freeSubnet();
  ip = `127.0.${subnet}.10`;
  const host = `127.0.${subnet}.1`;
  backendA = await startBackend(ip, 8081, 'a');
  backendB = await startBackend(ip, 8082, 'b');
  const ca = await CertificateAuthority.createSelfSigned({
    stateDir: path.join(dir, 'ca'),
    trustDomain: 'cluster.local',
  });
  const tokens = new LocalTokenAuthenticator({ trustDomain: 'cluster.local' });
  const caService = createCaService({ ca, authenticators: [tokens] });
  const ads = createAdsServer(cache, { onNack: (_s, t, _v, m) => nacks.push({ type: t, message: m }) });
  server.addService(caService.definition, caService.implementation);
  server.addService(ads.service, ads.implementation);
  const key = await generateKeyPair('ec-p256');
  const serving = await ca.signServing({
    publicKey: key.publicKey,
    dnsNames: ['istiod.istio-system.svc'],
    ips: [host],
  });
  const provider = new StaticCertificateProvider({
    rootCertsPem: ca.rootCertsPem.join(''),
    certChainPem: serving.chainPem.join(''),
    privateKeyPem: key.privateKeyPem,
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:0`, createOptionalClientCertCredentials(provider), (e, p) => (e ? rej(e) : res(p))),
  );
  const log = testLogger(dir, 'sidecar');
  sidecar = new Sidecar({
    ip,
    podName: 'client-0',
    namespace: 'default',
    serviceAccount: 'client',
    labels: { app: 'client' },
    workloadName: 'client',
    clusterId: 'Kubernetes',
    discoveryAddress: `${host}:${port}`,
    rootCertPem: ca.rootCertsPem.join(''),
    token: tokens.mint({ namespace: 'default', serviceAccount: 'client' }),
    adminPort: 15000,
    mtlsPort: 15006,
    log,
    accessLog: log,
  });
  cache.setSnapshot(
    sidecar.node().id,
    new Snapshot({
      [TypeUrl.Listener]: [listener()],
      [TypeUrl.RouteConfiguration]: [route('a')],
      [TypeUrl.Cluster]: [staticCluster('a', 8081), staticCluster('b', 8082)],
    }),
  );
  await sidecar.start();
  await waitUntil(() => sidecar.ready(), 10_000, 'sidecar ready');
});

after(async () => {
  await sidecar.stop();
  server.forceShutdown();
  backendA.server.close();
  backendB.server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a RouteConfiguration with an invalid regex is NACKed with its field path and the last good route keeps serving', async () => {
  await waitUntil(async () => (await get(`${ip}:15001`, 'svc')).status === 200, 10_000, 'first route');
  assert.equal(JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod, 'a');
  const id = sidecar.node().id;
  cache.setSnapshot(
    id,
    new Snapshot({
      [TypeUrl.Listener]: [listener()],
      [TypeUrl.RouteConfiguration]: [route('b', { safe_regex: { regex: '(unclosed' } })],
      [TypeUrl.Cluster]: [staticCluster('a', 8081), staticCluster('b', 8082)],
    }),
  );
  await waitUntil(() => nacks.some((n) => n.type === TypeUrl.RouteConfiguration), 10_000, 'RDS NACK');
  const nack = nacks.find((n) => n.type === TypeUrl.RouteConfiguration);
  assert.match(
    nack?.message ?? '',
    /outbound: virtual_hosts\[0\]\.routes\[0\]\.match\.safe_regex\.regex: invalid regex/,
  );
  for (let i = 0; i < 5; i++) assert.equal(JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod, 'a');
});

test('a Cluster with a field the proxy does not implement is NACKed (never ignored) and the old clusters stay', async () => {
  const id = sidecar.node().id;
  const before = nacks.length;
  cache.setSnapshot(
    id,
    new Snapshot({
      [TypeUrl.Listener]: [listener()],
      [TypeUrl.RouteConfiguration]: [route('a')],
      [TypeUrl.Cluster]: [staticCluster('a', 8081, { lb_policy: 'CLUSTER_PROVIDED' }), staticCluster('b', 8082)],
    }),
  );
  await waitUntil(() => nacks.slice(before).some((n) => n.type === TypeUrl.Cluster), 10_000, 'CDS NACK');
  assert.match(nacks.slice(before).find((n) => n.type === TypeUrl.Cluster)?.message ?? '', /a: lb_policy/);
  assert.equal((await get(`${ip}:15001`, 'svc')).status, 200);
});

test('a valid change after a NACK is applied', async () => {
  const id = sidecar.node().id;
  cache.setSnapshot(
    id,
    new Snapshot({
      [TypeUrl.Listener]: [listener()],
      [TypeUrl.RouteConfiguration]: [route('b')],
      [TypeUrl.Cluster]: [staticCluster('a', 8081), staticCluster('b', 8082)],
    }),
  );
  await waitUntil(async () => JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod === 'b', 10_000, 'route to b');
});
