import type { Command } from 'commander';
import { formatReport, runDemo } from '../demo.js';

/** registerDemo adds `fedmesh demo`: Bookinfo on a local mesh, 90:10 routing, mTLS identities, header routing. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description("run Istio's Bookinfo on a local mesh and report routing and mTLS (exits non-zero on failure)")
    .option('--json', 'print the report as JSON')
    .option('--requests <n>', 'requests to send', '400')
    .action(async (o: { json?: boolean; requests: string }) => {
      const report = await runDemo({ requests: Number(o.requests), log: (l) => console.error(`… ${l}`) });
      console.log(o.json ? JSON.stringify(report, null, 2) : formatReport(report));
      if (!report.ok) process.exitCode = 1;
    });
}
