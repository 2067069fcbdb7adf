import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { meshErrorMap, toValidationIssues, type ValidationIssue } from '@fedmesh/api';
import type { MeshSettings } from './push-context.js';

/**
 * HONOURED_FIELDS are the MeshConfig fields (istio.mesh.v1alpha1.MeshConfig) fedmesh istiod applies; see
 * {@link meshSettingsFrom} for how each one is used.
 */
export const HONOURED_FIELDS = [
  'trustDomain',
  'trustDomainAliases',
  'rootNamespace',
  'enableAutoMtls',
  'defaultServiceExportTo',
  'defaultVirtualServiceExportTo',
  'defaultDestinationRuleExportTo',
  'defaultConfig.discoveryAddress',
  'pathNormalization',
  'outboundTrafficPolicy',
] as const;

/**
 * NOT_HONOURED_FIELDS are MeshConfig fields Istio defines that fedmesh accepts but does not apply: setting one logs
 * a warning naming it. Their types are still checked where given below.
 */
export const NOT_HONOURED_FIELDS = [
  'accessLogFile',
  'accessLogEncoding',
  'accessLogFormat',
  'enableTracing',
  'defaultProviders',
  'extensionProviders',
  'localityLbSetting',
  'connectTimeout',
  'protocolDetectionTimeout',
  'tcpKeepalive',
  'dnsRefreshRate',
  'h2UpgradePolicy',
  'ingressClass',
  'ingressService',
  'ingressControllerMode',
  'ingressSelector',
  'enablePrometheusMerge',
  'discoverySelectors',
  'serviceSettings',
  'caCertificates',
  'certificates',
  'inboundClusterStatName',
  'outboundClusterStatName',
  'verifyCertificateAtClient',
  'meshMTLS',
  'tlsDefaults',
  'defaultHttpRetryPolicy',
  'enableEnvoyAccessLogService',
  'proxyListenPort',
  'proxyHttpPort',
  'thriftConfig',
  'sdsUdsPath',
  'mixerCheckServer',
  'mixerReportServer',
  'disablePolicyChecks',
] as const;

/** NOT_HONOURED_PROXY_FIELDS are `defaultConfig` (ProxyConfig) fields typed here but not applied (warned). */
export const NOT_HONOURED_PROXY_FIELDS = ['proxyMetadata'] as const;

const exportTo = z.array(
  z.string().regex(/^(\*|~|\.|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, 'must be *, ~, . or a namespace'),
);

/** ProxyConfig fields fedmesh reads from `defaultConfig`; the rest of Istio's ProxyConfig is warned about. */
const proxyConfigShape = {
  discoveryAddress: z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port'),
  proxyMetadata: z.record(z.string(), z.string()),
};

/** meshConfigShape types every field named in {@link HONOURED_FIELDS} and a few not-honoured ones. */
const meshConfigShape = {
  trustDomain: z.string().regex(/^[a-zA-Z0-9.-]+$/, 'must be a trust domain (letters, digits, . and -)'),
  trustDomainAliases: z.array(z.string().regex(/^[a-zA-Z0-9.-]+$/, 'must be a trust domain')),
  rootNamespace: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name'),
  enableAutoMtls: z.boolean(),
  defaultServiceExportTo: exportTo,
  defaultVirtualServiceExportTo: exportTo,
  defaultDestinationRuleExportTo: exportTo,
  pathNormalization: z.object({
    normalization: z.enum(['DEFAULT', 'NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES']),
  }),
  outboundTrafficPolicy: z.object({ mode: z.enum(['REGISTRY_ONLY', 'ALLOW_ANY']) }),
  accessLogFile: z.string(),
  accessLogEncoding: z.enum(['TEXT', 'JSON']),
  enableTracing: z.boolean(),
};

function schemaFor(strict: boolean) {
  const proxyConfig = z.object(proxyConfigShape).partial();
  const known = Object.fromEntries(NOT_HONOURED_FIELDS.map((f) => [f, z.unknown()]));
  const shape = { ...known, ...meshConfigShape, defaultConfig: strict ? proxyConfig.strict() : proxyConfig };
  return (strict ? z.strictObject(shape) : z.object(shape)).partial();
}

const STRICT = schemaFor(true);
const LENIENT = schemaFor(false);

/** MeshConfig is the part of Istio's MeshConfig fedmesh reads (all fields optional, as in the ConfigMap). */
export type MeshConfig = z.infer<typeof LENIENT>;

/**
 * MeshConfigParse is the outcome of {@link parseMeshConfig}: the config and its warnings (unknown fields, fields not
 * honoured), or the errors (wrong types, bad values) with field paths.
 */
export type MeshConfigParse =
  { ok: true; config: MeshConfig; warnings: ValidationIssue[] } | { ok: false; errors: ValidationIssue[] };

/**
 * parseMeshConfig reads MeshConfig YAML (the `mesh` key of Istio's `istio` ConfigMap, or the file istiod's
 * `--meshConfig` names). Unknown fields are ignored with a warning each, as Istio does for forward compatibility
 * (it parses MeshConfig with unknown fields allowed); fields of {@link NOT_HONOURED_FIELDS} that are set are accepted
 * with a warning `not honoured by fedmesh`; a wrong type or value anywhere is an error with its field path. Empty
 * text is the empty config (Istio's defaults).
 */
export function parseMeshConfig(text: string): MeshConfigParse {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    return { ok: false, errors: [{ path: '', message: `not YAML: ${(err as Error).message}` }] };
  }
  if (typeof doc !== 'object' || Array.isArray(doc) || doc === null)
    return { ok: false, errors: [{ path: '', message: 'must be a mapping' }] };
  const strict = STRICT.safeParse(doc, { error: meshErrorMap });
  const issues = strict.success ? [] : toValidationIssues(strict.error.issues);
  const errors = issues.filter((i) => i.message !== 'unknown field');
  if (errors.length > 0) return { ok: false, errors };
  const warnings = issues.map((i) => ({ path: i.path, message: 'unknown field (not read by fedmesh); ignored' }));
  const config = LENIENT.parse(doc, { error: meshErrorMap });
  for (const f of NOT_HONOURED_FIELDS)
    if ((doc as Record<string, unknown>)[f] !== undefined)
      warnings.push({ path: f, message: 'not honoured by fedmesh; ignored' });
  for (const f of NOT_HONOURED_PROXY_FIELDS)
    if (config.defaultConfig?.[f] !== undefined)
      warnings.push({ path: `defaultConfig.${f}`, message: 'not honoured by fedmesh; ignored' });
  return { ok: true, config, warnings };
}

