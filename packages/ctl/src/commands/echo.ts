import type { Command } from 'commander';
import { createEchoServer } from '../echo-app.js';
import { createLogger } from '../logging.js';
import { runUntilSignal } from '../signals.js';

/** registerEcho adds `fedmesh echo`: the echo app that answers every request with its identity as JSON. */
export function registerEcho(program: Command): void {
  program
    .command('echo')
    .description('run the echo app: answers {service, version, pod, namespace, serviceAccount, callerPrincipal, …}')
    .option('--host <ip>', 'address to bind', '127.0.0.1')
    .option('--port <ports...>', 'ports to listen on', ['8080'])
    .option('--service <name>', 'service (app) name', 'echo')
    .option('--version <v>', 'version', 'v1')
    .option('--pod <name>', 'pod name', 'echo')
    .option('--namespace <ns>', 'namespace', 'default')
    .option('--service-account <sa>', 'service account', 'default')
    .option('--cluster <name>', 'cluster the pod runs in', 'Kubernetes')
    .action(
      async (o: {
        host: string;
        port: string[];
        service: string;
        version: string;
        pod: string;
        namespace: string;
        serviceAccount: string;
        cluster: string;
      }) => {
        const log = createLogger('echo');
        const servers = o.port.map(() =>
          createEchoServer({
            service: o.service,
            version: o.version,
            pod: o.pod,
            namespace: o.namespace,
            serviceAccount: o.serviceAccount,
            cluster: o.cluster,
          }),
        );
        await runUntilSignal(
          log,
          async () => {
            await Promise.all(
              servers.map(
                (s, i) =>
                  new Promise<void>((resolve, reject) => {
                    s.once('error', reject);
                    s.listen(Number(o.port[i]), o.host, () => resolve());
                  }),
              ),
            );
            log.info({ host: o.host, ports: o.port }, 'echo listening');
          },
          async () => {
            await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
          },
        );
      },
    );
}
