import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import type { ResourceEntry } from '@fedmesh/xds';
import { HandControlPlane, staticCluster } from './hand-control-plane.js';
import { freeSubnet, get, startBackend, waitUntil, type CountingBackend } from './harness.js';

// A hand-written control plane (ADS over a snapshot cache, plus the CA) drives one real sidecar, so the test can
// push resources istiod would never generate.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-nack-'));
let cp: HandControlPlane;
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

/** clusters are `a` and `b`, on the two backends; `extraA` is added to `a`. */
function clusters(extraA: object = {}): ResourceEntry[] {
  return [staticCluster('a', ip, 8081, extraA), staticCluster('b', ip, 8082)];
}

before(async () => {
  const subnet = await freeSubnet();
  ip = `127.0.${subnet}.10`;
  const host = `127.0.${subnet}.1`;
  backendA = await startBackend(ip, 8081, 'a');
  backendB = await startBackend(ip, 8082, 'b');
  cp = await HandControlPlane.start({
    dir,
    host,
    ip,
    resources: {
      [TypeUrl.Listener]: [listener()],
      [TypeUrl.RouteConfiguration]: [route('a')],
      [TypeUrl.Cluster]: clusters(),
    },
  });
});

after(async () => {
  await cp?.close();
  backendA.server.close();
  backendB.server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a RouteConfiguration with an invalid regex is NACKed with its field path and the last good route keeps serving', async () => {
  await waitUntil(async () => (await get(`${ip}:15001`, 'svc')).status === 200, 10_000, 'first route');
  assert.equal(JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod, 'a');
  cp.push({
    [TypeUrl.Listener]: [listener()],
    [TypeUrl.RouteConfiguration]: [route('b', { safe_regex: { regex: '(unclosed' } })],
    [TypeUrl.Cluster]: clusters(),
  });
  await waitUntil(() => cp.nacks.some((n) => n.type === TypeUrl.RouteConfiguration), 10_000, 'RDS NACK');
  const nack = cp.nacks.find((n) => n.type === TypeUrl.RouteConfiguration);
  assert.match(
    nack?.message ?? '',
    /outbound: virtual_hosts\[0\]\.routes\[0\]\.match\.safe_regex\.regex: invalid regex/,
  );
  for (let i = 0; i < 5; i++) assert.equal(JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod, 'a');
});

test('a Cluster with a field the proxy does not implement is NACKed (never ignored) and the old clusters stay', async () => {
  const before = cp.nacks.length;
  cp.push({
    [TypeUrl.Listener]: [listener()],
    [TypeUrl.RouteConfiguration]: [route('a')],
    [TypeUrl.Cluster]: clusters({ lb_policy: 'CLUSTER_PROVIDED' }),
  });
  await waitUntil(() => cp.nacks.slice(before).some((n) => n.type === TypeUrl.Cluster), 10_000, 'CDS NACK');
  assert.match(cp.nacks.slice(before).find((n) => n.type === TypeUrl.Cluster)?.message ?? '', /a: lb_policy/);
  assert.equal((await get(`${ip}:15001`, 'svc')).status, 200);
});

test('a valid change after a NACK is applied', async () => {
  cp.push({
    [TypeUrl.Listener]: [listener()],
    [TypeUrl.RouteConfiguration]: [route('b')],
    [TypeUrl.Cluster]: clusters(),
  });
  await waitUntil(async () => JSON.parse((await get(`${ip}:15001`, 'svc')).body).pod === 'b', 10_000, 'route to b');
});
