/**
 * TCP and TLS service ports as a sidecar receives them: a per-port outbound listener with a catch-all tcp_proxy
 * (TCP) or SNI chains behind a tls_inspector (TLS, VirtualService `tls` routes), never on a port the proxy's own app
 * uses; inbound mTLS chains with a tcp_proxy, behind network RBAC when an AuthorizationPolicy applies (its
 * semantics: authz-tcp.test.ts). The proxy's own decoder must accept every listener (no NACK).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TypeUrl } from '@fedmesh/api/xds';
import { ListenerType, hcmOf, tcpProxyOf, type EnvoyListener } from '@fedmesh/proxy';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode, type ProxyModel } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { createGenerators } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');

const BASE = `apiVersion: v1
kind: Service
metadata: { name: tcp-echo, namespace: default }
spec:
  selector: { app: tcp-echo }
  ports: [{ name: tcp, port: 9000, targetPort: 9000 }]
---
apiVersion: v1
kind: Service
metadata: { name: tls-api, namespace: default }
spec:
  selector: { app: tls-api }
  ports: [{ name: tls, port: 8443, targetPort: 8443 }]
---
apiVersion: v1
kind: Service
metadata: { name: tls-other, namespace: default }
spec:
  selector: { app: tls-other }
  ports: [{ name: https, port: 8443, targetPort: 8443 }]
---
apiVersion: v1
kind: Pod
metadata: { name: tcp-echo-0, namespace: default, labels: { app: tcp-echo } }
spec: { serviceAccountName: tcp-echo, containers: [{ name: app, image: echo }] }
status: { phase: Running, podIP: 127.0.9.20, conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: tls-api-0, namespace: default, labels: { app: tls-api } }
spec: { serviceAccountName: tls-api, containers: [{ name: app, image: api }] }
status: { phase: Running, podIP: 127.0.9.21, conditions: [{ type: Ready, status: "True" }] }
`;

function push(extra = ''): PushContext {
  const s = new ConfigStore<StoredObject>();
  assert.deepEqual(loadManifestText(s, BASE + extra, 'test', false).errors, []);
  const registry = new KubeObjectsRegistry(s, { cluster: 'Kubernetes', network: '', domainSuffix: 'cluster.local' });
  const mesh = {
    trustDomain: 'cluster.local',
    domainSuffix: 'cluster.local',
    rootNamespace: 'istio-system',
    clusterId: 'Kubernetes',
    network: '',
  };
  return new PushContext(1, mesh, s, [registry], fs.readFileSync(path.join(SAMPLES, 'certs/root-cert.pem'), 'utf8'));
}

function sidecar(pod: string, ip: string, labels: Record<string, string>, mode = 'NONE'): ProxyModel {
  return parseProxyNode({
    id: `sidecar~${ip}~${pod}.default~default.svc.cluster.local`,
    metadata: { NAMESPACE: 'default', SERVICE_ACCOUNT: pod, LABELS: labels, INTERCEPTION_MODE: mode },
  });
}

const generators = createGenerators();

function listeners(p: PushContext, proxy: ProxyModel, warnings: string[] = []): Map<string, EnvoyListener> {
  const lds = generators.get(TypeUrl.Listener);
  assert.ok(lds);
  const out = new Map<string, EnvoyListener>();
  for (const r of lds(p, proxy, warnings)) {
    const d = ListenerType.decode(r.resource);
    assert.ok('value' in d, `${r.name} would be NACKed: ${'error' in d ? d.error : ''}`);
    out.set(r.name, d.value.config);
  }
  return out;
}

const CLIENT = sidecar('client-0', '127.0.9.10', { app: 'client' });

describe('outbound per-port listeners', () => {
  it('a TCP port gets a catch-all tcp_proxy chain, a TLS port SNI chains behind a tls_inspector', () => {
    const l = listeners(push(), CLIENT);
    const tcp = l.get('127.0.9.10_9000');
    assert.equal(tcp?.address.socket_address.address, '127.0.9.10');
    assert.equal(tcp.listener_filters, undefined);
    assert.equal(tcp.filter_chains.length, 1);
    const chain = tcp.filter_chains[0];
    assert.ok(chain);
    assert.equal(chain.filter_chain_match, undefined);
    assert.equal(tcpProxyOf(chain)?.cluster, 'outbound|9000||tcp-echo.default.svc.cluster.local');
    const tls = l.get('127.0.9.10_8443');
    assert.equal(tls?.listener_filters?.[0]?.name, 'envoy.filters.listener.tls_inspector');
    assert.deepEqual(
      tls.filter_chains.map((c) => [c.filter_chain_match?.server_names, tcpProxyOf(c)?.cluster]),
      [
        [['tls-api.default.svc.cluster.local'], 'outbound|8443||tls-api.default.svc.cluster.local'],
        [['tls-other.default.svc.cluster.local'], 'outbound|8443||tls-other.default.svc.cluster.local'],
      ],
    );
  });

  it('a VirtualService tls route sends its sniHosts to its destination', () => {
    const vs = `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: default }
spec:
  hosts: [tls-api.default.svc.cluster.local]
  tls:
  - match: [{ port: 8443, sniHosts: [api.example.com, tls-api.default.svc.cluster.local] }]
    route: [{ destination: { host: tls-other } }]
`;
    const chains = listeners(push(vs), CLIENT).get('127.0.9.10_8443')?.filter_chains ?? [];
    const api = chains.find((c) => c.filter_chain_match?.server_names?.includes('api.example.com'));
    assert.equal(
      tcpProxyOf(api ?? chains[0] ?? assert.fail())?.cluster,
      'outbound|8443||tls-other.default.svc.cluster.local',
    );
    assert.ok(api?.filter_chain_match?.server_names?.includes('tls-api.default.svc.cluster.local'));
  });

  it("never binds the proxy's own app port, even before the registry lists its pod", () => {
    const warnings: string[] = [];
    const unknownPod = sidecar('tcp-echo-9', '127.0.9.99', { app: 'tcp-echo' });
    const l = listeners(push(), unknownPod, warnings);
    assert.equal(l.get('127.0.9.99_9000'), undefined);
    assert.ok(l.get('127.0.9.99_8443'), 'other ports are still served');
    assert.ok(warnings.some((w) => w.includes('tcp-echo.default.svc.cluster.local:9000')));
  });

  it('a capture-mode sidecar gets no per-port listeners', () => {
    const l = listeners(push(), sidecar('client-1', '127.0.9.11', { app: 'client' }, 'REDIRECT'));
    assert.deepEqual(
      [...l.keys()].filter((n) => n.includes('_')),
      [],
    );
  });
});

describe('inbound TCP chains', () => {
  const ECHO = sidecar('tcp-echo-0', '127.0.9.20', { app: 'tcp-echo' });

  it('a TCP target port gets an mTLS chain by SNI with a tcp_proxy to inbound|<port>||', () => {
    const inbound = listeners(push(), ECHO).get('virtualInbound');
    const chain = inbound?.filter_chains.find((c) => tcpProxyOf(c) !== undefined);
    assert.ok(chain);
    assert.equal(tcpProxyOf(chain)?.cluster, 'inbound|9000||');
    assert.equal(hcmOf(chain), undefined);
    assert.deepEqual(chain.filter_chain_match?.server_names, ['outbound_.9000_._.tcp-echo.default.svc.cluster.local']);
    assert.equal(chain.transport_socket?.typed_config.require_client_certificate?.value, true);
    assert.deepEqual(chain.transport_socket.typed_config.common_tls_context.alpn_protocols, [
      'istio-peer-exchange',
      'istio',
    ]);
  });

  it('with an AuthorizationPolicy the TCP chain stays, with a network RBAC filter before its tcp_proxy', () => {
    const policy = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: default }
spec:
  selector: { matchLabels: { app: tcp-echo } }
  rules: [{ from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }] }]
`;
    const inbound = listeners(push(policy), ECHO).get('virtualInbound');
    const chain = inbound?.filter_chains.find((c) => tcpProxyOf(c) !== undefined);
    assert.ok(chain);
    assert.deepEqual(
      chain.filters.map((f) => f.name),
      ['envoy.filters.network.rbac', 'envoy.filters.network.tcp_proxy'],
    );
    assert.equal(tcpProxyOf(chain)?.cluster, 'inbound|9000||');
  });
});
