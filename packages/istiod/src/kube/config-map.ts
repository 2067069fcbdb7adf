import { z } from 'zod';
import { meshErrorMap, toValidationIssues } from '@fedmesh/api';
import type { KubeConfig } from '@kubernetes/client-node';
import { kubeRequestJson, statusMessage } from './http.js';
import type { MirroredKind } from './kinds.js';

/** ConfigMapObject is a stored core v1 ConfigMap: its name, namespace and string `data`. */
export interface ConfigMapObject {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: { name: string; namespace: string };
  data: Record<string, string>;
}

const configMapSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string().min(1), namespace: z.string().min(1) }),
  data: z.record(z.string(), z.string()).nullish(),
});

/**
 * configMapKind is the {@link MirroredKind} of one ConfigMap, `namespace/name`, watched in its namespace with the
 * field selector `metadata.name=<name>` (so a namespaced Role suffices); stored as a {@link ConfigMapObject}.
 */
export function configMapKind(namespace: string, name: string): MirroredKind {
  return {
    kind: 'ConfigMap',
    group: '',
    version: 'v1',
    plural: 'configmaps',
    namespaced: true,
    namespace,
    fieldSelector: `metadata.name=${name}`,
    validate(obj) {
      const r = configMapSchema.safeParse(obj, { error: meshErrorMap });
      if (!r.success) return { ok: false, issues: toValidationIssues(r.error.issues) };
      const m = r.data.metadata;
      const out: ConfigMapObject = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: m.name, namespace: m.namespace },
        data: r.data.data ?? {},
      };
      return { ok: true, object: out };
    },
  };
}

/**
 * readConfigMap GETs one ConfigMap and returns its `data` (empty when it has none), or undefined when it does not
 * exist (404). Throws on any other answer, a network error or `timeoutMs`.
 */
export async function readConfigMap(
  kc: KubeConfig,
  namespace: string,
  name: string,
  timeoutMs: number,
): Promise<Record<string, string> | undefined> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/configmaps/${encodeURIComponent(name)}`;
  const res = await kubeRequestJson(kc, { method: 'GET', path, timeoutMs, maxBytes: 4 * 1024 * 1024 });
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`GET ${path}: HTTP ${res.status}: ${statusMessage(res.body) ?? ''}`);
  const data = (res.body as { data?: unknown } | undefined)?.data;
  return typeof data === 'object' && data !== null ? (data as Record<string, string>) : {};
}
