/**
 * Contracts for bringing a VM into the mesh, shared by istiod, `fedmesh vm config` and `fedmesh-vm-agent`:
 * - the onboarding files (`cluster.env`, `mesh.yaml`, `root-cert.pem`, `istio-token`, `hosts`), with parsers that
 *   report every problem with its file and key, and formatters that write what the parsers read;
 * - Istio's auto-registration node metadata key and WorkloadEntry annotations;
 * - the `WorkloadHealthService/Report` gRPC method (JSON-coded, on istiod's 15012 over mutual TLS) through which an
 *   agent reports the result of its WorkloadGroup's readiness probe.
 * Pure functions and constants only: no I/O.
 */
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { InvalidConfigError, type ValidationIssue } from './errors.js';
import { Dns1123LabelSchema, Dns1123SubdomainSchema, LabelsSchema, requiredString } from './schemas/common.js';
import { meshErrorMap, toValidationIssues } from './schemas/issues.js';
import { ReadinessProbeSchema, type ReadinessProbe } from './schemas/service-entry.js';

/** VM_FILES names the onboarding files in a VM's config directory (Istio's names). */
export const VM_FILES = Object.freeze({
  clusterEnv: 'cluster.env',
  meshConfig: 'mesh.yaml',
  rootCert: 'root-cert.pem',
  token: 'istio-token',
  hosts: 'hosts',
});

/** AUTO_REGISTER_GROUP is the xDS Node metadata key naming the WorkloadGroup a proxy auto-registers into (Istio's). */
export const AUTO_REGISTER_GROUP = 'AUTO_REGISTER_GROUP';

/** WorkloadEntryAnnotations are the annotations istiod puts on auto-registered WorkloadEntries (Istio's keys). */
export const WorkloadEntryAnnotations = Object.freeze({
  /** autoRegistrationGroup names the WorkloadGroup the entry was made from. */
  autoRegistrationGroup: 'istio.io/autoRegistrationGroup',
  /** connectedAt is when the workload's proxy last connected (RFC 3339). */
  connectedAt: 'istio.io/connectedAt',
  /** disconnectedAt is when it last disconnected; the entry is removed a grace period later. */
  disconnectedAt: 'istio.io/disconnectedAt',
  /** workloadController names the istiod that owns the entry. */
  workloadController: 'istio.io/workloadController',
  /** healthChecksEnabled (`"true"`) means the entry is an endpoint only while its health condition is True. */
  healthChecksEnabled: 'proxy.istio.io/health-checks-enabled',
});

/**
 * VmClusterEnv is `cluster.env`: who the VM is and where it belongs. Keys are Istio's where Istio has one:
 * `ISTIO_NAMESPACE`, `SERVICE_ACCOUNT`, `ISTIO_META_AUTO_REGISTER_GROUP`, `ISTIO_META_CLUSTER_ID`,
 * `ISTIO_META_NETWORK`, `ISTIO_METAJSON_LABELS`, `TRUST_DOMAIN`, `ISTIO_INBOUND_PORTS`; fedmesh adds
 * `FEDMESH_READINESS_PROBE` (the WorkloadGroup's probe as JSON) and `FEDMESH_INSTANCE_IP` (the VM's address;
 * empty: the agent uses the local address it reaches istiod from).
 */
export interface VmClusterEnv {
  namespace: string;
  serviceAccount: string;
  workloadGroup: string;
  clusterId: string;
  network: string;
  labels: Record<string, string>;
  trustDomain: string;
  inboundPorts: number[];
  probe?: ReadinessProbe | undefined;
  instanceIp?: string | undefined;
}

const IpSchema = requiredString().refine((s) => isIP(s) !== 0, { error: 'must be an IP address' });

function jsonString<T extends z.ZodType>(inner: T): z.ZodType<z.output<T>> {
  return requiredString().transform((text, ctx) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be JSON' });
      return z.NEVER;
    }
    const r = inner.safeParse(value, { error: meshErrorMap });
    if (!r.success) {
      for (const i of toValidationIssues(r.error.issues))
        ctx.addIssue({ code: 'custom', message: i.path === '' ? i.message : `${i.path}: ${i.message}` });
      return z.NEVER;
    }
    return r.data;
  });
}

/** ClusterEnvSchema validates the key/value pairs of `cluster.env` (unknown keys are ignored, as a shell would). */
export const ClusterEnvSchema = z.object({
  ISTIO_NAMESPACE: Dns1123LabelSchema,
  SERVICE_ACCOUNT: Dns1123SubdomainSchema,
  ISTIO_META_AUTO_REGISTER_GROUP: Dns1123SubdomainSchema,
  ISTIO_META_CLUSTER_ID: requiredString().min(1).max(253),
  ISTIO_META_NETWORK: z.string().max(253).optional(),
  ISTIO_METAJSON_LABELS: jsonString(LabelsSchema).optional(),
  TRUST_DOMAIN: requiredString()
    .min(1)
    .max(255)
    .regex(/^[a-z0-9._-]+$/, { error: 'must be a trust domain (a-z, 0-9, ., _ and -)' }),
  ISTIO_INBOUND_PORTS: z
    .string()
    .regex(/^(\d{1,5}(,\d{1,5})*)?$/, { error: 'must be a comma-separated list of ports' })
    .optional(),
  FEDMESH_READINESS_PROBE: jsonString(ReadinessProbeSchema).optional(),
  FEDMESH_INSTANCE_IP: z.union([z.literal(''), IpSchema]).optional(),
});

