import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { analyze, formatAnalysisMessage } from '@fedmesh/istiod';

/** ANALYZE_ERROR_EXIT is the exit code when analysis finds errors (istioctl uses 79 for "analysis found errors"). */
export const ANALYZE_ERROR_EXIT = 79;

/** registerAnalyze adds `fedmesh analyze -f FILE…`: Istio's analyzers with Istio's message codes and levels. */
export function registerAnalyze(program: Command): void {
  program
    .command('analyze')
    .description(
      'analyze Istio and Kubernetes manifests and report problems with Istio message codes (IST0101, IST0106, …)',
    )
    .requiredOption('-f, --file <files...>', 'manifest files or directories')
    .option('-o, --output <format>', 'log or json', 'log')
    .action((o: { file: string[]; output: string }) => {
      const files = o.file.flatMap((f) =>
        fs.statSync(f).isDirectory()
          ? fs
              .readdirSync(f)
              .filter((n) => /\.ya?ml$/.test(n))
              .map((n) => path.join(f, n))
          : [f],
      );
      const messages = analyze(files.map((f) => ({ file: path.basename(f), text: fs.readFileSync(f, 'utf8') })));
      if (o.output === 'json') console.log(JSON.stringify(messages, null, 2));
      else if (messages.length === 0) console.log('✔ No validation issues found when analyzing the given files.');
      else for (const m of messages) console.log(formatAnalysisMessage(m));
      if (messages.some((m) => m.level === 'Error')) process.exitCode = ANALYZE_ERROR_EXIT;
    });
}
