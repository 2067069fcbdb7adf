/**
 * The Kubernetes kinds fedmesh reads: v1 Service, ServiceAccount and Pod, and apps/v1 Deployment, following
 * the Kubernetes API reference (https://kubernetes.io/docs/reference/kubernetes-api/). Kubernetes objects
 * carry many fields fedmesh does not read, so these objects are loose (unknown fields pass through
 * unchecked) while the fields fedmesh does read are validated (types, port ranges, names).
 */
import { z } from 'zod';
import {
  BooleanSchema,
  Dns1123LabelSchema,
  Dns1123SubdomainSchema,
  IanaSvcNameSchema,
  LabelsSchema,
  NonNegativeInt32Schema,
  PortNumberSchema,
  requiredString,
  StringMapSchema,
  whenValid,
} from './common.js';
import { describeValue } from './issues.js';

/** K8sProtocolSchema is a Kubernetes port protocol: TCP (the default), UDP or SCTP. */
export const K8sProtocolSchema = z.enum(['TCP', 'UDP', 'SCTP']);

/**
 * IntOrStringPortSchema is a Kubernetes `IntOrString` port reference such as a Service `targetPort`: a port
 * number (1..65535) or a named container port (IANA_SVC_NAME, at most 15 characters of `[a-z0-9-]`).
 */
export const IntOrStringPortSchema = z
  .union([z.number(), z.string()], {
    error: (iss) =>
      iss.input === undefined ? 'required' : `must be a port number or a port name, got ${describeValue(iss.input)}`,
  })
  .superRefine((v, ctx) => {
    if (typeof v === 'number') {
      const r = PortNumberSchema.safeParse(v);
      if (!r.success)
        ctx.addIssue({ code: 'custom', message: `must be a port number in 1..65535 or a port name, got ${v}` });
    } else {
      const r = IanaSvcNameSchema.safeParse(v);
      if (!r.success) ctx.addIssue({ code: 'custom', message: r.error.issues[0]?.message ?? 'invalid port name' });
    }
  }, whenValid);

/**
 * ServicePortSchema is a Kubernetes `ServicePort`: `port` (1..65535, required), `targetPort` (number or
 * container port name; defaults to `port` when absent), `protocol` (default TCP), `name`, `appProtocol`
 * (e.g. `http`, `kubernetes.io/h2c`; Istio uses it to pick the protocol) and `nodePort`.
 */
export const ServicePortSchema = z.looseObject({
  name: Dns1123LabelSchema.optional(),
  port: PortNumberSchema,
  targetPort: IntOrStringPortSchema.optional(),
  protocol: K8sProtocolSchema.default('TCP'),
  appProtocol: requiredString().optional(),
  nodePort: PortNumberSchema.optional(),
});

/** ServicePort is a parsed Kubernetes `ServicePort` (`protocol` always set). */
export type ServicePort = z.infer<typeof ServicePortSchema>;

/**
 * ServiceSpecSchema is the part of a Kubernetes `ServiceSpec` fedmesh reads: `selector`, `ports` (with more
 * than one port, each needs a unique `name`), `type` (default ClusterIP), `clusterIP` (`None` = headless),
 * `clusterIPs` and `externalName`.
 */
export const ServiceSpecSchema = z
  .looseObject({
    selector: StringMapSchema.optional(),
    ports: z.array(ServicePortSchema).optional(),
    type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).default('ClusterIP'),
    clusterIP: requiredString().optional(),
    clusterIPs: z.array(requiredString()).optional(),
    externalName: requiredString().optional(),
  })
  .superRefine((spec, ctx) => {
    const ports = spec.ports ?? [];
    const names = new Set<string>();
    ports.forEach((p, i) => {
      if (ports.length > 1 && p.name === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['ports', i, 'name'],
          message: 'required when the Service has more than one port',
        });
      }
      if (p.name !== undefined && names.has(p.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['ports', i, 'name'],
          message: `duplicate port name ${JSON.stringify(p.name)}`,
        });
      }
      if (p.name !== undefined) names.add(p.name);
    });
  }, whenValid);

/** ServiceSpec is a parsed Kubernetes Service `spec`. */
export type ServiceSpec = z.infer<typeof ServiceSpecSchema>;

/** ContainerPortSchema is a Kubernetes `ContainerPort`: `containerPort` (1..65535), `name` (IANA_SVC_NAME), `protocol` (default TCP), `hostPort`. */
export const ContainerPortSchema = z.looseObject({
  containerPort: PortNumberSchema,
  name: IanaSvcNameSchema.optional(),
  protocol: K8sProtocolSchema.default('TCP'),
  hostPort: PortNumberSchema.optional(),
});

/** EnvVarSchema is a Kubernetes `EnvVar`: a `name` and a literal `value` (or a `valueFrom` reference, not interpreted). */
export const EnvVarSchema = z.looseObject({
  name: requiredString().min(1),
  value: z.string().optional(),
  valueFrom: z.looseObject({}).optional(),
});

