/**
 * Parsing multi-document YAML manifests (what `kubectl apply -f` takes) into validated resources. A bad
 * document is reported with its index and field path and skipped; the other documents still load.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments, type Document, type Node } from 'yaml';
import { ErrorCode } from './errors.js';
import { validateResource, type MeshResource } from './schemas/resource.js';

/**
 * ManifestError is one problem found in a manifest. `index` is the 0-based position of the YAML document in
 * the stream (every `---`-separated document counts, empty ones included); `path` is the field path inside
 * that document (`spec.http[0].route[1].weight`, `items[2].spec.host` inside a `kind: List`, `''` for the
 * document itself); `line`/`column` (1-based) point at that field, or at the nearest enclosing one that
 * exists. `severity: 'warning'` (code `FEDMESH_ERR_UNSUPPORTED`) marks a document of a kind fedmesh does not
 * handle, which was skipped; everything else is an error (code `FEDMESH_ERR_INVALID_CONFIG`).
 */
export interface ManifestError {
  /** file is the `file` option given to {@link parseManifests}, if any. */
  file?: string;
  /** index is the 0-based YAML document index within the text. */
  index: number;
  /** kind is the document's (or List item's) `kind`, when readable. */
  kind?: string;
  /** name is `metadata.name`, when readable. */
  name?: string;
  /** namespace is `metadata.namespace` (`default` when absent for fedmesh's own, namespaced kinds). */
  namespace?: string;
  /** path is the dotted field path inside the document, `''` for the document as a whole. */
  path: string;
  /** message says what is wrong, e.g. `must be ≤ 100`. */
  message: string;
  /** code is the stable error code. */
  code: ErrorCode;
  /** severity is `'warning'` for skipped unsupported kinds, `'error'` otherwise. */
  severity: 'error' | 'warning';
  /** line is the 1-based line of the offending field (or YAML syntax error), when known. */
  line?: number;
  /** column is the 1-based column matching `line`. */
  column?: number;
}

/** ParseManifestsOptions are the options of {@link parseManifests}: the `file` name to put in errors. */
export interface ParseManifestsOptions {
  /** file names the source in every {@link ManifestError} and in {@link formatManifestError}'s output. */
  file?: string;
}

/** ParseManifestsResult is what {@link parseManifests} returns: the valid resources in document order, and the problems. */
export interface ParseManifestsResult {
  /** resources are the documents (and List items) that validated, in order, with defaults applied. */
  resources: MeshResource[];
  /** errors are every error and warning found, in document order. */
  errors: ManifestError[];
}

type Segment = string | number;

/**
 * parsePath splits a path produced by the validators (`spec.http[0].match[0].headers["end-user"]`) back into
 * its keys and indices.
 */
function parsePath(path: string): Segment[] {
  const out: Segment[] = [];
  const re = /([A-Za-z_$][A-Za-z0-9_$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g;
  for (const m of path.matchAll(re)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
  }
  return out;
}

/** rangeOf finds the source offset of the node at `path` in `doc`, or of its nearest existing ancestor. */
function rangeOf(doc: Document, path: readonly Segment[]): number | undefined {
  let node: unknown = doc.contents;
  let offset = (node as Node | null)?.range?.[0];
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      offset = (item as Node).range?.[0] ?? offset;
    } else {
      break;
    }
  }
  return offset;
}

/** dropNulls removes mapping keys whose value is null (`labels:` with nothing after it), as Kubernetes treats them as unset. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropNulls);
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = dropNulls(v);
  return out;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * parseManifests parses YAML text holding any number of `---`-separated Kubernetes/Istio documents (as for
 * `kubectl apply -f`) with the `yaml` library's `parseAllDocuments`, and validates each document with
 * `validateResource`. Empty documents are skipped; a `kind: List` (or `*List`) contributes each of its
 * `items`; mapping keys set to null are treated as absent. A document that fails (YAML syntax, a schema
 * violation) produces one {@link ManifestError} per problem and is left out of `resources`, while the other
 * documents still load. A kind fedmesh does not handle (e.g. `Namespace`, `ConfigMap`) produces a
 * `severity: 'warning'` entry with code `FEDMESH_ERR_UNSUPPORTED` and is skipped. Never throws.
 */
