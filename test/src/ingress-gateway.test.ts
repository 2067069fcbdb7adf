/**
 * Istio's Bookinfo ingress as a platform team coming from Istio runs it: `fedmesh up` with `bookinfo.yaml` and
 * `bookinfo-gateway.yaml` unchanged starts an ingress gateway labelled `istio: ingressgateway`; a request to its
 * 8080 for /productpage reaches productpage over mTLS (productpage's sidecar saw the gateway's SPIFFE ID), a path
 * not in the VirtualService gets 404 NR, a wildcard host matches a Host header carrying a port (strip_any_host_port),
 * and a SIMPLE TLS server whose certificate comes from a Secret terminates TLS with that certificate.
 */
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { issueTestCertificate } from '@fedmesh/pki/testing';
import { readState, type MeshState } from '@fedmesh/ctl';
import { Agent, request } from 'undici';
import { fedmesh } from './cli.js';
import { FIXTURES, waitUntil } from './harness.js';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-ingress-'));
const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account';
let state: MeshState;
let gw: NonNullable<MeshState['gateways']>[number];

before(async () => {
  const up = await fedmesh(
    [
      'up',
      '-f',
      path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml'),
      path.join(FIXTURES, 'bookinfo/networking/bookinfo-gateway.yaml'),
      '--state-dir',
      stateDir,
    ],
    120_000,
  );
  assert.equal(up.code, 0, up.stderr);
  state = readState(stateDir);
  const g = state.gateways?.[0];
  assert.ok(g, 'fedmesh up started an ingress gateway');
  gw = g;
});

after(async () => {
  const down = await fedmesh(['down', '--state-dir', stateDir]);
  if (down.code !== 0) console.error(down.stderr);
  fs.rmSync(stateDir, { recursive: true, force: true });
});

async function get(url: string, opts: { host?: string; dispatcher?: Agent } = {}) {
  const res = await request(url, {
    headers: { host: opts.host ?? 'bookinfo.local' },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
  });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

async function metrics(): Promise<string> {
  const res = await request(`http://${gw.admin}/stats/prometheus`, { headersTimeout: 5_000, bodyTimeout: 5_000 });
  return res.body.text();
}

test('fedmesh up starts istio-ingressgateway-0 in istio-system with Istio labels', () => {
  assert.equal(gw.name, 'istio-ingressgateway-0');
  assert.equal(gw.namespace, 'istio-system');
  assert.deepEqual(gw.labels, { istio: 'ingressgateway', app: 'istio-ingressgateway' });
  assert.equal(gw.spiffeId, GATEWAY_ID);
});

test('/productpage on the gateway 8080 reaches productpage over mTLS with the gateway identity', async () => {
  const r = await get(`http://${gw.address}:8080/productpage`);
  assert.equal(r.status, 200, r.body);
  const echo = JSON.parse(r.body) as {
    service: string;
    path: string;
    callerPrincipal: string | null;
    headers: Record<string, string>;
  };
  assert.equal(echo.service, 'productpage');
  assert.equal(echo.path, '/productpage');
  assert.equal(echo.callerPrincipal, GATEWAY_ID, "productpage's sidecar saw the gateway's SPIFFE ID");
  assert.equal(echo.headers['x-forwarded-proto'], 'http');
  for (const p of ['/static/app.css', '/login', '/logout', '/api/v1/products'])
    assert.equal((await get(`http://${gw.address}:8080${p}`)).status, 200, p);
});

test('a path the VirtualService does not route gets 404 NR, counted with reporter=source and gateway labels', async () => {
  const r = await get(`http://${gw.address}:8080/reviews/0`);
  assert.equal(r.status, 404);
  await waitUntil(
    async () => /istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"/.test(await metrics()),
    10_000,
    'NR counted',
  );
  const text = await metrics();
  const ok = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="200"'));
  assert.ok(ok, text);
  for (const label of [
    'reporter="source"',
    'source_workload="istio-ingressgateway"',
    'source_workload_namespace="istio-system"',
    `source_principal="${GATEWAY_ID}"`,
    'destination_service="productpage.default.svc.cluster.local"',
  ])
    assert.ok(ok.includes(label), `${label} in ${ok}`);
});

test('a wildcard host matches a Host header with a port; the port is stripped before routing and forwarding', async () => {
  const manifests = path.join(stateDir, 'wildcard-gateway.yaml');
  fs.writeFileSync(
    manifests,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: wildcard-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8081, name: http-wildcard, protocol: HTTP }
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: bookinfo-wildcard, namespace: default }
spec:
  hosts: ["*.example.com"]
  gateways: [wildcard-gateway]
  http:
  - match: [{ uri: { exact: /productpage } }]
    route: [{ destination: { host: productpage, port: { number: 9080 } } }]
`,
  );
  const applied = await fedmesh(['apply', '-f', manifests, '--state-dir', stateDir]);
  assert.equal(applied.code, 0, applied.stderr);
  const url = `http://${gw.address}:8081/productpage`;
  let last: { status: number; body: string } | undefined;
  await waitUntil(
    async () => {
      try {
        last = await get(url, { host: 'bookinfo.example.com:8081' });
        return last.status === 200;
      } catch {
        return false;
      }
    },
    15_000,
    'bookinfo.example.com:8081 routed by *.example.com',
  );
  const echo = JSON.parse(last?.body ?? '{}') as { service: string; headers: Record<string, string> };
  assert.equal(echo.service, 'productpage');
  assert.equal(echo.headers['host'], 'bookinfo.example.com', 'forwarded without the port, as Envoy does');
  assert.equal((await get(url, { host: 'Reviews.Example.com:80' })).status, 200, 'any port, any case');
  assert.equal((await get(url, { host: 'bookinfo.example.org:8081' })).status, 404, 'another domain is not routed');
});

