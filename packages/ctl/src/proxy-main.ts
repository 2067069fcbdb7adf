#!/usr/bin/env node
/**
 * The sidecar's own entry point: `node proxy-main.js proxy --ip …` takes exactly the arguments of `fedmesh proxy`
 * but loads only the proxy's modules. The full `fedmesh` entry imports every command, and with them the control
 * plane and `@kubernetes/client-node`: about 50 MB more resident memory for the proxy's whole life.
 */
import { Command } from 'commander';
import { registerProxy } from './commands/proxy.js';

const program = new Command('fedmesh').description('fedmesh sidecar proxy').showHelpAfterError();
registerProxy(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`fedmesh: ${(err as Error).message}`);
  process.exit(1);
});