export function parseManifests(text: string, opts: ParseManifestsOptions = {}): ParseManifestsResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const out: Output = {
    resources: [],
    errors: [],
    base: opts.file === undefined ? {} : { file: opts.file },
    position: (offset) => {
      if (offset === undefined) return {};
      const { line, col } = lineCounter.linePos(offset);
      return { line, column: col };
    },
  };
  docs.forEach((doc, index) => loadDocument(doc, index, out));
  return { resources: out.resources, errors: out.errors };
}

/** Output collects what {@link parseManifests} found, plus what every error needs (file, offset → line). */
interface Output extends ParseManifestsResult {
  base: { file?: string };
  position: (offset: number | undefined) => { line?: number; column?: number };
}

/** loadDocument validates one YAML document (or each item of a List) into `out`. */
function loadDocument(doc: Document.Parsed, index: number, out: Output): void {
  const documentError = (message: string, offset?: number): void => {
    out.errors.push({
      ...out.base,
      index,
      path: '',
      message,
      code: ErrorCode.INVALID_CONFIG,
      severity: 'error',
      ...out.position(offset),
    });
  };
  const syntax = doc.errors[0];
  if (syntax !== undefined) return documentError(`YAML syntax error: ${syntax.message}`, syntax.pos[0]);
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return;
  let value: unknown;
  try {
    value = dropNulls(doc.toJS({ maxAliasCount: 100 }));
  } catch (err) {
    return documentError(`YAML error: ${err instanceof Error ? err.message : String(err)}`);
  }
  const items =
    isRecord(value) && typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)
      ? value.items.map((item, i) => ({ item, prefix: ['items', i] as Segment[] }))
      : [{ item: value, prefix: [] as Segment[] }];
  for (const { item, prefix } of items) {
    const result = validateResource(item);
    if (result.ok) {
      out.resources.push(result.resource);
      continue;
    }
    const supported = result.code !== ErrorCode.UNSUPPORTED && result.kind !== undefined;
    const namespace = result.namespace ?? (supported && result.name !== undefined ? 'default' : undefined);
    for (const issue of result.issues) {
      out.errors.push({
        ...out.base,
        index,
        ...(result.kind === undefined ? {} : { kind: result.kind }),
        ...(result.name === undefined ? {} : { name: result.name }),
        ...(namespace === undefined ? {} : { namespace }),
        path: joinPath(prefix, issue.path),
        message: issue.message,
        code: result.code,
        severity: result.severity,
        ...out.position(rangeOf(doc, [...prefix, ...parsePath(issue.path)])),
      });
    }
  }
}

function joinPath(prefix: readonly Segment[], path: string): string {
  let head = '';
  for (const seg of prefix) head += typeof seg === 'number' ? `[${seg}]` : head === '' ? seg : `.${seg}`;
  if (head === '') return path;
  if (path === '') return head;
  return path.startsWith('[') ? `${head}${path}` : `${head}.${path}`;
}

/**
 * formatManifestError renders a {@link ManifestError} on one line for humans:
 * `<file>[<index>] <kind> <namespace>/<name>: <path>: <message>`, e.g.
 * `bookinfo.yaml[3] VirtualService default/reviews: spec.http[0].route[1].weight: must be ≤ 100`. Parts that
 * are unknown are left out (`<input>` stands in for a missing file name), and a warning reads
 * `<subject>: warning: <message>`.
 */
export function formatManifestError(e: ManifestError): string {
  let subject = `${e.file ?? '<input>'}[${e.index}]`;
  if (e.kind !== undefined) subject += ` ${e.kind}`;
  if (e.name !== undefined) subject += ` ${e.namespace === undefined ? '' : `${e.namespace}/`}${e.name}`;
  const path = e.path === '' ? '' : `${e.path}: `;
  const severity = e.severity === 'warning' ? 'warning: ' : '';
  return `${subject}: ${severity}${path}${e.message}`;
}
