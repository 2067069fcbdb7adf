import type { ResourceEntry } from '@fedmesh/xds';
import type { ProxyModel } from './model/proxy.js';
import type { PushContext } from './push-context.js';
import { PushMemo, type MemoizableGenerator } from './push-memo.js';
import { PushDiff, ReadLog, trackPush, type ReadSet } from './push-reads.js';

/** Generated is one proxy's last output of one generator and what it was made from. */
interface Generated {
  proxy: ProxyModel;
  /** proxyJson is the proxy model as it was then (a model changed in place is not trusted). */
  proxyJson: string;
  basedOn: PushContext;
  /** reads are the push reads the output was made from. */
  reads: ReadSet;
  resources: ResourceEntry[];
  warnings: string[];
}

function sameEntries(a: readonly ResourceEntry[], b: readonly ResourceEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y || x.name !== y.name) return false;
    if (x.resource !== y.resource && (x.version === undefined || x.version !== y.version)) return false;
  }
  return true;
}

/** IncrementalStats counts, since the generator was made, outputs reused across pushes and outputs generated. */
export interface IncrementalStats {
  reused: number;
  generated: number;
  memoHits: number;
}

/**
 * IncrementalGenerator runs istiod's generators for each proxy and skips the work a change cannot affect, in two
 * ways, both keyed by every input:
 * - across pushes: a proxy's output of a generator is kept with the push reads it was made from (properties and
 *   method calls with their arguments, see `push-reads.ts`); on the next push, if every one of those reads gives a
 *   deep-equal answer and the proxy model is unchanged, the output is reused without running the generator (an
 *   endpoint added to `reviews` re-runs EDS and whatever read `reviews`' endpoints, not a proxy's listeners);
 * - within a push: through {@link PushMemo}, proxies that agree on the fields a generator read share its output.
 * Outputs are the same as running the generators afresh (the incremental test checks this byte for byte over
 * random changes). Generators must be pure functions of the push and the proxy.
 */
export class IncrementalGenerator {
  private memo: PushMemo | undefined;
  private diff: PushDiff | undefined;
  private readonly outputs = new Map<string, Map<MemoizableGenerator, Generated>>();
  private readonly proxyJson = new WeakMap<ProxyModel, { push: PushContext; json: string }>();
  private reused = 0;
  private generated = 0;
  private memoHitsBefore = 0;

  /** stats returns how much work was skipped so far. */
  stats(): IncrementalStats {
    return {
      reused: this.reused,
      generated: this.generated,
      memoHits: this.memoHitsBefore + (this.memo?.stats().hits ?? 0),
    };
  }

  /** generate returns `gen(push, proxy, warnings)`, reused or memoized when that is provably the same. */
  generate(gen: MemoizableGenerator, push: PushContext, proxy: ProxyModel, warnings: string[]): ResourceEntry[] {
    if (this.memo?.push !== push) {
      const prev = this.memo;
      this.memoHitsBefore += this.memo?.stats().hits ?? 0;
      this.memo = new PushMemo(push);
      this.diff = prev ? new PushDiff(prev.reads, this.memo.reads) : undefined;
    }
    const json = this.jsonOf(proxy, push);
    let byGen = this.outputs.get(proxy.id);
    if (!byGen) {
      byGen = new Map();
      this.outputs.set(proxy.id, byGen);
    }
    const last = byGen.get(gen);
    if (last && last.proxy === proxy && last.proxyJson === json) {
      if (last.basedOn === push) {
        warnings.push(...last.warnings);
        return last.resources;
      }
      if (this.diff && last.basedOn === this.diff.prev.push && this.diff.unchanged(last.reads)) {
        last.basedOn = push;
        warnings.push(...last.warnings);
        this.reused++;
        return last.resources;
      }
    }
    const log = new ReadLog();
    const own: string[] = [];
    const made = this.memo.run(gen, trackPush(push, log, this.memo.reads), proxy, own);
    // The same resources as last time: keep the old array, so the snapshot's set for it is reused too.
    const resources = last && sameEntries(last.resources, made) ? last.resources : made;
    warnings.push(...own);
    byGen.set(gen, { proxy, proxyJson: json, basedOn: push, reads: log, resources, warnings: own });
    this.generated++;
    return resources;
  }

  /** forget drops what is kept for a proxy (call when its last stream closes). */
  forget(proxyId: string): void {
    this.outputs.delete(proxyId);
  }

  private jsonOf(proxy: ProxyModel, push: PushContext): string {
    const hit = this.proxyJson.get(proxy);
    if (hit?.push === push) return hit.json;
    const json = JSON.stringify(proxy);
    this.proxyJson.set(proxy, { push, json });
    return json;
  }
}
