// naive-node-pair: the Node baseline of bench/proxy.ts, path (d). Two featureless proxies in the sidecar roles,
// plain node:http/https with keep-alive agents and nothing else (no routing, retries, metrics, logs or tracing):
//   outbound: HTTP/1.1 in → https with mutual TLS (client certificate, peer verified against the mesh root and its
//             DNS SAN) through one keep-alive https.Agent;
//   inbound:  https with a required, verified client certificate → plain HTTP to the app through a keep-alive Agent.
// Certificates are the nginx pair's (bench/proxy-nginx.ts writeNginxCerts, issued by the mesh CA). Run as
//   node naive-node-pair.mjs outbound <listen host:port> <inbound host:port> <certs dir>
//   node naive-node-pair.mjs inbound <listen host:port> <app host:port> <certs dir>
// bench/proxy.ts transpiles this file to plain JavaScript (typescript's transpileModule) and runs it with plain
// node, so the baseline's CPU and RSS carry no TypeScript loader.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** NAIVE_SERVER_NAME is the inbound proxy's DNS SAN, which the outbound proxy verifies (as nginx's does). */
export const NAIVE_SERVER_NAME = 'inbound.nginx.bench';

function split(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
}

/** relay forwards one request upstream with `agent` and the response back, with the `connection` header dropped. */
function relay(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  to: typeof http | typeof https,
  opts: object,
): void {
  const headers = { ...req.headers };
  delete headers.connection;
  const up = to.request({ ...opts, method: req.method, path: req.url, headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  req.pipe(up);
}

function serve(role: string, listen: string, upstream: string, certs: string): void {
  const pem = (f: string): Buffer => fs.readFileSync(path.join(certs, f));
  const at = split(listen);
  const to = split(upstream);
  if (role === 'outbound') {
    const agent = new https.Agent({ keepAlive: true, maxFreeSockets: 1024 });
    const opts = {
      host: to.host,
      port: to.port,
      agent,
      servername: NAIVE_SERVER_NAME,
      cert: pem('client-chain.pem'),
      key: pem('client-key.pem'),
      ca: pem('root-cert.pem'),
    };
    http.createServer((req, res) => relay(req, res, https, opts)).listen(at.port, at.host, 4096);
  } else {
    const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1024 });
    const tls = { cert: pem('server-chain.pem'), key: pem('server-key.pem'), ca: pem('root-cert.pem') };
    https
      .createServer({ ...tls, requestCert: true, rejectUnauthorized: true }, (req, res) =>
        relay(req, res, http, { host: to.host, port: to.port, agent }),
      )
      .listen(at.port, at.host, 4096);
  }
}

/**
 * startNaiveProxy transpiles this file into `dir` (once) and runs one proxy of the pair with plain node and
 * `nodeFlags`; resolves the child once `listen` accepts connections (10 s at most, else it throws).
 */
export async function startNaiveProxy(
  dir: string,
  nodeFlags: readonly string[],
  role: 'outbound' | 'inbound',
  listen: string,
  upstream: string,
  certs: string,
): Promise<ChildProcess> {
  const file = path.join(dir, 'naive-node-pair.mjs');
  if (!fs.existsSync(file)) {
    const ts = (await import('typescript')).default;
    const src = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    fs.writeFileSync(file, js.outputText);
  }
  const child = spawn(process.execPath, [...nodeFlags, file, role, listen, upstream, certs], { stdio: 'inherit' });
  const { host, port } = split(listen);
  for (const deadline = Date.now() + 10_000; ;) {
    const listening = await new Promise<boolean>((r) => {
      const sock = net.connect({ host, port }, () => r(true)).on('error', () => r(false));
      sock.on('connect', () => sock.destroy());
    });
    if (listening) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`naive ${role} proxy did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  const [role, listen, upstream, certs] = process.argv.slice(2);
  if ((role !== 'outbound' && role !== 'inbound') || !listen || !upstream || !certs)
    throw new Error('usage: naive-node-pair outbound|inbound <listen> <upstream> <certs dir>');
  serve(role, listen, upstream, certs);
}
