import type { z } from 'zod';
import { TypeUrl, decodeAny, type AnyMessage } from '@fedmesh/api/xds';
import type { DecodeResult, XdsResourceType } from '@fedmesh/xds';
import { RouteTable } from '../route-table.js';
import { compileHcmSecurity, type HcmSecurity } from '../http/request-guard.js';
import { networkRbacOf } from '../filters/network-rbac.js';
import { duplicateFilterChainMatch } from '../filter-chain-match.js';
import {
  ClusterLoadAssignmentSchema,
  ClusterSchema,
  ListenerSchema,
  RouteConfigurationSchema,
  SecretSchema,
  formatZodError,
  hcmOf,
  type EnvoyCluster,
  type EnvoyClusterLoadAssignment,
  type EnvoyListener,
  type EnvoySecret,
} from './envoy-schemas.js';

function decoder<T, S extends z.ZodType>(
  typeUrl: string,
  schema: S,
  nameOf: (raw: Record<string, unknown>) => unknown,
  compile: (value: z.infer<S>) => T,
): XdsResourceType<T> {
  return {
    typeUrl,
    decode(any: AnyMessage): DecodeResult<T> {
      let raw: Record<string, unknown>;
      try {
        raw = decodeAny(any);
      } catch (err) {
        return { name: '?', error: `undecodable ${typeUrl}: ${(err as Error).message}` };
      }
      const name = typeof nameOf(raw) === 'string' ? (nameOf(raw) as string) : '?';
      const parsed = schema.safeParse(raw);
      if (!parsed.success) return { name, error: formatZodError(parsed.error) };
      try {
        return { name, value: compile(parsed.data) };
      } catch (err) {
        return { name, error: (err as Error).message };
      }
    },
  };
}

/**
 * ListenerType decodes and validates Listeners; compiling inline route configs, HTTP RBAC and network RBAC filters
 * catches bad regexes and CIDRs (the compiled network RBAC filters are kept per chain, `networkRbacOf`). Two filter
 * chains matching the same connections are refused, as Envoy refuses them (`duplicateFilterChainMatch`).
 */
export const ListenerType: XdsResourceType<{
  config: EnvoyListener;
  inlineRoutes: Map<number, RouteTable>;
  security: Map<number, HcmSecurity>;
}> = decoder(
  TypeUrl.Listener,
  ListenerSchema,
  (r) => r.name,
  (config) => {
    const ambiguous = duplicateFilterChainMatch(config.filter_chains);
    if (ambiguous) throw new Error(ambiguous);
    const inlineRoutes = new Map<number, RouteTable>();
    const security = new Map<number, HcmSecurity>();
    config.filter_chains.forEach((fc, i) => {
      const hcm = hcmOf(fc);
      if (hcm?.route_config) {
        try {
          inlineRoutes.set(i, new RouteTable(hcm.route_config));
        } catch (err) {
          throw new Error(`filter_chains[${i}].filters[0].typed_config.route_config.${(err as Error).message}`);
        }
      }
    });
    config.filter_chains.forEach((fc, i) => {
      const hcm = hcmOf(fc);
      if (hcm) security.set(i, compileHcmSecurity(hcm, `filter_chains[${i}].filters[0].typed_config`));
      networkRbacOf(fc, `filter_chains[${i}]`);
    });
    return { config, inlineRoutes, security };
  },
);

/** RouteConfigurationType decodes, validates and compiles RouteConfigurations into {@link RouteTable}s. */
export const RouteConfigurationType: XdsResourceType<RouteTable> = decoder(
  TypeUrl.RouteConfiguration,
  RouteConfigurationSchema,
  (r) => r.name,
  (config) => new RouteTable(config),
);

/** ClusterType decodes and validates Clusters. */
export const ClusterType: XdsResourceType<EnvoyCluster> = decoder(
  TypeUrl.Cluster,
  ClusterSchema,
  (r) => r.name,
  (c) => c,
);

/** ClusterLoadAssignmentType decodes and validates ClusterLoadAssignments. */
export const ClusterLoadAssignmentType: XdsResourceType<EnvoyClusterLoadAssignment> = decoder(
  TypeUrl.ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
  (r) => r.cluster_name,
  (c) => c,
);

/** SecretType decodes and validates Secrets holding a trust bundle; the PEM must hold at least one certificate. */
export const SecretType: XdsResourceType<EnvoySecret> = decoder(
  TypeUrl.Secret,
  SecretSchema,
  (r) => r.name,
  (s) => {
    if (!s.validation_context.trusted_ca.inline_string.includes('-----BEGIN CERTIFICATE-----'))
      throw new Error('validation_context.trusted_ca.inline_string: no PEM certificate');
    return s;
  },
);
