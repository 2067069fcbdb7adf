/**
 * AuthorizationPolicy on TCP ports as a tcp-echo user notices it: the policies of istio.io's "Authorization for
 * TCP traffic" task and the fields and `when` keys Istio lists as "HTTP and TCP", translated into
 * `envoy.filters.network.rbac` filters before the inbound tcp_proxy and judged by the proxy's own decoder and
 * network RBAC engine (no field inspection). HTTP-only fields follow Istio's rules: an ALLOW rule using them matches
 * no TCP traffic; in DENY only they are dropped, so the rest of the rule still denies.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import {
  ListenerType,
  enforceNetworkRbac,
  hcmOf,
  networkRbacOf,
  tcpProxyOf,
  type EnvoyFilterChain,
  type RbacConnection,
} from '@fedmesh/proxy';
import { loadManifestText } from '../config/file-source.js';
import { ConfigStore, type StoredObject } from '../config/store.js';
import { parseProxyNode } from '../model/proxy.js';
import { PushContext } from '../push-context.js';
import { KubeObjectsRegistry } from '../registry/kube-objects.js';
import { generateListeners } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = process.env.FEDMESH_ISTIO_SAMPLES ?? path.resolve(here, '../../../../../shared/fixtures/istio-samples');

// Istio's tcp-echo sample (samples/tcp-echo/tcp-echo.yaml): ports 9000 and 9001, plus an HTTP port for contrast.
const BASE = `apiVersion: v1
kind: Service
metadata: { name: tcp-echo, namespace: foo, labels: { app: tcp-echo } }
spec:
  selector: { app: tcp-echo }
  ports:
  - { name: tcp, port: 9000, targetPort: 9000 }
  - { name: tcp-other, port: 9001, targetPort: 9001 }
  - { name: http, port: 8080, targetPort: 8080 }
---
apiVersion: v1
kind: Pod
metadata: { name: tcp-echo-0, namespace: foo, labels: { app: tcp-echo, version: v1 } }
spec: { serviceAccountName: tcp-echo, containers: [{ name: tcp-echo, image: docker.io/istio/tcp-echo-server:1.3 }] }
status: { phase: Running, podIP: 127.0.9.30, conditions: [{ type: Ready, status: "True" }] }
`;

const CURL = 'spiffe://cluster.local/ns/foo/sa/curl';
const STRANGER = 'spiffe://cluster.local/ns/bar/sa/stranger';

function push(policies: string): PushContext {
  const s = new ConfigStore<StoredObject>();
  assert.deepEqual(loadManifestText(s, `${BASE}---\n${policies}`, 'test', false).errors, []);
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

const ECHO = parseProxyNode({
  id: 'sidecar~127.0.9.30~tcp-echo-0.foo~foo.svc.cluster.local',
  metadata: { NAMESPACE: 'foo', SERVICE_ACCOUNT: 'tcp-echo', LABELS: { app: 'tcp-echo', version: 'v1' } },
});

interface Inbound {
  chains: EnvoyFilterChain[];
  warnings: string[];
  /** admits says whether the proxy lets a connection to `port` through (its network RBAC filters, in order). */
  admits: (port: number, c?: Partial<RbacConnection>) => boolean;
}

/** inbound generates virtualInbound for tcp-echo under `policies` and decodes it with the proxy's decoder. */
function inbound(policies: string): Inbound {
  const warnings: string[] = [];
  const r = generateListeners(push(policies), ECHO, warnings).find((l) => l.name === 'virtualInbound');
  assert.ok(r);
  const d = ListenerType.decode(r.resource);
  assert.ok('value' in d, `the proxy would NACK virtualInbound: ${'error' in d ? d.error : ''}`);
  const chains = d.value.config.filter_chains;
  const admits = (port: number, c: Partial<RbacConnection> = {}): boolean => {
    const chain = chains.find((x) => tcpProxyOf(x)?.cluster === `inbound|${port}||`);
    assert.ok(chain, `a TCP chain for ${port}`);
    const conn: RbacConnection = {
      peerPrincipal: CURL,
      directRemoteIp: '127.0.9.10',
      remoteIp: '127.0.9.10',
      destinationIp: '127.0.9.30',
      destinationPort: port,
      requestedServerName: `outbound_.${port}_._.tcp-echo.foo.svc.cluster.local`,
      ...c,
    };
    return enforceNetworkRbac(networkRbacOf(chain), conn, new Registry()).allowed;
  };
  return { chains, warnings, admits };
}

