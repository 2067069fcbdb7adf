import fs from 'node:fs';
import type { Command } from 'commander';
import { parseDurationMs } from '@fedmesh/api';
import { DEFAULT_DRAIN_DURATION_MS, Gateway, IngressGateway } from '@fedmesh/proxy';
import { createLogger } from '../logging.js';
import { runUntilSignal } from '../signals.js';

/** GATEWAY_DEFAULT_LABELS are the labels of Istio's east-west gateway pods, which `expose-services.yaml` selects. */
export const GATEWAY_DEFAULT_LABELS = { istio: 'eastwestgateway', app: 'istio-eastwestgateway' };

/**
 * INGRESS_DEFAULT_LABELS are the labels of Istio's default ingress gateway pods (`istio: ingressgateway`), which
 * Istio's samples select (`bookinfo-gateway.yaml`).
 */
export const INGRESS_DEFAULT_LABELS = { istio: 'ingressgateway', app: 'istio-ingressgateway' };

/** GatewayMode is what `fedmesh gateway` serves: Istio's east-west gateway (15443) or an ingress gateway. */
export type GatewayMode = 'east-west' | 'ingress';

/** GatewayFlags are the parsed flags of `fedmesh gateway`. */
interface GatewayFlags {
  mode: string;
  ip: string;
  discovery: string;
  rootCert: string;
  tokenFile?: string;
  pod?: string;
  namespace: string;
  serviceAccount?: string;
  labels?: string;
  network: string;
  clusterId: string;
  adminPort: string;
  mtlsPort: string;
  drainDuration: string;
}

function parseLabels(text: string): Record<string, string> {
  let labels: unknown;
  try {
    labels = JSON.parse(text);
  } catch (err) {
    throw new Error(`--labels: not JSON: ${(err as Error).message}`);
  }
  if (!labels || typeof labels !== 'object' || Object.values(labels).some((v) => typeof v !== 'string'))
    throw new Error('--labels: want a JSON object of strings');
  return labels as Record<string, string>;
}

function parsePort(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535)
    throw new Error(`${flag}: want a port number, got ${JSON.stringify(v)}`);
  return Number(v);
}

/**
 * registerGateway adds `fedmesh gateway`: run the proxy in gateway (router) mode in the foreground until
 * SIGTERM/SIGINT. `--mode east-west` (default) serves whatever AUTO_PASSTHROUGH Gateway selects its labels
 * (Istio's `multicluster/expose-services.yaml`: 15443, SNI-routed, TLS passed through); `--mode ingress` serves the
 * HTTP and HTTPS (SIMPLE, MUTUAL with `credentialName`) servers of the Gateways selecting it, routed by the
 * VirtualServices bound to them (Istio's ingress gateway, docs/adr/0018). Admin on `--admin-port`.
 */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description('run a gateway: east-west (TLS AUTO_PASSTHROUGH by SNI on 15443) or ingress (HTTP/HTTPS servers)')
    .requiredOption('--ip <ip>', "the gateway's address; listeners bind here")
    .requiredOption('--discovery <host:port>', "istiod's TLS xDS and CA address (15012)")
    .requiredOption('--root-cert <file>', 'mesh root certificate (PEM) to trust istiod with')
    .option('--mode <mode>', 'east-west or ingress', 'east-west')
    .option('--token-file <file>', 'bootstrap token file for the certificate used towards istiod')
    .option('--pod <name>', 'pod name (default istio-eastwestgateway-0 or istio-ingressgateway-0)')
    .option('--namespace <ns>', 'namespace', 'istio-system')
    .option(
      '--service-account <sa>',
      'service account (default istio-eastwestgateway or istio-ingressgateway-service-account)',
    )
    .option('--labels <json>', "pod labels as a JSON object (default: Istio's labels for the mode)")
    .option('--network <net>', 'the network this gateway fronts', '')
    .option('--cluster-id <id>', 'cluster name', 'Kubernetes')
    .option('--admin-port <port>', 'admin port', '15000')
    .option('--mtls-port <port>', "sidecars' mTLS port in explicit mode (ingress)", '15006')
    .option(
      '--drain-duration <duration>',
      'how long SIGTERM waits for in-flight requests (ingress)',
      `${DEFAULT_DRAIN_DURATION_MS / 1000}s`,
    )
    .action(async (o: GatewayFlags) => {
      if (o.mode !== 'east-west' && o.mode !== 'ingress')
        throw new Error(`--mode: want east-west or ingress, got ${JSON.stringify(o.mode)}`);
      const ingress = o.mode === 'ingress';
      const pod = o.pod ?? (ingress ? 'istio-ingressgateway-0' : 'istio-eastwestgateway-0');
      const log = createLogger('gateway').child({ pod: `${pod}.${o.namespace}` });
      const common = {
        ip: o.ip,
        podName: pod,
        namespace: o.namespace,
        serviceAccount:
          o.serviceAccount ?? (ingress ? 'istio-ingressgateway-service-account' : 'istio-eastwestgateway'),
        labels:
          o.labels !== undefined ? parseLabels(o.labels) : ingress ? INGRESS_DEFAULT_LABELS : GATEWAY_DEFAULT_LABELS,
        workloadName: pod.replace(/-\d+$/, ''),
        clusterId: o.clusterId,
        network: o.network,
        discoveryAddress: o.discovery,
        rootCertPem: fs.readFileSync(o.rootCert, 'utf8'),
        token: o.tokenFile ? fs.readFileSync(o.tokenFile, 'utf8').trim() : undefined,
        adminPort: parsePort('--admin-port', o.adminPort),
        log,
      };
      if (!ingress) {
        const gateway = new Gateway(common);
        return runUntilSignal(
          log,
          () => gateway.start(),
          () => gateway.stop(),
        );
      }
      const drainMs = parseDurationMs(o.drainDuration);
      const gateway = new IngressGateway({
        ...common,
        mtlsPort: parsePort('--mtls-port', o.mtlsPort),
        accessLog: log.child({ scope: 'access' }),
      });
      await runUntilSignal(
        log,
        () => gateway.start(),
        async () => {
          await gateway.shutdown(drainMs);
        },
        drainMs + 5_000,
      );
    });
}
