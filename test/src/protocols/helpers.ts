/**
 * Helpers for the protocol suites: running external clients (curl, h2load, nghttp) with bounded time, reading a
 * sidecar's Prometheus counters, and a mesh identity written to files for clients that take certificate paths.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { LocalMesh, TestPod } from '../harness.js';
import { admin, metricValue } from '../resilience/helpers.js';
import { issueIdentity } from '../security/fixture.js';

/** Exec is what an external command printed and how it ended. */
export interface Exec {
  code: number;
  stdout: string;
  stderr: string;
}

/** run runs a command without a shell, killed after `timeoutMs`; never rejects. */
export function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<Exec> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** counter reads one Prometheus counter (summed over series matching `labels`) from a pod's admin listener. */
export async function counter(pod: TestPod, name: string, labels: Record<string, string> = {}): Promise<number> {
  const r = await admin(pod, '/stats/prometheus');
  return metricValue(r.body, name, labels);
}

/** outboundHandshakes is a pod's count of successful upstream mTLS handshakes. */
export function outboundHandshakes(pod: TestPod): Promise<number> {
  return counter(pod, 'fedmesh_tls_handshakes_total', { direction: 'outbound', result: 'ok' });
}

/** inboundHandshakes is a pod's count of accepted downstream mTLS handshakes. */
export function inboundHandshakes(pod: TestPod): Promise<number> {
  return counter(pod, 'fedmesh_tls_handshakes_total', { direction: 'inbound', result: 'ok' });
}

/** IdentityFiles are a mesh client certificate, its key and the root, as files (curl, nghttp). */
export interface IdentityFiles {
  cert: string;
  key: string;
  root: string;
}

/** identityFiles issues a workload certificate for `ns/sa` and writes it under the mesh's temp dir. */
export async function identityFiles(mesh: LocalMesh, namespace: string, sa: string): Promise<IdentityFiles> {
  const id = await issueIdentity(mesh, namespace, sa);
  const dir = fs.mkdtempSync(path.join(mesh.dir, `id-${sa}-`));
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem'), root: path.join(dir, 'root.pem') };
  fs.writeFileSync(files.cert, id.certPem);
  fs.writeFileSync(files.key, id.keyPem, { mode: 0o600 });
  fs.writeFileSync(files.root, id.rootPem);
  return files;
}

/** serviceYaml renders a Service `name` selecting `app: name` with one port (its name sets the protocol). */
export function serviceYaml(name: string, portName: string, port: number, targetPort: number): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  selector: { app: ${name} }
  ports: [{ name: ${portName}, port: ${port}, targetPort: ${targetPort} }]
---
`;
}