/**
 * ContainerSchema is the part of a Kubernetes `Container` fedmesh reads: `name` (DNS-1123 label), `image`,
 * `command`, `args`, `ports` and `env`.
 */
export const ContainerSchema = z.looseObject({
  name: Dns1123LabelSchema,
  image: requiredString().min(1),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  ports: z.array(ContainerPortSchema).optional(),
  env: z.array(EnvVarSchema).optional(),
});

/** Container is a parsed Kubernetes `Container`. */
export type Container = z.infer<typeof ContainerSchema>;

/**
 * PodSpecSchema is the part of a Kubernetes `PodSpec` fedmesh reads: `serviceAccountName` (absent means the
 * namespace's `default` ServiceAccount), `containers` (at least one), `initContainers` and `hostNetwork`.
 */
export const PodSpecSchema = z.looseObject({
  serviceAccountName: Dns1123SubdomainSchema.optional(),
  containers: z.array(ContainerSchema).min(1),
  initContainers: z.array(ContainerSchema).optional(),
  hostNetwork: BooleanSchema.optional(),
});

/** PodSpec is a parsed Kubernetes `PodSpec`. */
export type PodSpec = z.infer<typeof PodSpecSchema>;

/**
 * LabelSelectorSchema is a Kubernetes `LabelSelector`: `matchLabels` and `matchExpressions[] {key, operator
 * In|NotIn|Exists|DoesNotExist, values}`, all of which must hold.
 */
export const LabelSelectorSchema = z.looseObject({
  matchLabels: LabelsSchema.optional(),
  matchExpressions: z
    .array(
      z.looseObject({
        key: requiredString().min(1),
        operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
        values: z.array(z.string()).optional(),
      }),
    )
    .optional(),
});

/** LabelSelector is a parsed Kubernetes `LabelSelector`. */
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;

/**
 * matchesLabelSelector reports whether `labels` satisfy `selector` with Kubernetes semantics: every
 * `matchLabels` entry is present and equal, and every `matchExpressions` entry holds. An empty selector
 * matches everything.
 */
export function matchesLabelSelector(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const value = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (value === undefined || !values.includes(value)) return false;
        break;
      case 'NotIn':
        if (value !== undefined && values.includes(value)) return false;
        break;
      case 'Exists':
        if (value === undefined) return false;
        break;
      case 'DoesNotExist':
        if (value !== undefined) return false;
        break;
    }
  }
  return true;
}

/** PodTemplateSpecSchema is a Kubernetes `PodTemplateSpec`: `metadata {labels, annotations}` and a {@link PodSpecSchema} `spec`. */
export const PodTemplateSpecSchema = z.looseObject({
  metadata: z.looseObject({ labels: LabelsSchema.optional(), annotations: StringMapSchema.optional() }).prefault({}),
  spec: PodSpecSchema,
});

/**
 * DeploymentSpecSchema is the part of an apps/v1 `DeploymentSpec` fedmesh reads: `replicas` (default 1),
 * `selector` (required, must match the template's labels) and the pod `template`.
 */
export const DeploymentSpecSchema = z
  .looseObject({
    replicas: NonNegativeInt32Schema.default(1),
    selector: LabelSelectorSchema,
    template: PodTemplateSpecSchema,
  })
  .superRefine((spec, ctx) => {
    const empty =
      Object.keys(spec.selector.matchLabels ?? {}).length === 0 && (spec.selector.matchExpressions ?? []).length === 0;
    if (empty) {
      ctx.addIssue({ code: 'custom', path: ['selector'], message: 'must not be empty' });
    } else if (!matchesLabelSelector(spec.selector, spec.template.metadata.labels ?? {})) {
      ctx.addIssue({ code: 'custom', path: ['template', 'metadata', 'labels'], message: 'must match spec.selector' });
    }
  }, whenValid);

/** DeploymentSpec is a parsed apps/v1 Deployment `spec` (`replicas` always set). */
export type DeploymentSpec = z.infer<typeof DeploymentSpecSchema>;

/**
 * PodStatusSchema is the part of a Kubernetes `PodStatus` fedmesh reads: `phase` (Pending, Running,
 * Succeeded, Failed, Unknown), `podIP`, `podIPs[] {ip}`, `hostIP` and `conditions[] {type, status
 * True|False|Unknown}` (a pod is ready when its `Ready` condition is `True`).
 */
export const PodStatusSchema = z.looseObject({
  phase: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']).optional(),
  podIP: requiredString().optional(),
  podIPs: z.array(z.looseObject({ ip: requiredString() })).optional(),
  hostIP: requiredString().optional(),
  conditions: z
    .array(z.looseObject({ type: requiredString(), status: z.enum(['True', 'False', 'Unknown']) }))
    .optional(),
});

/** PodStatus is a parsed Kubernetes `PodStatus`. */
export type PodStatus = z.infer<typeof PodStatusSchema>;