test('a SIMPLE TLS server terminates TLS with the certificate of its credentialName Secret', async () => {
  // Istio's sample CA stands in for a public CA; the mesh's root is a different, self-signed one.
  const samples = path.join(FIXTURES, 'certs');
  const issuer = {
    certPem: fs.readFileSync(path.join(samples, 'ca-cert.pem'), 'utf8'),
    keyPem: fs.readFileSync(path.join(samples, 'ca-key.pem'), 'utf8'),
  };
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueTestCertificate({
    issuer,
    publicKey: privateKey,
    dns: ['bookinfo.example.com'],
    extKeyUsage: ['serverAuth'],
  });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const manifests = path.join(stateDir, 'secure-gateway.yaml');
  fs.writeFileSync(
    manifests,
    `apiVersion: v1
kind: Secret
metadata: { name: bookinfo-credential, namespace: istio-system }
type: kubernetes.io/tls
data:
  tls.crt: ${b64(certPem)}
  tls.key: ${b64(keyPem)}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: secure-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
  - port: { number: 8443, name: https, protocol: HTTPS }
    hosts: [bookinfo.example.com]
    tls: { mode: SIMPLE, credentialName: bookinfo-credential }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: bookinfo-secure, namespace: default }
spec:
  hosts: [bookinfo.example.com]
  gateways: [secure-gateway]
  http:
  - match: [{ uri: { exact: /productpage } }]
    route: [{ destination: { host: productpage, port: { number: 9080 } } }]
`,
    { mode: 0o600 },
  );
  const applied = await fedmesh(['apply', '-f', manifests, '--state-dir', stateDir]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.ok(!applied.stdout.includes(b64(keyPem).slice(0, 24)) && !applied.stderr.includes(b64(keyPem).slice(0, 24)));

  const ca = fs.readFileSync(path.join(samples, 'root-cert.pem'), 'utf8') + issuer.certPem;
  const agent = new Agent({ connect: { ca, servername: 'bookinfo.example.com' } });
  try {
    let last: { status: number; body: string } | undefined;
    await waitUntil(
      async () => {
        try {
          last = await get(`https://${gw.address}:8443/productpage`, {
            host: 'bookinfo.example.com',
            dispatcher: agent,
          });
          return last.status === 200;
        } catch {
          return false;
        }
      },
      15_000,
      'the TLS server serves',
    );
    const echo = JSON.parse(last?.body ?? '{}') as {
      service: string;
      callerPrincipal: string;
      headers: Record<string, string>;
    };
    assert.equal(echo.service, 'productpage');
    assert.equal(echo.callerPrincipal, GATEWAY_ID);
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
    assert.equal(
      (await get(`https://${gw.address}:8443/reviews/0`, { host: 'bookinfo.example.com', dispatcher: agent })).status,
      404,
    );
  } finally {
    await agent.close();
  }

  // The certificate presented is the Secret's, and a name the server does not serve gets no TLS session.
  const presented = await new Promise<X509Certificate>((resolve, reject) => {
    const s = tls.connect({ host: gw.address, port: 8443, servername: 'bookinfo.example.com', ca }, () => {
      const raw = s.getPeerX509Certificate();
      s.destroy();
      if (raw) resolve(raw);
      else reject(new Error('no certificate'));
    });
    s.on('error', reject);
  });
  assert.equal(presented.fingerprint256, new X509Certificate(certPem).fingerprint256);
  const logs = path.join(stateDir, 'logs');
  for (const f of fs.readdirSync(logs)) {
    const text = fs.readFileSync(path.join(logs, f), 'utf8');
    assert.ok(!text.includes('PRIVATE KEY') && !text.includes(b64(keyPem).slice(0, 24)), `${f} holds no key material`);
  }
  await assert.rejects(
    new Promise<void>((resolve, reject) => {
      const s = tls.connect({ host: gw.address, port: 8443, servername: 'other.example.com', ca }, () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
      s.on('close', () => reject(new Error('closed without a session')));
    }),
  );
});
