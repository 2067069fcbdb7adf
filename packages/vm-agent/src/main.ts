#!/usr/bin/env node
/**
 * `fedmesh-vm-agent`: the VM agent's process entry. Reads its settings (features.ts, flags), makes the one root
 * logger, and runs {@link VmAgent} until SIGTERM or SIGINT. Exit status: 0 after a clean stop, 1 when the agent cannot
 * work (bad onboarding files, no certificate and no token, refused token), 2 for bad command-line flags.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { VmAgent } from './agent.js';
import { readBootstrap } from './bootstrap.js';
import { readFeatures } from './features.js';
import { SystemdNotifier } from './notify.js';

const HELP = `usage: fedmesh-vm-agent [--config-dir DIR] [--state-dir DIR] [--check]

Brings this host into a fedmesh mesh: reads the files \`fedmesh vm config\` wrote (cluster.env, mesh.yaml,
root-cert.pem, istio-token, hosts) from the config dir, keeps its certificate in the state dir, and runs the proxy.

  --config-dir DIR   onboarding files (default $FEDMESH_VM_CONFIG_DIR or /etc/fedmesh)
  --state-dir DIR    certificate and key, mode 0600 (default $FEDMESH_VM_STATE_DIR, $STATE_DIRECTORY or /var/lib/fedmesh)
  --check            validate the onboarding files, print the identity, and exit
  --version          print the version
`;

/** REDACT_PATHS are log fields never written: keys, tokens, CSRs. */
const REDACT_PATHS = ['token', '*.token', 'keyPem', '*.keyPem', 'privateKey', '*.privateKey', 'csr', '*.csr'];

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        'config-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        check: { type: 'boolean', default: false },
        version: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`fedmesh-vm-agent: ${(err as Error).message}\n${HELP}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`fedmesh-vm-agent ${version()}\n`);
    return 0;
  }
  const features = readFeatures();
  const configDir = args['config-dir'] ?? features.configDir;
  const stateDir = args['state-dir'] ?? features.stateDir;
  if (args.check) {
    const boot = await readBootstrap(configDir);
    const e = boot.env;
    process.stdout.write(
      `${configDir}: ok\n  identity   spiffe://${e.trustDomain}/ns/${e.namespace}/sa/${e.serviceAccount}\n` +
        `  group      ${e.namespace}/${e.workloadGroup} (cluster ${e.clusterId}${e.network ? `, network ${e.network}` : ''})\n` +
        `  istiod     ${boot.discoveryAddress} (dial ${boot.dialAddress})\n` +
        `  probe      ${e.probe ? JSON.stringify(e.probe) : 'none'}\n`,
    );
    return 0;
  }
  const log = pino({
    level: features.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { component: 'vm-agent', pid: process.pid },
  });
  const notifier = new SystemdNotifier({
    notifySocket: features.notifySocket,
    watchdogUsec: features.watchdogUsec,
    watchdogPid: features.watchdogPid,
    log: log.child({ scope: 'systemd' }),
  });
  const agent = new VmAgent({
    configDir,
    stateDir,
    notifier,
    certTtlSeconds: features.certTtlSeconds,
    adminPort: features.adminPort,
    log,
  });
  const ctl = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const)
    process.once(sig, () => {
      log.info({ signal: sig }, 'stopping');
      ctl.abort();
      setTimeout(() => process.exit(0), 10_000).unref();
    });
  try {
    await agent.run(ctl.signal);
    return 0;
  } catch (err) {
    log.error({ err }, 'VM agent failed');
    await notifier.status(`failed: ${(err as Error).message}`);
    process.stderr.write(`fedmesh-vm-agent: ${(err as Error).message}\n`);
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fedmesh-vm-agent: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
