/**
 * An ingress gateway's listeners as a client of the gateway notices them, with real TLS: the certificate offered is
 * the one of the filter chain the SNI picks; a MUTUAL chain refuses a client without a certificate from its CA and
 * serves one with it; requests are routed by the RouteConfiguration (404 NR otherwise) with x-forwarded-proto set;
 * what an ingress gateway cannot serve, or a key that does not match its certificate, is NACKed with a field path
 * and without the key.
 */
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { encodeAny, TypeUrl } from '@fedmesh/api/xds';
import { issueTestCertificate } from '@fedmesh/pki/testing';
import { ClusterManager } from '../cluster-manager.js';
import { ProxyMetrics } from '../metrics.js';
import { RouteTable } from '../route-table.js';
import { ClusterSchema, RouteConfigurationSchema } from '../xds/envoy-schemas.js';
import { IngressListenerManager } from './ingress-listeners.js';
import { IngressListenerType, IngressSecretType, type IngressSecret } from './ingress-schema.js';

const CERTS = path.resolve(import.meta.dirname, '../../../../../shared/fixtures/istio-samples/certs');
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = {
  name: 'envoy.filters.http.router',
  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
};
const ADS = { ads: {}, resource_api_version: 'V3' };
const issuer = {
  certPem: fs.readFileSync(path.join(CERTS, 'ca-cert.pem'), 'utf8'),
  keyPem: fs.readFileSync(path.join(CERTS, 'ca-key.pem'), 'utf8'),
};
const trusted = fs.readFileSync(path.join(CERTS, 'root-cert.pem'), 'utf8') + issuer.certPem;

async function leaf(dns: string[], use: 'serverAuth' | 'clientAuth'): Promise<{ certPem: string; keyPem: string }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certPem = await issueTestCertificate({ issuer, publicKey: privateKey, dns, extKeyUsage: [use] });
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

function decodeSecret(obj: object): IngressSecret {
  const r = IngressSecretType.decode(encodeAny(TypeUrl.Secret, obj));
  assert.ok('value' in r, 'error' in r ? r.error : '');
  return r.value;
}

function tlsChain(name: string, names: string[] | undefined, sds: string, mutual = false): object {
  return {
    name,
    ...(names ? { filter_chain_match: { server_names: names } } : {}),
    filters: [
      {
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': HCM,
          stat_prefix: name,
          rds: { route_config_name: 'https', config_source: ADS },
          http_filters: [ROUTER],
        },
      },
    ],
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
        common_tls_context: {
          tls_certificate_sds_secret_configs: [{ name: sds, sds_config: ADS }],
          ...(mutual ? { validation_context_sds_secret_config: { name: `${sds}-cacert`, sds_config: ADS } } : {}),
          alpn_protocols: ['h2', 'http/1.1'],
        },
        ...(mutual ? { require_client_certificate: { value: true } } : {}),
      },
    },
  };
}

function connect(
  port: number,
  servername: string,
  extra: tls.ConnectionOptions = {},
): Promise<{ cert: X509Certificate; sock: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ca: trusted,
      ALPNProtocols: ['http/1.1'],
      ...extra,
    });
    sock.once('secureConnect', () => {
      const cert = sock.getPeerX509Certificate();
      if (cert) resolve({ cert, sock });
      else reject(new Error('no certificate'));
    });
    sock.once('error', reject);
    sock.once('close', () => reject(new Error('closed')));
  });
}