/**
 * meshSettingsFrom applies a MeshConfig over `base` (the command-line settings) and returns new settings: each
 * field set in `config` wins. `trustDomain` names the CA's and the workloads' trust domain (read at start; see
 * istiod's README for changes while running); `trustDomainAliases` are also accepted in peer checks (client
 * certificates on 15012, cluster SANs); `rootNamespace` holds mesh-wide policy; `enableAutoMtls: false` turns off
 * auto mTLS (only DestinationRule `ISTIO_MUTUAL` then originates mTLS); the three `default*ExportTo` apply to objects
 * with no `exportTo` of their own; `defaultConfig.discoveryAddress` is the istiod address VM bootstrap bundles name;
 * `pathNormalization.normalization` (`DEFAULT` = `BASE`); `outboundTrafficPolicy.mode` (capture-mode sidecars' traffic
 * to unknown destinations: PassthroughCluster or BlackHoleCluster).
 */
export function meshSettingsFrom(base: MeshSettings, config: MeshConfig): MeshSettings {
  const out: MeshSettings = { ...base };
  if (config.trustDomain !== undefined) out.trustDomain = config.trustDomain;
  if (config.trustDomainAliases !== undefined) out.trustDomainAliases = config.trustDomainAliases;
  if (config.rootNamespace !== undefined) out.rootNamespace = config.rootNamespace;
  if (config.enableAutoMtls !== undefined) out.enableAutoMtls = config.enableAutoMtls;
  if (config.defaultServiceExportTo !== undefined) out.defaultServiceExportTo = config.defaultServiceExportTo;
  if (config.defaultVirtualServiceExportTo !== undefined)
    out.defaultVirtualServiceExportTo = config.defaultVirtualServiceExportTo;
  if (config.defaultDestinationRuleExportTo !== undefined)
    out.defaultDestinationRuleExportTo = config.defaultDestinationRuleExportTo;
  const n = config.pathNormalization?.normalization;
  if (n !== undefined) out.pathNormalization = n === 'DEFAULT' ? 'BASE' : n;
  if (config.outboundTrafficPolicy !== undefined) out.outboundTrafficPolicy = config.outboundTrafficPolicy.mode;
  const dc = config.defaultConfig;
  if (dc?.discoveryAddress !== undefined) out.defaultConfig = { discoveryAddress: dc.discoveryAddress };
  return out;
}
