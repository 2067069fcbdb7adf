import fs from 'node:fs';
import type { Command } from 'commander';
import { Gateway } from '@fedmesh/proxy';
import { createLogger } from '../logging.js';
import { runUntilSignal } from '../signals.js';

/** GATEWAY_DEFAULT_LABELS are the labels of Istio's east-west gateway pods, which `expose-services.yaml` selects. */
export const GATEWAY_DEFAULT_LABELS = { istio: 'eastwestgateway', app: 'istio-eastwestgateway' };

/**
 * registerGateway adds `fedmesh gateway`: run the proxy in gateway (router) mode in the foreground until
 * SIGTERM/SIGINT. It serves whatever AUTO_PASSTHROUGH Gateway selects its labels (Istio's
 * `multicluster/expose-services.yaml`: 15443, SNI-routed, TLS passed through) plus admin on `--admin-port`.
 */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description('run an east-west gateway: TLS AUTO_PASSTHROUGH by SNI on 15443 (admin 15000)')
    .requiredOption('--ip <ip>', "the gateway's address; listeners bind here")
    .requiredOption('--discovery <host:port>', "istiod's TLS xDS and CA address (15012)")
    .requiredOption('--root-cert <file>', 'mesh root certificate (PEM) to trust istiod with')
    .option('--token-file <file>', 'bootstrap token file for the certificate used towards istiod')
    .option('--pod <name>', 'pod name', 'istio-eastwestgateway-0')
    .option('--namespace <ns>', 'namespace', 'istio-system')
    .option('--service-account <sa>', 'service account', 'istio-eastwestgateway')
    .option('--labels <json>', 'pod labels as a JSON object', JSON.stringify(GATEWAY_DEFAULT_LABELS))
    .option('--network <net>', 'the network this gateway fronts', '')
    .option('--cluster-id <id>', 'cluster name', 'Kubernetes')
    .option('--admin-port <port>', 'admin port', '15000')
    .action(
      async (o: {
        ip: string;
        discovery: string;
        rootCert: string;
        tokenFile?: string;
        pod: string;
        namespace: string;
        serviceAccount: string;
        labels: string;
        network: string;
        clusterId: string;
        adminPort: string;
      }) => {
        const log = createLogger('gateway').child({ pod: `${o.pod}.${o.namespace}` });
        let labels: unknown;
        try {
          labels = JSON.parse(o.labels);
        } catch (err) {
          throw new Error(`--labels: not JSON: ${(err as Error).message}`);
        }
        if (!labels || typeof labels !== 'object' || Object.values(labels).some((v) => typeof v !== 'string'))
          throw new Error('--labels: want a JSON object of strings');
        if (!/^\d+$/.test(o.adminPort) || Number(o.adminPort) > 65535)
          throw new Error(`--admin-port: want a port number, got ${JSON.stringify(o.adminPort)}`);
        const gateway = new Gateway({
          ip: o.ip,
          podName: o.pod,
          namespace: o.namespace,
          serviceAccount: o.serviceAccount,
          labels: labels as Record<string, string>,
          workloadName: o.pod.replace(/-\d+$/, ''),
          clusterId: o.clusterId,
          network: o.network,
          discoveryAddress: o.discovery,
          rootCertPem: fs.readFileSync(o.rootCert, 'utf8'),
          token: o.tokenFile ? fs.readFileSync(o.tokenFile, 'utf8').trim() : undefined,
          adminPort: Number(o.adminPort),
          log,
        });
        await runUntilSignal(
          log,
          () => gateway.start(),
          () => gateway.stop(),
        );
      },
    );
}
