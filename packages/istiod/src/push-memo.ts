import { resourceVersion, type ResourceEntry } from '@fedmesh/xds';
import type { ProxyModel } from './model/proxy.js';
import type { PushContext } from './push-context.js';
import { PushReads, ReadLog, logsOf, rootPush, trackPush, type ReadSet } from './push-reads.js';

/** MemoizableGenerator is a pure generator: its output depends only on the push and the proxy fields it reads. */
export type MemoizableGenerator = (push: PushContext, proxy: ProxyModel, warnings: string[]) => ResourceEntry[];

interface Result {
  resources: ResourceEntry[];
  warnings: string[];
  /** reads are what the generation read from the push; a hit adds them (shared) to the caller's read logs. */
  reads: ReadSet;
}

/** Shape is the set of proxy fields one generation read, with the results for each combination of their values. */
interface Shape {
  fields: readonly string[];
  results: Map<string, Result>;
}

/** MEMO is the key under which a proxy being generated for inside {@link PushMemo.run} hands out its memo. */
const MEMO = Symbol('fedmesh.pushMemo');

/**
 * trackReads returns a view of `proxy` that adds the name of every field the caller reads (or tests with `in`,
 * or enumerates: then every field) to `read`. Nested objects (labels, locality) are handed out as they are and
 * compared whole, by value.
 */
function trackReads(proxy: ProxyModel, read: Set<string>, memo: PushMemo): ProxyModel {
  return new Proxy(proxy, {
    get(target, prop, receiver) {
      if (prop === MEMO) return memo;
      if (typeof prop === 'string') read.add(prop);
      return Reflect.get(target, prop, receiver) as unknown;
    },
    has(target, prop) {
      if (typeof prop === 'string') read.add(prop);
      return Reflect.has(target, prop);
    },
    getOwnPropertyDescriptor(target, prop) {
      if (typeof prop === 'string') read.add(prop);
      return Reflect.getOwnPropertyDescriptor(target, prop);
    },
    ownKeys(target) {
      for (const k of Reflect.ownKeys(target)) if (typeof k === 'string') read.add(k);
      return Reflect.ownKeys(target);
    },
  });
}

function keyOf(proxy: ProxyModel, fields: readonly string[]): string {
  const p = proxy as unknown as Record<string, unknown>;
  return JSON.stringify(fields.map((f) => (f in p ? p[f] : '\u0000absent')));
}

function sameFields(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((f, i) => f === b[i]);
}

/**
 * PushMemo memoizes generator output within one immutable {@link PushContext}, the way Istio's XdsCache saves
 * regenerating what every proxy of a namespace shares, but keyed by every input: the push itself (the memo lives
 * and dies with it) and the values of exactly the proxy fields the generation read, recorded as it ran. A
 * generator that reads only `namespace` (EDS, RDS without `sourceLabels`, SDS) runs once per namespace per push;
 * one that reads `ip` runs once per proxy. This is sound for pure generators: a proxy that agrees with an earlier
 * one on every field that generation read would make the same reads, take the same branches and get the same
 * output. Warnings are replayed with a hit. Each memoized resource carries its content version
 * (`ResourceEntry.version`), so the bytes are hashed once per push rather than once per proxy.
 */
export class PushMemo {
  private readonly shapes = new Map<MemoizableGenerator, Shape[]>();
  private hitCount = 0;
  /** reads is the table of every read generations made against this push (see `push-reads.ts`). */
  readonly reads: PushReads;
  private missCount = 0;

  /**
   * constructor binds the memo to one push; {@link PushMemo.run} with another push (or a tracking view of
   * another) is not memoized.
   */
  constructor(readonly push: PushContext) {
    this.reads = new PushReads(push);
  }

  /** hits and misses count lookups, for tests and the benchmark. */
  stats(): { hits: number; misses: number } {
    return { hits: this.hitCount, misses: this.missCount };
  }

  /**
   * run returns `generate(push, proxy, warnings)`, from the memo when an earlier proxy agreed on every field that
   * generation read. The returned array and its entries are shared between proxies: callers must not mutate them.
   */
  run(generate: MemoizableGenerator, push: PushContext, proxy: ProxyModel, warnings: string[]): ResourceEntry[] {
    if (rootPush(push) !== this.push) return generate(push, proxy, warnings);
    const shapes = this.shapes.get(generate) ?? [];
    for (const s of shapes) {
      const hit = s.results.get(keyOf(proxy, s.fields));
      if (hit) {
        this.hitCount++;
        warnings.push(...hit.warnings);
        for (const log of logsOf(push)) log.addSet(hit.reads);
        return hit.resources;
      }
    }
    this.missCount++;
    const read = new Set<string>();
    const own: string[] = [];
    const log = new ReadLog();
    const resources = generate(trackPush(push, log, this.reads), trackReads(proxy, read, this), own).map((e) =>
      e.version !== undefined ? e : { ...e, version: resourceVersion(e.resource) },
    );
    warnings.push(...own);
    const fields = [...read].sort();
    let shape = shapes.find((s) => sameFields(s.fields, fields));
    if (!shape) {
      shape = { fields, results: new Map() };
      shapes.push(shape);
      this.shapes.set(generate, shapes);
    }
    shape.results.set(keyOf(proxy, fields), { resources, warnings: own, reads: log });
    return resources;
  }
}

/**
 * runMemoized runs one part of a generator through the memo of the generation it is part of, when there is one
 * (inside {@link PushMemo.run}), else plainly. A generator whose output is per proxy overall (it reads `ip`) but
 * mostly shared (CDS: outbound clusters for the namespace, plus the proxy's own inbound ones) calls its shared
 * part through this, so that part is generated once per distinct set of values it reads. The proxy fields the
 * part reads count for the enclosing generation too.
 */
export function runMemoized(
  part: MemoizableGenerator,
  push: PushContext,
  proxy: ProxyModel,
  warnings: string[],
): ResourceEntry[] {
  const memo = (proxy as unknown as { [MEMO]?: PushMemo })[MEMO];
  return memo ? memo.run(part, push, proxy, warnings) : part(push, proxy, warnings);
}
