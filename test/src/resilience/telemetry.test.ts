/**
 * Telemetry through real sidecars: W3C traceparent and B3 propagation (a trace is started when none arrives, and
 * each proxy hop creates a child span), the JSON access log's shape, and Istio's metric labels.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  accessLogs,
  addApp,
  admin,
  closeAll,
  metricValue,
  send,
  service,
  startMesh,
  waitForEndpoints,
  type AppRequest,
  type TestApp,
} from './helpers.js';

let mesh: LocalMesh;
let client: TestPod;
let app: TestApp;

before(async () => {
  mesh = await startMesh(service('tel'));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client', version: 'v1' } });
  app = (await addApp(mesh, 'tel', 0, { version: 'v2' })).app;
  await waitForEndpoints(client, 'tel', 1);
});

after(async () => {
  await closeAll(mesh, [app]);
});

/** call sends one request and returns what the app received and both proxies' access log lines for it. */
async function call(headers: Record<string, string> = {}) {
  const rid = `req-${Math.random().toString(16).slice(2)}`;
  const r = await send(client, 'tel:8080', {
    headers: { 'x-request-id': rid, 'user-agent': 'telemetry-test', ...headers },
    path: '/t?q=1',
  });
  assert.equal(r.status, 200);
  const got = app.requests.find((q) => q.headers['x-request-id'] === rid) as AppRequest;
  assert.ok(got);
  let out: ReturnType<typeof accessLogs>[number] | undefined;
  let inb: ReturnType<typeof accessLogs>[number] | undefined;
  await waitUntil(
    () => {
      out = accessLogs(mesh, 'client-0').find((l) => l.request_id === rid);
      inb = accessLogs(mesh, 'tel-0').find((l) => l.request_id === rid);
      return out !== undefined && inb !== undefined;
    },
    10_000,
    'access logs of both hops',
  );
  return { got, out: out as NonNullable<typeof out>, inb: inb as NonNullable<typeof inb> };
}

test('with no trace headers the client proxy starts a trace; each hop adds a child span; the app sees W3C and B3', async () => {
  const { got, out, inb } = await call();
  const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(got.headers.traceparent));
  assert.ok(tp, String(got.headers.traceparent));
  const [, traceId, spanId] = tp;
  assert.equal(out.trace_id, traceId);
  assert.equal(out.parent_span_id, null, 'the client proxy started the trace');
  assert.equal(inb.trace_id, traceId);
  assert.equal(inb.parent_span_id, out.span_id, "the server proxy's span is a child of the client proxy's");
  assert.equal(spanId, inb.span_id, 'the app sees the server proxy span as its parent');
  assert.notEqual(out.span_id, inb.span_id);
  assert.equal(got.headers['x-b3-traceid'], traceId);
  assert.equal(got.headers['x-b3-spanid'], inb.span_id);
  assert.equal(got.headers['x-b3-parentspanid'], out.span_id);
  assert.equal(got.headers['x-b3-sampled'], tp[0].endsWith('01') ? '1' : '0');
  assert.equal(got.headers['x-envoy-peer-metadata'], undefined, 'peer metadata is stripped before the app');
});

test("an incoming traceparent keeps its trace ID and sampling decision; the proxies' spans chain under the caller's", async () => {
  const caller = 'b7ad6b7169203331';
  const { got, out, inb } = await call({
    traceparent: `00-0af7651916cd43dd8448eb211c80319c-${caller}-01`,
    tracestate: 'vendor=x',
  });
  assert.equal(out.trace_id, '0af7651916cd43dd8448eb211c80319c');
  assert.equal(out.parent_span_id, caller);
  assert.equal(inb.parent_span_id, out.span_id);
  assert.equal(got.headers.traceparent, `00-0af7651916cd43dd8448eb211c80319c-${inb.span_id}-01`);
  assert.equal(got.headers.tracestate, 'vendor=x');
  assert.equal(got.headers['x-b3-sampled'], '1');
});

test('incoming B3 (64-bit trace ID, not sampled) is continued in both formats', async () => {
  const { got, out } = await call({
    'x-b3-traceid': '463ac35c9f6413ad',
    'x-b3-spanid': 'a2fb4a1d1a96d312',
    'x-b3-sampled': '0',
  });
  assert.equal(out.parent_span_id, 'a2fb4a1d1a96d312');
  assert.equal(got.headers['x-b3-traceid'], '463ac35c9f6413ad');
  assert.equal(got.headers['x-b3-sampled'], '0');
  assert.match(String(got.headers.traceparent), /^00-0000000000000000463ac35c9f6413ad-[0-9a-f]{16}-00$/);
});