/** get sends one HTTP/1.1 request over an established TLS socket and resolves the status and body. */
function get(sock: tls.TLSSocket, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ path, headers: { host }, createConnection: () => sock }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('ingress listeners: TLS termination by SNI, MUTUAL, routing', () => {
  const log = pino({ level: 'silent' });
  const clusters = new ClusterManager({});
  const metrics = new ProxyMetrics();
  const secrets = new Map<string, IngressSecret>();
  let backend: http.Server;
  let mgr: IngressListenerManager;
  let port = 0;
  let a: { certPem: string; keyPem: string };
  let b: { certPem: string; keyPem: string };

  before(async () => {
    backend = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ headers: req.headers }));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    const bport = (backend.address() as net.AddressInfo).port;
    clusters.setClusters(
      new Map([
        [
          'backend',
          ClusterSchema.parse({
            name: 'backend',
            type: 'STATIC',
            connect_timeout: { seconds: 5 },
            load_assignment: {
              cluster_name: 'backend',
              endpoints: [
                {
                  lb_endpoints: [
                    { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: bport } } } },
                  ],
                },
              ],
            },
          }),
        ],
      ]),
    );
    const routes = new RouteTable(
      RouteConfigurationSchema.parse({
        name: 'https',
        virtual_hosts: [
          {
            name: 'all',
            domains: ['*'],
            routes: [{ match: { prefix: '/app' }, route: { cluster: 'backend', timeout: { seconds: 5 } } }],
          },
        ],
      }),
    );
    a = await leaf(['a.example.com'], 'serverAuth');
    b = await leaf(['b.example.com'], 'serverAuth');
    for (const [name, m] of [
      ['kubernetes://a', a],
      ['kubernetes://b', b],
    ] as const)
      secrets.set(
        name,
        decodeSecret({
          name,
          tls_certificate: {
            certificate_chain: { inline_string: m.certPem },
            private_key: { inline_string: m.keyPem },
          },
        }),
      );
    secrets.set(
      'kubernetes://b-cacert',
      decodeSecret({ name: 'kubernetes://b-cacert', validation_context: { trusted_ca: { inline_string: trusted } } }),
    );
    mgr = new IngressListenerManager({
      log,
      rds: (n) => (n === 'https' ? routes : undefined),
      secret: (n) => secrets.get(n),
      handlerContext: {
        clusters,
        metrics,
        accessLog: log,
        self: {
          name: 'istio-ingressgateway',
          namespace: 'istio-system',
          app: 'istio-ingressgateway',
          version: 'unknown',
          principal: '',
          cluster: 'c',
        },
      },
    });
    // Pick a free port, then serve the listener there.
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const decoded = IngressListenerType.decode(
      encodeAny(TypeUrl.Listener, {
        name: '0.0.0.0_443',
        address: { socket_address: { address: '127.0.0.1', port_value: port } },
        listener_filters: [
          {
            name: 'envoy.filters.listener.tls_inspector',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
            },
          },
        ],
        filter_chains: [
          tlsChain('a', ['a.example.com'], 'kubernetes://a'),
          tlsChain('b', ['b.example.com'], 'kubernetes://b', true),
        ],
      }),
    );
    assert.ok('value' in decoded, 'error' in decoded ? decoded.error : '');
    await mgr.apply(new Map([['0.0.0.0_443', decoded.value]]));
  });

  after(async () => {
    mgr.close();
    clusters.close();
    backend.closeAllConnections();
    await new Promise<void>((r) => backend.close(() => r()));
  });

  test('each SNI gets its own chain certificate; an SNI no chain serves gets no TLS session', async () => {
    const c1 = await connect(port, 'a.example.com');
    assert.equal(c1.cert.fingerprint256, new X509Certificate(a.certPem).fingerprint256);
    c1.sock.destroy();
    const client = await leaf(['client.example.com'], 'clientAuth');
    const c2 = await connect(port, 'b.example.com', { cert: client.certPem, key: client.keyPem });
    assert.equal(c2.cert.fingerprint256, new X509Certificate(b.certPem).fingerprint256);
    c2.sock.destroy();
    await assert.rejects(connect(port, 'c.example.com'));
  });

  test('SIMPLE serves routed requests with x-forwarded-proto https; an unrouted path gets 404', async () => {
    const { sock } = await connect(port, 'a.example.com');
    const r = await get(sock, '/app/x', 'a.example.com');
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-forwarded-proto'], 'https');
    sock.destroy();
    const { sock: s2 } = await connect(port, 'a.example.com');
    assert.equal((await get(s2, '/other', 'a.example.com')).status, 404);
    s2.destroy();
  });

  test('MUTUAL refuses a client without a certificate, and one from another CA; serves one from its CA', async () => {
    const noCert = connect(port, 'b.example.com').then(async ({ sock }) => get(sock, '/app', 'b.example.com'));
    await assert.rejects(noCert);
    // A certificate that names the trusted CA as its issuer but was signed by another key.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rogueKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const selfSigned = {
      certPem: await issueTestCertificate({
        issuer: { certPem: issuer.certPem, keyPem: rogueKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
        publicKey: privateKey,
        dns: ['client.example.com'],
        extKeyUsage: ['clientAuth'],
      }),
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
    const foreign = connect(port, 'b.example.com', { cert: selfSigned.certPem, key: selfSigned.keyPem }).then(
      async ({ sock }) => get(sock, '/app', 'b.example.com'),
    );
    await assert.rejects(foreign);
    const client = await leaf(['client.example.com'], 'clientAuth');
    const { sock } = await connect(port, 'b.example.com', { cert: client.certPem, key: client.keyPem });
    assert.equal((await get(sock, '/app', 'b.example.com')).status, 200);
    sock.destroy();
  });
});

describe('ingress decoders NACK what an ingress gateway cannot serve', () => {
  test('a tcp_proxy chain, and a TLS chain without an SDS certificate', () => {
    const tcp = IngressListenerType.decode(
      encodeAny(TypeUrl.Listener, {
        name: 'l',
        address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
        filter_chains: [
          {
            filters: [
              {
                name: 'envoy.filters.network.tcp_proxy',
                typed_config: {
                  '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                  stat_prefix: 's',
                  cluster: 'c',
                },
              },
            ],
          },
        ],
      }),
    );
    assert.ok('error' in tcp);
    assert.match(tcp.error, /^filter_chains\[0\]\.filters\[0\]: only HTTP connection managers/);
    const chain = tlsChain('x', undefined, 'kubernetes://x') as {
      transport_socket: { typed_config: { common_tls_context: Record<string, unknown> } };
    };
    delete chain.transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs;
    const noCert = IngressListenerType.decode(
      encodeAny(TypeUrl.Listener, {
        name: 'l',
        address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
        filter_chains: [chain],
      }),
    );
    assert.ok('error' in noCert);
    assert.match(noCert.error, /tls_certificate_sds_secret_configs: a TLS-terminating chain needs an SDS certificate/);
  });

  test('a private key that does not match its certificate, without showing the key', async () => {
    const a = await leaf(['a.example.com'], 'serverAuth');
    const b = await leaf(['b.example.com'], 'serverAuth');
    const r = IngressSecretType.decode(
      encodeAny(TypeUrl.Secret, {
        name: 'kubernetes://mixed',
        tls_certificate: { certificate_chain: { inline_string: a.certPem }, private_key: { inline_string: b.keyPem } },
      }),
    );
    assert.ok('error' in r);
    assert.match(r.error, /^tls_certificate\.private_key: does not match/);
    assert.ok(!r.error.includes('PRIVATE KEY'));
  });
});
