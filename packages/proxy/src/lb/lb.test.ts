import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MaglevLoadBalancer, RingHashLoadBalancer } from './consistent-hash.js';
import { murmur3 } from './hash.js';
import { selectHost, type SelectableHost } from './host-selector.js';
import { availability, chooseLocality, priorityLoad } from './priority.js';
import { LeastRequestLoadBalancer, RandomLoadBalancer, RoundRobinLoadBalancer } from './simple.js';
import { hostKey, type LbContext } from './types.js';

function host(i: number, extra: Partial<SelectableHost> = {}): SelectableHost {
  return { address: `10.0.0.${i}`, port: 80, weight: 1, priority: 0, localityKey: 'r/z/', localityWeight: 1, ...extra };
}

function seeded(seed = 1): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

function ctx(over: Partial<LbContext<SelectableHost>> = {}): LbContext<SelectableHost> {
  return { active: () => 0, random: seeded(7), ...over };
}

describe('murmur3', () => {
  it('matches the reference x86_32 vectors', () => {
    assert.equal(murmur3('', 0), 0);
    assert.equal(murmur3('', 1), 0x514e28b7);
    assert.equal(murmur3('hello', 0), 0x248bfa47);
    assert.equal(murmur3('The quick brown fox jumps over the lazy dog', 0), 0x2e4ff723);
  });
});