function policy(name: string, action: string, rules: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: foo }
spec:
  selector: { matchLabels: { app: tcp-echo } }
  action: ${action}
  rules:
${rules}
`;
}

describe('filters on the inbound TCP chains', () => {
  it('no policy: the tcp_proxy alone; with policies: network RBAC (stat_prefix tcp.) first, AUDIT, DENY, ALLOW', () => {
    const none = inbound('');
    const tcp = none.chains.filter((c) => tcpProxyOf(c) !== undefined);
    assert.deepEqual(
      tcp.map((c) => c.filters.map((f) => f.name)),
      [['envoy.filters.network.tcp_proxy'], ['envoy.filters.network.tcp_proxy']],
    );
    const all = inbound(
      [
        policy('allow', 'ALLOW', '  - to: [{ operation: { ports: ["9000"] } }]'),
        policy('deny', 'DENY', '  - from: [{ source: { namespaces: ["bar"] } }]'),
        policy('audit', 'AUDIT', '  - {}'),
      ].join('---\n'),
    );
    const chain = all.chains.find((c) => tcpProxyOf(c)?.cluster === 'inbound|9000||');
    assert.ok(chain);
    assert.deepEqual(
      chain.filters.map((f) => [f.name, 'stat_prefix' in f.typed_config ? f.typed_config.stat_prefix : '']),
      [
        ['envoy.filters.network.rbac', 'tcp.'],
        ['envoy.filters.network.rbac', 'tcp.'],
        ['envoy.filters.network.rbac', 'tcp.'],
        ['envoy.filters.network.tcp_proxy', 'inbound|9000||'],
      ],
    );
    assert.deepEqual(
      networkRbacOf(chain).map((f) => f.action),
      ['LOG', 'DENY', 'ALLOW'],
    );
    const http = all.chains.find((c) => hcmOf(c) !== undefined);
    assert.equal(http?.filters.length, 1, 'HTTP chains keep HTTP RBAC inside their HCM');
  });
});

describe('istio.io task "Authorization for TCP traffic"', () => {
  it('ALLOW ports 9000 and 9001: both ports open, any other port refused', () => {
    const p = inbound(policy('tcp-policy', 'ALLOW', '  - to: [{ operation: { ports: ["9000", "9001"] } }]'));
    assert.deepEqual([p.admits(9000), p.admits(9001)], [true, true]);
    assert.equal(p.admits(9000, { destinationPort: 9002 }), false, 'a port the policy does not name');
  });

  it('ALLOW with methods (HTTP-only) for port 9000: the rule is ignored, so 9000 and 9001 are refused', () => {
    const p = inbound(policy('tcp-policy', 'ALLOW', '  - to: [{ operation: { methods: ["GET"], ports: ["9000"] } }]'));
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, false]);
    assert.ok(
      p.warnings.some((w) => /tcp-policy: rules\[0\]: .*methods is HTTP-only.*rule dropped on TCP/.test(w)),
      p.warnings.join('\n'),
    );
  });

  it('DENY with methods only: the HTTP-only field is dropped and every TCP connection is denied', () => {
    const p = inbound(policy('tcp-policy', 'DENY', '  - to: [{ operation: { methods: ["GET"] } }]'));
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, false]);
  });

  it('DENY with methods and ports 9000: 9000 denied, 9001 allowed', () => {
    const p = inbound(policy('tcp-policy', 'DENY', '  - to: [{ operation: { methods: ["GET"], ports: ["9000"] } }]'));
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, true]);
  });
});

describe('fields Istio applies to TCP', () => {
  it('principals, notPrincipals, namespaces, notNamespaces (mTLS only: plaintext never matches)', () => {
    const allow = inbound(
      policy('allow-curl', 'ALLOW', '  - from: [{ source: { principals: ["cluster.local/ns/foo/sa/curl"] } }]'),
    );
    assert.deepEqual(
      [
        allow.admits(9000),
        allow.admits(9000, { peerPrincipal: STRANGER }),
        allow.admits(9000, { peerPrincipal: undefined }),
      ],
      [true, false, false],
    );
    const notNs = inbound(policy('not-foo', 'ALLOW', '  - from: [{ source: { notNamespaces: ["bar"] } }]'));
    assert.deepEqual([notNs.admits(9001), notNs.admits(9001, { peerPrincipal: STRANGER })], [true, false]);
    const denyNs = inbound(policy('deny-bar', 'DENY', '  - from: [{ source: { namespaces: ["b*"] } }]'));
    assert.deepEqual([denyNs.admits(9000), denyNs.admits(9000, { peerPrincipal: STRANGER })], [true, false]);
    const denyNotPrincipal = inbound(
      policy('only-curl', 'DENY', '  - from: [{ source: { notPrincipals: ["cluster.local/ns/foo/*"] } }]'),
    );
    assert.deepEqual(
      [denyNotPrincipal.admits(9000), denyNotPrincipal.admits(9000, { peerPrincipal: STRANGER })],
      [true, false],
    );
  });

  it('ipBlocks, notIpBlocks and remoteIpBlocks read the downstream address', () => {
    const p = inbound(
      policy(
        'ips',
        'ALLOW',
        '  - from: [{ source: { ipBlocks: ["127.0.9.0/24"], notIpBlocks: ["127.0.9.66"] } }]\n' +
          '  - from: [{ source: { remoteIpBlocks: ["10.1.0.0/16"] } }]',
      ),
    );
    assert.equal(p.admits(9000), true);
    assert.equal(p.admits(9000, { directRemoteIp: '127.0.9.66', remoteIp: '127.0.9.66' }), false);
    assert.equal(p.admits(9000, { directRemoteIp: '10.1.2.3', remoteIp: '10.1.2.3' }), true);
    assert.equal(p.admits(9000, { directRemoteIp: '192.168.1.1', remoteIp: '192.168.1.1' }), false);
  });

  it('when: source.ip, source.namespace, source.principal, destination.ip, destination.port, connection.sni', () => {
    const when = (key: string, values: string, notValues = false): Inbound =>
      inbound(
        policy('when', 'ALLOW', `  - when: [{ key: ${key}, ${notValues ? 'notValues' : 'values'}: [${values}] }]`),
      );
    assert.deepEqual(
      [when('source.ip', '"127.0.9.0/24"').admits(9000), when('source.ip', '"10.0.0.1"').admits(9000)],
      [true, false],
    );
    const ns = when('source.namespace', 'foo');
    assert.deepEqual([ns.admits(9000), ns.admits(9000, { peerPrincipal: STRANGER })], [true, false]);
    const principal = when('source.principal', '"cluster.local/ns/foo/sa/curl"');
    assert.deepEqual([principal.admits(9000), principal.admits(9000, { peerPrincipal: STRANGER })], [true, false]);
    assert.equal(when('destination.ip', '"127.0.9.30"').admits(9000), true);
    assert.equal(when('destination.ip', '"127.0.9.31"').admits(9000), false);
    const port = when('destination.port', '"9001"');
    assert.deepEqual([port.admits(9000), port.admits(9001)], [false, true]);
    const sni = when('connection.sni', '"outbound_.9000_*"');
    assert.deepEqual([sni.admits(9000), sni.admits(9001)], [true, false]);
    const notPort = when('destination.port', '"9001"', true);
    assert.deepEqual([notPort.admits(9000), notPort.admits(9001)], [true, false]);
  });

  it('notPorts in DENY; serviceAccounts in ALLOW', () => {
    const deny = inbound(policy('deny-not-9001', 'DENY', '  - to: [{ operation: { notPorts: ["9001"] } }]'));
    assert.deepEqual([deny.admits(9000), deny.admits(9001)], [false, true]);
    const sa = inbound(policy('sa', 'ALLOW', '  - from: [{ source: { serviceAccounts: ["foo/curl"] } }]'));
    assert.deepEqual([sa.admits(9000), sa.admits(9000, { peerPrincipal: STRANGER })], [true, false]);
  });
});

describe('HTTP-only fields on TCP (Istio: ALLOW rule ignored; DENY keeps the rest)', () => {
  it('a DENY with only paths denies TCP entirely, while the HTTP port still denies only that path', () => {
    const p = inbound(policy('deny-admin', 'DENY', '  - to: [{ operation: { paths: ["/admin"] } }]'));
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, false]);
    assert.ok(
      p.warnings.some((w) => /deny-admin: rules\[0\]\.to\[0\]\.operation: paths is HTTP-only; dropped on TCP/.test(w)),
      p.warnings.join('\n'),
    );
    const http = p.chains.find((c) => hcmOf(c) !== undefined);
    const rbac = hcmOf(http ?? assert.fail())?.http_filters.find((f) => f.name === 'envoy.filters.http.rbac');
    assert.ok(JSON.stringify(rbac).includes('admin'), 'the HTTP chain still matches the path');
  });

  it('DENY: requestPrincipals, hosts, notPaths and request.* conditions are dropped, the rest still decides', () => {
    const p = inbound(
      policy(
        'deny-mixed',
        'DENY',
        [
          '  - from: [{ source: { principals: ["cluster.local/ns/bar/*"], requestPrincipals: ["*"] } }]',
          '  - to: [{ operation: { hosts: ["tcp-echo.foo"], notPaths: ["/healthz"], ports: ["9001"] } }]',
          '    when: [{ key: "request.headers[x-user]", values: ["admin"] }]',
        ].join('\n'),
      ),
    );
    assert.equal(p.admits(9000), true, 'curl on 9000: neither rule matches');
    assert.equal(p.admits(9000, { peerPrincipal: STRANGER }), false, 'rule 0 keeps its principals');
    assert.equal(p.admits(9001), false, 'rule 1 keeps its port');
  });

  it('ALLOW: a rule with requestPrincipals or a request.auth condition is dropped; other rules still allow', () => {
    const p = inbound(
      policy(
        'allow-mixed',
        'ALLOW',
        [
          '  - from: [{ source: { requestPrincipals: ["issuer/subject"] } }]',
          '  - when: [{ key: "request.auth.claims[group]", values: ["admin"] }]',
          '  - to: [{ operation: { ports: ["9001"] } }]',
        ].join('\n'),
      ),
    );
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, true]);
  });

  it('AUDIT never refuses a connection; a dry-run DENY only shadows', () => {
    const audit = inbound(policy('audit', 'AUDIT', '  - to: [{ operation: { methods: ["GET"] } }]'));
    assert.deepEqual([audit.admits(9000), audit.admits(9001)], [true, true]);
    const dry = inbound(
      policy('dry', 'DENY', '  - {}').replace(
        'metadata: { name: dry, namespace: foo }',
        ['metadata:', '  name: dry', '  namespace: foo', '  annotations: { "istio.io/dry-run": "true" }'].join('\n'),
      ),
    );
    assert.equal(dry.admits(9000), true);
    const chain = dry.chains.find((c) => tcpProxyOf(c)?.cluster === 'inbound|9000||');
    const decision = enforceNetworkRbac(
      networkRbacOf(chain ?? assert.fail()),
      {
        peerPrincipal: CURL,
        directRemoteIp: '127.0.9.10',
        remoteIp: '127.0.9.10',
        destinationIp: '127.0.9.30',
        destinationPort: 9000,
        requestedServerName: undefined,
      },
      new Registry(),
    );
    assert.deepEqual(
      decision.shadow.map((s) => s.shadow_engine_result),
      ['denied'],
    );
  });

  it('an ALLOW policy without rules refuses every TCP connection', () => {
    const p = inbound(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-nothing, namespace: foo }
spec: { selector: { matchLabels: { app: tcp-echo } } }
`);
    assert.deepEqual([p.admits(9000), p.admits(9001)], [false, false]);
  });
});
