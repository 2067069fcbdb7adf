/**
 * ServiceEntry, WorkloadEntry and WorkloadGroup (networking.istio.io), following
 * https://istio.io/latest/docs/reference/config/networking/service-entry/,
 * https://istio.io/latest/docs/reference/config/networking/workload-entry/ and
 * https://istio.io/latest/docs/reference/config/networking/workload-group/. Every message is strict.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import {
  checkOneOf,
  ExportToSchema,
  HostSchema,
  NonNegativeInt32Schema,
  PortNumberSchema,
  requiredString,
  StringMapSchema,
  UInt32Schema,
  whenValid,
} from './common.js';
import { PortSchema } from './gateway.js';

const WorkloadEntryFields = {
  address: requiredString().optional(),
  ports: z.record(z.string(), PortNumberSchema).optional(),
  labels: StringMapSchema.optional(),
  network: requiredString().optional(),
  locality: requiredString().optional(),
  weight: UInt32Schema.optional(),
  serviceAccount: requiredString().optional(),
};

/**
 * WorkloadEntrySpecSchema is Istio's `WorkloadEntry` (also the shape of ServiceEntry `endpoints` and
 * WorkloadGroup `template`): `address` (IP, host name or `unix://` path), `ports` (service port name →
 * workload port), `labels`, `network`, `locality` (`region/zone/subzone`), `weight` and `serviceAccount`.
 * A WorkloadEntry resource and a ServiceEntry endpoint need `address` or `network`.
 */
export const WorkloadEntrySpecSchema = z.strictObject(WorkloadEntryFields).superRefine((we, ctx) => {
  if (we.address === undefined && we.network === undefined) {
    ctx.addIssue({ code: 'custom', path: ['address'], message: 'required unless network is set' });
  }
}, whenValid);

/** WorkloadEntrySpec is a parsed WorkloadEntry `spec` (or ServiceEntry endpoint). */
export type WorkloadEntrySpec = z.infer<typeof WorkloadEntrySpecSchema>;

/**
 * ServiceEntryWorkloadSelectorSchema is networking's `WorkloadSelector`, `{ labels }` (not security's
 * `{ matchLabels }`): the WorkloadEntries and pods whose labels include all of them are the ServiceEntry's endpoints.
 */
export const ServiceEntryWorkloadSelectorSchema = z.strictObject({ labels: StringMapSchema.optional() });

/**
 * ServiceEntrySpecSchema is the `spec` of a ServiceEntry: `hosts` (at least one), `addresses`, `ports`
 * (numbers and names unique), `location` (MESH_EXTERNAL or MESH_INTERNAL), `resolution` (NONE, STATIC, DNS,
 * DNS_ROUND_ROBIN), `endpoints` or `workloadSelector` (not both), `exportTo` and `subjectAltNames`.
 * Istio's cheap cross-field rules apply: resolution NONE takes no endpoints; STATIC endpoints have IP (or
 * `unix://`) addresses; DNS without endpoints needs non-wildcard hosts; endpoint port names must name a
 * declared port.
 */
export const ServiceEntrySpecSchema = z
  .strictObject({
    hosts: z.array(HostSchema).min(1),
    addresses: z.array(requiredString()).optional(),
    ports: z.array(PortSchema).optional(),
    location: z.enum(['MESH_EXTERNAL', 'MESH_INTERNAL']).optional(),
    resolution: z.enum(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']).optional(),
    endpoints: z.array(WorkloadEntrySpecSchema).optional(),
    workloadSelector: ServiceEntryWorkloadSelectorSchema.optional(),
    exportTo: ExportToSchema.optional(),
    subjectAltNames: z.array(requiredString()).optional(),
  })
  .superRefine((se, ctx) => {
    const endpoints = se.endpoints ?? [];
    if (endpoints.length > 0 && se.workloadSelector !== undefined) {
      ctx.addIssue({ code: 'custom', message: 'only one of endpoints, workloadSelector may be set' });
    }
    checkUniquePorts(se.ports ?? [], ctx);
    const resolution = se.resolution ?? 'NONE';
    if (resolution === 'NONE' && endpoints.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'must be empty when resolution is NONE' });
    }
    if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && endpoints.length === 0) {
      se.hosts.forEach((h, i) => {
        if (h.startsWith('*')) {
          ctx.addIssue({
            code: 'custom',
            path: ['hosts', i],
            message: `must not be a wildcard when resolution is ${resolution} and there are no endpoints`,
          });
        }
      });
    }
    const portNames = new Set((se.ports ?? []).map((p) => p.name).filter((n) => n !== undefined));
    endpoints.forEach((ep, i) => {
      if (
        resolution === 'STATIC' &&
        ep.address !== undefined &&
        isIP(ep.address) === 0 &&
        !ep.address.startsWith('unix://')
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['endpoints', i, 'address'],
          message: 'must be an IP address when resolution is STATIC',
        });
      }
      for (const name of Object.keys(ep.ports ?? {})) {
        if (!portNames.has(name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'ports', name],
            message: 'does not name a port of this ServiceEntry',
          });
        }
      }
    });
  }, whenValid);