/** MAX_VM_FILE_BYTES bounds each onboarding file the parsers accept (64 KiB). */
export const MAX_VM_FILE_BYTES = 64 * 1024;

function tooLarge(file: string, text: string): void {
  if (Buffer.byteLength(text) > MAX_VM_FILE_BYTES)
    throw new InvalidConfigError([{ path: '', message: `larger than ${MAX_VM_FILE_BYTES} bytes` }], file);
}

function unquote(raw: string): string | undefined {
  const v = raw.trim();
  if (v.startsWith("'")) {
    // Shell single quotes, with '\'' for a literal quote.
    const parts = v.split(`'\\''`);
    const joined = parts.join("'");
    return joined.length >= 2 && joined.endsWith("'") ? joined.slice(1, -1) : undefined;
  }
  if (v.startsWith('"')) return v.length >= 2 && v.endsWith('"') ? v.slice(1, -1) : undefined;
  return v;
}

/**
 * parseClusterEnv reads `cluster.env` (`KEY=value`, `KEY='value'` or `KEY="value"` lines; `#` comments and blank
 * lines skipped; the last of a repeated key wins) into a {@link VmClusterEnv}. Throws InvalidConfigError listing
 * every problem as `KEY: message` (or `line N: message` for a line that is not an assignment).
 */
export function parseClusterEnv(text: string, file = VM_FILES.clusterEnv): VmClusterEnv {
  tooLarge(file, text);
  const values: Record<string, string> = {};
  const issues: ValidationIssue[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(t);
    const value = m?.[2] === undefined ? undefined : unquote(m[2]);
    if (!m?.[1] || value === undefined) {
      issues.push({ path: `line ${i + 1}`, message: 'must be KEY=value' });
      return;
    }
    values[m[1]] = value;
  });
  const r = ClusterEnvSchema.safeParse(values, { error: meshErrorMap });
  if (!r.success) issues.push(...toValidationIssues(r.error.issues));
  if (issues.length > 0 || !r.success) throw new InvalidConfigError(issues, file);
  const v = r.data;
  return {
    namespace: v.ISTIO_NAMESPACE,
    serviceAccount: v.SERVICE_ACCOUNT,
    workloadGroup: v.ISTIO_META_AUTO_REGISTER_GROUP,
    clusterId: v.ISTIO_META_CLUSTER_ID,
    network: v.ISTIO_META_NETWORK ?? '',
    labels: v.ISTIO_METAJSON_LABELS ?? {},
    trustDomain: v.TRUST_DOMAIN,
    inboundPorts: (v.ISTIO_INBOUND_PORTS ?? '')
      .split(',')
      .filter(Boolean)
      .map((p) => Number(p)),
    ...(v.FEDMESH_READINESS_PROBE !== undefined ? { probe: v.FEDMESH_READINESS_PROBE } : {}),
    ...(v.FEDMESH_INSTANCE_IP ? { instanceIp: v.FEDMESH_INSTANCE_IP } : {}),
  };
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** formatClusterEnv writes a {@link VmClusterEnv} as `cluster.env` (shell-quoted `KEY='value'` lines). */
export function formatClusterEnv(env: VmClusterEnv): string {
  const lines: [string, string][] = [
    ['ISTIO_NAMESPACE', env.namespace],
    ['SERVICE_ACCOUNT', env.serviceAccount],
    ['ISTIO_META_AUTO_REGISTER_GROUP', env.workloadGroup],
    ['ISTIO_META_CLUSTER_ID', env.clusterId],
    ['ISTIO_META_NETWORK', env.network],
    ['ISTIO_METAJSON_LABELS', JSON.stringify(env.labels)],
    ['TRUST_DOMAIN', env.trustDomain],
    ['ISTIO_INBOUND_PORTS', env.inboundPorts.join(',')],
  ];
  if (env.probe !== undefined) lines.push(['FEDMESH_READINESS_PROBE', JSON.stringify(env.probe)]);
  lines.push(['FEDMESH_INSTANCE_IP', env.instanceIp ?? '']);
  return `# Written by fedmesh vm config.\n${lines.map(([k, v]) => `${k}=${shellQuote(v)}`).join('\n')}\n`;
}

const HostPortSchema = requiredString().regex(/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/, {
  error: 'must be host:port',
});

/**
 * MeshConfigFileSchema is the subset of Istio's MeshConfig (`mesh.yaml`) a VM reads: `defaultConfig.discoveryAddress`
 * (`host:port` of istiod's 15012) and `defaultConfig.proxyMetadata`, plus `trustDomain`. Other MeshConfig fields are
 * allowed and ignored.
 */
export const MeshConfigFileSchema = z.looseObject({
  trustDomain: requiredString().min(1).optional(),
  defaultConfig: z.looseObject({
    discoveryAddress: HostPortSchema,
    proxyMetadata: z.record(z.string(), z.string()).optional(),
  }),
});

