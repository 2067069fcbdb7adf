import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { analyze, formatAnalysisMessage } from './analyze.js';

const samples =
  process.env.FEDMESH_ISTIO_SAMPLES ??
  path.resolve(import.meta.dirname, '../../../../../shared/fixtures/istio-samples');
const bookinfo = {
  file: 'bookinfo.yaml',
  text: fs.readFileSync(path.join(samples, 'bookinfo/platform/kube/bookinfo.yaml'), 'utf8'),
};
const sample = (f: string): { file: string; text: string } => ({
  file: f,
  text: fs.readFileSync(path.join(samples, 'bookinfo/networking', f), 'utf8'),
});
const codes = (ms: ReturnType<typeof analyze>): string[] => ms.map((m) => m.code);

test("Istio's Bookinfo samples analyze clean", () => {
  const ms = analyze([bookinfo, sample('destination-rule-all.yaml'), sample('virtual-service-all-v1.yaml')]);
  assert.deepEqual(ms.map(formatAnalysisMessage), []);
});

test('IST0101: a missing host, a missing subset and a missing gateway', () => {
  const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [mesh, no-such-gateway]
  http:
  - route:
    - destination: {host: nosuchsvc}
  - route:
    - destination: {host: reviews, subset: v9}
`;
  const ms = analyze([bookinfo, sample('destination-rule-reviews.yaml'), { file: 'bad.yaml', text: vs }]);
  assert.deepEqual(codes(ms), ['IST0101', 'IST0101', 'IST0101']);
  const text = ms.map(formatAnalysisMessage).join('\n');
  assert.match(
    text,
    /Error \[IST0101\] \(VirtualService default\/reviews bad\.yaml\) Referenced host not found: "nosuchsvc"/,
  );
  assert.match(text, /Referenced host\+subset in destinationrule not found: "reviews\+v9"/);
  assert.match(text, /Referenced gateway not found: "no-such-gateway"/);
});

test('IST0106: a schema error carries its field path', () => {
  const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
      weight: 101
`;
  const ms = analyze([bookinfo, { file: 'schema.yaml', text: vs }]);
  assert.deepEqual(codes(ms), ['IST0106']);
  assert.match(ms[0]?.message ?? '', /spec\.http\[0\]\.route\[0\]\.weight/);
});

test('IST0109: two VirtualServices bound to mesh for one host', () => {
  const a = sample('virtual-service-reviews-v3.yaml');
  const b = { file: 'b.yaml', text: a.text.replace('name: reviews', 'name: reviews-two') };
  const ms = analyze([bookinfo, sample('destination-rule-all.yaml'), a, b]);
  assert.deepEqual(codes(ms), ['IST0109', 'IST0109']);
  assert.match(ms[0]?.message ?? '', /define the same host "reviews\.default\.svc\.cluster\.local"/);
});

test('IST0128 and IST0129: TLS origination without caCertificates, at the top and at port level', () => {
  const dr = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db-tls}
spec:
  host: mydbserver.prod.svc.cluster.local
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fine}
spec:
  host: other.prod.svc.cluster.local
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /ca.pem}
`;
  const ms = analyze([{ file: 'dr.yaml', text: dr }]);
  assert.deepEqual(codes(ms), ['IST0128', 'IST0129']);
  assert.match(formatAnalysisMessage(ms[1]!), /at port number:443$/);
});

test('IST0101: a delegate that does not exist, has hosts, or is not exported to the root namespace', () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - {match: [{uri: {prefix: /a}}], delegate: {name: reviews-a, namespace: team}}
  - {match: [{uri: {prefix: /b}}], delegate: {name: ratings}}
  - {match: [{uri: {prefix: /c}}], delegate: {name: private, namespace: team}}
  - {match: [{uri: {prefix: /d}}], delegate: {name: shared, namespace: team}}
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  exportTo: ["."]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shared, namespace: team}
spec:
  exportTo: [default]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
`;
  const ms = analyze([bookinfo, { file: 'delegate.yaml', text: yaml }]);
  assert.deepEqual(ms.map(formatAnalysisMessage), [
    'Error [IST0101] (VirtualService default/reviews delegate.yaml) Referenced delegate VirtualService not found: "team/reviews-a"',
    'Error [IST0101] (VirtualService default/reviews delegate.yaml) Referenced delegate VirtualService not found: "default/ratings" (it has hosts, so it is not a delegate)',
    'Error [IST0101] (VirtualService default/reviews delegate.yaml) Referenced delegate VirtualService not found: "team/private" (its exportTo does not include namespace default)',
  ]);
});
