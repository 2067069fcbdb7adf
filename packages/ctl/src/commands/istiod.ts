import { Option, type Command } from 'commander';
import { Istiod } from '@fedmesh/istiod';
import { createLogger } from '../logging.js';
import { runUntilSignal } from '../signals.js';

/** registerIstiod adds `fedmesh istiod`: run one control plane in the foreground until SIGTERM/SIGINT. */
export function registerIstiod(program: Command): void {
  program
    .command('istiod')
    .description('run the control plane (xDS on 15010/15012, CA on 15012, metrics and admin on 15014)')
    .requiredOption('--state-dir <dir>', 'state directory (self-signed root, admin token)')
    .option('--host <ip>', 'address to bind', '127.0.0.1')
    .option('--ca-dir <dir>', 'Istio plug-in CA directory (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem)')
    .option('-f, --file <files...>', 'manifest files to load and watch', [])
    .option(
      '--kubeconfig <file>',
      'mirror Services, Pods and Istio config from this Kubernetes API server; accept ServiceAccount tokens',
    )
    .option(
      '--mesh-config <file>',
      "Istio MeshConfig YAML file (the istio ConfigMap's mesh key), watched; without it, --kubeconfig reads the istio-system/istio ConfigMap",
    )
    .option('--xds-plain-port <port>', 'plaintext xDS port', '15010')
    .option('--xds-tls-port <port>', 'TLS xDS and CA port', '15012')
    .option('--monitoring-port <port>', 'metrics and admin port', '15014')
    .option('--trust-domain <td>', 'trust domain (a mesh config trustDomain wins)', 'cluster.local')
    .option('--cluster-id <id>', 'cluster name', 'Kubernetes')
    .option('--network <net>', 'network name', '')
    .addOption(
      new Option('--path-normalization <level>', "Istio's meshConfig.pathNormalization for inbound HTTP")
        .choices(['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'])
        .default('BASE'),
    )
    .option('--service-cidr <cidr>', 'IPv4 prefix for the virtual IPs of Services without spec.clusterIP')
    .option('--federation-mesh <mesh>', 'join this federated mesh (needs --etcd and --nats)')
    .option('--etcd <urls...>', 'etcd client URLs of the federation')
    .option('--nats <urls...>', 'NATS URLs of the federation')
    .option(
      '--gateway-address <host:port>',
      "this network's east-west gateway (fedmesh gateway, 15443), published so that other networks reach us through it",
    )
    .action(
      async (o: {
        stateDir: string;
        host: string;
        caDir?: string;
        file: string[];
        kubeconfig?: string;
        meshConfig?: string;
        xdsPlainPort: string;
        xdsTlsPort: string;
        monitoringPort: string;
        trustDomain: string;
        clusterId: string;
        network: string;
        pathNormalization: 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';
        serviceCidr?: string;
        federationMesh?: string;
        etcd?: string[];
        nats?: string[];
        gatewayAddress?: string;
      }) => {
        const log = createLogger('istiod');
        const istiod = new Istiod({
          host: o.host,
          stateDir: o.stateDir,
          ...(o.caDir !== undefined ? { caDir: o.caDir } : {}),
          configFiles: o.file,
          ...(o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {}),
          ...(o.meshConfig !== undefined ? { meshConfigFile: o.meshConfig } : {}),
          xdsPlainPort: Number(o.xdsPlainPort),
          xdsTlsPort: Number(o.xdsTlsPort),
          monitoringPort: Number(o.monitoringPort),
          ...(o.serviceCidr !== undefined ? { serviceCidr: o.serviceCidr } : {}),
          mesh: {
            trustDomain: o.trustDomain,
            clusterId: o.clusterId,
            network: o.network,
            pathNormalization: o.pathNormalization,
          },
          ...(o.federationMesh !== undefined
            ? {
                federation: {
                  mesh: o.federationMesh,
                  cluster: o.clusterId,
                  network: o.network,
                  etcd: o.etcd ?? [],
                  nats: o.nats ?? [],
                  ...(o.gatewayAddress !== undefined ? { gatewayAddress: o.gatewayAddress } : {}),
                },
              }
            : {}),
          log,
        });
        await runUntilSignal(
          log,
          async () => {
            await istiod.start();
          },
          () => istiod.stop(),
        );
      },
    );
}
