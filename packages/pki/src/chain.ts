// Which root of a trust bundle a certificate chain ends at (root rotation needs to know).
import { X509Certificate } from 'node:crypto';
import { splitPemBundle } from './pem.js';

function certs(pem: string | readonly string[]): X509Certificate[] {
  const blocks = typeof pem === 'string' ? splitPemBundle(pem) : pem.flatMap((p) => splitPemBundle(p));
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * chainRootIndex returns the index in `roots` of the root that `chain` ends at, or -1 when it ends at none of them.
 * `chain` is leaf first (PEM bundle or one PEM per element), with or without the root. The top certificate of the
 * chain either is one of the roots (same SHA-256 fingerprint) or was issued by it (issuer name matches and the
 * signature verifies under the root's key, Node's `X509Certificate.checkIssued` + `verify`). The links below the top
 * are not verified here: call it on chains TLS or the CA already verified. Throws when a PEM block is not a
 * certificate.
 */
export function chainRootIndex(chain: string | readonly string[], roots: string | readonly string[]): number {
  const path = certs(chain);
  const anchors = certs(roots);
  const top = path[path.length - 1];
  if (top === undefined) return -1;
  const same = anchors.findIndex((r) => r.fingerprint256 === top.fingerprint256);
  if (same >= 0) return same;
  return anchors.findIndex((r) => r.ca && top.checkIssued(r) && top.verify(r.publicKey));
}

/** certificateFingerprint returns a certificate's SHA-256 fingerprint as Node prints it (`AB:CD:…`, 95 characters). */
export function certificateFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}
