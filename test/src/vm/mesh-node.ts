/**
 * A local mesh for the VM end-to-end test, run inside the test's own network namespace
 * (`ip netns exec <ns> node --import tsx mesh-node.ts <config JSON>`): istiod and pods bind the namespace's 10.x
 * addresses, so the VM (another namespace, wired by a veth pair) reaches them and nothing leaves the machine.
 * It writes `<stateDir>/state.json` as `fedmesh up` does (so `fedmesh apply` and `fedmesh vm config` work against it)
 * and answers one JSON command per stdin line with one JSON line on stdout:
 * `get` (an HTTP request through a pod's outbound listener), `endpoints` (a pod's view of a cluster),
 * `waitEndpoint` (polls every 10 ms until an endpoint has the wanted health, answers the time it did),
 * `entries` (istiod's WorkloadEntries), `callers` (the x-forwarded-client-cert of every request an app saw), `stop`.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { parseResource } from '@fedmesh/api';
import { Istiod, type StoredObject, type WorkloadEntryObject } from '@fedmesh/istiod';
import { Sidecar } from '@fedmesh/proxy';
import { get, testLogger, waitUntil } from '../harness.js';

/** MeshNodeConfig is the runner's one argument. */
export interface MeshNodeConfig {
  stateDir: string;
  istiodIp: string;
  manifests: string;
  pods: { name: string; ip: string; serviceAccount: string; labels: Record<string, string>; appPort?: number }[];
}

const config = JSON.parse(process.argv[2] ?? '{}') as MeshNodeConfig;
const callers = new Map<string, string[]>();
const sidecars = new Map<string, Sidecar>();
const servers: http.Server[] = [];

function reply(msg: object): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

async function main(): Promise<void> {
  const logDir = path.join(config.stateDir, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  const istiod = new Istiod({
    host: config.istiodIp,
    xdsPlainPort: 15010,
    xdsTlsPort: 15012,
    monitoringPort: 15014,
    stateDir: path.join(config.stateDir, 'istiod'),
    configFiles: [config.manifests],
    log: testLogger(logDir, 'istiod'),
  });
  await istiod.start();
  fs.writeFileSync(
    path.join(config.stateDir, 'state.json'),
    JSON.stringify({
      version: 1,
      stateDir: config.stateDir,
      cluster: 'Kubernetes',
      istiod: { pid: process.pid, host: config.istiodIp, ...istiod.addresses },
      pods: [],
    }),
  );
  for (const p of config.pods) {
    istiod.store.apply(
      [
        parseResource({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: p.name, namespace: 'vm', labels: p.labels },
          spec: {
            serviceAccountName: p.serviceAccount,
            containers: [{ name: 'app', image: 'x', ports: p.appPort ? [{ containerPort: p.appPort }] : [] }],
          },
          status: { phase: 'Running', podIP: p.ip, conditions: [{ type: 'Ready', status: 'True' }] },
        }),
      ],
      'mesh-node',
    );
    if (p.appPort) {
      const seen: string[] = [];
      callers.set(p.name, seen);
      const s = http.createServer((req, res) => {
        seen.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
        res.end(JSON.stringify({ pod: p.name }));
      });
      servers.push(s);
      await new Promise<void>((r) => s.listen(p.appPort, p.ip, () => r()));
    }
    const log = testLogger(logDir, p.name);
    const sidecar = new Sidecar({
      ip: p.ip,
      podName: p.name,
      namespace: 'vm',
      serviceAccount: p.serviceAccount,
      labels: p.labels,
      workloadName: p.name.replace(/-\d+$/, ''),
      clusterId: 'Kubernetes',
      discoveryAddress: istiod.addresses.xdsTls,
      rootCertPem: istiod.ca.rootCertsPem.join(''),
      token: istiod.tokens.mint({ namespace: 'vm', serviceAccount: p.serviceAccount }),
      adminPort: 15000,
      mtlsPort: 15006,
      log,
      accessLog: log,
    });
    sidecars.set(p.name, sidecar);
    await sidecar.start();
  }
  await waitUntil(() => [...sidecars.values()].every((s) => s.ready()), 30_000, 'pods ready');

  const endpoints = (pod: string, cluster: string) =>
    (
      sidecars
        .get(pod)
        ?.clusters.all()
        .find((c) => c.name === cluster)?.endpoints ?? []
    ).map((e) => ({
      address: e.address,
      port: e.port,
      healthy: e.healthy,
    }));
  const stop = async (): Promise<void> => {
    for (const s of sidecars.values()) await s.stop();
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await istiod.stop();
  };
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const cmd = JSON.parse(line) as Record<string, unknown> & { id: number; op: string };
    const run = async (): Promise<object> => {
      switch (cmd.op) {
        case 'get': {
          const s = sidecars.get(String(cmd['pod']));
          if (!s) throw new Error(`no pod ${String(cmd['pod'])}`);
          return await get(
            `${s.opts.ip}:15001`,
            String(cmd['host']),
            typeof cmd['path'] === 'string' ? cmd['path'] : '/',
          );
        }
        case 'endpoints':
          return { endpoints: endpoints(String(cmd['pod']), String(cmd['cluster'])) };
        case 'waitEndpoint': {
          const deadline = Date.now() + Number(cmd['timeoutMs'] ?? 30_000);
          for (;;) {
            const e = endpoints(String(cmd['pod']), String(cmd['cluster'])).find((x) => x.address === cmd['address']);
            const want = cmd['healthy'];
            if (want === null ? e === undefined : e?.healthy === want) return { at: Date.now() };
            if (Date.now() > deadline)
              throw new Error(`endpoint ${String(cmd['address'])} never became ${String(want)}`);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
        case 'entries':
          return { entries: istiod.store.list<WorkloadEntryObject & StoredObject>('WorkloadEntry') };
        case 'callers':
          return { callers: callers.get(String(cmd['pod'])) ?? [] };
        case 'stop':
          await stop();
          setImmediate(() => process.exit(0));
          return { stopped: true };
        default:
          throw new Error(`unknown op ${cmd.op}`);
      }
    };
    run().then(
      (r) => reply({ id: cmd.id, ok: true, ...r }),
      (err: unknown) => reply({ id: cmd.id, ok: false, error: (err as Error).message }),
    );
  });
  lines.on('close', () => void stop().finally(() => process.exit(0)));
  reply({ ready: true, addresses: istiod.addresses });
}

main().catch((err: unknown) => {
  reply({ ready: false, error: (err as Error).stack ?? String(err) });
  process.exit(1);
});
