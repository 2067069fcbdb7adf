import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import { AUTO_REGISTER_GROUP, ErrorCode, MeshError } from '@fedmesh/api';
import { isPkiError, spiffeUri } from '@fedmesh/pki';
import { Sidecar, type WorkloadCertificate } from '@fedmesh/proxy';
import type { Logger } from 'pino';
import { detectInstanceIp, readBootstrap, readToken, type VmBootstrap } from './bootstrap.js';
import { CertStore } from './cert-store.js';
import { HealthReporter } from './health-reporter.js';
import type { SystemdNotifier } from './notify.js';
import { Prober } from './prober.js';

/** VmAgentOptions configure one agent run. */
export interface VmAgentOptions {
  configDir: string;
  stateDir: string;
  notifier: SystemdNotifier;
  log: Logger;
  /** certTtlSeconds is the certificate lifetime requested (0: the CA's default). */
  certTtlSeconds?: number;
  /** adminPort is the proxy's admin port on the VM address (default 15000). */
  adminPort?: number;
  /** hostname names the VM's proxy in its node ID (default `os.hostname()`). */
  hostname?: string;
  /** superviseMs is how often the proxy's liveness is checked (default 2 s). */
  superviseMs?: number;
}

/** INBOUND_WAIT_MS bounds how long READY=1 waits for the inbound listener after the first configuration (10 s). */
export const INBOUND_WAIT_MS = 10_000;

/** ISTIOD_SERVER_NAME is the name istiod's serving certificate is checked for (as the proxy does). */
export const ISTIOD_SERVER_NAME = 'istiod.istio-system.svc';

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function adminAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/ready', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
  });
}

function podNameOf(hostname: string): string {
  const n = hostname
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return n || 'vm';
}

/**
 * VmAgent brings this host into the mesh and keeps it there (DESIGN.md: systemd → vm-agent → proxy ─ app):
 * 1. reads the onboarding files ({@link readBootstrap}) and finds its address (`FEDMESH_INSTANCE_IP`, else the local
 *    address toward istiod);
 * 2. runs the fedmesh proxy in-process ({@link Sidecar}, the VM's address, node metadata `AUTO_REGISTER_GROUP`), whose
 *    key is made here and whose first CSR is authenticated by the persisted certificate when one is still valid
 *    (renewal, no token) or else by the bootstrap token; each certificate installed is persisted ({@link CertStore});
 *    a persisted certificate istiod refuses is dropped for the token; istiod unreachable is retried with back-off;
 * 3. sends `READY=1` once the certificate is persisted and the first Listeners and Clusters are accepted and bound
 *    (and the inbound listener, which follows the auto-registration, is bound; at most {@link INBOUND_WAIT_MS} more);
 * 4. runs the WorkloadGroup's readiness probe ({@link Prober}) and reports each change to istiod
 *    ({@link HealthReporter});
 * 5. supervises the proxy: its admin listener must answer; after 3 failed checks the proxy is rebuilt with the
 *    current certificate, and while it is not answering the systemd watchdog is not pinged.
 * {@link VmAgent.run} resolves after the signal aborts and everything is stopped (listeners drained). It rejects with
 * a MeshError when the agent cannot ever work without a person: bad files, no certificate and no token, or a token
 * istiod refuses.
 */
export class VmAgent {
  /** sidecar is the running proxy, once started. */
  sidecar: Sidecar | undefined;
  /** identity is the SPIFFE ID this VM runs as, once the files are read. */
  identity = '';
  /** address is this VM's mesh address, once known. */
  address = '';
  private lastAlive = Date.now();
  private persisting: Promise<void> = Promise.resolve();
  private readonly store: CertStore;

  /** constructor stores options; no I/O before {@link VmAgent.run}. */
  constructor(private readonly opts: VmAgentOptions) {
    this.store = new CertStore(opts.stateDir);
  }

  /** alive tells the watchdog whether the agent works: the proxy's admin listener answered recently. */
  alive(): boolean {
    return Date.now() - this.lastAlive < 5 * (this.opts.superviseMs ?? 2_000) + 10_000;
  }

