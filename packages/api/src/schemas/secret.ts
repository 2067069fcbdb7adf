/**
 * Kubernetes v1 Secret, restricted to the type fedmesh reads: `kubernetes.io/tls`, the credential an Istio
 * Gateway server names with `tls.credentialName` (https://istio.io/latest/docs/tasks/traffic-management/ingress/secure-ingress/).
 * Messages never show a value: a Secret's data is key material.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { ObjectMetaSchema, whenValid } from './common.js';

/** TLS_SECRET_TYPE is the only Secret `type` fedmesh reads (Kubernetes' `kubernetes.io/tls`). */
export const TLS_SECRET_TYPE = 'kubernetes.io/tls';

/** TLS_SECRET_KEYS are the data keys of a TLS Secret: certificate chain, private key and (for MUTUAL) client CA. */
export const TLS_SECRET_KEYS = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** SecretDataSchema is a Secret's `data`: key → base64 value. A value is never echoed in a message. */
const SecretDataSchema = z.record(
  z.string(),
  z.unknown().superRefine((v, ctx) => {
    if (typeof v !== 'string' || v.replace(/\s+/g, '').length % 4 !== 0 || !BASE64.test(v.replace(/\s+/g, '')))
      ctx.addIssue({ code: 'custom', message: 'must be a base64 string (value not shown)' });
  }),
);

/** StringDataSchema is a Secret's `stringData`: key → plain value (Kubernetes merges it over `data`). */
const StringDataSchema = z.record(
  z.string(),
  z.unknown().superRefine((v, ctx) => {
    if (typeof v !== 'string') ctx.addIssue({ code: 'custom', message: 'must be a string (value not shown)' });
  }),
);

/** TlsSecretMaterial is the PEM text of a TLS Secret: `tls.crt`, `tls.key` and, when present, `ca.crt`. */
export interface TlsSecretMaterial {
  certChainPem: string;
  keyPem: string;
  caPem?: string;
}

/**
 * tlsSecretMaterial returns a TLS Secret's PEM values, `stringData` taking precedence over `data` (as the
 * Kubernetes API server merges them). Values the Secret lacks are undefined (`certChainPem`/`keyPem` empty).
 */
export function tlsSecretMaterial(s: {
  data?: Record<string, unknown> | undefined;
  stringData?: Record<string, unknown> | undefined;
}): TlsSecretMaterial {
  const read = (k: string): string | undefined => {
    const plain = s.stringData?.[k];
    if (typeof plain === 'string') return plain;
    const b64 = s.data?.[k];
    return typeof b64 === 'string' ? Buffer.from(b64, 'base64').toString('utf8') : undefined;
  };
  const ca = read(TLS_SECRET_KEYS.ca);
  return {
    certChainPem: read(TLS_SECRET_KEYS.cert) ?? '',
    keyPem: read(TLS_SECRET_KEYS.key) ?? '',
    ...(ca !== undefined && ca.trim() !== '' ? { caPem: ca } : {}),
  };
}

function certificatesOf(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * TlsSecretSchema is a Kubernetes v1 Secret of type `kubernetes.io/tls` (loose: unknown fields pass). `tls.crt`
 * must hold at least one PEM certificate and `tls.key` a PEM private key that matches the first certificate;
 * `ca.crt`, when present, PEM certificates (a MUTUAL server's client CA). Data comes from `data` (base64) or
 * `stringData`. Problems carry the field path (`data["tls.key"]`) and never the value.
 */
export const TlsSecretSchema = z
  .looseObject({
    apiVersion: z.literal('v1'),
    kind: z.literal('Secret'),
    metadata: ObjectMetaSchema,
    type: z.literal(TLS_SECRET_TYPE),
    data: SecretDataSchema.optional(),
    stringData: StringDataSchema.optional(),
  })
  .superRefine((s, ctx) => {
    const where = (k: string): PropertyKey[] =>
      typeof s.stringData?.[k] === 'string' ? ['stringData', k] : ['data', k];
    const m = tlsSecretMaterial(s);
    let certs: X509Certificate[] = [];
    if (m.certChainPem === '')
      ctx.addIssue({ code: 'custom', path: ['data', TLS_SECRET_KEYS.cert], message: 'required' });
    else {
      try {
        certs = certificatesOf(m.certChainPem);
        if (certs.length === 0) throw new Error('none');
      } catch {
        certs = [];
        ctx.addIssue({
          code: 'custom',
          path: where(TLS_SECRET_KEYS.cert),
          message: 'must hold PEM certificates (value not shown)',
        });
      }
    }
    let key: KeyObject | undefined;
    if (m.keyPem === '') ctx.addIssue({ code: 'custom', path: ['data', TLS_SECRET_KEYS.key], message: 'required' });
    else {
      try {
        key = createPrivateKey(m.keyPem);
      } catch {
        ctx.addIssue({
          code: 'custom',
          path: where(TLS_SECRET_KEYS.key),
          message: 'must hold a PEM private key (value not shown)',
        });
      }
    }
    const leaf = certs[0];
    if (leaf && key && !leaf.checkPrivateKey(key))
      ctx.addIssue({
        code: 'custom',
        path: where(TLS_SECRET_KEYS.key),
        message: `does not match the first certificate of ${TLS_SECRET_KEYS.cert}`,
      });
    if (m.caPem !== undefined) {
      let ok = false;
      try {
        ok = certificatesOf(m.caPem).length > 0;
      } catch {
        ok = false;
      }
      if (!ok)
        ctx.addIssue({
          code: 'custom',
          path: where(TLS_SECRET_KEYS.ca),
          message: 'must hold PEM certificates (value not shown)',
        });
    }
  }, whenValid);

/** TlsSecret is a parsed `kubernetes.io/tls` Secret. */
export type TlsSecret = z.infer<typeof TlsSecretSchema>;
