import { z } from 'zod';
import { TypeUrl, decodeAny, type AnyMessage } from '@fedmesh/api/xds';
import type { DecodeResult, XdsResourceType } from '@fedmesh/xds';
import { AddressSchema, DurationSchema, TcpProxySchema, formatZodError } from '../xds/envoy-schemas.js';

const TLS_INSPECTOR = z.strictObject({
  name: z.literal('envoy.filters.listener.tls_inspector'),
  typed_config: z.strictObject({
    '@type': z.literal('type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector'),
  }),
});

/**
 * GatewayFilterChainSchema is a `config.listener.v3.FilterChain` of a gateway listener: matched by SNI
 * (`server_names`, exact or `*.suffix`) and `transport_protocol: tls`, holding exactly one `tcp_proxy`. There is
 * no `transport_socket`: a chain that would terminate TLS is refused, since the gateway only passes TLS through.
 */
export const GatewayFilterChainSchema = z.strictObject({
  name: z.string().optional(),
  filter_chain_match: z
    .strictObject({
      server_names: z.array(z.string().min(1).max(255)).optional(),
      transport_protocol: z.enum(['tls']).optional(),
    })
    .optional(),
  filters: z
    .array(z.strictObject({ name: z.literal('envoy.filters.network.tcp_proxy'), typed_config: TcpProxySchema }))
    .length(1),
});
/** EnvoyGatewayFilterChain is a decoded {@link GatewayFilterChainSchema}. */
export type EnvoyGatewayFilterChain = z.infer<typeof GatewayFilterChainSchema>;

/**
 * GatewayListenerSchema is a `config.listener.v3.Listener` as an east-west gateway serves it (Istio's
 * AUTO_PASSTHROUGH shape): the tls_inspector listener filter and SNI-matched `tcp_proxy` filter chains.
 * `listener_filters_timeout` bounds the wait for the ClientHello (Envoy's default 15 s).
 */
export const GatewayListenerSchema = z
  .strictObject({
    '@type': z.string().optional(),
    name: z.string().min(1),
    address: AddressSchema,
    filter_chains: z.array(GatewayFilterChainSchema).min(1),
    listener_filters: z.array(TLS_INSPECTOR).min(1),
    listener_filters_timeout: DurationSchema.optional(),
    traffic_direction: z.enum(['UNSPECIFIED', 'INBOUND', 'OUTBOUND']).optional(),
    metadata: z.unknown().optional(),
  })
  .superRefine((l, ctx) => {
    const seen = new Map<string, number>();
    l.filter_chains.forEach((fc, i) => {
      for (const n of fc.filter_chain_match?.server_names ?? []) {
        const k = n.toLowerCase();
        const prev = seen.get(k);
        if (prev !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['filter_chains', i, 'filter_chain_match', 'server_names'],
            message: `server name ${n} is already matched by filter_chains[${prev}]`,
          });
        else seen.set(k, i);
      }
    });
  });
/** EnvoyGatewayListener is a decoded {@link GatewayListenerSchema}. */
export type EnvoyGatewayListener = z.infer<typeof GatewayListenerSchema>;

/**
 * GatewayListenerType decodes and validates the Listeners of a proxy in gateway (router) mode. A Listener it does
 * not implement (an HTTP connection manager, a TLS-terminating chain, an unknown field) fails with its field path,
 * so the whole response is NACKed and the last good listeners keep serving.
 */
export const GatewayListenerType: XdsResourceType<EnvoyGatewayListener> = {
  typeUrl: TypeUrl.Listener,
  decode(any: AnyMessage): DecodeResult<EnvoyGatewayListener> {
    let raw: Record<string, unknown>;
    try {
      raw = decodeAny(any);
    } catch (err) {
      return { name: '?', error: `undecodable ${TypeUrl.Listener}: ${(err as Error).message}` };
    }
    const name = typeof raw.name === 'string' ? raw.name : '?';
    const parsed = GatewayListenerSchema.safeParse(raw);
    return parsed.success ? { name, value: parsed.data } : { name, error: formatZodError(parsed.error) };
  },
};

/**
 * matchFilterChain picks a gateway (or ingress) filter chain for a TLS connection by SNI, as Envoy orders matches: an exact
 * `server_names` entry first, then the longest `*.suffix` wildcard, then a chain with no `server_names`.
 * Returns undefined when none matches (the connection is closed).
 */
export function matchFilterChain<
  C extends { filter_chain_match?: { server_names?: string[] | undefined } | undefined } = EnvoyGatewayFilterChain,
>(chains: readonly C[], serverName: string | undefined): C | undefined {
  const sni = serverName?.toLowerCase();
  let wildcard: { chain: C; len: number } | undefined;
  let catchAll: C | undefined;
  for (const c of chains) {
    const names = c.filter_chain_match?.server_names ?? [];
    if (names.length === 0) {
      catchAll ??= c;
      continue;
    }
    if (sni === undefined) continue;
    for (const n of names) {
      const k = n.toLowerCase();
      if (k === sni) return c;
      if (k.startsWith('*.') && sni.endsWith(k.slice(1)) && (!wildcard || k.length > wildcard.len))
        wildcard = { chain: c, len: k.length };
    }
  }
  return wildcard?.chain ?? catchAll;
}
