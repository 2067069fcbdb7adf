/**
 * gRPC through real sidecars, with @grpc/grpc-js as client and server: the client calls its sidecar's outbound
 * listener over h2c, the sidecars talk HTTP/2 over mTLS, the server sidecar calls the app over h2c (the port is
 * named `grpc`). Unary and server-streaming calls keep their messages, trailing metadata and status (OK, a
 * Trailers-Only error, an error after messages), and both sidecars record `grpc_response_status`. A VirtualService
 * `fault.abort.grpcStatus` makes the client sidecar answer Trailers-Only with that status, as Envoy's fault filter.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { waitUntil, type LocalMesh, type TestPod } from '../harness.js';
import {
  accessLogs,
  admin,
  apply,
  closeAll,
  metricValue,
  remove,
  startMesh,
  waitForRoute,
} from '../resilience/helpers.js';
import { serviceYaml } from './helpers.js';

const PROTO = path.join(import.meta.dirname, 'probe.proto');
const PORT = 50051;

interface ProbeRequest {
  message: string;
  count: number;
  fail_code: number;
}
interface ProbeResponse {
  pod: string;
  message: string;
  index: number;
}
type ProbeClient = grpc.Client & {
  Unary(
    req: Partial<ProbeRequest>,
    cb: (err: grpc.ServiceError | null, res?: ProbeResponse) => void,
  ): grpc.ClientUnaryCall;
  Stream(req: Partial<ProbeRequest>): grpc.ClientReadableStream<ProbeResponse>;
};

let mesh: LocalMesh;
let client: TestPod;
let server: grpc.Server;
let stub: ProbeClient;
const methodsSeen: string[] = [];

function loadProbe(): grpc.GrpcObject {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
  return grpc.loadPackageDefinition(def);
}

function trailer(key: string, value: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set(key, value);
  return m;
}

async function startProbeServer(ip: string, pod: string): Promise<grpc.Server> {
  const pkg = loadProbe() as unknown as { fedmesh: { protocols: { Probe: grpc.ServiceClientConstructor } } };
  const s = new grpc.Server();
  s.addService(pkg.fedmesh.protocols.Probe.service, {
    Unary: (call: grpc.ServerUnaryCall<ProbeRequest, ProbeResponse>, cb: grpc.sendUnaryData<ProbeResponse>) => {
      methodsSeen.push('Unary');
      const r = call.request;
      if (r.fail_code)
        return cb({ code: r.fail_code, details: `refused ${r.message}`, metadata: trailer('x-why', 'unary-failure') });
      cb(null, { pod, message: r.message, index: 0 }, trailer('x-trailer', 'unary'));
    },
    Stream: (call: grpc.ServerWritableStream<ProbeRequest, ProbeResponse>) => {
      methodsSeen.push('Stream');
      const r = call.request;
      for (let i = 0; i < r.count; i++) call.write({ pod, message: r.message, index: i });
      if (r.fail_code)
        call.emit('error', {
          code: r.fail_code,
          details: `stream ended with ${r.fail_code}`,
          metadata: trailer('x-why', 'stream-failure'),
        });
      else call.end(trailer('x-trailer', 'stream'));
    },
  });
  await new Promise<void>((resolve, reject) =>
    s.bindAsync(`${ip}:${PORT}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return s;
}

before(async () => {
  mesh = await startMesh(serviceYaml('probe', 'grpc', PORT, PORT));
  client = await mesh.addPod({ name: 'client-0', serviceAccount: 'client', labels: { app: 'client' } });
  const pod = await mesh.addPod({ name: 'probe-0', serviceAccount: 'probe', labels: { app: 'probe' } });
  server = await startProbeServer(pod.ip, pod.name);
  await waitUntil(
    () => (client.sidecar.clusters.get(`outbound|${PORT}||probe.default.svc.cluster.local`)?.endpoints.length ?? 0) > 0,
    20_000,
    'probe endpoints at the client',
  );
  const pkg = loadProbe() as unknown as { fedmesh: { protocols: { Probe: grpc.ServiceClientConstructor } } };
  // The app dials its sidecar's outbound listener (explicit mode) and names the service as the authority.
  stub = new pkg.fedmesh.protocols.Probe(`${client.ip}:15001`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': `probe:${PORT}`,
  }) as unknown as ProbeClient;
});

after(async () => {
  stub?.close();
  await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
  await closeAll(mesh, []);
});

function unary(
  req: Partial<ProbeRequest>,
): Promise<{ err: grpc.ServiceError | null; res?: ProbeResponse; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    let out: { err: grpc.ServiceError | null; res?: ProbeResponse } = { err: null };
    const call = stub.Unary(req, (err, res) => (out = { err, ...(res ? { res } : {}) }));
    call.on('status', (status: grpc.StatusObject) => setImmediate(() => resolve({ ...out, status })));
  });
}

function stream(req: Partial<ProbeRequest>): Promise<{ messages: ProbeResponse[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: ProbeResponse[] = [];
    const call = stub.Stream(req);
    call.on('data', (m: ProbeResponse) => messages.push(m));
    call.on('error', () => undefined); // the status below carries it
    call.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
  });
}

test('a unary call returns its message and trailing metadata with status OK', async () => {
  const r = await unary({ message: 'hello' });
  assert.equal(r.err, null);
  assert.deepEqual(r.res, { pod: 'probe-0', message: 'hello', index: 0 });
  assert.equal(r.status.code, grpc.status.OK);
  assert.deepEqual(r.status.metadata.get('x-trailer'), ['unary']);
});

test('a failing unary call (Trailers-Only) keeps its status code, message and metadata', async () => {
  const r = await unary({ message: 'secret', fail_code: grpc.status.NOT_FOUND });
  assert.equal(r.err?.code, grpc.status.NOT_FOUND);
  assert.equal(r.status.details, 'refused secret');
  assert.deepEqual(r.status.metadata.get('x-why'), ['unary-failure']);
});

test('a server-streaming call delivers every message in order, then the trailers', async () => {
  const r = await stream({ message: 'tick', count: 50 });
  assert.equal(r.status.code, grpc.status.OK);
  assert.deepEqual(
    r.messages.map((m) => m.index),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.ok(r.messages.every((m) => m.pod === 'probe-0' && m.message === 'tick'));
  assert.deepEqual(r.status.metadata.get('x-trailer'), ['stream']);
});

test('a stream that fails after its messages delivers them and then the non-OK status', async () => {
  const r = await stream({ message: 'tock', count: 3, fail_code: grpc.status.PERMISSION_DENIED });
  assert.equal(r.messages.length, 3);
  assert.equal(r.status.code, grpc.status.PERMISSION_DENIED);
  assert.equal(r.status.details, `stream ended with ${grpc.status.PERMISSION_DENIED}`);
  assert.deepEqual(r.status.metadata.get('x-why'), ['stream-failure']);
});

test('both sidecars record grpc_response_status in istio_requests_total, over HTTP/2 end to end', async () => {
  const labels = (reporter: string, status: string): Record<string, string> => ({
    reporter,
    request_protocol: 'grpc',
    destination_service: 'probe.default.svc.cluster.local',
    grpc_response_status: status,
  });
  const serverPod = mesh.pods.find((p) => p.name === 'probe-0') as TestPod;
  await waitUntil(
    async () => {
      const src = (await admin(client, '/stats/prometheus')).body;
      const dst = (await admin(serverPod, '/stats/prometheus')).body;
      return (
        metricValue(src, 'istio_requests_total', labels('source', '0')) >= 2 &&
        metricValue(src, 'istio_requests_total', labels('source', '5')) >= 1 &&
        metricValue(src, 'istio_requests_total', labels('source', '7')) >= 1 &&
        metricValue(dst, 'istio_requests_total', labels('destination', '5')) >= 1 &&
        metricValue(dst, 'istio_requests_total', labels('destination', '7')) >= 1
      );
    },
    10_000,
    'gRPC statuses in both sidecars metrics',
  );
  assert.ok(methodsSeen.includes('Unary') && methodsSeen.includes('Stream'));
  const inbound = accessLogs(mesh, 'probe-0').filter((l) => l.path.startsWith('/fedmesh.protocols.Probe/'));
  assert.ok(inbound.length >= 4);
  assert.ok(inbound.every((l) => l.protocol === 'HTTP/2'));
});

test('fault.abort.grpcStatus: the client sidecar answers Trailers-Only with that status; the app is not called', async () => {
  apply(
    mesh,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: probe, namespace: default }
spec:
  hosts: [probe]
  http:
  - fault: { abort: { grpcStatus: UNAVAILABLE, percentage: { value: 100 } } }
    route: [{ destination: { host: probe } }]
`,
  );
  try {
    await waitForRoute(client, (r) => r.includes('"grpc_status":14'), 'the grpc_status abort at the client');
    const seen = methodsSeen.length;
    const r = await unary({ message: 'faulted' });
    assert.equal(r.status.code, grpc.status.UNAVAILABLE, r.status.details);
    assert.equal(r.status.details, 'fault filter abort');
    assert.equal(r.err?.code, grpc.status.UNAVAILABLE);
    const s = await stream({ message: 'faulted', count: 3 });
    assert.equal(s.status.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(s.messages, []);
    assert.equal(methodsSeen.length, seen, 'the probe app was not called');
    const lines = accessLogs(mesh, 'client-0').filter((l) => l.response_flags === 'FI');
    assert.ok(lines.length >= 2, 'access-logged with flag FI');
    assert.ok(lines.every((l) => l.response_code === 200 && l.response_code_details === 'fault_filter_abort'));
  } finally {
    remove(mesh, 'VirtualService/default/probe');
  }
  await waitForRoute(client, (r) => !r.includes('grpc_status'), 'the abort removed');
  const ok = await unary({ message: 'after' });
  assert.equal(ok.status.code, grpc.status.OK);
});
