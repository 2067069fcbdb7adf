import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { request } from 'undici';
import {
  formatClusterEnv,
  formatHostsFile,
  formatManifestError,
  formatMeshConfigFile,
  parseDurationMs,
  parseManifests,
  VM_FILES,
  type VmClusterEnv,
  type WorkloadGroup,
} from '@fedmesh/api';
import type { VmBootstrapResponse } from '@fedmesh/istiod';
import { isIP } from 'node:net';
import { adminToken, readState } from '../local-mesh.js';
import { DEFAULT_STATE_DIR } from './mesh.js';

/** VmConfigOptions are the inputs of {@link vmConfig} (the flags of `fedmesh vm config`). */
export interface VmConfigOptions {
  /** workloadGroupFile holds exactly one WorkloadGroup (YAML or JSON). */
  workloadGroupFile: string;
  /** cluster must be the cluster istiod serves (its cluster ID). */
  cluster: string;
  /** outDir receives the onboarding files. */
  outDir: string;
  /** stateDir is the local mesh's state directory (`state.json`, `istiod/admin-token`). */
  stateDir: string;
  /** tokenTtl is the bootstrap token's lifetime as a duration (`1h`, `30m`); default 1 h. */
  tokenTtl?: string;
  /** istiodAddress is the IP (or `IP:port`) VMs reach istiod at, for `hosts`; default istiod's own address. */
  istiodAddress?: string;
  /** instanceIp pins the VM's mesh address in `cluster.env` (default: the agent finds it). */
  instanceIp?: string;
}

/** VmConfigResult says what was written. */
export interface VmConfigResult {
  files: string[];
  identity: string;
  workloadGroup: string;
  expiresAt: string;
  warnings: string[];
}

function readWorkloadGroup(file: string): WorkloadGroup {
  const { resources, errors } = parseManifests(fs.readFileSync(file, 'utf8'), { file: path.basename(file) });
  const hard = errors.filter((e) => e.severity === 'error');
  if (hard.length > 0) throw new Error(`invalid ${file}:\n${hard.map(formatManifestError).join('\n')}`);
  const groups = resources.filter((r): r is WorkloadGroup => r.kind === 'WorkloadGroup');
  if (groups.length !== 1 || resources.length !== 1)
    throw new Error(
      `${file}: must hold exactly one WorkloadGroup (found ${resources.map((r) => r.kind).join(', ') || 'nothing'})`,
    );
  const wg = groups[0];
  if (!wg) throw new Error(`${file}: no WorkloadGroup`);
  return wg;
}

function splitHostPort(address: string): { host: string; port: string } {
  const sep = address.lastIndexOf(':');
  return { host: address.slice(0, sep).replace(/^\[|\]$/g, ''), port: address.slice(sep + 1) };
}

/**
 * vmConfig implements `fedmesh vm config`: it reads the WorkloadGroup from `workloadGroupFile`, asks the running local
 * mesh's istiod (admin API, bearer token from the state dir) for a bootstrap token bound to that group's namespace,
 * ServiceAccount and name, and writes into `outDir`: `cluster.env`, `mesh.yaml`, `root-cert.pem`, `istio-token`
 * (mode 0600) and `hosts` (`istiod.istio-system.svc` → istiod's address). istiod's stored WorkloadGroup is the one
 * used; a file that differs from it yields a warning. Throws with a clear message for a bad file, a group istiod does
 * not have, a cluster name that is not istiod's, or an unreachable istiod (10 s timeouts).
 */
