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
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import type { ResourceEntry } from '@fedmesh/xds';
import { HandControlPlane, staticCluster } from '../hand-control-plane.js';
import { freeSubnet, waitUntil } from '../harness.js';
import { RecordingBackend, request } from './fixture.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-rbac-nack-'));
let cp: HandControlPlane;
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

/** snapshot is the listener with `rules` in its RBAC filter, routing to the app's cluster. */
function snapshot(rules: object): Partial<Record<string, ResourceEntry[]>> {
  return { [TypeUrl.Listener]: [listener(rules)], [TypeUrl.Cluster]: [staticCluster('app', ip, 8081)] };
}

function push(rules: object): void {
  cp.push(snapshot(rules));
}

function status(p: string): Promise<number> {
  return request(`${ip}:15001`, 'app', p).then((r) => r.status);
}

before(async () => {
  const subnet = await freeSubnet();
  ip = `127.0.${subnet}.10`;
  const host = `127.0.${subnet}.1`;
  app = await RecordingBackend.start(ip, 8081, 'app');
  cp = await HandControlPlane.start({ dir, host, ip, resources: snapshot(DENY_ADMIN) });
  await waitUntil(async () => (await status('/ok')) === 200, 15_000, 'listener serving');
});

after(async () => {
  await cp?.close();
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
    const before = cp.nacks.length;
    push(rules);
    await waitUntil(() => cp.nacks.slice(before).some((n) => n.type === TypeUrl.Listener), 15_000, 'LDS NACK');
    assert.match(cp.nacks.slice(before).find((n) => n.type === TypeUrl.Listener)?.message ?? '', where);
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
