/**
 * AuthorizationPolicy on raw TCP through real sidecars (istio.io task "Authorization for TCP traffic", with a raw
 * TCP echo app standing in for Istio's tcp-echo sample, which the fixtures do not hold). Each client's bytes go
 * from its app to its sidecar's per-port outbound listener, over mTLS to the echo sidecar's inbound chain, where
 * the `envoy.filters.network.rbac` filters judge the verified SPIFFE ID before the tcp_proxy dials the app:
 * - ALLOW for one principal: that client is echoed, another is closed without a byte and never reaches the app,
 *   counted (`envoy_network_rbac_denied`, `istio_tcp_connections_closed_total`) and access-logged with
 *   `rbac_access_denied_matched_policy[none]`;
 * - DENY by namespace: the other namespace is refused, the client served;
 * - DENY with only an HTTP-only `paths` field: Istio drops the field on TCP, so every connection is refused.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import { accessLogs, apply, closeAll, remove, startMesh } from '../resilience/helpers.js';
import { counter, serviceYaml } from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let intruder: TestPod;
let echoPod: TestPod;
let echo: { server: net.Server; connections: number };
const CLIENT = 'spiffe://cluster.local/ns/default/sa/client';
const INTRUDER = 'spiffe://cluster.local/ns/other/sa/intruder';

async function startEcho(ip: string): Promise<typeof echo> {
  const out = { server: undefined as unknown as net.Server, connections: 0 };
  out.server = net.createServer({ allowHalfOpen: true }, (s) => {
    out.connections++;
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    out.server.once('error', reject);
    out.server.listen(9000, ip, () => resolve());
  });
  return out;
}

/** echoOf sends `payload` from a pod's app through its sidecar to tcp-echo, half-closes, and returns the answer. */
function echoOf(pod: TestPod, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: pod.ip, port: 9000, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(), 15_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.once('connect', () => s.end(payload));
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString());
    });
  });
}

function policy(name: string, action: 'ALLOW' | 'DENY', rules: string): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: default }
spec:
  selector: { matchLabels: { app: tcp-echo } }
  action: ${action}
  rules:
${rules}
`;
}

/** settle waits until the echo sidecar applies the current policies: the client gets `client`, the intruder `intruder`. */
async function settle(expect: { client: boolean; intruder: boolean }, what: string): Promise<void> {
  await waitUntil(
    async () =>
      ((await echoOf(client, 'c')) === 'c') === expect.client &&
      ((await echoOf(intruder, 'i')) === 'i') === expect.intruder,
    30_000,
    what,
  );
}

const DENIED = { envoy_network_rbac_prefix: 'tcp.' };

before(async () => {
  mesh = await startMesh(serviceYaml('tcp-echo', 'tcp', 9000, 9000));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  intruder = await mesh.addPod({
    name: 'intruder-0',
    namespace: 'other',
    serviceAccount: 'intruder',
    labels: { app: 'intruder' },
  });
  echoPod = await mesh.addPod({ name: 'tcp-echo-0', serviceAccount: 'tcp-echo', labels: { app: 'tcp-echo' } });
  echo = await startEcho(echoPod.ip);
  await settle({ client: true, intruder: true }, 'both clients echoed before any policy');
});

after(async () => {
  await new Promise<void>((r) => (echo ? echo.server.close(() => r()) : r()));
  await closeAll(mesh, []);
});

test('ALLOW one principal: its bytes echo; another is closed before the app, counted and access-logged', async () => {
  apply(
    mesh,
    policy(
      'echo-allow-client',
      'ALLOW',
      '  - from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }]',
    ),
  );
  try {
    await settle({ client: true, intruder: false }, 'the ALLOW policy applied');
    const conns = echo.connections;
    const denied0 = await counter(echoPod, 'envoy_network_rbac_denied', DENIED);
    const closed0 = await counter(echoPod, 'istio_tcp_connections_closed_total', {
      reporter: 'destination',
      source_principal: INTRUDER,
    });
    assert.equal(await echoOf(intruder, 'let me in'), '', 'the intruder gets no byte back');
    assert.equal(echo.connections, conns, 'the denied connection never reached the app');
    assert.equal(await echoOf(client, 'hello tcp'), 'hello tcp');
    assert.equal(echo.connections, conns + 1);
    await waitUntil(
      async () => (await counter(echoPod, 'envoy_network_rbac_denied', DENIED)) === denied0 + 1,
      10_000,
      'one more denial counted',
    );
    assert.equal(
      await counter(echoPod, 'istio_tcp_connections_closed_total', {
        reporter: 'destination',
        source_principal: INTRUDER,
      }),
      closed0 + 1,
    );
    assert.ok((await counter(echoPod, 'envoy_network_rbac_allowed', DENIED)) > 0);
    const lines = accessLogs(mesh, 'tcp-echo-0') as unknown as Record<string, unknown>[];
    const line = lines.filter((l) => l.downstream_peer_principal === INTRUDER).at(-1);
    assert.equal(line?.connection_termination_details, 'rbac_access_denied_matched_policy[none]');
    assert.equal(line.upstream_host, null, 'no upstream was dialled');
    assert.equal(line.upstream_cluster, 'inbound|9000||');
  } finally {
    remove(mesh, 'AuthorizationPolicy/default/echo-allow-client');
  }
  await settle({ client: true, intruder: true }, 'both served once the policy is gone');
});

test('DENY a namespace: the other namespace is refused, the client served', async () => {
  apply(mesh, policy('echo-deny-other', 'DENY', '  - from: [{ source: { namespaces: ["other"] } }]'));
  try {
    await settle({ client: true, intruder: false }, 'the DENY policy applied');
    const conns = echo.connections;
    assert.equal(await echoOf(intruder, 'x'), '');
    assert.equal(echo.connections, conns);
    assert.equal(await echoOf(client, 'still here'), 'still here');
    const line = (accessLogs(mesh, 'tcp-echo-0') as unknown as Record<string, unknown>[])
      .filter((l) => l.downstream_peer_principal === INTRUDER)
      .at(-1);
    assert.equal(
      line?.connection_termination_details,
      'rbac_access_denied_matched_policy[ns[default]-policy[echo-deny-other]-rule[0]]',
    );
  } finally {
    remove(mesh, 'AuthorizationPolicy/default/echo-deny-other');
  }
  await settle({ client: true, intruder: true }, 'both served once the policy is gone');
});

test('a DENY with only an HTTP-only paths field denies TCP entirely (Istio drops the field on TCP)', async () => {
  apply(mesh, policy('echo-deny-admin', 'DENY', '  - to: [{ operation: { paths: ["/admin"] } }]'));
  try {
    await settle({ client: false, intruder: false }, 'the DENY paths policy applied');
    const conns = echo.connections;
    assert.equal(await echoOf(client, 'not an HTTP request'), '');
    assert.equal(echo.connections, conns);
    const line = (accessLogs(mesh, 'tcp-echo-0') as unknown as Record<string, unknown>[])
      .filter((l) => l.downstream_peer_principal === CLIENT)
      .at(-1);
    assert.equal(
      line?.connection_termination_details,
      'rbac_access_denied_matched_policy[ns[default]-policy[echo-deny-admin]-rule[0]]',
    );
  } finally {
    remove(mesh, 'AuthorizationPolicy/default/echo-deny-admin');
  }
  await settle({ client: true, intruder: true }, 'both served once the policy is gone');
});
