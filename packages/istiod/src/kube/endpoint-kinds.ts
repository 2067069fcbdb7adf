import net from 'node:net';
import { z } from 'zod';
import { meshErrorMap, toValidationIssues, type ValidationIssue } from '@fedmesh/api';
import type { KubeObject, MirroredKind, Validated } from './kinds.js';

/** SERVICE_NAME_LABEL is the label that ties an EndpointSlice to its Service (`kubernetes.io/service-name`). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** ENDPOINT_SLICE_VERSIONS are the `discovery.k8s.io` versions mirrored, preferred first (v1 from Kubernetes 1.21). */
export const ENDPOINT_SLICE_VERSIONS = ['v1', 'v1beta1'] as const;

/** EndpointSliceVersion is one of {@link ENDPOINT_SLICE_VERSIONS}. */
export type EndpointSliceVersion = (typeof ENDPOINT_SLICE_VERSIONS)[number];

/**
 * EndpointSliceEndpoint is one endpoint of a stored slice, in `discovery.k8s.io/v1` terms: its addresses, its
 * conditions (absent means unknown; Kubernetes reads an unknown `ready` as ready), the object behind it
 * (`targetRef`, a Pod for selector Services), its node and zone (v1beta1's `topology` map is turned into `zone`).
 */
export interface EndpointSliceEndpoint {
  addresses: string[];
  conditions: { ready?: boolean; serving?: boolean; terminating?: boolean };
  targetRef?: { kind?: string; name?: string; namespace?: string };
  nodeName?: string;
  zone?: string;
}

/**
 * EndpointSliceObject is a stored EndpointSlice, always in the `discovery.k8s.io/v1` shape whichever version was
 * served: `addressType` (IPv4, IPv6 or FQDN), `endpoints` (possibly empty: the controller keeps an empty slice for a
 * Service with no pods), and `ports` (`name` "" when unnamed; a port with no number, meaning "all ports", is dropped).
 */
export interface EndpointSliceObject {
  apiVersion: 'discovery.k8s.io/v1';
  kind: 'EndpointSlice';
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: EndpointSliceEndpoint[];
  ports: { name: string; port: number; protocol: string }[];
}

/**
 * EndpointsObject is a stored core v1 Endpoints, reduced to what the mesh reads: per subset the ready
 * `addresses`, the `notReadyAddresses` and the named `ports`.
 */
export interface EndpointsObject {
  apiVersion: 'v1';
  kind: 'Endpoints';
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  subsets: {
    addresses: EndpointsAddress[];
    notReadyAddresses: EndpointsAddress[];
    ports: { name: string; port: number; protocol: string }[];
  }[];
}

/** EndpointsAddress is one address of an Endpoints subset, with the Pod behind it when there is one. */
export interface EndpointsAddress {
  ip: string;
  targetRef?: { kind?: string; name?: string; namespace?: string };
  nodeName?: string;
}

const dns1123Label = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label');
const dns1123Subdomain = z
  .string()
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a DNS-1123 subdomain');
const metadata = z.looseObject({
  name: dns1123Subdomain,
  namespace: dns1123Label.max(63),
  labels: z.record(z.string(), z.string()).nullish(),
});
const targetRef = z
  .looseObject({ kind: z.string().optional(), name: z.string().optional(), namespace: z.string().optional() })
  .nullish();
const portNumber = z.number().int().min(1).max(65535);
const endpointPort = z.looseObject({
  name: z.string().nullish(),
  port: portNumber.nullish(),
  protocol: z.string().nullish(),
});
const conditions = z
  .looseObject({ ready: z.boolean().nullish(), serving: z.boolean().nullish(), terminating: z.boolean().nullish() })
  .nullish();

const sliceSchema = z.looseObject({
  metadata,
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.looseObject({
        addresses: z.array(z.string().min(1)).min(1).max(100),
        conditions,
        targetRef,
        nodeName: z.string().nullish(),
        zone: z.string().nullish(),
        // v1beta1 only: node labels such as topology.kubernetes.io/zone and kubernetes.io/hostname.
        topology: z.record(z.string(), z.string()).nullish(),
      }),
    )
    .max(1000)
    .nullish(),
  ports: z.array(endpointPort).max(100).nullish(),
});

const endpointsAddress = z.looseObject({ ip: z.string().min(1), targetRef, nodeName: z.string().nullish() });
const endpointsSchema = z.looseObject({
  metadata,
  subsets: z
    .array(
      z.looseObject({
        addresses: z.array(endpointsAddress).nullish(),
        notReadyAddresses: z.array(endpointsAddress).nullish(),
        ports: z.array(endpointPort.extend({ port: portNumber })).nullish(),
      }),
    )
    .nullish(),
});

function issuesOf(err: z.ZodError): ValidationIssue[] {
  return toValidationIssues(err.issues);
}

