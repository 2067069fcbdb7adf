import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidConfigError, MeshError } from './errors.js';
import { parseManifests } from './manifests.js';
import { regexProblem } from './schemas/common.js';
import { formatPath } from './schemas/issues.js';
import { isResourceKind, parseResource, resourceKey, validateResource, type MeshResource } from './schemas/resource.js';

/** Parses YAML expected to hold valid documents only, failing with the formatted errors otherwise. */
function valid(yaml: string): MeshResource[] {
  const { resources, errors } = parseManifests(yaml);
  assert.deepEqual(
    errors.map((e) => `${e.path}: ${e.message}`),
    [],
  );
  return resources;
}

/** The `path: message` lines for one YAML document expected to be invalid. */
function problems(yaml: string): string[] {
  const { resources, errors } = parseManifests(yaml);
  assert.equal(resources.length, 0);
  return errors.map((e) => `${e.path}: ${e.message}`);
}

function vs(spec: string): string {
  return `apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs, namespace: prod}\nspec:\n${spec}`;
}

function dr(spec: string): string {
  return `apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: dr}\nspec:\n${spec}`;
}

describe('VirtualService', () => {
  it('accepts the full HTTP route API', () => {
    const [r] = valid(
      vs(`  hosts: [reviews.prod.svc.cluster.local, "*.example.com"]
  gateways: [mesh, istio-system/ingress]
  exportTo: [".", "istio-system"]
  http:
  - name: v2-routes
    match:
    - name: api
      uri: {prefix: /api}
      scheme: {exact: https}
      method: {regex: "GET|HEAD"}
      authority: {exact: reviews}
      headers: {end-user: {exact: jason}, x-present: {}}
      port: 9080
      sourceLabels: {app: productpage}
      gateways: [mesh]
      queryParams: {debug: {exact: "1"}}
      ignoreUriCase: true
      withoutHeaders: {x-skip: {prefix: "y"}}
      sourceNamespace: prod
      statPrefix: api
    rewrite: {uri: /newcatalog, authority: reviews.internal}
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 75
      headers: {request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}}
    - destination: {host: reviews, subset: v3}
      weight: 25
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "gateway-error,connect-failure,503", retryRemoteLocalities: true}
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 12.5}, httpStatus: 503}
    mirror: {host: reviews, subset: v1}
    mirrorPercentage: {value: 50}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*\\\\.example\\\\.org"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 24h
      allowCredentials: false
    headers: {response: {remove: [server]}}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 308, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "I'm a teapot"}}
  - mirrors:
    - destination: {host: shadow}
      percentage: {value: 5}
    route:
    - destination: {host: reviews}
  - delegate: {name: reviews-delegate, namespace: prod}
  tls:
  - match: [{port: 443, sniHosts: [reviews.example.com]}]
    route: [{destination: {host: reviews}}]
  tcp:
  - match: [{port: 27017, sourceLabels: {app: db-client}}]
    route:
    - {destination: {host: mongo.backup.svc.cluster.local, port: {number: 5555}}}`),
    );
    assert.ok(r && isResourceKind(r, 'VirtualService'));
    assert.equal(resourceKey(r), 'VirtualService/prod/vs');
    const route = r.spec.http?.[0];
    assert.equal(route?.match?.[0]?.headers?.['end-user']?.exact, 'jason');
    assert.deepEqual(route?.match?.[0]?.headers?.['x-present'], {});
    assert.equal(route?.fault?.abort?.httpStatus, 503);
    assert.equal(route?.retries?.perTryTimeout, '500ms');
    assert.equal(r.spec.tcp?.[0]?.route?.[0]?.destination.port?.number, 5555);
  });

  it('enforces Istio cross-field rules on HTTP routes', () => {
    assert.deepEqual(
      problems(
        vs(`  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /}}]
  - route: [{destination: {host: a}}]
    redirect: {uri: /b}
  - route: [{destination: {host: a}}, {destination: {host: b}}]
  - route: [{destination: {host: a}}]
    mirror: {host: b}
    mirrors: [{destination: {host: c}}]
  - route: [{destination: {host: a}}]
    fault: {abort: {percentage: {value: 101}}}
  - redirect: {uri: /x, port: 8080, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 200}
  - route: [{destination: {host: "http://a:80"}}]
    retries: {attempts: -1, retryOn: "5xx,sometimes"}`),
      ),
      [
        'spec.http[0]: one of route, redirect, directResponse or delegate must be set',
        'spec.http[1]: route and redirect cannot both be set',
        'spec.http[2].route: weights must not all be 0 or omitted when there is more than one destination',
        'spec.http[3]: mirror and mirrors cannot both be set',
        'spec.http[4].fault.abort.percentage.value: must be ≤ 100',
        'spec.http[5].redirect.redirectCode: must be ≥ 300',
        "spec.http[6].route[0].destination.host: must be a host name, '*' or '*.suffix' (no scheme, port or path)",
        'spec.http[6].retries.attempts: must be ≥ 0',
        'spec.http[6].retries.retryOn: unknown retry policy "sometimes"',
      ],
    );
  });

  it("a VirtualService without hosts is a delegate: Istio's docs example is valid, gateways, tls, tcp and a second level are not", () => {
    const [d] = valid(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: nsa}
spec:
  http:
  - match:
    - uri: {prefix: "/productpage/v1/"}
    route:
    - destination: {host: productpage-v1.nsa.svc.cluster.local}
  - route:
    - destination: {host: productpage.nsa.svc.cluster.local}
`);
    assert.ok(d && isResourceKind(d, 'VirtualService'));
    assert.equal(d.spec.hosts, undefined);
    assert.deepEqual(
      problems(
        vs(`  gateways: [mesh]
  http:
  - delegate: {name: deeper}
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: a}}]
  tcp:
  - route: [{destination: {host: b}}]`),
      ),
      [
        'spec.gateways: a delegate VirtualService (no hosts) must have no gateways specified',
        'spec.tls: a delegate VirtualService (no hosts) must have no tls route specified',
        'spec.tcp: a delegate VirtualService (no hosts) must have no tcp route specified',
        'spec.http[0].delegate: http delegate only applies to a root VirtualService (one with hosts)',
      ],
    );
  });

  it('requires exactly one of exact/prefix/regex, except for header presence matches', () => {
    assert.deepEqual(
      problems(
        vs(`  http:
  - match:
    - uri: {}
      headers: {x-a: {exact: a, regex: b}}
    route: [{destination: {host: a}}]`),
      ),
      [
        'spec.http[0].match[0].uri: must set exactly one of exact, prefix, regex',
        'spec.http[0].match[0].headers["x-a"]: must set at most one of exact, prefix, regex (got exact, regex)',
      ],
    );
  });
});

describe('DestinationRule', () => {
  it('accepts the full traffic policy API', () => {
    const [r] = valid(
      dr(`  host: reviews.prod.svc.cluster.local
  exportTo: ["*"]
  workloadSelector: {matchLabels: {app: ratings}}
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s, path: /}
        ringHash: {minimumRingSize: 1024}
      localityLbSetting:
        enabled: true
        failover: [{from: us-east, to: eu-west}]
        failoverPriority: [topology.istio.io/network, topology.kubernetes.io/region]
      warmupDurationSecs: 30s
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}, idleTimeout: 1h}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3, idleTimeout: 30s, h2UpgradePolicy: UPGRADE, useClientProtocol: false, maxConcurrentStreams: 100}
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 5
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 3
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
      minHealthPercent: 30
    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, sni: reviews.example.com, subjectAltNames: [reviews.example.com], insecureSkipVerify: false}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: LEAST_REQUEST}
      tls: {mode: ISTIO_MUTUAL}
    tunnel: {protocol: CONNECT, targetHost: egress.example.com, targetPort: 8443}
    proxyProtocol: {version: V2}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
        localityLbSetting:
          distribute:
          - from: us-west/zone1/*
            to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}`),
    );
    assert.ok(r && isResourceKind(r, 'DestinationRule'));
    assert.equal(r.spec.trafficPolicy?.outlierDetection?.consecutive5xxErrors, 7);
    assert.equal(r.spec.subsets?.[1]?.trafficPolicy?.loadBalancer?.simple, 'ROUND_ROBIN');
  });

  it('enforces oneofs, locality rules and unique subset names', () => {
    assert.deepEqual(
      problems(
        dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      consistentHash: {useSourceIp: true, httpHeaderName: x-user}
    outlierDetection: {consecutiveLocalOriginFailures: 2}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute: [{from: "a/*", to: {"b/*": 60}}]
          failover: [{from: a, to: a}]
  - name: v1
  - name: V_2`),
      ),
      [
        'spec.trafficPolicy.loadBalancer.consistentHash: only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName may be set (got httpHeaderName, useSourceIp)',
        'spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: requires splitExternalLocalOriginErrors: true',
        'spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: weights must sum to 100, got 60',
        'spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.failover[0].to: must differ from from',
        "spec.subsets[2].name: must be a lowercase RFC 1123 label (a-z, 0-9 and '-', starting and ending with a-z or 0-9)",
      ],
    );
    assert.deepEqual(problems(dr(`  host: reviews\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, privateKey: /k}}`)), [
      'spec.trafficPolicy.tls.privateKey: must not be set when mode is ISTIO_MUTUAL',
    ]);
    assert.deepEqual(problems(dr(`  host: reviews\n  subsets: [{name: v1}, {name: v2}, {name: v1}]`)), [
      'spec.subsets[2].name: duplicate subset name "v1"',
    ]);
  });
});

describe('Gateway, ServiceEntry, WorkloadEntry, WorkloadGroup', () => {
  it('accepts gateways with every TLS mode', () => {
    const resources = valid(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["prod/*.example.com", "./reviews.local"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: example-cert, minProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]}
  - port: {number: 8443, name: mtls, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, subjectAltNames: [spiffe://cluster.local/ns/a/sa/b]}
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 15012, name: tls-istiod, protocol: tls}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]`);
    assert.equal(resources.length, 1);
    assert.deepEqual(
      problems(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}
  - port: {number: 70000, name: https, protocol: QUIC}
    hosts: []`),
      [
        'spec.servers[0].tls.caCertificates: required when mode is MUTUAL',
        'spec.servers[1].port.number: must be ≤ 65535',
        'spec.servers[1].port.protocol: must be one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL, HTTP_PROXY, HBONE, got "QUIC"',
        'spec.servers[1].hosts: must not be empty',
      ],
    );
  });

  it('accepts ServiceEntry, WorkloadEntry and WorkloadGroup and checks their rules', () => {
    const resources = valid(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-svc-https}
spec:
  hosts: [api.dropboxapi.com, www.googleapis.com]
  location: MESH_EXTERNAL
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: details-svc}
spec:
  hosts: [details.bookinfo.com]
  addresses: [240.0.0.1]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  endpoints:
  - {address: 2.2.2.2, ports: {http: 8080}, labels: {version: v1}, network: vm-net, locality: us-east/zone1, weight: 10, serviceAccount: details}
  exportTo: ["."]
  subjectAltNames: ["spiffe://cluster.local/ns/bookinfo/sa/details"]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-vm}
spec: {serviceAccount: details-legacy, address: 2.2.2.2, labels: {app: details-legacy, instance-id: vm1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: reviews, namespace: bookinfo}
spec:
  metadata: {labels: {app.kubernetes.io/name: reviews, app.kubernetes.io/version: "1.3.4"}}
  template: {ports: {grpc: 3550, http: 8080}, serviceAccount: default}
  probe: {initialDelaySeconds: 5, timeoutSeconds: 3, periodSeconds: 4, successThreshold: 3, failureThreshold: 3, httpGet: {path: /foo/bar, host: 127.0.0.1, port: 3100, scheme: HTTPS, httpHeaders: [{name: Lit-Header, value: Im-The-Best}]}}`);
    assert.deepEqual(resources.map(resourceKey), [
      'ServiceEntry/default/external-svc-https',
      'ServiceEntry/default/details-svc',
      'WorkloadEntry/default/details-vm',
      'WorkloadGroup/bookinfo/reviews',
    ]);
    assert.deepEqual(
      problems(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: db.example.com, ports: {mysql: 3306}}, {labels: {a: b}}]`),
      ['spec.endpoints[1].address: required unless network is set'],
    );
    assert.deepEqual(
      problems(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: db.example.com, ports: {mysql: 3306}}]`),
      [
        'spec.ports[1].number: duplicate port number 80',
        'spec.ports[1].name: duplicate port name "http"',
        'spec.endpoints[0].address: must be an IP address when resolution is STATIC',
        'spec.endpoints[0].ports.mysql: does not name a port of this ServiceEntry',
      ],
    );
    assert.deepEqual(
      problems(`apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: wg}
spec:
  template: {address: 1.2.3.4}
  probe: {periodSeconds: 4}`),
      [
        'spec.template.address: must not be set in a WorkloadGroup template',
        'spec.probe: one of httpGet, tcpSocket, exec, grpc must be set',
      ],
    );
  });
});

describe('security.istio.io', () => {
  it('accepts PeerAuthentication and AuthorizationPolicy', () => {
    const resources = valid(`apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: finance, namespace: foo}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: STRICT}
  portLevelMtls: {8080: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin, version: v1}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep"], notNamespaces: [test], ipBlocks: [10.0.0.0/8], remoteIpBlocks: [1.2.3.4]}
    - source: {namespaces: [dev], requestPrincipals: ["*"]}
    to:
    - operation: {methods: [GET], paths: ["/info*"], ports: ["8000"], notHosts: [evil.example.com]}
    when:
    - {key: "request.auth.claims[iss]", values: ["https://accounts.google.com"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: [/admin]}}]}]`);
    assert.equal(resources.length, 5);
    const pa = resources[1];
    assert.ok(pa && isResourceKind(pa, 'PeerAuthentication'));
    assert.deepEqual(pa.spec.portLevelMtls, { '8080': { mode: 'DISABLE' } });
    const deny = resources[3];
    assert.ok(deny && isResourceKind(deny, 'AuthorizationPolicy'));
    assert.deepEqual(deny.spec, {});
  });

  it('checks modes, actions and the rules between fields', () => {
    assert.deepEqual(
      problems(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa}
spec:
  mtls: {mode: MUTUAL}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa2}
spec:
  portLevelMtls: {8080: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap}
spec:
  action: CUSTOM
  rules: [{when: [{key: source.ip}], from: [{source: {principal: [x]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap2}
spec:
  selector: {matchLabels: {app: a}}
  targetRef: {kind: Service, name: a}
  provider: {name: p}`),
      [
        'spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT, got "MUTUAL"',
        'spec.portLevelMtls: requires a selector with matchLabels',
        'spec.rules[0].from[0].source.principal: unknown field',
        'spec.rules[0].when[0]: one of values, notValues must be set',
        'spec: only one of selector, targetRef/targetRefs may be set',
        'spec.provider: allowed only when action is CUSTOM',
      ],
    );
  });
});

describe('Kubernetes kinds', () => {
  it('validates the fields fedmesh reads and lets the others through', () => {
    const pod = parseResource({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'reviews-v1-abc', namespace: 'bookinfo', labels: { app: 'reviews' }, uid: '1234' },
      spec: {
        serviceAccountName: 'bookinfo-reviews',
        containers: [{ name: 'reviews', image: 'x', ports: [{ containerPort: 9080, name: 'http' }], resources: {} }],
        nodeName: 'node-1',
      },
      status: {
        phase: 'Running',
        podIP: '10.0.0.7',
        conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null }],
      },
    });
    assert.ok(isResourceKind(pod, 'Pod'));
    assert.equal(pod.status?.podIP, '10.0.0.7');
    assert.equal(pod.metadata.uid, '1234');
    assert.equal(pod.spec.nodeName, 'node-1');

    const result = validateResource({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'svc' },
      spec: {
        type: 'Internal',
        ports: [
          { name: 'http', port: 80, targetPort: 'http' },
          { port: 443, targetPort: 8443, protocol: 'tcp' },
        ],
      },
    });
    assert.equal(result.ok, false);
    assert.deepEqual(!result.ok && result.issues, [
      { path: 'spec.ports[1].protocol', message: 'must be one of TCP, UDP, SCTP, got "tcp"' },
      { path: 'spec.type', message: 'must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Internal"' },
    ]);
    assert.deepEqual(
      problems(`apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80}, {port: 81, name: http, targetPort: [1]}]`),
      ['spec.ports[1].targetPort: must be a port number or a port name, got a list'],
    );
    assert.deepEqual(
      problems(`apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80}, {port: 81, name: http}]`),
      ['spec.ports[0].name: required when the Service has more than one port'],
    );
  });

  it('checks that a Deployment selector matches its pod template', () => {
    assert.deepEqual(
      problems(`apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 2
  selector: {matchLabels: {app: a}, matchExpressions: [{key: version, operator: In, values: [v1]}]}
  template:
    metadata: {labels: {app: a, version: v2}}
    spec:
      containers: [{name: c, image: i}]`),
      ['spec.template.metadata.labels: must match spec.selector'],
    );
  });
});

describe('parseResource and validateResource', () => {
  it('throws InvalidConfigError with the issues for an invalid object', () => {
    const bad = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'r', namespace: 'ns' },
      spec: { host: 'r', subsets: [{ name: 'v1', labels: { version: 1 } }] },
    };
    assert.throws(
      () => parseResource(bad),
      (err: unknown) => {
        assert.ok(err instanceof InvalidConfigError);
        assert.ok(MeshError.isMeshError(err));
        assert.equal(err.code, 'FEDMESH_ERR_INVALID_CONFIG');
        assert.deepEqual(err.issues, [
          { path: 'spec.subsets[0].labels.version', message: 'must be a string, got number 1' },
        ]);
        assert.equal(
          err.message,
          'DestinationRule ns/r: spec.subsets[0].labels.version: must be a string, got number 1',
        );
        return true;
      },
    );
  });

  it('throws FEDMESH_ERR_UNSUPPORTED for a kind it does not handle', () => {
    assert.throws(
      () => parseResource({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }),
      (err: unknown) => MeshError.isMeshError(err) && err.code === 'FEDMESH_ERR_UNSUPPORTED',
    );
  });
});

describe('helpers', () => {
  it('formats paths with quoted non-identifier keys', () => {
    assert.equal(
      formatPath(['spec', 'http', 0, 'match', 1, 'headers', 'end-user', 'exact']),
      'spec.http[0].match[1].headers["end-user"].exact',
    );
    assert.equal(formatPath([]), '');
  });

  it('approximates RE2 when checking regexes', () => {
    assert.equal(regexProblem('(?i)^/api/v[0-9]+'), undefined);
    assert.equal(regexProblem('^/(?P<id>[a-z]+)$'), undefined);
    assert.equal(regexProblem('(a)\\1'), 'invalid regex: backreferences are not supported by RE2');
    assert.equal(regexProblem('(?<=a)b'), 'invalid regex: lookaround is not supported by RE2');
    assert.equal(regexProblem('a{2,1}'), 'invalid regex: numbers out of order in {} quantifier');
  });
});