test('access log lines carry Istio’s JSON fields with the right types on both hops', async () => {
  const { out, inb } = await call();
  const strings = ['start_time', 'method', 'path', 'protocol', 'response_flags', 'response_code_details', 'authority'];
  const numbers = ['response_code', 'bytes_received', 'bytes_sent', 'duration', 'attempts'];
  for (const l of [out, inb]) {
    for (const k of strings) assert.equal(typeof (l as unknown as Record<string, unknown>)[k], 'string', k);
    for (const k of numbers) assert.equal(typeof (l as unknown as Record<string, unknown>)[k], 'number', k);
    assert.ok(!Number.isNaN(Date.parse(l.start_time)));
    assert.equal(l.method, 'GET');
    assert.equal(l.path, '/t?q=1');
    assert.equal(l.protocol, l === out ? 'HTTP/1.1' : 'HTTP/2', 'the app speaks HTTP/1.1; the sidecars, HTTP/2');
    assert.equal(l.response_code, 200);
    assert.equal(l.response_flags, '-');
    assert.equal(l.response_code_details, 'via_upstream');
    assert.equal(l.user_agent, 'telemetry-test');
    assert.equal(l.bytes_sent, '{"pod":"tel-0"}'.length);
    assert.ok(l.duration >= (l.response_duration ?? 0));
    assert.equal(typeof l.request_duration, 'number');
    assert.equal(typeof l.response_duration, 'number');
    assert.equal(typeof l.upstream_service_time, 'number');
    assert.match(String(l.upstream_local_address), /^127\.0\.0\.1:\d+$/);
    assert.match(String(l.downstream_remote_address), /^127\.0\.\d+\.\d+:\d+$/);
  }
  assert.equal(out.direction, 'outbound');
  assert.equal(out.upstream_cluster, 'outbound|8080||tel.default.svc.cluster.local');
  assert.match(String(out.upstream_host), /^127\.0\.\d+\.\d+:9090$/);
  assert.equal(out.upstream_peer_principal, 'spiffe://cluster.local/ns/default/sa/tel');
  assert.equal(out.downstream_peer_principal, null);
  assert.equal(inb.direction, 'inbound');
  assert.equal(inb.upstream_cluster, 'inbound|9090||');
  assert.equal(inb.downstream_peer_principal, 'spiffe://cluster.local/ns/default/sa/client');
  assert.equal(inb.requested_server_name, 'outbound_.8080_._.tel.default.svc.cluster.local');
});

test("istio_requests_total and istio_request_duration_milliseconds carry Istio's labels from both reporters", async () => {
  const sourceLabels = {
    reporter: 'source',
    destination_service: 'tel.default.svc.cluster.local',
    response_code: '200',
  };
  const before = metricValue((await admin(client, '/stats/prometheus')).body, 'istio_requests_total', sourceLabels);
  const n = 5;
  for (let i = 0; i < n; i++) await call();
  const src = (await admin(client, '/stats/prometheus')).body;
  const dst = (await admin(mesh.pods.find((p) => p.name === 'tel-0') as TestPod, '/stats/prometheus')).body;
  const common = {
    source_workload: 'client',
    source_workload_namespace: 'default',
    source_principal: 'spiffe://cluster.local/ns/default/sa/client',
    source_app: 'client',
    source_version: 'v1',
    destination_workload: 'tel',
    destination_workload_namespace: 'default',
    destination_principal: 'spiffe://cluster.local/ns/default/sa/tel',
    destination_app: 'tel',
    destination_version: 'v2',
    request_protocol: 'http',
    response_code: '200',
    response_flags: '-',
  };
  const source = {
    ...common,
    reporter: 'source',
    destination_service: 'tel.default.svc.cluster.local',
    destination_service_name: 'tel',
    destination_service_namespace: 'default',
    connection_security_policy: 'unknown',
  };
  assert.equal(metricValue(src, 'istio_requests_total', sourceLabels) - before, n);
  assert.equal(
    metricValue(src, 'istio_requests_total', source),
    metricValue(src, 'istio_requests_total', sourceLabels),
  );
  assert.ok(metricValue(src, 'istio_request_duration_milliseconds_count', source) >= n);
  assert.ok(metricValue(src, 'istio_request_duration_milliseconds_bucket', { ...source, le: '+Inf' }) >= n);
  assert.ok(metricValue(src, 'istio_request_bytes_count', source) >= n);
  assert.ok(metricValue(src, 'istio_response_bytes_sum', source) >= n * 15);
  const destination = {
    ...common,
    reporter: 'destination',
    destination_service: 'tel.default.svc.cluster.local',
    destination_service_name: 'tel',
    destination_service_namespace: 'default',
    connection_security_policy: 'mutual_tls',
  };
  assert.ok(metricValue(dst, 'istio_requests_total', destination) >= n, 'server proxy reports as destination');
  assert.ok(metricValue(dst, 'istio_request_duration_milliseconds_count', destination) >= n);
});
