#!/usr/bin/env node
import { Command } from 'commander';
import { registerCa } from './commands/ca.js';
import { registerDemo } from './commands/demo.js';
import { registerEcho } from './commands/echo.js';
import { registerIstiod } from './commands/istiod.js';
import { registerMesh } from './commands/mesh.js';
import { registerProxy } from './commands/proxy.js';

const program = new Command('fedmesh')
  .description('fedmesh: a multi-cluster, VM-capable service mesh')
  .showHelpAfterError();
registerMesh(program);
registerDemo(program);
registerIstiod(program);
registerProxy(program);
registerEcho(program);
registerCa(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`fedmesh: ${(err as Error).message}`);
  process.exit(1);
});
