/**
 * A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver v1.20.2 and kube-controller-manager
 * (Deployments → ReplicaSets → Pods, ServiceAccount tokens) on loopback ports, in a temp dir. There is no scheduler
 * and no kubelet: tests bind pods to a fake node and set their status themselves.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { kubeRequestJson, loadKubeConfig } from '@fedmesh/istiod';

/** KUBE_BIN is where the kube binaries are: `$FEDMESH_KUBE_BIN`, else the cache `.ci/run` builds. */
export const KUBE_BIN = process.env.FEDMESH_KUBE_BIN ?? '/var/cache/fedmesh/kube-1.20/bin';
/** KUBE_APISERVER is the kube-apiserver binary the tests run. */
export const KUBE_APISERVER = path.join(KUBE_BIN, 'kube-apiserver');
/** SA_ISSUER is the ServiceAccount token issuer of the test cluster (a default kubeadm cluster's). */
export const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** KubeCluster runs etcd, kube-apiserver and kube-controller-manager until {@link KubeCluster.stop}. */
export class KubeCluster {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedmesh-kube-'));
  /** adminKubeconfig is a kubeconfig file for the cluster admin (static token, group system:masters). */
  readonly adminKubeconfig = path.join(this.dir, 'admin.kubeconfig');
  /** caFile is the API server's self-signed serving certificate (its SANs include 127.0.0.1). */
  readonly caFile = path.join(this.dir, 'certs', 'apiserver.crt');
  url = '';
  admin!: ReturnType<typeof loadKubeConfig>;
  private readonly procs: ChildProcess[] = [];
  private apiserver: { proc: ChildProcess; args: string[] } | undefined;

  /** start launches the three processes and waits until the API server's /readyz passes (bounded). */
  async start(): Promise<void> {
    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saKey = path.join(this.dir, 'sa.key');
    fs.writeFileSync(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(path.join(this.dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const adminToken = randomBytes(24).toString('hex');
    fs.writeFileSync(path.join(this.dir, 'tokens.csv'), `${adminToken},admin,admin,"system:masters"\n`, {
      mode: 0o600,
    });
    fs.mkdirSync(path.join(this.dir, 'certs'));

    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    this.run('etcd', [
      ...['--data-dir', path.join(this.dir, 'etcd'), '--name', 'default'],
      ...['--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl],
      ...['--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl],
      ...['--initial-cluster', `default=${peerUrl}`],
    ]);
    this.startApiServer([
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      '--insecure-port=0',
      `--cert-dir=${path.join(this.dir, 'certs')}`,
      `--service-account-issuer=${SA_ISSUER}`,
      `--service-account-key-file=${path.join(this.dir, 'sa.pub')}`,
      `--service-account-signing-key-file=${saKey}`,
      `--api-audiences=${SA_ISSUER}`,
      '--authorization-mode=RBAC',
      `--token-auth-file=${path.join(this.dir, 'tokens.csv')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--request-timeout=60s',
    ]);
    this.url = `https://127.0.0.1:${apiPort}`;
    fs.writeFileSync(this.adminKubeconfig, this.kubeconfigFor(adminToken), { mode: 0o600 });
    await waitFor(() => fs.promises.access(this.caFile).then(() => true), 60_000, 'the API server certificate');
    this.admin = loadKubeConfig(this.adminKubeconfig);
    await this.apiServerReady();
    this.run(path.join(KUBE_BIN, 'kube-controller-manager'), [
      `--kubeconfig=${this.adminKubeconfig}`,
      '--controllers=deployment,replicaset,serviceaccount,serviceaccount-token',
      `--service-account-private-key-file=${saKey}`,
      `--root-ca-file=${this.caFile}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      '--secure-port=0',
      '--port=0',
    ]);
  }

  /** stopApiServer stops kube-apiserver (SIGTERM, bounded) and leaves etcd and the controller-manager running. */
  async stopApiServer(): Promise<void> {
    const p = this.apiserver?.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** restartApiServer starts kube-apiserver again with the same flags and waits for /readyz. */
  async restartApiServer(): Promise<void> {
    if (!this.apiserver) throw new Error('kube-apiserver was never started');
    this.startApiServer(this.apiserver.args);
    await this.apiServerReady();
  }

  private startApiServer(args: string[]): void {
    this.apiserver = { proc: this.run(KUBE_APISERVER, args), args };
  }

  private async apiServerReady(): Promise<void> {
    await waitFor(
      async () => (await kubeRequestJson(this.admin, this.req('GET', '/readyz'))).status === 200,
      120_000,
      'kube-apiserver /readyz',
    );
  }

  /** kubeconfigFor returns a kubeconfig (text) for a bearer token, trusting the API server's certificate. */
  kubeconfigFor(token: string): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- {name: test, cluster: {server: "${this.url}", certificate-authority: "${this.caFile}"}}`,
      'users:',
      `- {name: user, user: {token: "${token}"}}`,
      'contexts:',
      '- {name: test, context: {cluster: test, user: user}}',
      'current-context: test',
      '',
    ].join('\n');
  }

  /** kubectl runs kubectl as the admin; resolves stdout, rejects with stderr on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        'kubectl',
        ['--kubeconfig', this.adminKubeconfig, ...args],
        { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`kubectl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
      );
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  /** api sends one request to the API server as the admin and returns the JSON body; throws on HTTP ≥ 300. */
  async api(method: 'GET' | 'POST' | 'PATCH', apiPath: string, body?: unknown): Promise<unknown> {
    const res = await kubeRequestJson(this.admin, {
      ...this.req(method, apiPath),
      ...(body === undefined ? {} : { body }),
      ...(method === 'PATCH' ? { contentType: 'application/merge-patch+json' } : {}),
    });
    if (res.status >= 300) throw new Error(`${method} ${apiPath}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** logTail returns the last `bytes` of a process's log (`etcd`, `kube-apiserver`, `kube-controller-manager`). */
  logTail(name: string, bytes = 3000): string {
    try {
      const text = fs.readFileSync(path.join(this.dir, `${name}.log`), 'utf8');
      return text.slice(-bytes);
    } catch {
      return '';
    }
  }

  /** stop terminates every process (SIGTERM, then SIGKILL after 5 s) and removes the temp dir. */
  async stop(): Promise<void> {
    for (const p of [...this.procs].reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise<void>((r) => p.once('exit', () => r()));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private req(method: 'GET' | 'POST' | 'PATCH', p: string) {
    return { method, path: p, timeoutMs: 30_000, maxBytes: 16 * 1024 * 1024 };
  }

  private run(cmd: string, args: string[]): ChildProcess {
    const log = fs.openSync(path.join(this.dir, `${path.basename(cmd)}.log`), 'a');
    const child = spawn(cmd, args, { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    child.on('error', () => undefined);
    this.procs.push(child);
    return child;
  }
}
