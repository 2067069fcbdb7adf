/**
 * The istiod model the capture unit tests generate from: Bookinfo (samples/bookinfo.yaml) plus extra objects, in a
 * PushContext with a service CIDR, and sidecar Nodes in explicit or REDIRECT mode.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseResource } from '@fedmesh/api';
import {
  ConfigStore,
  KubeObjectsRegistry,
  loadManifestText,
  parseProxyNode,
  PushContext,
  type MeshSettings,
  WorkloadEntryRegistry,
  type StoredObject,
} from '@fedmesh/istiod';
import { SAMPLES } from '../harness.js';

/** MESH are the mesh settings of the tests (Istio's defaults, trust domain cluster.local). */
export const MESH: MeshSettings = {
  trustDomain: 'cluster.local',
  domainSuffix: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterId: 'Kubernetes',
  network: '',
};

/**
 * bookinfoPush loads Bookinfo and `extra` into a PushContext (Kubernetes objects, and ServiceEntries selecting
 * WorkloadEntries), with virtual IPs from `serviceCidr` when given and `mesh` over {@link MESH}.
 */
export function bookinfoPush(
  serviceCidr: string | undefined,
  extra: object[] = [],
  mesh: Partial<MeshSettings> = {},
): PushContext {
  const store = new ConfigStore<StoredObject>();
  const res = loadManifestText(
    store,
    fs.readFileSync(path.join(SAMPLES, 'bookinfo.yaml'), 'utf8'),
    'file:b',
    true,
    'b',
  );
  assert.deepEqual(
    res.errors.filter((e) => e.severity === 'error'),
    [],
  );
  store.apply(
    extra.map((o) => parseResource(o)),
    'test',
  );
  const registry = new KubeObjectsRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
    ...(serviceCidr ? { serviceCidr } : {}),
  });
  const entries = new WorkloadEntryRegistry(store, {
    cluster: 'Kubernetes',
    network: '',
    domainSuffix: 'cluster.local',
  });
  return new PushContext(1, { ...MESH, ...mesh }, store, [registry, entries], '');
}

/** pod is a running, ready Pod in `default` owned by a Deployment named after it, with one container port. */
export function pod(name: string, ip: string, sa: string, labels: Record<string, string>, port?: number): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'default',
      labels,
      ownerReferences: [{ kind: 'Deployment', name: name.replace(/-\d+$/, '') }],
    },
    spec: {
      serviceAccountName: sa,
      containers: [{ name: 'app', image: 'app', ports: port ? [{ containerPort: port }] : [] }],
    },
    status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** node is a sidecar's Node in `default` with `INTERCEPTION_MODE` `mode` (`REDIRECT` or `NONE`). */
export function node(
  pod: string,
  ip: string,
  sa: string,
  labels: Record<string, string>,
  mode: string,
): ReturnType<typeof parseProxyNode> {
  return parseProxyNode({
    id: `sidecar~${ip}~${pod}.default~default.svc.cluster.local`,
    metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: sa, LABELS: labels, INSTANCE_IPS: ip, INTERCEPTION_MODE: mode },
  });
}
