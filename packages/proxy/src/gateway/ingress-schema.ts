import { X509Certificate, createPrivateKey } from 'node:crypto';
import { z } from 'zod';
import { TypeUrl, decodeAny, type AnyMessage } from '@fedmesh/api/xds';
import type { DecodeResult, XdsResourceType } from '@fedmesh/xds';
import type { AcceptedListener } from '../listener-manager.js';
import { formatZodError, hcmOf, type EnvoyFilterChain } from '../xds/envoy-schemas.js';
import { ListenerType } from '../xds/resource-types.js';

/** ROOTCA_SECRET is the SDS name of the mesh trust bundle (Istio's). */
export const ROOTCA_SECRET = 'ROOTCA';

/**
 * downstreamSdsNames returns the SDS names a TLS-terminating filter chain needs: its certificate
 * (`tls_certificate_sds_secret_configs[0]`) and, for client verification, its validation context. None for a
 * plaintext chain.
 */
export function downstreamSdsNames(chain: EnvoyFilterChain): { certificate?: string; validation?: string } {
  const ctx = chain.transport_socket?.typed_config.common_tls_context;
  if (!ctx) return {};
  const certificate = ctx.tls_certificate_sds_secret_configs?.[0]?.name;
  const validation = ctx.validation_context_sds_secret_config?.name;
  return { ...(certificate ? { certificate } : {}), ...(validation ? { validation } : {}) };
}

/**
 * checkIngressListener refuses what an ingress gateway does not serve, with the field path: a filter chain that is
 * not an HTTP connection manager (tcp_proxy), a destination match (`destination_port`, `prefix_ranges`: ingress
 * chains are chosen by SNI alone), a TLS chain without an SDS certificate, or one that validates peers
 * by mesh identity (`combined_validation_context`, a sidecar's mTLS). Returns the problem, or undefined.
 */
export function checkIngressListener(l: AcceptedListener): string | undefined {
  for (const [i, chain] of l.config.filter_chains.entries()) {
    if (!hcmOf(chain))
      return `filter_chains[${i}].filters[0]: only HTTP connection managers are served by ingress gateways`;
    // Ingress chains are chosen by SNI only (ingress-listeners.ts); a destination match would be ignored.
    const m = chain.filter_chain_match;
    if ((m?.prefix_ranges?.length ?? 0) > 0 || m?.destination_port !== undefined)
      return `filter_chains[${i}].filter_chain_match: destination matches are not served by ingress gateways`;
    const ctx = chain.transport_socket?.typed_config;
    if (!ctx) continue;
    const where = `filter_chains[${i}].transport_socket.typed_config`;
    if (!downstreamSdsNames(chain).certificate)
      return `${where}.common_tls_context.tls_certificate_sds_secret_configs: a TLS-terminating chain needs an SDS certificate`;
    if (ctx.common_tls_context.combined_validation_context)
      return `${where}.common_tls_context.combined_validation_context: mesh mTLS is not terminated by ingress gateways`;
    if (ctx.require_client_certificate?.value === true && !downstreamSdsNames(chain).validation)
      return `${where}.require_client_certificate: needs validation_context_sds_secret_config`;
  }
  return undefined;
}

/**
 * IngressListenerType decodes an ingress gateway's Listeners with the sidecar's Listener decoder (same schema,
 * inline routes and RBAC compiled) and then {@link checkIngressListener}: anything else is NACKed with its path.
 */
export const IngressListenerType: XdsResourceType<AcceptedListener> = {
  typeUrl: TypeUrl.Listener,
  decode(any: AnyMessage): DecodeResult<AcceptedListener> {
    const r = ListenerType.decode(any);
    if ('error' in r) return r;
    const problem = checkIngressListener(r.value);
    return problem ? { name: r.name, error: problem } : r;
  },
};

/**
 * IngressSecret is an SDS Secret as an ingress gateway uses it: a server certificate (`tls`: chain and key PEM, the
 * key checked against the first certificate) or a validation context (`ca`: trusted CA PEM: the mesh `ROOTCA`, or a
 * MUTUAL server's client CA). Never log `keyPem`.
 */
export type IngressSecret =
  { name: string; kind: 'tls'; certChainPem: string; keyPem: string } | { name: string; kind: 'ca'; caPem: string };

const dataSource = z.strictObject({ inline_string: z.string().min(1) });
const IngressSecretSchema = z
  .strictObject({
    '@type': z.string().optional(),
    name: z.string().min(1),
    tls_certificate: z.strictObject({ certificate_chain: dataSource, private_key: dataSource }).optional(),
    validation_context: z.strictObject({ trusted_ca: dataSource }).optional(),
  })
  .refine((s) => (s.tls_certificate === undefined) !== (s.validation_context === undefined), {
    message: 'exactly one of tls_certificate, validation_context must be set',
  });

function hasCertificate(pem: string): boolean {
  try {
    new X509Certificate(pem);
    return true;
  } catch {
    return false;
  }
}

function compileSecret(s: z.infer<typeof IngressSecretSchema>): IngressSecret {
  if (s.validation_context) {
    const caPem = s.validation_context.trusted_ca.inline_string;
    if (!hasCertificate(caPem)) throw new Error('validation_context.trusted_ca.inline_string: no PEM certificate');
    return { name: s.name, kind: 'ca', caPem };
  }
  const tc = s.tls_certificate;
  if (!tc) throw new Error('tls_certificate: required');
  const certChainPem = tc.certificate_chain.inline_string;
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certChainPem);
  } catch {
    throw new Error('tls_certificate.certificate_chain.inline_string: no PEM certificate');
  }
  let ok: boolean;
  try {
    ok = leaf.checkPrivateKey(createPrivateKey(tc.private_key.inline_string));
  } catch {
    throw new Error('tls_certificate.private_key.inline_string: not a PEM private key (value not shown)');
  }
  if (!ok) throw new Error('tls_certificate.private_key: does not match the first certificate of certificate_chain');
  return { name: s.name, kind: 'tls', certChainPem, keyPem: tc.private_key.inline_string };
}

/**
 * IngressSecretType decodes SDS Secrets for an ingress gateway ({@link IngressSecret}). Errors carry field paths and
 * never a value: a Secret holds key material.
 */
export const IngressSecretType: XdsResourceType<IngressSecret> = {
  typeUrl: TypeUrl.Secret,
  decode(any: AnyMessage): DecodeResult<IngressSecret> {
    let raw: Record<string, unknown>;
    try {
      raw = decodeAny(any);
    } catch (err) {
      return { name: '?', error: `undecodable ${TypeUrl.Secret}: ${(err as Error).message}` };
    }
    const name = typeof raw.name === 'string' ? raw.name : '?';
    const parsed = IngressSecretSchema.safeParse(raw);
    if (!parsed.success) return { name, error: formatZodError(parsed.error) };
    try {
      return { name, value: compileSecret(parsed.data) };
    } catch (err) {
      return { name, error: (err as Error).message };
    }
  },
};
