/**
 * One cluster's istiod for the netns suite, run inside the cluster's namespace with
 * `ip netns exec <ns> node --import tsx istiod-runner.ts <config.json>`: istiod on the namespace's veth address
 * (15010, 15012, 15014), joined to the federation through etcd and NATS in the `infra` namespace, with the
 * cluster's network and east-west gateway address. It writes the gateway's bootstrap token and the mesh root next
 * to its config, prints one `{"ready": …}` line, and stops on SIGTERM (SIGKILL is the "control plane dies" case).
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Istiod } from '@fedmesh/istiod';

/** IstiodRunnerConfig is the JSON file the runner reads. */
export interface IstiodRunnerConfig {
  host: string;
  dir: string;
  caDir: string;
  files: string[];
  mesh: string;
  cluster: string;
  network: string;
  etcd: string[];
  nats: string[];
  gatewayAddress: string;
  publishTrust: boolean;
}

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: istiod-runner.ts <config.json>');
  const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as IstiodRunnerConfig;
  const log = pino(
    { level: process.env.FEDMESH_TEST_LOG_LEVEL ?? 'info', base: { cluster: cfg.cluster } },
    pino.destination({ dest: path.join(cfg.dir, 'istiod.log'), sync: false }),
  );
  const istiod = new Istiod({
    host: cfg.host,
    xdsPlainPort: 15010,
    xdsTlsPort: 15012,
    monitoringPort: 15014,
    stateDir: path.join(cfg.dir, 'istiod'),
    caDir: cfg.caDir,
    configFiles: cfg.files,
    mesh: { clusterId: cfg.cluster, network: cfg.network },
    federation: {
      mesh: cfg.mesh,
      cluster: cfg.cluster,
      network: cfg.network,
      etcd: cfg.etcd,
      nats: cfg.nats,
      gatewayAddress: cfg.gatewayAddress,
      publishTrust: cfg.publishTrust,
    },
    log,
  });
  await istiod.start();
  const token = istiod.tokens.mint({ namespace: 'istio-system', serviceAccount: 'istio-eastwestgateway' });
  fs.writeFileSync(path.join(cfg.dir, 'gateway-token'), token, { mode: 0o600 });
  fs.writeFileSync(path.join(cfg.dir, 'root-cert.pem'), istiod.ca.rootCertsPem.join(''));
  process.stdout.write(`${JSON.stringify({ ready: istiod.addresses })}\n`);
  process.once('SIGTERM', () => {
    void istiod.stop().finally(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`istiod-runner: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
