#!/usr/bin/env node
import { Command } from 'commander';
import { registerCa } from './commands/ca.js';
import { registerCaRotation } from './commands/ca-rotate.js';
import { registerCluster } from './commands/cluster.js';
import { registerFailover } from './commands/failover.js';
import { registerAnalyze } from './commands/analyze.js';
import { registerDemo } from './commands/demo.js';
import { registerDiagnostics } from './commands/diagnostics.js';
import { registerEcho } from './commands/echo.js';
import { registerGateway } from './commands/gateway.js';
import { registerIptables } from './commands/iptables.js';
import { registerIstiod } from './commands/istiod.js';
import { registerMesh } from './commands/mesh.js';
import { registerProxy } from './commands/proxy.js';
import { registerVm } from './commands/vm.js';

const program = new Command('fedmesh')
  .description('fedmesh: a multi-cluster, VM-capable service mesh')
  .showHelpAfterError();
registerMesh(program);
registerDemo(program);
registerAnalyze(program);
registerDiagnostics(program);
registerIstiod(program);
registerProxy(program);
registerIptables(program);
registerVm(program);
registerGateway(program);
registerEcho(program);
registerCa(program);
registerCaRotation(program);
registerCluster(program);
registerFailover(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  console.error(`fedmesh: ${(err as Error).message}`);
  process.exit(1);
});
