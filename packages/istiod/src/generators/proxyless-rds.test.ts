/**
 * The proxyless gRPC RDS generator (`generateProxylessRoutes`) on Bookinfo: VirtualService `delegate` routes are
 * merged as for sidecars (Istio's `mergeHTTPRoute`, delegate.ts), with gRPC's own translation of what is merged.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeAny } from '@fedmesh/api/xds';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { generateProxylessRoutes } from './proxyless-rds.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TESTDATA = path.resolve(here, '../../testdata');
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');
const BOOKINFO = path.join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml');
const DR_ALL = path.join(SAMPLES, 'bookinfo/networking/destination-rule-all.yaml');
const REVIEWS = 'reviews.default.svc.cluster.local';

function pushOf(files: readonly string[]): PushContext {
  const store = new ConfigStore<StoredObject>();
  for (const f of files) {
    const res = loadManifestText(store, fs.readFileSync(f, 'utf8'), `file:${f}`, true, path.basename(f));
    assert.deepEqual(
      res.errors.filter((e) => e.severity === 'error'),
      [],
      `${path.basename(f)} loads`,
    );
  }
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
  };
  return new PushContext(1, mesh, store, [registry], 'trust-bundle');
}

const GRPC_CLIENT = parseProxyNode({
  id: 'sidecar~10.9.0.3~grpc-0.default~default.svc.cluster.local',
  metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: 'grpc-client', LABELS: { app: 'grpc-client' }, GENERATOR: 'grpc' },
});

interface Route {
  name: string;
  match: { prefix?: string; headers?: { name: string }[] };
  route: { cluster?: string; max_stream_duration?: { max_stream_duration: { seconds: number } } };
}

function reviewsRoutes(push: PushContext, warnings: string[]): Route[] {
  const rc = generateProxylessRoutes(push, GRPC_CLIENT, warnings).find((r) => r.name === `${REVIEWS}:9080`);
  assert.ok(rc, 'the reviews:9080 RouteConfiguration');
  const decoded = decodeAny(rc.resource) as { virtual_hosts: { routes: Route[] }[] };
  return decoded.virtual_hosts[0]?.routes ?? [];
}

describe('proxyless RDS: delegate', () => {
  it('a proxyless client gets the delegate routes merged under the root match, as a sidecar does', () => {
    const warnings: string[] = [];
    const routes = reviewsRoutes(
      pushOf([BOOKINFO, DR_ALL, path.join(TESTDATA, 'traffic/delegate-reviews.yaml')]),
      warnings,
    );
    assert.deepEqual(
      routes.map((r) => [r.name, r.route.cluster, r.match.prefix]),
      [
        ['reviews-v2-jason', `outbound|9080|v3|${REVIEWS}`, '/reviews-v2/jason'],
        ['reviews-v2', `outbound|9080|v2|${REVIEWS}`, '/reviews-v2'],
        ['reviews.default.1', `outbound|9080|v1|${REVIEWS}`, '/'],
      ],
    );
    assert.deepEqual(
      routes[0]?.match.headers?.map((h) => h.name),
      ['end-user'],
      'the leaf header match is kept',
    );
    // The root's timeout is inherited by the merged routes, as gRPC reads it (max_stream_duration, gRFC A31).
    assert.equal(Number(routes[0]?.route.max_stream_duration?.max_stream_duration.seconds), 5);
    assert.deepEqual(
      [...new Set(warnings)],
      [
        "reviews.default http[0]: delegate reviews-team/reviews-v2 http[1] matches conflict with the root's; route left out",
      ],
      'no delegate left out as unsupported',
    );
  });
});
