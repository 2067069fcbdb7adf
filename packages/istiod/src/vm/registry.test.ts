import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { parseManifests, WorkloadEntryAnnotations } from '@fedmesh/api';
import type { StreamInfo } from '@fedmesh/xds';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode } from '../model/proxy.js';
import { AUTO_REGISTRATION_OWNER, WorkloadEntryController, workloadEntryName } from './auto-registration.js';
import { WorkloadEntryRegistry, type WorkloadEntryObject } from './workload-entry-registry.js';

const log = pino({ level: 'silent' });

const MANIFESTS = `
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: vm}
spec:
  selector: {app: legacy}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-admin, port: 9000, targetPort: admin}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy-db, namespace: vm}
spec:
  hosts: [db.legacy.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  - {number: 8081, name: http-stats, protocol: HTTP, targetPort: 18081}
  workloadSelector: {labels: {app: legacy-db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: static-vm, namespace: vm}
spec:
  address: 10.9.0.5
  labels: {app: legacy, version: v0}
  ports: {admin: 19000}
  serviceAccount: legacy-sa
  locality: us-east/a
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: vm}
spec:
  address: 10.9.0.6
  labels: {app: legacy-db, security.istio.io/tlsMode: istio}
  ports: {tcp-pg: 15432}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: elsewhere, namespace: other}
spec:
  address: 10.9.0.7
  labels: {app: legacy}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: legacy, namespace: vm}
spec:
  metadata:
    labels: {app: legacy}
    annotations: {team: blue}
  template:
    serviceAccount: legacy-sa
    ports: {http: 8080}
    labels: {version: v1}
  probe:
    httpGet: {path: /ready, port: 8080}
`;

function storeWith(text: string): ConfigStore<StoredObject> {
  const store = new ConfigStore<StoredObject>();
  const { resources, errors } = parseManifests(text);
  assert.deepEqual(
    errors.filter((e) => e.severity === 'error'),
    [],
  );
  store.apply(resources, 'test');
  return store;
}

const opts = { cluster: 'east', network: 'net-east', domainSuffix: 'cluster.local' };

function fakeStream(id: number, ip: string, group: string | undefined, sa = 'legacy-sa'): StreamInfo {
  const node = {
    id: `sidecar~${ip}~vm-${id}.vm~vm.svc.cluster.local`,
    metadata: {
      NAMESPACE: 'vm',
      SERVICE_ACCOUNT: sa,
      LABELS: { host: `vm-${id}` },
      ...(group ? { AUTO_REGISTER_GROUP: group } : {}),
    },
  };
  return {
    id,
    protocol: 'sotw',
    node,
    peer: 'ipv4:127.0.0.1:1',
    connectedAt: Date.now(),
    types: new Map(),
    identity: parseProxyNode(node),
  } as unknown as StreamInfo;
}

describe('WorkloadEntryRegistry', () => {
  it('puts WorkloadEntries behind the Services and ServiceEntries that select them', () => {
    const reg = new WorkloadEntryRegistry(storeWith(MANIFESTS), opts);
    assert.deepEqual(
      reg.services().map((s) => s.hostname),
      ['db.legacy.internal', 'legacy.vm.svc.cluster.local'],
    );
    const http = reg.instances('legacy.vm.svc.cluster.local', 80);
    assert.deepEqual(
      http.map((i) => [i.endpoint.address, i.servicePort.targetPort]),
      [['10.9.0.5', 8080]],
    );
    const e = http[0]?.endpoint;
    assert.equal(e?.serviceAccount, 'legacy-sa');
    assert.deepEqual(e?.locality, { region: 'us-east', zone: 'a', subZone: '' });
    assert.equal(e?.network, 'net-east');
    assert.equal(e?.cluster, 'east');
    assert.equal(e?.healthy, true, 'entries without health checks are healthy');
    assert.equal(e?.tlsMode, 'disabled', 'a hand-written entry without the tlsMode label has no sidecar');
    // A named targetPort is looked up in the entry's ports.
    assert.deepEqual(
      reg.instances('legacy.vm.svc.cluster.local', 9000).map((i) => i.servicePort.targetPort),
      [19000],
    );
    // ServiceEntry: the entry's port by name wins over targetPort, then targetPort, then the number.
    assert.deepEqual(
      reg.instances('db.legacy.internal', 5432).map((i) => [i.endpoint.address, i.servicePort.targetPort]),
      [['10.9.0.6', 15432]],
    );
    assert.deepEqual(
      reg.instances('db.legacy.internal', 8081).map((i) => i.servicePort.targetPort),
      [18081],
    );
    assert.equal(reg.instances('db.legacy.internal', 5432)[0]?.endpoint.tlsMode, 'istio');
    assert.equal(reg.workloadByAddress('10.9.0.6')?.podName, 'db-1');
    assert.deepEqual(reg.instances('legacy.vm.svc.cluster.local', 81), []);
  });
});

