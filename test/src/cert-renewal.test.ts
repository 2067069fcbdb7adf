// Renewal: with 2-minute certificates, sidecars renew on their own (50% ± 10% of the lifetime, authenticated with the
// current certificate) and mTLS between them stays up past three lifetimes. Long (about 7 minutes): its own file so
// the runner overlaps it with other files.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FIXTURES, LocalMesh, get, waitUntil, type TestPod } from './harness.js';

const TTL_SECONDS = 120;
const RUN_MS = 6.5 * 60_000;
const INTERVAL_MS = 2_000;

const mesh = new LocalMesh();
let reviews: TestPod;
let sleep: TestPod;

before(async () => {
  await mesh.start([path.join(FIXTURES, 'bookinfo/platform/kube/bookinfo.yaml')], path.join(FIXTURES, 'certs'));
  reviews = await mesh.addPod({
    name: 'reviews-v1-0',
    serviceAccount: 'bookinfo-reviews',
    labels: { app: 'reviews', version: 'v1' },
    appPort: 9080,
    certTtlSeconds: TTL_SECONDS,
  });
  sleep = await mesh.addPod({
    name: 'sleep-0',
    serviceAccount: 'sleep',
    labels: { app: 'sleep' },
    certTtlSeconds: TTL_SECONDS,
  });
  await waitUntil(
    async () => (await get(`${sleep.ip}:15001`, 'reviews:9080')).status === 200,
    15_000,
    'route to reviews',
  );
});
after(() => mesh.close());

interface Seen {
  serial: string;
  receivedAt: number;
  notAfter: number;
}

test(
  `mTLS stays up past 3 lifetimes of ${TTL_SECONDS}-second certificates, renewed on their own`,
  { timeout: RUN_MS + 180_000 },
  async (t) => {
    const seen = { sleep: new Map<string, Seen>(), reviews: new Map<string, Seen>() };
    const note = (): void => {
      for (const [side, pod] of [
        ['sleep', sleep],
        ['reviews', reviews],
      ] as const) {
        const c = pod.sidecar.certificate();
        if (c && !seen[side].has(c.serialNumber))
          seen[side].set(c.serialNumber, {
            serial: c.serialNumber,
            receivedAt: c.receivedAt.getTime(),
            notAfter: c.notAfter.getTime(),
          });
      }
    };
    const start = Date.now();
    const backendBefore = reviews.backend?.requests.length ?? 0;
    let sent = 0;
    const failures: string[] = [];
    note();
    while (Date.now() - start < RUN_MS) {
      const tick = Date.now();
      sent++;
      try {
        const r = await get(`${sleep.ip}:15001`, 'reviews:9080', '/reviews/1');
        if (r.status !== 200)
          failures.push(`#${sent} at ${Math.round((tick - start) / 1000)} s: ${r.status} ${r.body}`);
      } catch (err) {
        failures.push(`#${sent} at ${Math.round((tick - start) / 1000)} s: ${(err as Error).message}`);
      }
      note();
      // Every certificate in use must still be valid: renewal happens before expiry, not after.
      for (const pod of [sleep, reviews]) {
        const c = pod.sidecar.certificate();
        assert.ok(c && c.notAfter.getTime() > Date.now(), `${pod.name} holds an expired certificate`);
      }
      await new Promise((r) => setTimeout(r, Math.max(0, INTERVAL_MS - (Date.now() - tick))));
    }
    const elapsedS = (Date.now() - start) / 1000;
    t.diagnostic(`${sent} requests over ${elapsedS.toFixed(0)} s, ${failures.length} failed`);
    for (const side of ['sleep', 'reviews'] as const) {
      const certs = [...seen[side].values()].sort((a, b) => a.receivedAt - b.receivedAt);
      const gaps = certs.slice(1).map((c, i) => {
        const prev = certs[i];
        const life = prev ? (prev.notAfter - prev.receivedAt) / 1000 : 0;
        const after = prev ? (c.receivedAt - prev.receivedAt) / 1000 : 0;
        return `${after.toFixed(1)} s (${((after / life) * 100).toFixed(0)}%)`;
      });
      t.diagnostic(`${side}: ${certs.length} certificates, ${certs.length - 1} renewals, after ${gaps.join(', ')}`);
    }
    assert.deepEqual(failures, []);
    assert.equal(reviews.backend?.requests.length, backendBefore + sent, 'every request reached the app');
    assert.ok(elapsedS > 3 * TTL_SECONDS, 'the run outlasts three certificate lifetimes');
    assert.ok(seen.sleep.size - 1 >= 3, `sleep renewed ${seen.sleep.size - 1} times`);
    assert.ok(seen.reviews.size - 1 >= 3, `reviews renewed ${seen.reviews.size - 1} times`);
    // The certificates of the first lifetime are long expired: what carries traffic now was renewed.
    const first = [...seen.reviews.values()][0];
    assert.ok(first && first.notAfter < Date.now(), 'the first certificate expired during the run');
  },
);
