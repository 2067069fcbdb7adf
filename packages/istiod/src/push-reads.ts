import { isDeepStrictEqual } from 'node:util';
import type { PushContext } from './push-context.js';

/**
 * PushRead is one thing a generation read from a {@link PushContext}: a property (`services`, `mesh`, …) or a
 * method call with its arguments (`instancesAt("10.0.0.7")`), and what it returned.
 * `verifiable` is false when an argument was not a string, number, boolean or undefined: such a read is never
 * trusted to be unchanged.
 */
export interface PushRead {
  readonly name: string;
  readonly args: readonly unknown[] | undefined;
  readonly value: unknown;
  readonly verifiable: boolean;
}

/**
 * PushReads is the table of every distinct read made against one push, by key. Generations only log keys; the
 * values live here once per push, however many proxies made the same read.
 */
export class PushReads {
  readonly byKey = new Map<string, PushRead>();
  /** unverifiable numbers the reads that can never be verified, so each has a key of its own. */
  unverifiable = 0;

  /** constructor binds the table to its push. */
  constructor(readonly push: PushContext) {}
}

/**
 * ReadSet is what one generation read: its own read keys (with repeats) and chunks of keys shared with other
 * generations (the reads of a memoized result, handed on whole rather than copied). Both are never mutated once
 * the generation is over, so a chunk can be checked once per pair of pushes however many outputs hold it.
 */
export interface ReadSet {
  readonly keys: readonly string[];
  readonly chunks: readonly (readonly string[])[];
}

/** ReadLog collects the reads of one generation as a {@link ReadSet}. */
export class ReadLog implements ReadSet {
  readonly keys: string[] = [];
  readonly chunks: (readonly string[])[] = [];

  /** addSet adds another generation's reads, sharing its arrays. */
  addSet(set: ReadSet): void {
    if (set.keys.length > 0) this.chunks.push(set.keys);
    for (const c of set.chunks) this.chunks.push(c);
  }
}

const TRACKED = Symbol('fedmesh.trackedPush');

interface Tracked {
  target: PushContext;
  log: ReadLog;
}

/** readKey builds a read's key, or undefined when an argument cannot be part of one. */
function readKey(name: string, args: readonly unknown[] | undefined): string | undefined {
  if (args === undefined) return name;
  let key = `${name}(`;
  for (const a of args) {
    switch (typeof a) {
      case 'string':
        key += `\u0000s${a}`;
        break;
      case 'number':
      case 'boolean':
        key += `\u0000${typeof a === 'number' ? 'n' : 'b'}${String(a)}`;
        break;
      case 'undefined':
        key += '\u0000u';
        break;
      case 'bigint':
      case 'function':
      case 'object':
      case 'symbol':
        return undefined;
    }
  }
  return `${key})`;
}

function record(table: PushReads, log: ReadLog, name: string, args: readonly unknown[] | undefined, v: unknown): void {
  let key = readKey(name, args);
  if (key === undefined) {
    // An object argument: log a read that is never verified (its key is unique, so it is never shared).
    key = `${name}(?${table.unverifiable++})`;
    table.byKey.set(key, { name, args, value: v, verifiable: false });
  } else if (!table.byKey.has(key)) table.byKey.set(key, { name, args, value: v, verifiable: true });
  log.keys.push(key);
}

/**
 * trackPush returns a view of `push` that logs every property it hands out and every method call (with its
 * arguments and result) into `log`, storing each distinct read in `table` (the table of `push`). Methods run on
 * the push itself, so their own internal reads are not logged: what counts is what the generator saw. Views
 * nest: a read through an inner view is logged by every outer one.
 */
export function trackPush(push: PushContext, log: ReadLog, table: PushReads): PushContext {
  return new Proxy(push, {
    get(target, prop) {
      if (prop === TRACKED) return { target, log } satisfies Tracked;
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof prop !== 'string') return v;
      if (typeof v === 'function')
        return (...args: unknown[]): unknown => {
          const r = (v as (...a: unknown[]) => unknown).apply(target, args);
          record(table, log, prop, args, r);
          return r;
        };
      record(table, log, prop, undefined, v);
      return v;
    },
  });
}

/** rootPush returns the push behind any number of tracking views. */
export function rootPush(push: PushContext): PushContext {
  let p = push;
  for (;;) {
    const t = (p as unknown as { [TRACKED]?: Tracked })[TRACKED];
    if (!t) return p;
    p = t.target;
  }
}

/** logsOf returns the logs of every tracking view around a push, innermost first. */
export function logsOf(push: PushContext): ReadLog[] {
  const out: ReadLog[] = [];
  let p = push;
  for (;;) {
    const t = (p as unknown as { [TRACKED]?: Tracked })[TRACKED];
    if (!t) return out;
    out.push(t.log);
    p = t.target;
  }
}

/**
 * PushDiff answers, for reads made against `prev`, whether `next` answers them the same: the same method with
 * the same arguments (or the same property) gives a deep-equal value. Each distinct read is evaluated once per
 * pair of pushes; an unchanged one is entered in `next`'s table, so a reused output can be checked again against
 * the push after that.
 */
export class PushDiff {
  private readonly same = new Map<string, boolean>();
  private readonly sameChunk = new WeakMap<readonly string[], boolean>();

  /** constructor pairs the read tables of two pushes; nothing is evaluated until asked. */
  constructor(
    readonly prev: PushReads,
    readonly next: PushReads,
  ) {}

  /** unchanged reports whether every read in `set` (made against `prev`) answers the same against `next`. */
  unchanged(set: ReadSet): boolean {
    if (!this.keysUnchanged(set.keys)) return false;
    for (const c of set.chunks) {
      let s = this.sameChunk.get(c);
      if (s === undefined) {
        s = this.keysUnchanged(c);
        this.sameChunk.set(c, s);
      }
      if (!s) return false;
    }
    return true;
  }

  private keysUnchanged(keys: readonly string[]): boolean {
    for (const k of keys) {
      let s = this.same.get(k);
      if (s === undefined) {
        s = this.evaluate(k);
        this.same.set(k, s);
      }
      if (!s) return false;
    }
    return true;
  }

  private evaluate(key: string): boolean {
    const r = this.prev.byKey.get(key);
    if (!r?.verifiable) return false;
    const push = this.next.push as unknown as Record<string, unknown>;
    const member = push[r.name];
    let value: unknown;
    if (r.args === undefined) value = member;
    else if (typeof member === 'function') value = (member as (...a: unknown[]) => unknown).apply(push, [...r.args]);
    else return false;
    if (!isDeepStrictEqual(r.value, value)) return false;
    if (!this.next.byKey.has(key)) this.next.byKey.set(key, { ...r, value });
    return true;
  }
}