function checkUniquePorts(
  ports: readonly { number: number; name?: string | undefined }[],
  ctx: z.core.$RefinementCtx,
): void {
  const numbers = new Set<number>();
  const names = new Set<string>();
  ports.forEach((p, i) => {
    if (numbers.has(p.number))
      ctx.addIssue({ code: 'custom', path: ['ports', i, 'number'], message: `duplicate port number ${p.number}` });
    numbers.add(p.number);
    if (p.name === undefined) return;
    if (names.has(p.name))
      ctx.addIssue({
        code: 'custom',
        path: ['ports', i, 'name'],
        message: `duplicate port name ${JSON.stringify(p.name)}`,
      });
    names.add(p.name);
  });
}

/** ServiceEntrySpec is a parsed ServiceEntry `spec`. */
export type ServiceEntrySpec = z.infer<typeof ServiceEntrySpecSchema>;

/**
 * ReadinessProbeSchema is Istio's WorkloadGroup `ReadinessProbe`: exactly one of `httpGet {path, port, host,
 * scheme HTTP|HTTPS, httpHeaders}`, `tcpSocket {host, port}`, `exec {command}` or `grpc {port, service}`,
 * plus `initialDelaySeconds`, `timeoutSeconds`, `periodSeconds`, `successThreshold`, `failureThreshold`
 * (non-negative integers, seconds or counts).
 */
export const ReadinessProbeSchema = z
  .strictObject({
    initialDelaySeconds: NonNegativeInt32Schema.optional(),
    timeoutSeconds: NonNegativeInt32Schema.optional(),
    periodSeconds: NonNegativeInt32Schema.optional(),
    successThreshold: NonNegativeInt32Schema.optional(),
    failureThreshold: NonNegativeInt32Schema.optional(),
    httpGet: z
      .strictObject({
        path: requiredString().optional(),
        port: PortNumberSchema,
        host: requiredString().optional(),
        scheme: z.enum(['HTTP', 'HTTPS']).optional(),
        httpHeaders: z.array(z.strictObject({ name: requiredString(), value: z.string().optional() })).optional(),
      })
      .optional(),
    tcpSocket: z.strictObject({ host: requiredString().optional(), port: PortNumberSchema }).optional(),
    exec: z.strictObject({ command: z.array(requiredString()).min(1) }).optional(),
    grpc: z.strictObject({ port: PortNumberSchema, service: z.string().optional() }).optional(),
  })
  .superRefine((p, ctx) => checkOneOf(p, ['httpGet', 'tcpSocket', 'exec', 'grpc'], ctx, true), whenValid);

/** ReadinessProbe is a parsed WorkloadGroup `ReadinessProbe`. */
export type ReadinessProbe = z.infer<typeof ReadinessProbeSchema>;

/**
 * WorkloadGroupSpecSchema is the `spec` of a WorkloadGroup: `metadata {labels, annotations}` given to
 * generated WorkloadEntries, the `template` WorkloadEntry (without `address`, which each VM reports itself),
 * and a readiness `probe`.
 */
export const WorkloadGroupSpecSchema = z.strictObject({
  metadata: z.strictObject({ labels: StringMapSchema.optional(), annotations: StringMapSchema.optional() }).optional(),
  template: z.strictObject(WorkloadEntryFields).superRefine((t, ctx) => {
    if (t.address !== undefined)
      ctx.addIssue({ code: 'custom', path: ['address'], message: 'must not be set in a WorkloadGroup template' });
  }, whenValid),
  probe: ReadinessProbeSchema.optional(),
});

/** WorkloadGroupSpec is a parsed WorkloadGroup `spec`. */
export type WorkloadGroupSpec = z.infer<typeof WorkloadGroupSpecSchema>;
