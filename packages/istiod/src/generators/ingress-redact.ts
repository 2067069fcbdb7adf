/** REDACTED stands in for key material in debug output. */
export const REDACTED = '[redacted]';

/**
 * redactConfigObject returns a config object fit for debug output (`/debug/configz`): a Secret's `data` and
 * `stringData` values are replaced by {@link REDACTED} (the keys stay, so `tls.crt`/`tls.key`/`ca.crt` presence is
 * visible); any other object is returned as is.
 */
export function redactConfigObject<T extends { kind: string }>(o: T): T {
  if (o.kind !== 'Secret') return o;
  const s = o as T & { data?: Record<string, unknown>; stringData?: Record<string, unknown> };
  const hide = (m: Record<string, unknown> | undefined): Record<string, string> | undefined =>
    m === undefined ? undefined : Object.fromEntries(Object.keys(m).map((k) => [k, REDACTED]));
  const data = hide(s.data);
  const stringData = hide(s.stringData);
  return { ...o, ...(data ? { data } : {}), ...(stringData ? { stringData } : {}) };
}

/**
 * redactXdsResource returns a decoded xDS resource fit for debug output (`/debug/config_dump`): an SDS Secret's
 * `tls_certificate.private_key` is replaced by {@link REDACTED} (Envoy's config dump does the same); anything else
 * is returned as is.
 */
export function redactXdsResource(r: Record<string, unknown>): Record<string, unknown> {
  const tc = r.tls_certificate as Record<string, unknown> | undefined;
  if (!tc || tc.private_key === undefined) return r;
  return { ...r, tls_certificate: { ...tc, private_key: { inline_string: REDACTED } } };
}