describe('simple balancers', () => {
  it('ROUND_ROBIN takes each host in turn and skips excluded ones', () => {
    const hosts = [host(1), host(2), host(3)];
    const lb = new RoundRobinLoadBalancer<SelectableHost>();
    const seq = Array.from({ length: 6 }, () => lb.pick(hosts, ctx())?.address);
    assert.deepEqual(seq, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
    const ex = new Set([hostKey(hosts[1] as SelectableHost)]);
    for (let i = 0; i < 6; i++)
      assert.notEqual(lb.pick(hosts, ctx({ excluded: (h) => ex.has(hostKey(h)) }))?.address, '10.0.0.2');
  });

  it('ROUND_ROBIN with weights 3:1 interleaves in proportion', () => {
    const hosts = [host(1, { weight: 3 }), host(2)];
    const lb = new RoundRobinLoadBalancer<SelectableHost>();
    const seq = Array.from({ length: 8 }, () => lb.pick(hosts, ctx())?.address);
    assert.equal(seq.filter((a) => a === '10.0.0.1').length, 6);
    assert.notDeepEqual(seq.slice(0, 3), ['10.0.0.1', '10.0.0.1', '10.0.0.1'], 'smooth, not bursty');
  });

  it('LEAST_REQUEST prefers the sampled host with fewer active requests', () => {
    const hosts = [host(1), host(2)];
    const busy = new Map([[hostKey(host(1)), 5]]);
    const lb = new LeastRequestLoadBalancer<SelectableHost>();
    const c = ctx({ active: (h) => busy.get(hostKey(h)) ?? 0, random: seeded(3) });
    let toBusy = 0;
    for (let i = 0; i < 400; i++) if (lb.pick(hosts, c)?.address === '10.0.0.1') toBusy++;
    // Power of two choices with replacement: the busy host wins only when both samples are it (p = 1/4).
    assert.ok(toBusy > 60 && toBusy < 140, String(toBusy));
  });

  it('RANDOM spreads uniformly', () => {
    const hosts = [host(1), host(2), host(3)];
    const lb = new RandomLoadBalancer<SelectableHost>();
    const counts = new Map<string, number>();
    const c = ctx({ random: seeded(11) });
    for (let i = 0; i < 3000; i++) {
      const a = lb.pick(hosts, c)?.address ?? '';
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    for (const n of counts.values()) assert.ok(n > 850 && n < 1150, JSON.stringify([...counts]));
  });
});

describe('consistent hashing', () => {
  // A ring keeps its size, so the remaining hosts gain points and take a few keys from each other (as in
  // Envoy); Maglev's permutations keep almost every key.
  for (const [name, make, maxMoved] of [
    ['RING_HASH', () => new RingHashLoadBalancer<SelectableHost>(1024), 0.15],
    ['MAGLEV', () => new MaglevLoadBalancer<SelectableHost>(65537), 0.05],
  ] as const) {
    it(`${name}: a key always maps to the same host, keys spread, and removing a host moves few keys`, () => {
      const lb = make();
      const hosts = [host(1), host(2), host(3), host(4)];
      const keys = Array.from({ length: 2000 }, (_, i) => murmur3(`user-${i}`));
      const before = keys.map((k) => lb.pick(hosts, ctx({ hash: k }))?.address);
      assert.deepEqual(
        keys.map((k) => lb.pick(hosts, ctx({ hash: k }))?.address),
        before,
      );
      const share = new Map<string, number>();
      for (const a of before) share.set(a ?? '', (share.get(a ?? '') ?? 0) + 1);
      for (const n of share.values()) assert.ok(n > 300 && n < 700, JSON.stringify([...share]));
      const after = keys.map((k) => lb.pick(hosts.slice(0, 3), ctx({ hash: k }))?.address);
      let moved = 0;
      before.forEach((b, i) => {
        if (b !== '10.0.0.4' && after[i] !== b) moved++;
      });
      assert.ok(moved / keys.length < maxMoved, `keys of remaining hosts moved: ${moved}`);
    });
  }

  it('MAGLEV gives a host of weight 2 about twice the keys', () => {
    const lb = new MaglevLoadBalancer<SelectableHost>(65537);
    const hosts = [host(1, { weight: 2 }), host(2)];
    let one = 0;
    for (let i = 0; i < 3000; i++) if (lb.pick(hosts, ctx({ hash: murmur3(`k${i}`) }))?.address === '10.0.0.1') one++;
    assert.ok(one > 1800 && one < 2200, String(one));
  });

  it('a retry excluding the hashed host walks to another one', () => {
    const lb = new RingHashLoadBalancer<SelectableHost>(1024);
    const hosts = [host(1), host(2), host(3)];
    const first = lb.pick(hosts, ctx({ hash: 12345 }));
    const second = lb.pick(hosts, ctx({ hash: 12345, excluded: (h) => h === first }));
    assert.ok(first && second && first !== second);
  });
});

describe('priorities and panic (Envoy load balancer base)', () => {
  it('availability uses the 1.4 overprovisioning factor', () => {
    assert.equal(availability({ total: 10, healthy: 7 }), 98);
    assert.equal(availability({ total: 10, healthy: 8 }), 100);
    assert.equal(availability({ total: 4, healthy: 0 }), 0);
  });

  it('load spills to lower priorities as health drops', () => {
    assert.deepEqual(
      priorityLoad([
        { total: 10, healthy: 10 },
        { total: 2, healthy: 2 },
      ]).load,
      [100, 0],
    );
    assert.deepEqual(
      priorityLoad([
        { total: 10, healthy: 7 },
        { total: 2, healthy: 2 },
      ]).load,
      [98, 2],
    );
    assert.deepEqual(
      priorityLoad([
        { total: 2, healthy: 0 },
        { total: 2, healthy: 2 },
      ]).load,
      [0, 100],
    );
    assert.deepEqual(
      priorityLoad([
        { total: 2, healthy: 0 },
        { total: 2, healthy: 2 },
      ]).panic,
      [false, false],
    );
  });

  it('a priority below the panic threshold with too little total health is in panic', () => {
    const p = priorityLoad([{ total: 3, healthy: 1 }]);
    assert.deepEqual(p, { load: [100], panic: [true] });
    assert.deepEqual(priorityLoad([{ total: 3, healthy: 1 }], 0).panic, [false]);
    assert.deepEqual(priorityLoad([{ total: 4, healthy: 2 }]).panic, [false], '50% healthy is not below 50%');
  });

  it('with everything in panic load follows host counts; with threshold 0 and no health P0 takes all', () => {
    assert.deepEqual(
      priorityLoad([
        { total: 1, healthy: 0 },
        { total: 3, healthy: 0 },
      ]),
      { load: [25, 75], panic: [true, true] },
    );
    assert.deepEqual(
      priorityLoad(
        [
          { total: 1, healthy: 0 },
          { total: 3, healthy: 0 },
        ],
        0,
      ).load,
      [100, 0],
    );
  });

  it('locality weights are scaled by locality health', () => {
    const b = [
      { weight: 1, hosts: [1, 2], healthy: [1, 2] },
      { weight: 1, hosts: [3, 4], healthy: [] as number[] },
    ];
    for (let i = 0; i < 20; i++) assert.equal(chooseLocality(b, i / 20), 0);
  });

  it('selectHost fails over to priority 1 when priority 0 is unhealthy, and spreads in panic', () => {
    const hosts = [host(1), host(2, { priority: 1 })];
    const down = new Set(['10.0.0.1']);
    const policy = {
      lb: new RoundRobinLoadBalancer<SelectableHost>(),
      panicThreshold: 50,
      localityWeighted: false,
      hashBased: false,
      hostSelectionAttempts: 1,
    };
    for (let i = 0; i < 10; i++)
      assert.equal(selectHost(hosts, (h) => !down.has(h.address), policy, ctx())?.address, '10.0.0.2');
    const three = [host(1), host(2), host(3)];
    const bad = new Set(['10.0.0.1', '10.0.0.2']);
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) seen.add(selectHost(three, (h) => !bad.has(h.address), policy, ctx())?.address ?? '');
    assert.equal(seen.size, 3, 'panic mode uses every host');
    const noPanic = { ...policy, panicThreshold: 0 };
    for (let i = 0; i < 12; i++)
      assert.equal(selectHost(three, (h) => !bad.has(h.address), noPanic, ctx())?.address, '10.0.0.3');
  });
});