export async function vmConfig(o: VmConfigOptions): Promise<VmConfigResult> {
  const wg = readWorkloadGroup(o.workloadGroupFile);
  const namespace = wg.metadata.namespace ?? 'default';
  const ttlMs = parseDurationMs(o.tokenTtl ?? '1h');
  if (ttlMs < 60_000 || ttlMs > 86_400_000)
    throw new Error(`--token-ttl: must be between 1m and 24h, got ${o.tokenTtl}`);
  if (o.instanceIp !== undefined && isIP(o.instanceIp) === 0)
    throw new Error(`--instance-ip: ${o.instanceIp} is not an IP address`);
  const state = readState(o.stateDir);
  const res = await request(`http://${state.istiod.monitoring}/v1/vm/bootstrap`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken(state.stateDir)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ namespace, workloadGroup: wg.metadata.name, ttlSeconds: Math.round(ttlMs / 1000) }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const body = (await res.body.json()) as Partial<VmBootstrapResponse> & { error?: string };
  if (res.statusCode === 404)
    throw new Error(`${body.error ?? 'not found'} (fedmesh apply -f ${o.workloadGroupFile} --state-dir ${o.stateDir})`);
  if (res.statusCode !== 200 || !body.token || !body.mesh || !body.workloadGroup || !body.discoveryAddress)
    throw new Error(`istiod refused: ${res.statusCode} ${body.error ?? ''}`);
  if (body.mesh.clusterId !== o.cluster)
    throw new Error(`--cluster ${o.cluster}: this istiod serves cluster ${body.mesh.clusterId}`);
  const warnings: string[] = [];
  if (JSON.stringify(body.workloadGroup.spec) !== JSON.stringify(wg.spec))
    warnings.push(
      `${o.workloadGroupFile} differs from the WorkloadGroup istiod has; istiod's is used (apply the file to change it)`,
    );
  const spec = body.workloadGroup.spec;
  const discovery = splitHostPort(body.discoveryAddress);
  const given = o.istiodAddress;
  const reach =
    given === undefined ? discovery : isIP(given) !== 0 ? { host: given, port: discovery.port } : splitHostPort(given);
  if (isIP(reach.host) === 0) throw new Error(`--istiod-address: ${reach.host} is not an IP address`);
  const env: VmClusterEnv = {
    namespace,
    serviceAccount: body.serviceAccount ?? 'default',
    workloadGroup: wg.metadata.name,
    clusterId: body.mesh.clusterId,
    network: spec.template.network ?? body.mesh.network,
    labels: { ...spec.metadata?.labels, ...spec.template.labels },
    trustDomain: body.mesh.trustDomain,
    inboundPorts: [...new Set(Object.values(spec.template.ports ?? {}))].sort((a, b) => a - b),
    ...(spec.probe ? { probe: spec.probe } : {}),
    ...(o.instanceIp ? { instanceIp: o.instanceIp } : {}),
  };
  fs.mkdirSync(o.outDir, { recursive: true, mode: 0o755 });
  const write = (name: string, text: string, mode = 0o644): string => {
    const file = path.join(o.outDir, name);
    fs.writeFileSync(file, text, { mode });
    fs.chmodSync(file, mode);
    return file;
  };
  const files = [
    write(VM_FILES.clusterEnv, formatClusterEnv(env)),
    write(VM_FILES.meshConfig, formatMeshConfigFile(`istiod.istio-system.svc:${reach.port}`, body.mesh.trustDomain)),
    write(VM_FILES.rootCert, body.rootCertPem ?? ''),
    write(VM_FILES.token, `${body.token}\n`, 0o600),
    write(VM_FILES.hosts, formatHostsFile([{ address: reach.host, names: ['istiod.istio-system.svc'] }])),
  ];
  return {
    files,
    identity: `spiffe://${env.trustDomain}/ns/${env.namespace}/sa/${env.serviceAccount}`,
    workloadGroup: `${namespace}/${wg.metadata.name}`,
    expiresAt: body.expiresAt ?? '',
    warnings,
  };
}

/** registerVm adds `fedmesh vm config`: the onboarding files for a VM of a WorkloadGroup. */
export function registerVm(program: Command): void {
  const vm = program.command('vm').description('bring VMs and bare-metal hosts into the mesh');
  vm.command('config')
    .description(
      'write cluster.env, mesh.yaml, root-cert.pem, istio-token (0600) and hosts for a VM of a WorkloadGroup',
    )
    .requiredOption('--workload-group <file>', 'the WorkloadGroup (YAML), already applied to istiod')
    .requiredOption('--cluster <name>', "the cluster the VM joins (istiod's cluster ID)")
    .requiredOption('-o, --output <dir>', 'directory to write the files into')
    .option('--state-dir <dir>', 'the local mesh state directory', DEFAULT_STATE_DIR)
    .option('--token-ttl <duration>', 'bootstrap token lifetime (1m to 24h)', '1h')
    .option('--istiod-address <ip[:port]>', "the address VMs reach istiod at (default: istiod's own)")
    .option('--instance-ip <ip>', "pin the VM's mesh address (default: the agent finds it)")
    .action(
      async (o: {
        workloadGroup: string;
        cluster: string;
        output: string;
        stateDir: string;
        tokenTtl: string;
        istiodAddress?: string;
        instanceIp?: string;
      }) => {
        const r = await vmConfig({
          workloadGroupFile: o.workloadGroup,
          cluster: o.cluster,
          outDir: o.output,
          stateDir: o.stateDir,
          tokenTtl: o.tokenTtl,
          ...(o.istiodAddress !== undefined ? { istiodAddress: o.istiodAddress } : {}),
          ...(o.instanceIp !== undefined ? { instanceIp: o.instanceIp } : {}),
        });
        for (const w of r.warnings) console.error(`warning: ${w}`);
        console.log(`VM files for ${r.workloadGroup} (${r.identity}) in ${o.output}:`);
        for (const f of r.files) console.log(`  ${f}`);
        console.log(
          `bootstrap token valid until ${r.expiresAt} (start the agent before then; it renews on its own after)`,
        );
        console.log(
          `next: copy them to /etc/fedmesh on the VM, install fedmesh-vm-agent, systemctl start fedmesh-vm-agent`,
        );
      },
    );
}
