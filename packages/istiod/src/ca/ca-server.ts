import * as grpc from '@grpc/grpc-js';
import { generateKeyPair } from '@fedmesh/pki';
import { createCaService, type CaServiceOptions } from './ca-service.js';

type CaCertificateListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityCertificateListener = grpc.experimental.IdentityCertificateUpdateListener;

/**
 * StaticCertificateProvider hands grpc-js a fixed trust bundle and serving identity, and can replace them (`update`)
 * for rotation. One object serves as both the CA and the identity provider.
 */
export class StaticCertificateProvider implements grpc.experimental.CertificateProvider {
  #ca: grpc.experimental.CaCertificateUpdate;
  #identity: grpc.experimental.IdentityCertificateUpdate;
  readonly #caListeners = new Set<CaCertificateListener>();
  readonly #identityListeners = new Set<IdentityCertificateListener>();

  /** Creates a provider from PEM: trust bundle roots, serving chain (leaf first) and its private key. */
  constructor(material: { rootCertsPem: string; certChainPem: string; privateKeyPem: string }) {
    this.#ca = { caCertificate: Buffer.from(material.rootCertsPem) };
    this.#identity = {
      certificate: Buffer.from(material.certChainPem),
      privateKey: Buffer.from(material.privateKeyPem),
    };
  }

  /** update replaces the material and notifies grpc-js; new connections use it. */
  update(material: { rootCertsPem: string; certChainPem: string; privateKeyPem: string }): void {
    this.#ca = { caCertificate: Buffer.from(material.rootCertsPem) };
    this.#identity = {
      certificate: Buffer.from(material.certChainPem),
      privateKey: Buffer.from(material.privateKeyPem),
    };
    for (const listener of this.#caListeners) listener(this.#ca);
    for (const listener of this.#identityListeners) listener(this.#identity);
  }

  addCaCertificateListener(listener: CaCertificateListener): void {
    this.#caListeners.add(listener);
    process.nextTick(listener, this.#ca);
  }

  removeCaCertificateListener(listener: CaCertificateListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityCertificateListener): void {
    this.#identityListeners.add(listener);
    process.nextTick(listener, this.#identity);
  }

  removeIdentityCertificateListener(listener: IdentityCertificateListener): void {
    this.#identityListeners.delete(listener);
  }
}

/**
 * createOptionalClientCertCredentials returns TLS server credentials that request a client certificate and verify it
 * against the provider's trust bundle when one is sent, but also accept clients without one (token clients).
 * `grpc.ServerCredentials.createSsl(root, pairs, false)` would not request client certificates at all, and `true`
 * would require them. grpc-js's exported function names its two provider arguments in the opposite order to the
 * constructor it calls, so the same provider is passed as both.
 */
export function createOptionalClientCertCredentials(provider: StaticCertificateProvider): grpc.ServerCredentials {
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/** StartCaServerOptions: the CA service options plus where to listen and the serving certificate's names. */
export interface StartCaServerOptions extends CaServiceOptions {
  /** address is `host:port` to bind. Default `127.0.0.1:0` (a free port). */
  readonly address?: string;
  /** servingDnsNames are the DNS SANs of the serving certificate. Default `istiod.istio-system.svc`, `localhost`. */
  readonly servingDnsNames?: readonly string[];
  /** servingIps are the IP SANs of the serving certificate. Default `127.0.0.1`, `::1`. */
  readonly servingIps?: readonly string[];
}

/** RunningCaServer is a started CA gRPC server. */
export interface RunningCaServer {
  readonly server: grpc.Server;
  /** port is the bound TCP port. */
  readonly port: number;
  /** address is `host:port` to dial. */
  readonly address: string;
  /** servingCertPem is the server's TLS chain (leaf first). */
  readonly servingCertPem: string;
  /** close stops the server: graceful for up to 2 s, then forced. */
  close(): Promise<void>;
}

/**
 * startCaServer starts a `grpc.Server` serving only {@link createCaService} over TLS: a fresh P-256 serving key with
 * a certificate from `ca.signServing`, client certificates requested and verified against `ca.rootCertsPem` but
 * optional. Meant for tests and the single-process local mesh; istiod adds the service to its own 15012 server.
 * Rejects when the address cannot be bound.
 */
export async function startCaServer(options: StartCaServerOptions): Promise<RunningCaServer> {
  const ca = typeof options.ca === 'function' ? options.ca() : options.ca;
  const serviceOptions: CaServiceOptions = options;
  const { definition, implementation } = createCaService(serviceOptions);
  const key = await generateKeyPair('ec-p256');
  const serving = await ca.signServing({
    publicKey: key.publicKey,
    dnsNames: options.servingDnsNames ?? ['istiod.istio-system.svc', 'localhost'],
    ips: options.servingIps ?? ['127.0.0.1', '::1'],
  });
  const servingCertPem = serving.chainPem.join('');
  const provider = new StaticCertificateProvider({
    rootCertsPem: ca.rootCertsPem.join(''),
    certChainPem: servingCertPem,
    privateKeyPem: key.privateKeyPem,
  });
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 });
  server.addService(definition, implementation);
  const address = options.address ?? '127.0.0.1:0';
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, createOptionalClientCertCredentials(provider), (err, boundPort) =>
      err === null ? resolve(boundPort) : reject(err),
    );
  });
  const host = address.slice(0, address.lastIndexOf(':'));
  return {
    server,
    port,
    address: `${host}:${port}`,
    servingCertPem,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
