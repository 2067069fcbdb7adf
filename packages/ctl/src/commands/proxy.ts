import fs from 'node:fs';
import type { Command } from 'commander';
import { parseDurationMs } from '@fedmesh/api';
import { createAccessLogger, DEFAULT_DRAIN_DURATION_MS, Sidecar } from '@fedmesh/proxy';
import { createLogger } from '../logging.js';
import { runUntilSignal } from '../signals.js';

/**
 * registerProxy adds `fedmesh proxy`: run one sidecar in the foreground. SIGTERM, SIGINT and admin
 * `POST /quitquitquit` drain it (listeners stop accepting, in-flight requests get up to `--drain-duration`),
 * then it exits 0.
 */
export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run a sidecar proxy for one workload (outbound 15001, inbound 15006, admin 15000)')
    .requiredOption('--ip <ip>', "the workload's address; listeners bind here")
    .requiredOption('--pod <name>', 'pod name')
    .requiredOption('--namespace <ns>', 'namespace')
    .requiredOption('--service-account <sa>', 'service account')
    .requiredOption('--discovery <host:port>', "istiod's TLS xDS and CA address (15012)")
    .requiredOption('--root-cert <file>', 'mesh root certificate (PEM) to trust istiod with')
    .option('--token-file <file>', 'bootstrap token file for the first certificate')
    .option('--workload <name>', 'workload (Deployment) name')
    .option('--labels <json>', 'pod labels as a JSON object', '{}')
    .option('--cluster-id <id>', 'cluster name', 'Kubernetes')
    .option('--admin-port <port>', 'admin port', '15000')
    .option('--mtls-port <port>', "peers' mTLS port in explicit mode", '15006')
    .option(
      '--interception-mode <mode>',
      'NONE (explicit: apps dial 15001) or REDIRECT (iptables capture; run as uid 1337, see fedmesh iptables)',
      'NONE',
    )
    .option('--cert-ttl <seconds>', 'requested certificate lifetime (0: CA default)', '0')
    .option(
      '--drain-duration <duration>',
      "how long a drain waits for in-flight requests (Istio's terminationDrainDuration)",
      `${DEFAULT_DRAIN_DURATION_MS / 1000}s`,
    )
    .action(
      async (o: {
        ip: string;
        pod: string;
        namespace: string;
        serviceAccount: string;
        discovery: string;
        rootCert: string;
        tokenFile?: string;
        workload?: string;
        labels: string;
        clusterId: string;
        adminPort: string;
        mtlsPort: string;
        interceptionMode: string;
        certTtl: string;
        drainDuration: string;
      }) => {
        const pod = `${o.pod}.${o.namespace}`;
        const log = createLogger('proxy').child({ pod });
        const drainDurationMs = parseDurationMs(o.drainDuration);
        const token = o.tokenFile ? fs.readFileSync(o.tokenFile, 'utf8').trim() : undefined;
        if (o.interceptionMode !== 'NONE' && o.interceptionMode !== 'REDIRECT')
          throw new Error(`--interception-mode: want NONE or REDIRECT, got ${o.interceptionMode}`);
        const sidecar = new Sidecar({
          ip: o.ip,
          podName: o.pod,
          namespace: o.namespace,
          serviceAccount: o.serviceAccount,
          labels: JSON.parse(o.labels) as Record<string, string>,
          workloadName: o.workload ?? o.pod,
          clusterId: o.clusterId,
          discoveryAddress: o.discovery,
          rootCertPem: fs.readFileSync(o.rootCert, 'utf8'),
          token,
          certTtlSeconds: Number(o.certTtl),
          adminPort: Number(o.adminPort),
          mtlsPort: Number(o.mtlsPort),
          interceptionMode: o.interceptionMode,
          log,
          // Its own buffered, unredacted logger: a line per request is the proxy's hottest write.
          accessLog: createAccessLogger({
            level: log.level,
            base: { component: 'proxy', pid: process.pid, pod, scope: 'access' },
          }),
          drainDurationMs,
          onQuit: () => process.kill(process.pid, 'SIGTERM'),
        });
        await runUntilSignal(
          log,
          () => sidecar.start(),
          async () => {
            await sidecar.shutdown(drainDurationMs);
          },
          drainDurationMs + 5_000,
        );
      },
    );
}
