/**
 * A hand-written control plane for tests that push one real sidecar resources istiod would never generate: the
 * mesh CA service and an ADS server over a {@link SnapshotCache}, on one gRPC server with istiod's serving
 * certificate, recording every NACK the sidecar sends.
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import {
  LocalTokenAuthenticator,
  StaticCertificateProvider,
  createCaService,
  createOptionalClientCertCredentials,
} from '@fedmesh/istiod';
import { CertificateAuthority, generateKeyPair } from '@fedmesh/pki';
import { Sidecar } from '@fedmesh/proxy';
import { Snapshot, SnapshotCache, createAdsServer, type ResourceEntry } from '@fedmesh/xds';
import { testLogger, waitUntil } from './harness.js';

/** NackRecord is one NACK the control plane received: the type URL and the `error_detail` message. */
export interface NackRecord {
  type: string;
  message: string;
}

/** HandControlPlaneOptions say where the control plane and its sidecar run. */
export interface HandControlPlaneOptions {
  /** dir holds the CA state and the sidecar's log (`sidecar.log`); the caller removes it. */
  dir: string;
  /** host is the control plane's address (`127.0.N.1`), ip the sidecar's (`127.0.N.10`, see `freeSubnet`). */
  host: string;
  ip: string;
  /** resources is the first snapshot, in place before the sidecar connects. */
  resources: Partial<Record<string, readonly ResourceEntry[]>>;
}

/**
 * HandControlPlane runs a self-signed mesh CA (trust domain `cluster.local`), the CA service with a local token
 * authenticator and an ADS server on `<host>:0`, and one {@link Sidecar} `client-0` (namespace `default`,
 * service account `client`, admin 15000, mTLS 15006) bootstrapped against it. {@link HandControlPlane.start}
 * returns once the sidecar is ready (bounded wait of 15 s); {@link HandControlPlane.push} replaces the
 * sidecar's snapshot; every NACK lands in `nacks`, in order.
 */
export class HandControlPlane {
  readonly nacks: NackRecord[] = [];
  readonly cache = new SnapshotCache();
  private readonly server = new grpc.Server();
  private sidecarOrUndefined: Sidecar | undefined;

  private constructor() {}

  /** sidecar is the sidecar under test; it throws before {@link HandControlPlane.start} has built it. */
  get sidecar(): Sidecar {
    if (!this.sidecarOrUndefined) throw new Error('HandControlPlane: sidecar not started');
    return this.sidecarOrUndefined;
  }

  /**
   * start brings up the CA, the ADS server and the sidecar with `opts.resources` as its first snapshot, and
   * waits until the sidecar is ready. On failure whatever started is closed before the error is thrown.
   */
  static async start(opts: HandControlPlaneOptions): Promise<HandControlPlane> {
    const cp = new HandControlPlane();
    try {
      await cp.run(opts);
      return cp;
    } catch (err) {
      await cp.close();
      throw err;
    }
  }

  private async run(opts: HandControlPlaneOptions): Promise<void> {
    const ca = await CertificateAuthority.createSelfSigned({
      stateDir: path.join(opts.dir, 'ca'),
      trustDomain: 'cluster.local',
    });
    const tokens = new LocalTokenAuthenticator({ trustDomain: 'cluster.local' });
    const caService = createCaService({ ca, authenticators: [tokens] });
    const ads = createAdsServer(this.cache, {
      onNack: (_s, type, _v, message) => this.nacks.push({ type, message }),
    });
    this.server.addService(caService.definition, caService.implementation);
    this.server.addService(ads.service, ads.implementation);
    const key = await generateKeyPair('ec-p256');
    const serving = await ca.signServing({
      publicKey: key.publicKey,
      dnsNames: ['istiod.istio-system.svc'],
      ips: [opts.host],
    });
    const provider = new StaticCertificateProvider({
      rootCertsPem: ca.rootCertsPem.join(''),
      certChainPem: serving.chainPem.join(''),
      privateKeyPem: key.privateKeyPem,
    });
    const port = await new Promise<number>((res, rej) =>
      this.server.bindAsync(`${opts.host}:0`, createOptionalClientCertCredentials(provider), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    const log = testLogger(opts.dir, 'sidecar');
    const sidecar = new Sidecar({
      ip: opts.ip,
      podName: 'client-0',
      namespace: 'default',
      serviceAccount: 'client',
      labels: { app: 'client' },
      workloadName: 'client',
      clusterId: 'Kubernetes',
      discoveryAddress: `${opts.host}:${port}`,
      rootCertPem: ca.rootCertsPem.join(''),
      token: tokens.mint({ namespace: 'default', serviceAccount: 'client' }),
      adminPort: 15000,
      mtlsPort: 15006,
      log,
      accessLog: log,
    });
    this.sidecarOrUndefined = sidecar;
    this.push(opts.resources);
    await sidecar.start();
    await waitUntil(() => sidecar.ready(), 15_000, 'sidecar ready');
  }

  /** push replaces the sidecar's snapshot with `resources` (grouped by type URL; types not given are empty). */
  push(resources: Partial<Record<string, readonly ResourceEntry[]>>): void {
    this.cache.setSnapshot(this.sidecar.node().id, new Snapshot(resources));
  }

  /** close stops the sidecar and the gRPC server; safe to call after a failed start. */
  async close(): Promise<void> {
    await this.sidecarOrUndefined?.stop();
    this.server.forceShutdown();
  }
}

/**
 * staticCluster is a STATIC Cluster `name` (connect timeout 1 s) with one endpoint `address:port`; `extra` fields
 * are added to the Cluster as given (for fields a test expects the proxy to refuse).
 */
export function staticCluster(name: string, address: string, port: number, extra: object = {}): ResourceEntry {
  return {
    name,
    resource: encodeAny(TypeUrl.Cluster, {
      name,
      type: 'STATIC',
      connect_timeout: { seconds: 1 },
      load_assignment: {
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: port } } } }] }],
      },
      ...extra,
    }),
  };
}
