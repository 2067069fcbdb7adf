/**
 * `@fedmesh/istiod/testing`: a fake Kubernetes API server for tests. Production code never imports this entry point.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { FakeApiServer, type FakeApiServerOptions } from './fake-apiserver.js';

export { FakeApiServer, type FakeApiServerOptions, type RecordedRequest } from './fake-apiserver.js';
export { DEFAULT_FAKE_RESOURCES, type FakeObject, type FakeResource } from './fake-store.js';
export { fakePod, memoryLogger, waitUntil } from './test-support.js';
export { FAKE_ISSUER, FakeTokenIssuer, type IssueTokenOptions, type TokenReviewStatus } from './fake-tokens.js';

/** RunningFakeApiServer is a started fake with a kubeconfig that reaches it over TLS with a bearer token. */
export interface RunningFakeApiServer {
  server: FakeApiServer;
  /** kubeConfig is a loaded client config for the fake (CA pinned, bearer token). */
  kubeConfig: KubeConfig;
  /** kubeconfigYaml is the same config as a kubeconfig file's text. */
  kubeconfigYaml: string;
  /** caPem is the CA that signed the fake's serving certificate. */
  caPem: string;
  /** token is the bearer token the fake requires. */
  token: string;
  /** close stops the fake. */
  close(): Promise<void>;
}

/**
 * startFakeApiServer starts a {@link FakeApiServer} on loopback over real TLS: a throwaway P-256 CA (made with
 * @fedmesh/pki in a temp dir that is removed at once) signs a serving certificate for `127.0.0.1` and
 * `localhost`, and a random bearer token is required. Options other than `tls` and `token` pass through.
 */
export async function startFakeApiServer(
  options: Omit<FakeApiServerOptions, 'tls' | 'token'> = {},
): Promise<RunningFakeApiServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-fake-kube-'));
  let ca: CertificateAuthority;
  try {
    ca = await CertificateAuthority.createSelfSigned({ stateDir: dir, trustDomain: 'fake.kube' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const key = await generateKeyPair('ec-p256');
  const serving = await ca.signServing({ publicKey: key.publicKey, dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  const token = randomBytes(24).toString('hex');
  const server = new FakeApiServer({
    ...options,
    host: options.host ?? '127.0.0.1',
    tls: { certPem: serving.chainPem.join(''), keyPem: key.privateKeyPem },
    token,
  });
  const url = await server.start();
  const kubeconfigYaml = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: fake',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${Buffer.from(ca.rootCertPem).toString('base64')}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: fake',
    '  context: {cluster: fake, user: admin}',
    'current-context: fake',
    '',
  ].join('\n');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(kubeconfigYaml);
  return { server, kubeConfig, kubeconfigYaml, caPem: ca.rootCertPem, token, close: () => server.stop() };
}
