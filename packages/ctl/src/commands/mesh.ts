import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { applyText, meshDown, meshUp, readState } from '../local-mesh.js';

/** DEFAULT_STATE_DIR is where `up`, `apply` and `down` keep a local mesh's state when no `--state-dir` is given. */
export const DEFAULT_STATE_DIR = '.fedmesh';

/** registerMesh adds `fedmesh up`, `fedmesh apply` and `fedmesh down`: run, change and stop a local mesh. */
export function registerMesh(program: Command): void {
  program
    .command('up')
    .description('run a local mesh from Kubernetes and Istio manifests (no Kubernetes needed)')
    .requiredOption('-f, --file <files...>', 'manifest files')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .option('--subnet <n>', 'use 127.0.<n>.0/24 for the mesh (default: a free block)')
    .option('--ca-dir <dir>', 'Istio plug-in CA directory (default: a self-signed root in the state dir)')
    .action(async (o: { file: string[]; stateDir: string; subnet?: string; caDir?: string }) => {
      const state = await meshUp({
        files: o.file,
        stateDir: o.stateDir,
        ...(o.subnet !== undefined ? { subnet: Number(o.subnet) } : {}),
        ...(o.caDir !== undefined ? { caDir: o.caDir } : {}),
        log: (l) => console.error(l),
      });
      console.log(`mesh up: istiod ${state.istiod.xdsTls}, ${state.pods.length} pods`);
      for (const p of state.pods) console.log(`  ${p.name.padEnd(22)} ${p.address.padEnd(14)} ${p.spiffeId}`);
      for (const g of state.gateways ?? [])
        console.log(`  ${g.name.padEnd(22)} ${g.address.padEnd(14)} ${g.spiffeId} (${g.mode} gateway)`);
      console.log(
        `sleep outbound proxy: http://${state.sleep.outbound}  (e.g. curl -x http://${state.sleep.outbound} http://reviews:9080/)`,
      );
      console.log(`state: ${path.join(state.stateDir, 'state.json')}`);
    });

  program
    .command('apply')
    .description('apply manifests to a running local mesh; invalid documents are refused with their field path')
    .requiredOption('-f, --file <files...>', 'manifest files')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .action(async (o: { file: string[]; stateDir: string }) => {
      const state = readState(o.stateDir);
      let failed = false;
      for (const f of o.file) {
        const res = await applyText(state, fs.readFileSync(f, 'utf8'), path.basename(f));
        for (const k of res.applied) console.log(`${k} applied`);
        for (const w of res.warnings) console.error(`warning: ${w}`);
        for (const e of res.errors) console.error(`error: ${e.text}`);
        if (res.errors.length > 0) failed = true;
      }
      if (failed) process.exitCode = 1;
    });

  program
    .command('down')
    .description('stop a local mesh and every process it started')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .action(async (o: { stateDir: string }) => {
      const pids = await meshDown(o.stateDir);
      console.log(`mesh down: ${pids.length} processes stopped`);
    });
}
