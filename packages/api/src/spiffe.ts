/**
 * SPIFFE IDs, per the SPIFFE ID specification
 * (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md), in Istio's workload form
 * `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 */
import { ErrorCode, MeshError } from './errors.js';

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN_BYTES = 255;
const SCHEME_PREFIX = 'spiffe://';

/**
 * SpiffeId is a workload identity in Istio's form: trust domain (e.g. `cluster.local`), Kubernetes
 * namespace and ServiceAccount name. {@link formatSpiffeId} turns it into
 * `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
 */
export interface SpiffeId {
  /** trustDomain is the lowercase trust domain name, e.g. `cluster.local`. */
  trustDomain: string;
  /** namespace is the workload's Kubernetes namespace. */
  namespace: string;
  /** serviceAccount is the workload's Kubernetes ServiceAccount name. */
  serviceAccount: string;
}

/**
 * SpiffeUri is any valid SPIFFE ID split into its trust domain and its path (`''` for a trust domain's own
 * ID, otherwise starting with `/`), as returned by {@link parseSpiffeUri}.
 */
export interface SpiffeUri {
  /** trustDomain is the lowercase trust domain name. */
  trustDomain: string;
  /** path is `''` or `/seg1/seg2…`, with no trailing slash. */
  path: string;
}

function invalid(uri: string, why: string): MeshError {
  return new MeshError(ErrorCode.INVALID_SPIFFE_ID, `invalid SPIFFE ID ${JSON.stringify(uri)}: ${why}`);
}

/**
 * trustDomainProblem returns why `td` is not a valid trust domain name (empty, longer than 255 bytes, or
 * containing characters outside `[a-z0-9._-]`), or undefined when it is valid.
 */
function trustDomainProblem(td: string): string | undefined {
  if (td === '') return 'trust domain is empty';
  if (Buffer.byteLength(td) > MAX_TRUST_DOMAIN_BYTES)
    return `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  if (td.includes('@')) return 'userinfo is not allowed';
  if (td.includes(':')) return 'a port is not allowed';
  if (!TRUST_DOMAIN_CHARS.test(td)) return 'trust domain may contain only lowercase letters, digits, ".", "-" and "_"';
  return undefined;
}

function segmentProblem(segment: string): string | undefined {
  if (segment === '') return 'path segments must not be empty';
  if (segment === '.' || segment === '..') return 'path segments must not be "." or ".."';
  if (!SEGMENT_CHARS.test(segment)) return 'path segments may contain only letters, digits, ".", "-" and "_"';
  return undefined;
}

/**
 * parseSpiffeUri validates any SPIFFE ID and splits it into trust domain and path. It follows the SPIFFE ID
 * spec: the scheme is exactly `spiffe://`; the trust domain is 1–255 bytes of `[a-z0-9._-]` (so no
 * uppercase, userinfo or port); path segments are non-empty, not `.` or `..`, and use `[a-zA-Z0-9._-]`;
 * there is no trailing slash, query, fragment or percent-encoding; the whole ID is at most 2048 bytes.
 * Throws a {@link MeshError} with code `FEDMESH_ERR_INVALID_SPIFFE_ID` saying which rule failed.
 */
export function parseSpiffeUri(uri: string): SpiffeUri {
  if (Buffer.byteLength(uri) > MAX_ID_BYTES) throw invalid(uri, `longer than ${MAX_ID_BYTES} bytes`);
  if (!uri.startsWith(SCHEME_PREFIX)) throw invalid(uri, 'scheme must be "spiffe://"');
  const rest = uri.slice(SCHEME_PREFIX.length);
  if (rest.includes('?')) throw invalid(uri, 'a query is not allowed');
  if (rest.includes('#')) throw invalid(uri, 'a fragment is not allowed');
  if (rest.includes('%')) throw invalid(uri, 'percent-encoded characters are not allowed');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem !== undefined) throw invalid(uri, tdProblem);
  if (path !== '') {
    if (path.endsWith('/')) throw invalid(uri, 'a trailing slash is not allowed');
    for (const segment of path.slice(1).split('/')) {
      const problem = segmentProblem(segment);
      if (problem !== undefined) throw invalid(uri, problem);
    }
  }
  return { trustDomain, path };
}

/**
 * parseSpiffeId parses a workload SPIFFE ID of Istio's form
 * `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` into its parts. The ID must be valid per
 * {@link parseSpiffeUri} and its path must be exactly those four segments. Throws a {@link MeshError} with
 * code `FEDMESH_ERR_INVALID_SPIFFE_ID` otherwise.
 */
export function parseSpiffeId(uri: string): SpiffeId {
  const { trustDomain, path } = parseSpiffeUri(uri);
  const segments = path.split('/').slice(1);
  const [ns, namespace, sa, serviceAccount] = segments;
  if (segments.length !== 4 || ns !== 'ns' || sa !== 'sa' || namespace === undefined || serviceAccount === undefined) {
    throw invalid(uri, 'path must be /ns/<namespace>/sa/<service-account>');
  }
  return { trustDomain, namespace, serviceAccount };
}

/**
 * formatSpiffeId returns `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>` for a workload
 * identity. Each part is validated as in {@link parseSpiffeUri} (trust domain `[a-z0-9._-]`, namespace and
 * ServiceAccount non-empty segments of `[a-zA-Z0-9._-]`, not `.`/`..`); throws a {@link MeshError} with code
 * `FEDMESH_ERR_INVALID_SPIFFE_ID` when one is not valid.
 */
export function formatSpiffeId(id: SpiffeId): string {
  const uri = `${SCHEME_PREFIX}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
  const tdProblem = trustDomainProblem(id.trustDomain);
  if (tdProblem !== undefined) throw invalid(uri, tdProblem);
  for (const [what, value] of [
    ['namespace', id.namespace],
    ['service account', id.serviceAccount],
  ] as const) {
    const problem = segmentProblem(value);
    if (problem !== undefined) throw invalid(uri, `${what}: ${problem}`);
  }
  if (Buffer.byteLength(uri) > MAX_ID_BYTES) throw invalid(uri, `longer than ${MAX_ID_BYTES} bytes`);
  return uri;
}