  /** run starts everything and supervises until `signal` aborts (see the class comment). */
  async run(signal: AbortSignal): Promise<void> {
    const { notifier, log } = this.opts;
    await notifier.status('reading the onboarding files');
    const boot = await readBootstrap(this.opts.configDir);
    const env = boot.env;
    this.identity = spiffeUri({
      trustDomain: env.trustDomain,
      namespace: env.namespace,
      serviceAccount: env.serviceAccount,
    });
    await fs.mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    this.address = env.instanceIp ?? (await detectInstanceIp(boot.dialAddress));
    log.info(
      {
        identity: this.identity,
        address: this.address,
        discovery: boot.discoveryAddress,
        dial: boot.dialAddress,
        workloadGroup: `${env.namespace}/${env.workloadGroup}`,
      },
      'VM agent starting',
    );
    this.lastAlive = Date.now();
    notifier.startWatchdog(() => this.alive());
    try {
      const sidecar = await this.startProxy(boot, signal);
      if (!sidecar) return;
      this.sidecar = sidecar;
      await this.persisting;
      const cert = sidecar.certificate();
      await notifier.ready(
        `serving as ${this.identity} at ${this.address}; certificate valid until ${cert?.notAfter.toISOString() ?? '?'}`,
      );
      log.info(
        { identity: this.identity, address: this.address },
        'VM ready: certificate in place, first configuration accepted',
      );
      await this.serve(boot, signal);
    } finally {
      notifier.stopWatchdog();
      const s = this.sidecar;
      this.sidecar = undefined;
      await s?.shutdown(3_000);
    }
  }

  private makeSidecar(boot: VmBootstrap, initial: WorkloadCertificate | undefined, token: string | undefined): Sidecar {
    const { log } = this.opts;
    const env = boot.env;
    return new Sidecar({
      ip: this.address,
      podName: podNameOf(this.opts.hostname ?? os.hostname()),
      namespace: env.namespace,
      serviceAccount: env.serviceAccount,
      labels: env.labels,
      workloadName: env.workloadGroup,
      clusterId: env.clusterId,
      discoveryAddress: boot.dialAddress,
      rootCertPem: boot.rootCertPem,
      token,
      certTtlSeconds: this.opts.certTtlSeconds ?? 0,
      adminPort: this.opts.adminPort ?? 15000,
      mtlsPort: 15006,
      nodeMetadata: { [AUTO_REGISTER_GROUP]: env.workloadGroup, ...(env.network ? { NETWORK: env.network } : {}) },
      ...(initial ? { initialCertificate: initial } : {}),
      onCertificate: (c) => {
        this.persisting = this.persisting
          .then(() => this.store.save(c))
          .then(
            () => log.info({ serial: c.serialNumber, notAfter: c.notAfter.toISOString() }, 'certificate persisted'),
            (err: unknown) => log.error({ err: (err as Error).message }, 'could not persist the certificate'),
          );
      },
      // The admin listener is on the VM's address: a remote /quitquitquit must not stop the VM's proxy.
      onQuit: () => log.warn('ignoring /quitquitquit: stop the agent with systemctl'),
      log: log.child({ scope: 'proxy' }),
      accessLog: log.child({ scope: 'access' }),
    });
  }