/** Defined makes the fields that may be undefined optional instead (for `exactOptionalPropertyTypes`). */
type Defined<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined>;
};

function defined<T extends object>(o: T): Defined<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as Defined<T>;
}

function refOf(r: z.infer<typeof targetRef>): EndpointSliceEndpoint['targetRef'] | undefined {
  if (!r) return undefined;
  return defined({ kind: r.kind, name: r.name, namespace: r.namespace });
}

/**
 * parseEndpointSlice checks a `discovery.k8s.io` v1 or v1beta1 EndpointSlice (Kubernetes API reference,
 * "EndpointSlice v1"): names, `addressType`, 1–100 addresses per endpoint (each a valid IP of the slice's
 * `addressType`; FQDN slices are stored but never used), boolean conditions, port numbers 1–65535. Returns the
 * slice in the v1 shape ({@link EndpointSliceObject}) or the problems with field paths.
 */
export function parseEndpointSlice(obj: KubeObject): Validated {
  const r = sliceSchema.safeParse(obj, { error: meshErrorMap });
  if (!r.success) return { ok: false, issues: issuesOf(r.error) };
  const s = r.data;
  const family = s.addressType === 'IPv4' ? 4 : s.addressType === 'IPv6' ? 6 : 0;
  const issues: ValidationIssue[] = [];
  const endpoints: EndpointSliceEndpoint[] = (s.endpoints ?? []).map((e, i) => {
    e.addresses.forEach((a, j) => {
      if (family !== 0 && net.isIP(a) !== family)
        issues.push({ path: `endpoints[${i}].addresses[${j}]`, message: `must be an ${s.addressType} address` });
    });
    const zone = e.zone ?? e.topology?.['topology.kubernetes.io/zone'];
    const nodeName = e.nodeName ?? e.topology?.['kubernetes.io/hostname'];
    return defined({
      addresses: e.addresses,
      conditions: defined({
        ready: e.conditions?.ready ?? undefined,
        serving: e.conditions?.serving ?? undefined,
        terminating: e.conditions?.terminating ?? undefined,
      }),
      targetRef: refOf(e.targetRef),
      nodeName: nodeName ?? undefined,
      zone: zone ?? undefined,
    });
  });
  if (issues.length > 0) return { ok: false, issues };
  const out: EndpointSliceObject = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: s.metadata.name, namespace: s.metadata.namespace, labels: s.metadata.labels ?? {} },
    addressType: s.addressType,
    endpoints,
    ports: (s.ports ?? []).flatMap((p) =>
      p.port === undefined || p.port === null
        ? []
        : [{ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' }],
    ),
  };
  return { ok: true, object: out };
}

/**
 * parseEndpoints checks a core v1 Endpoints object: names, each address a valid IP, port numbers 1–65535. Returns
 * the reduced {@link EndpointsObject} or the problems with field paths.
 */
export function parseEndpoints(obj: KubeObject): Validated {
  const r = endpointsSchema.safeParse(obj, { error: meshErrorMap });
  if (!r.success) return { ok: false, issues: issuesOf(r.error) };
  const issues: ValidationIssue[] = [];
  const address = (path: string) => (a: z.infer<typeof endpointsAddress>, j: number) => {
    if (net.isIP(a.ip) === 0) issues.push({ path: `${path}[${j}].ip`, message: 'must be an IP address' });
    return defined({ ip: a.ip, targetRef: refOf(a.targetRef), nodeName: a.nodeName ?? undefined });
  };
  const subsets = (r.data.subsets ?? []).map((s, i) => ({
    addresses: (s.addresses ?? []).map(address(`subsets[${i}].addresses`)),
    notReadyAddresses: (s.notReadyAddresses ?? []).map(address(`subsets[${i}].notReadyAddresses`)),
    ports: (s.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' })),
  }));
  if (issues.length > 0) return { ok: false, issues };
  const m = r.data.metadata;
  const out: EndpointsObject = {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: m.name, namespace: m.namespace, ...(m.labels ? { labels: m.labels } : {}) },
    subsets,
  };
  return { ok: true, object: out };
}

/**
 * endpointSliceKind is the {@link MirroredKind} of EndpointSlices served at `discovery.k8s.io/<version>`; every
 * version is stored in the v1 shape under kind `EndpointSlice`.
 */
export function endpointSliceKind(version: EndpointSliceVersion): MirroredKind {
  return {
    kind: 'EndpointSlice',
    group: 'discovery.k8s.io',
    version,
    plural: 'endpointslices',
    namespaced: true,
    validate: parseEndpointSlice,
  };
}

/** EndpointsKind is the {@link MirroredKind} of core v1 Endpoints. */
export const EndpointsKind: MirroredKind = {
  kind: 'Endpoints',
  group: '',
  version: 'v1',
  plural: 'endpoints',
  namespaced: true,
  validate: parseEndpoints,
};