describe('WorkloadEntryController', () => {
  it('auto-registers a verified proxy of the group, health-checked, and removes it a grace period after disconnect', async () => {
    const store = storeWith(MANIFESTS);
    const reg = new WorkloadEntryRegistry(store, opts);
    const ctl = new WorkloadEntryController({ store, controller: 'istiod-east', gracePeriodMs: 150, log });
    const s1 = fakeStream(1, '10.9.1.1', 'legacy');
    ctl.onStreamOpen(s1);
    assert.equal(store.list('WorkloadEntry').length, 3, 'unverified streams do not register');

    ctl.markVerified(s1.identity as never);
    ctl.onStreamOpen(s1);
    const key = `WorkloadEntry/vm/${workloadEntryName('legacy', '10.9.1.1', '')}`;
    const we = store.get(key) as WorkloadEntryObject | undefined;
    assert.ok(we, 'entry written');
    assert.equal(store.ownerOf(key), AUTO_REGISTRATION_OWNER);
    assert.equal(we.spec.address, '10.9.1.1');
    assert.deepEqual(we.spec.labels, { app: 'legacy', version: 'v1', host: 'vm-1' });
    assert.deepEqual(we.spec.ports, { http: 8080 });
    assert.equal(we.metadata.annotations?.[WorkloadEntryAnnotations.autoRegistrationGroup], 'legacy');
    assert.equal(we.metadata.annotations?.[WorkloadEntryAnnotations.healthChecksEnabled], 'true');
    assert.equal(we.metadata.annotations?.['team'], 'blue');
    const vmEndpoint = () =>
      reg.instances('legacy.vm.svc.cluster.local', 80).find((i) => i.endpoint.address === '10.9.1.1')?.endpoint;
    assert.equal(vmEndpoint()?.healthy, false, 'a probed group starts unhealthy');
    assert.equal(vmEndpoint()?.tlsMode, 'istio');

    const caller = { trustDomain: 'cluster.local', namespace: 'vm', serviceAccount: 'legacy-sa' };
    const proxyId = (s1.identity as { id: string }).id;
    assert.deepEqual(ctl.reportHealth(caller, { proxyId, healthy: true, message: '' }), {
      ok: true,
      workloadEntry: `vm/${workloadEntryName('legacy', '10.9.1.1', '')}`,
    });
    assert.equal(vmEndpoint()?.healthy, true);
    const rev = store.revision;
    ctl.reportHealth(caller, { proxyId, healthy: true, message: '' });
    assert.equal(store.revision, rev, 'an unchanged report writes nothing');
    assert.equal(
      ctl.reportHealth({ ...caller, serviceAccount: 'other' }, { proxyId, healthy: false, message: 'x' }).ok,
      false,
    );
    assert.equal(ctl.reportHealth(caller, { proxyId: 'sidecar~nope', healthy: false, message: 'x' }).ok, false);
    ctl.reportHealth(caller, { proxyId, healthy: false, message: 'HTTP 503' });
    assert.equal(vmEndpoint()?.healthy, false);
    ctl.reportHealth(caller, { proxyId, healthy: true, message: '' });

    // Disconnect, reconnect inside the grace period: the entry (and its health) stays.
    ctl.onStreamClose(s1);
    assert.ok((store.get(key) as WorkloadEntryObject).metadata.annotations?.[WorkloadEntryAnnotations.disconnectedAt]);
    const s2 = fakeStream(2, '10.9.1.1', 'legacy');
    ctl.markVerified(s2.identity as never);
    ctl.onStreamOpen(s2);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(vmEndpoint()?.healthy, true, 'reconnect keeps the entry and its health');
    assert.equal(
      (store.get(key) as WorkloadEntryObject).metadata.annotations?.[WorkloadEntryAnnotations.disconnectedAt],
      undefined,
    );
    ctl.onStreamClose(s2);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(store.get(key), undefined, 'removed after the grace period');
    assert.equal(vmEndpoint(), undefined);
    ctl.close();
  });

  it('refuses groups that do not exist or run as another ServiceAccount', () => {
    const store = storeWith(MANIFESTS);
    const ctl = new WorkloadEntryController({ store, controller: 'istiod-east', log });
    for (const s of [fakeStream(1, '10.9.1.2', 'missing'), fakeStream(2, '10.9.1.3', 'legacy', 'intruder')]) {
      ctl.markVerified(s.identity as never);
      ctl.onStreamOpen(s);
    }
    assert.equal(store.list('WorkloadEntry').length, 3);
    ctl.close();
  });
});