  /** startProxy gets the certificate and the first configuration, retrying istiod outages; undefined when aborted. */
  private async startProxy(
    boot: VmBootstrap,
    signal: AbortSignal,
    initialOverride?: WorkloadCertificate,
  ): Promise<Sidecar | undefined> {
    const { notifier, log } = this.opts;
    let failures = 0;
    while (!signal.aborted) {
      const loaded = initialOverride ? { cert: initialOverride } : await this.store.load(this.identity);
      if (!loaded.cert && loaded.reason !== 'none')
        log.warn({ reason: loaded.reason, detail: loaded.detail }, 'persisted certificate not usable');
      const tokenFile = loaded.cert ? undefined : await readToken(boot.tokenFile);
      if (!loaded.cert && !tokenFile)
        throw new MeshError(
          ErrorCode.UNAUTHENTICATED,
          `no usable certificate in ${this.opts.stateDir} (${loaded.reason ?? 'none'}) and no bootstrap token at ${boot.tokenFile}: ` +
            'run `fedmesh vm config` again and install the new istio-token',
        );
      if (tokenFile?.looseMode)
        log.warn(
          { file: boot.tokenFile },
          'the bootstrap token file is readable by everyone; make it 0640 (group fedmesh) or 0600',
        );
      const step = loaded.cert
        ? `renewing the persisted certificate ${loaded.cert.serialNumber} with istiod at ${boot.dialAddress} (no token needed)`
        : `requesting a certificate from istiod at ${boot.dialAddress} with the bootstrap token`;
      log.info({ notAfter: loaded.cert?.notAfter.toISOString() }, step);
      await notifier.status(step);
      const sidecar = this.makeSidecar(boot, loaded.cert, tokenFile?.token);
      try {
        await sidecar.start(signal);
      } catch (err) {
        await sidecar.stop();
        if (isPkiError(err, 'CA_REFUSED') && loaded.cert && !initialOverride) {
          log.warn(
            { serial: loaded.cert.serialNumber },
            'istiod refused to renew the persisted certificate; falling back to the bootstrap token',
          );
          await this.store.clear();
          continue;
        }
        if (isPkiError(err, 'CA_REFUSED'))
          throw new MeshError(
            ErrorCode.CA_DENIED,
            'istiod refused the bootstrap token (expired, or its WorkloadGroup changed): run `fedmesh vm config` again',
            { cause: err },
          );
        const delay = Math.min(30_000, 1_000 * 2 ** failures++) * (0.5 + Math.random() / 2);
        const why = (err as Error).message;
        log.warn({ err: why, retryInMs: Math.round(delay) }, 'could not start the proxy; retrying');
        await notifier.status(
          `istiod at ${boot.dialAddress} not reachable (${why}); retrying in ${Math.ceil(delay / 1000)} s`,
        );
        await sleep(delay, signal);
        continue;
      }
      await notifier.status('certificate in place; waiting for the first configuration from istiod');
      let waited = 0;
      while (!sidecar.ready() && !signal.aborted) {
        await sleep(50, signal);
        waited += 50;
        this.lastAlive = Date.now();
        if (waited % 10_000 === 0) log.info({ waitedMs: waited }, 'still waiting for the first configuration');
      }
      // The inbound listener appears once istiod has registered this VM's WorkloadEntry (a second push): wait for it
      // (bounded: no Service may select the VM yet), so that peers find it listening when they get its endpoint.
      if (boot.env.inboundPorts.length > 0) {
        const deadline = Date.now() + INBOUND_WAIT_MS;
        while (!sidecar.listeners.names().includes('virtualInbound') && Date.now() < deadline && !signal.aborted) {
          await sleep(50, signal);
          this.lastAlive = Date.now();
        }
        if (!sidecar.listeners.names().includes('virtualInbound'))
          log.warn({ waitedMs: INBOUND_WAIT_MS }, 'no inbound listener yet: does a Service select this WorkloadGroup?');
      }
      if (signal.aborted) {
        await sidecar.stop();
        return undefined;
      }
      return sidecar;
    }
    return undefined;
  }

  private async serve(boot: VmBootstrap, signal: AbortSignal): Promise<void> {
    const { notifier, log } = this.opts;
    const env = boot.env;
    const current = (): WorkloadCertificate | undefined => this.sidecar?.certificate();
    let probeLine = env.probe ? 'readiness probe pending' : 'no readiness probe';
    const statusLine = (): string => `serving as ${this.identity} at ${this.address}; ${probeLine}`;
    let reporter: HealthReporter | undefined;
    if (env.probe) {
      const sidecar = this.sidecar;
      reporter = new HealthReporter({
        address: boot.dialAddress,
        serverName: ISTIOD_SERVER_NAME,
        trustBundle: () => boot.rootCertPem + (current()?.rootPem ?? ''),
        certificate: current,
        proxyId: sidecar?.node().id ?? '',
        log: log.child({ scope: 'health' }),
      });
      const prober = new Prober(env.probe, this.address);
      prober.on('change', (r: { healthy: boolean; message: string }) => {
        probeLine = r.healthy ? 'readiness probe passing' : `readiness probe failing: ${r.message}`;
        log.info({ healthy: r.healthy, message: r.message }, 'readiness changed');
        reporter?.report(r.healthy, r.message);
        void notifier.status(statusLine());
      });
      prober.start(signal);
    }
    await notifier.status(statusLine());
    const every = this.opts.superviseMs ?? 2_000;
    let misses = 0;
    try {
      while (!signal.aborted) {
        await sleep(every, signal);
        if (signal.aborted) break;
        if (await adminAnswers(this.address, this.opts.adminPort ?? 15000, 2_000)) {
          this.lastAlive = Date.now();
          misses = 0;
          continue;
        }
        if (++misses < 3) continue;
        log.error({ misses }, 'the proxy stopped answering; rebuilding it');
        await notifier.status('the proxy stopped answering; rebuilding it');
        const cert = current();
        const old = this.sidecar;
        this.sidecar = undefined;
        await old?.stop();
        this.sidecar = await this.startProxy(boot, signal, cert);
        misses = 0;
        await notifier.status(statusLine());
      }
    } finally {
      reporter?.close();
    }
  }
}
