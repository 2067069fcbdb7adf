import type { Command } from 'commander';
import { failoverDrill, formatDrillReport } from '../drill.js';

/** registerFailover adds `fedmesh failover drill`. */
export function registerFailover(program: Command): void {
  const failover = program.command('failover').description('exercise failover across clusters');
  failover
    .command('drill')
    .description("take a cluster's endpoints of a service away under load; report time to failover and requests lost")
    .requiredOption('--service <name>', 'service name, e.g. reviews')
    .requiredOption('--cluster <name>', 'the cluster whose endpoints are taken away')
    .requiredOption('--cluster-state-dir <dir>', "that cluster's local mesh state dir")
    .requiredOption('--from-state-dir <dir>', 'the local mesh whose sleep client sends the load')
    .option('--namespace <ns>', 'namespace', 'default')
    .option('--port <port>', 'service port')
    .option('--rps <n>', 'requests per second', '40')
    .option('--duration <ms>', 'run length in ms', '8000')
    .option('--no-restore', 'leave the pods down afterwards')
    .option('--json', 'print JSON')
    .action(
      async (o: {
        service: string;
        cluster: string;
        clusterStateDir: string;
        fromStateDir: string;
        namespace: string;
        port?: string;
        rps: string;
        duration: string;
        restore: boolean;
        json?: boolean;
      }) => {
        const r = await failoverDrill({
          service: o.service,
          namespace: o.namespace,
          ...(o.port !== undefined ? { port: Number(o.port) } : {}),
          cluster: o.cluster,
          clusterStateDir: o.clusterStateDir,
          fromStateDir: o.fromStateDir,
          rps: Number(o.rps),
          durationMs: Number(o.duration),
          restore: o.restore,
        });
        console.log(o.json ? JSON.stringify(r, null, 2) : formatDrillReport(r));
        if (r.failed > 0) process.exitCode = 1;
      },
    );
}
