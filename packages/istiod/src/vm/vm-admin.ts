import { z } from 'zod';
import { Dns1123LabelSchema, Dns1123SubdomainSchema, meshErrorMap, toValidationIssues } from '@fedmesh/api';
import type { Logger } from 'pino';
import type { ConfigStore, StoredObject } from '../config/store.js';
import type { MeshSettings } from '../push-context.js';
import type { VmTokenAuthenticator } from '../ca/vm-token-authenticator.js';
import type { WorkloadGroupObject } from './auto-registration.js';

/** VmAdminReply is a status code and a JSON body. */
export interface VmAdminReply {
  status: number;
  body: unknown;
}

/** VmAdmin serves the VM routes of istiod's admin API. */
export interface VmAdmin {
  /** handle answers `route` (`METHOD /path`) or resolves undefined when it is not a VM route. */
  handle(route: string, readBody: () => Promise<string>): Promise<VmAdminReply | undefined>;
}

/** VmBootstrapRequestSchema is the body of `POST /v1/vm/bootstrap`. */
export const VmBootstrapRequestSchema = z.strictObject({
  namespace: Dns1123LabelSchema,
  workloadGroup: Dns1123SubdomainSchema,
  /** ttlSeconds of the token: 60 s to 24 h, default 1 h. */
  ttlSeconds: z.number().int().min(60).max(86_400).optional(),
});

/** VmBootstrapResponse is what `fedmesh vm config` turns into a VM's onboarding files. */
export interface VmBootstrapResponse {
  /** token is the bootstrap token (a secret: the CLI writes it with mode 0600). */
  token: string;
  expiresAt: string;
  workloadGroup: { namespace: string; name: string; spec: WorkloadGroupObject['spec'] };
  serviceAccount: string;
  mesh: { trustDomain: string; clusterId: string; network: string };
  /** discoveryAddress is istiod's ADS and CA address over TLS (15012), `host:port`. */
  discoveryAddress: string;
  /** rootCertPem is the trust bundle (every root the mesh trusts). */
  rootCertPem: string;
}

/** VmAdminDeps are what the VM routes read. */
export interface VmAdminDeps {
  store: ConfigStore<StoredObject>;
  tokens: VmTokenAuthenticator;
  mesh: MeshSettings;
  discoveryAddress: () => string;
  trustBundlePem: () => string;
  log: Logger;
}

/**
 * createVmAdmin serves `POST /v1/vm/bootstrap` (`{namespace, workloadGroup, ttlSeconds?}`): for a WorkloadGroup in
 * istiod's config it mints a bootstrap token bound to the group's namespace, ServiceAccount and name (1 h by default)
 * and answers a {@link VmBootstrapResponse}. 400 with field paths for a bad body, 404 when the group does not exist.
 * The token is never logged. The admin API checks the admin bearer token before any route runs.
 */
export function createVmAdmin(deps: VmAdminDeps): VmAdmin {
  return {
    async handle(route, readBody) {
      if (route !== 'POST /v1/vm/bootstrap') return undefined;
      let input: unknown;
      try {
        input = JSON.parse(await readBody());
      } catch {
        return { status: 400, body: { error: 'body must be JSON' } };
      }
      const parsed = VmBootstrapRequestSchema.safeParse(input, { error: meshErrorMap });
      if (!parsed.success) {
        const issues = toValidationIssues(parsed.error.issues);
        return { status: 400, body: { error: issues.map((i) => `${i.path}: ${i.message}`).join('; '), issues } };
      }
      const { namespace, workloadGroup, ttlSeconds } = parsed.data;
      const wg = deps.store.get(`WorkloadGroup/${namespace}/${workloadGroup}`) as WorkloadGroupObject | undefined;
      if (!wg)
        return {
          status: 404,
          body: { error: `WorkloadGroup ${namespace}/${workloadGroup} is not in istiod's config; apply it first` },
        };
      const serviceAccount = wg.spec.template.serviceAccount ?? 'default';
      const minted = await deps.tokens.mint({
        namespace,
        serviceAccount,
        workloadGroup,
        ...(ttlSeconds !== undefined ? { ttlMs: ttlSeconds * 1000 } : {}),
      });
      deps.log.info(
        { namespace, workloadGroup, serviceAccount, expiresAt: minted.expiresAt.toISOString() },
        'VM bootstrap token minted',
      );
      const body: VmBootstrapResponse = {
        token: minted.token,
        expiresAt: minted.expiresAt.toISOString(),
        workloadGroup: { namespace, name: workloadGroup, spec: wg.spec },
        serviceAccount,
        mesh: { trustDomain: deps.mesh.trustDomain, clusterId: deps.mesh.clusterId, network: deps.mesh.network },
        discoveryAddress: deps.discoveryAddress(),
        rootCertPem: deps.trustBundlePem(),
      };
      return { status: 200, body };
    },
  };
}