/** VmMeshConfig is a parsed `mesh.yaml`. */
export type VmMeshConfig = z.infer<typeof MeshConfigFileSchema>;

/** parseMeshConfigFile reads `mesh.yaml`; throws InvalidConfigError with field paths (or the YAML error). */
export function parseMeshConfigFile(text: string, file = VM_FILES.meshConfig): VmMeshConfig {
  tooLarge(file, text);
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 10 });
  } catch (err) {
    throw new InvalidConfigError([{ path: '', message: `not YAML: ${(err as Error).message}` }], file);
  }
  const r = MeshConfigFileSchema.safeParse(doc, { error: meshErrorMap });
  if (!r.success) throw new InvalidConfigError(toValidationIssues(r.error.issues), file);
  return r.data;
}

/** formatMeshConfigFile writes `mesh.yaml` for a discovery address and trust domain. */
export function formatMeshConfigFile(discoveryAddress: string, trustDomain: string): string {
  return [
    '# Written by fedmesh vm config (Istio MeshConfig subset).',
    `trustDomain: ${JSON.stringify(trustDomain)}`,
    'defaultConfig:',
    `  discoveryAddress: ${JSON.stringify(discoveryAddress)}`,
    '  proxyMetadata: {}',
    '',
  ].join('\n');
}

/** HostsEntry is one line of a `hosts` file: an address and the names that resolve to it. */
export interface HostsEntry {
  address: string;
  names: string[];
}

/** parseHostsFile reads a hosts(5) file; throws InvalidConfigError naming each bad line. */
export function parseHostsFile(text: string, file = VM_FILES.hosts): HostsEntry[] {
  tooLarge(file, text);
  const out: HostsEntry[] = [];
  const issues: ValidationIssue[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.replace(/#.*$/, '').trim();
    if (t === '') return;
    const [address = '', ...names] = t.split(/\s+/);
    if (isIP(address) === 0) issues.push({ path: `line ${i + 1}`, message: `${JSON.stringify(address)} is not an IP` });
    else if (names.length === 0) issues.push({ path: `line ${i + 1}`, message: 'has no host name' });
    else out.push({ address, names });
  });
  if (issues.length > 0) throw new InvalidConfigError(issues, file);
  return out;
}

/** formatHostsFile writes hosts(5) lines. */
export function formatHostsFile(entries: readonly HostsEntry[]): string {
  return `# Written by fedmesh vm config: mesh names DNS may not resolve.\n${entries
    .map((e) => `${e.address} ${e.names.join(' ')}`)
    .join('\n')}\n`;
}

/** WORKLOAD_HEALTH_PATH is the gRPC method path of a health report (served on istiod's 15012). */
export const WORKLOAD_HEALTH_PATH = '/fedmesh.vm.v1.WorkloadHealthService/Report';

/** MAX_HEALTH_MESSAGE_BYTES bounds a health report on the wire (4 KiB). */
export const MAX_HEALTH_MESSAGE_BYTES = 4 * 1024;

/** WorkloadHealthReportSchema: `proxyId` (the xDS node ID), `healthy`, and a short `message` (why not). */
export const WorkloadHealthReportSchema = z.strictObject({
  proxyId: requiredString().min(1).max(512),
  healthy: z.boolean(),
  message: z.string().max(1024),
});

/** WorkloadHealthReport is one report of a VM's readiness probe result. */
export type WorkloadHealthReport = z.infer<typeof WorkloadHealthReportSchema>;

/** WorkloadHealthAck is istiod's answer: the WorkloadEntry (`namespace/name`) whose health was recorded. */
export interface WorkloadHealthAck {
  workloadEntry: string;
}

function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function decodeJson(bytes: Buffer): unknown {
  if (bytes.length > MAX_HEALTH_MESSAGE_BYTES) throw new Error('message too large');
  return JSON.parse(bytes.toString('utf8')) as unknown;
}

/**
 * WORKLOAD_HEALTH_SERVICE is the gRPC service definition of `fedmesh.vm.v1.WorkloadHealthService` (one unary method,
 * `Report`), coded as JSON so no proto file is needed. It is structurally a `@grpc/grpc-js` ServiceDefinition: pass
 * it to `server.addService` or `makeGenericClientConstructor`. Decoding refuses messages over
 * {@link MAX_HEALTH_MESSAGE_BYTES}; the server validates requests with {@link WorkloadHealthReportSchema}.
 */
export const WORKLOAD_HEALTH_SERVICE = Object.freeze({
  Report: Object.freeze({
    path: WORKLOAD_HEALTH_PATH,
    requestStream: false as const,
    responseStream: false as const,
    requestSerialize: (v: WorkloadHealthReport): Buffer => encodeJson(v),
    requestDeserialize: (b: Buffer): unknown => decodeJson(b),
    responseSerialize: (v: WorkloadHealthAck): Buffer => encodeJson(v),
    responseDeserialize: (b: Buffer): WorkloadHealthAck => decodeJson(b) as WorkloadHealthAck,
    originalName: 'report',
  }),
});
