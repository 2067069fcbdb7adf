/**
 * Gateway (networking.istio.io), following https://istio.io/latest/docs/reference/config/networking/gateway/.
 * Every message is strict.
 */
import { z } from 'zod';
import {
  BooleanSchema,
  parseProtocol,
  PortNumberSchema,
  ProtocolSchema,
  requiredString,
  StringMapSchema,
  whenValid,
} from './common.js';

/**
 * PortSchema is Istio's `Port` (used by Gateway servers and ServiceEntry ports): `number` (1..65535,
 * required), `protocol` (required, one of `PROTOCOLS`, any case), `name` and `targetPort`.
 */
export const PortSchema = z.strictObject({
  number: PortNumberSchema,
  protocol: ProtocolSchema,
  name: requiredString().optional(),
  targetPort: PortNumberSchema.optional(),
});

/** Port is a parsed Istio `Port`. */
export type Port = z.infer<typeof PortSchema>;

/**
 * SERVER_TLS_MODES lists Istio's `ServerTLSSettings.TLSmode` values: PASSTHROUGH, SIMPLE, MUTUAL,
 * AUTO_PASSTHROUGH (SNI-routed mTLS pass-through, used by east-west gateways on 15443), ISTIO_MUTUAL,
 * OPTIONAL_MUTUAL.
 */
export const SERVER_TLS_MODES = [
  'PASSTHROUGH',
  'SIMPLE',
  'MUTUAL',
  'AUTO_PASSTHROUGH',
  'ISTIO_MUTUAL',
  'OPTIONAL_MUTUAL',
] as const;

const TlsVersion = z.enum(['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3']);

/**
 * ServerTLSSettingsSchema is Istio's `ServerTLSSettings`: `httpsRedirect`, `mode` ({@link SERVER_TLS_MODES}),
 * certificate files (`serverCertificate`, `privateKey`, `caCertificates`, `caCrl`) or `credentialName(s)` or
 * `tlsCertificates[]`, SAN/SPKI/hash pinning, protocol versions and `cipherSuites`. SIMPLE, MUTUAL and
 * OPTIONAL_MUTUAL need a certificate and key (or a credential); the mutual modes also need
 * `caCertificates` (or a credential); ISTIO_MUTUAL takes no certificate files.
 */
export const ServerTLSSettingsSchema = z
  .strictObject({
    httpsRedirect: BooleanSchema.optional(),
    mode: z.enum(SERVER_TLS_MODES).optional(),
    serverCertificate: requiredString().optional(),
    privateKey: requiredString().optional(),
    caCertificates: requiredString().optional(),
    caCrl: requiredString().optional(),
    credentialName: requiredString().optional(),
    credentialNames: z.array(requiredString()).optional(),
    tlsCertificates: z
      .array(
        z.strictObject({
          serverCertificate: requiredString(),
          privateKey: requiredString(),
          caCertificates: requiredString().optional(),
        }),
      )
      .optional(),
    subjectAltNames: z.array(requiredString()).optional(),
    verifyCertificateSpki: z.array(requiredString()).optional(),
    verifyCertificateHash: z.array(requiredString()).optional(),
    minProtocolVersion: TlsVersion.optional(),
    maxProtocolVersion: TlsVersion.optional(),
    cipherSuites: z.array(requiredString()).optional(),
  })
  .superRefine((t, ctx) => {
    const credential =
      t.credentialName !== undefined ||
      (t.credentialNames !== undefined && t.credentialNames.length > 0) ||
      (t.tlsCertificates !== undefined && t.tlsCertificates.length > 0);
    const mode = t.mode ?? 'PASSTHROUGH';
    if ((mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') && !credential) {
      for (const key of ['serverCertificate', 'privateKey'] as const) {
        if (t[key] === undefined)
          ctx.addIssue({ code: 'custom', path: [key], message: `required when mode is ${mode}` });
      }
      if (mode !== 'SIMPLE' && t.caCertificates === undefined) {
        ctx.addIssue({ code: 'custom', path: ['caCertificates'], message: `required when mode is ${mode}` });
      }
    }
    if (mode === 'ISTIO_MUTUAL') {
      for (const key of ['serverCertificate', 'privateKey', 'caCertificates', 'credentialName'] as const) {
        if (t[key] !== undefined)
          ctx.addIssue({ code: 'custom', path: [key], message: 'must not be set when mode is ISTIO_MUTUAL' });
      }
    }
  }, whenValid);

/** ServerTLSSettings is a parsed Istio `ServerTLSSettings`. */
export type ServerTLSSettings = z.infer<typeof ServerTLSSettingsSchema>;

/**
 * GatewayHostSchema is a Gateway server host: `[namespace/]host`, where namespace is a name, `*`, `.` or `~`
 * and host is a DNS name, `*` or a `*.`-prefixed wildcard.
 */
export const GatewayHostSchema = requiredString().regex(
  /^(?:(?:\*|\.|~|[a-z0-9]([-a-z0-9]*[a-z0-9])?)\/)?(?:\*|(?:\*\.)?[^\s/*:]+)$/,
  { error: "must be [namespace/]host, where host is a DNS name, '*' or '*.suffix'" },
);

/**
 * ServerSchema is Istio's `Server`: the `port` to listen on, `bind` address, `hosts` exposed (at least one),
 * `tls` settings, `defaultEndpoint` and `name`.
 */
export const ServerSchema = z.strictObject({
  port: PortSchema,
  bind: requiredString().optional(),
  hosts: z.array(GatewayHostSchema).min(1),
  tls: ServerTLSSettingsSchema.optional(),
  defaultEndpoint: requiredString().optional(),
  name: requiredString().optional(),
});

/** Server is a parsed Istio Gateway `Server`. */
export type Server = z.infer<typeof ServerSchema>;

/**
 * GatewaySpecSchema is the `spec` of a Gateway: `selector` (labels of the gateway workloads) and `servers`
 * (at least one; port names unique across servers; HTTPS and TLS ports need `tls`).
 */
export const GatewaySpecSchema = z
  .strictObject({
    selector: StringMapSchema.optional(),
    servers: z.array(ServerSchema).min(1),
  })
  .superRefine((g, ctx) => {
    const names = new Set<string>();
    g.servers.forEach((s, i) => {
      const protocol = parseProtocol(s.port.protocol);
      if ((protocol === 'HTTPS' || protocol === 'TLS') && s.tls === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'tls'],
          message: `required when port protocol is ${protocol}`,
        });
      }
      const name = s.port.name;
      if (name === undefined) return;
      if (names.has(name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['servers', i, 'port', 'name'],
          message: `duplicate port name ${JSON.stringify(name)}`,
        });
      }
      names.add(name);
    });
  }, whenValid);

/** GatewaySpec is a parsed Gateway `spec`. */
export type GatewaySpec = z.infer<typeof GatewaySpecSchema>;
