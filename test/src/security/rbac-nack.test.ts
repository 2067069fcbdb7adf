/**
 * An authorization filter is never half-applied: a hand-written control plane pushes RBAC configs istiod would
 * never generate to one real sidecar. Unknown permission and principal kinds and CEL conditions are NACKed with
 * their field path, and the last good policy keeps being enforced (it does not fail open).
 */
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
import { freeSubnet, testLogger, waitUntil } from '../harness.js';
import { RecordingBackend, request } from './fixture.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-rbac-nack-'));
const cache = new SnapshotCache();
const nacks: { type: string; message: string }[] = [];
const server = new grpc.Server();
let sidecar: Sidecar;
let ip = '';
let app: RecordingBackend;

const ANY = [{ any: true }];
const DENY_ADMIN = {
  action: 'DENY',
  policies: { 'deny-admin': { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: ANY } },
};

function listener(rules: object): ResourceEntry {
  return {
    name: 'virtualOutbound',
    resource: encodeAny(TypeUrl.Listener, {
      name: 'virtualOutbound',
      address: { socket_address: { address: ip, port_value: 15001 } },
      traffic_direction: 'OUTBOUND',
      filter_chains: [
        {
          name: 'http',
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'outbound',
                route_config: {
                  name: 'local',
                  virtual_hosts: [
                    { name: 'app', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'app' } }] },
                  ],
                },
                http_filters: [
                  {
                    name: 'envoy.filters.http.rbac',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules },
                  },
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

function appCluster(): ResourceEntry {
  return {
    name: 'app',
    resource: encodeAny(TypeUrl.Cluster, {
      name: 'app',
      type: 'STATIC',
      connect_timeout: { seconds: 1 },
      load_assignment: {
        cluster_name: 'app',
        endpoints: [
          { lb_endpoints: [{ endpoint: { address: { socket_address: { address: ip, port_value: 8081 } } } }] },
        ],
      },
    }),
  };
}

function push(rules: object): void {
  cache.setSnapshot(
    sidecar.node().id,
    new Snapshot({ [TypeUrl.Listener]: [listener(rules)], [TypeUrl.Cluster]: [appCluster()] }),
  );
}

function status(p: string): Promise<number> {
  return request(`${ip}:15001`, 'app', p).then((r) => r.status);
}

before(async () => {
  const subnet = await freeSubnet();
  ip = `127.0.${subnet}.10`;
  const host = `127.0.${subnet}.1`;
  app = await RecordingBackend.start(ip, 8081, 'app');
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
  push(DENY_ADMIN);
  await sidecar.start();
  await waitUntil(() => sidecar.ready(), 15_000, 'sidecar ready');
  await waitUntil(async () => (await status('/ok')) === 200, 15_000, 'listener serving');
});

after(async () => {
  await sidecar?.stop();
  server.forceShutdown();
  await app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const UNIMPLEMENTED: [string, object, RegExp][] = [
  [
    'a metadata permission',
    {
      ...DENY_ADMIN,
      policies: {
        x: {
          permissions: [{ metadata: { filter: 'istio_authn', path: [{ key: 'k' }], value: { present_match: true } } }],
          principals: ANY,
        },
      },
    },
    /http_filters\[0\]\.typed_config\.rules\.policies\.x\.permissions\[0\]/,
  ],
  [
    'a filter_state principal',
    {
      ...DENY_ADMIN,
      policies: { x: { permissions: ANY, principals: [{ filter_state: { key: 'k', string_match: { exact: 'v' } } }] } },
    },
    /http_filters\[0\]\.typed_config\.rules\.policies\.x\.principals\[0\]/,
  ],
  [
    'a CEL condition',
    {
      ...DENY_ADMIN,
      policies: { x: { permissions: ANY, principals: ANY, condition: { const_expr: { bool_value: false } } } },
    },
    /http_filters\[0\]\.typed_config\.rules\.policies\.x/,
  ],
];

for (const [what, rules, where] of UNIMPLEMENTED)
  test(`an RBAC filter with ${what} is NACKed with its field path and the last good policy stays enforced`, async () => {
    const before = nacks.length;
    push(rules);
    await waitUntil(() => nacks.slice(before).some((n) => n.type === TypeUrl.Listener), 15_000, 'LDS NACK');
    assert.match(nacks.slice(before).find((n) => n.type === TypeUrl.Listener)?.message ?? '', where);
    const n = app.count;
    assert.equal(await status('/admin/x'), 403, 'the DENY /admin of the last good config still applies');
    assert.equal(await status('/ok'), 200);
    assert.equal(app.count, n + 1);
  });

test('a valid policy after the NACKs is applied', async () => {
  push({
    action: 'DENY',
    policies: { 'deny-ok': { permissions: [{ url_path: { path: { exact: '/ok' } } }], principals: ANY } },
  });
  await waitUntil(async () => (await status('/admin/x')) === 200, 15_000, 'new policy');
  assert.equal(await status('/ok'), 403);
});
