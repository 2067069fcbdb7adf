// proxy-nginx: the C baseline of bench/proxy.ts. Three nginx instances (one worker each, as our proxy has one
// event loop): an app that answers every request with a small JSON body, and two proxies in the sidecar roles,
// "outbound" (plain HTTP in, mutual TLS out with proxy_ssl_certificate, the peer verified against our mesh root)
// and "inbound" (mutual TLS in, ssl_verify_client against the same root, plain HTTP to the app), with keep-alive
// pools upstream on both. Certificates come from the mesh's own CA.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CertificateAuthority, generateKeyPair } from '../packages/pki/dist/index.js';

/** NginxInstance is one running nginx: its master process and where it logs. */
export interface NginxInstance {
  name: string;
  child: ChildProcess;
  dir: string;
}

/**
 * NginxPlan names the addresses of the three nginx instances (`appH2` and `outboundH2` speak HTTP/2 over
 * cleartext, with prior knowledge) and whether the proxies write access logs.
 */
export interface NginxPlan {
  dir: string;
  app: string;
  appH2: string;
  outbound: string;
  outboundH2: string;
  inbound: string;
  accessLog: boolean;
}

const KEEPALIVE = `keepalive_requests 1000000;\n  keepalive_timeout 75s;`;

function head(dir: string): string {
  return [
    'daemon off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 8192; }',
  ].join('\n');
}

function accessLog(plan: NginxPlan, dir: string): string {
  return plan.accessLog ? `access_log ${dir}/access.log combined buffer=64k flush=1s;` : 'access_log off;';
}

/** appConfig is the app: 200 with a 28-byte JSON body on every path, over HTTP/1.1 and (on `listenH2`) h2c. */
export function appConfig(dir: string, listen: string, listenH2: string): string {
  return `${head(dir)}
http {
  access_log off;
  ${KEEPALIVE}
  server {
    listen ${listen} backlog=4096;
    listen ${listenH2} http2 backlog=4096;
    location / { default_type application/json; return 200 '{"service":"app","ok":true}\\n'; }
  }
}
`;
}

/**
 * outboundConfig is the client-side proxy: HTTP/1.1 or h2c in, mutual TLS to the inbound proxy (verified, pooled;
 * nginx speaks only HTTP/1.1 to upstreams).
 */
export function outboundConfig(plan: NginxPlan, dir: string, certs: string): string {
  return `${head(dir)}
http {
  ${accessLog(plan, dir)}
  ${KEEPALIVE}
  upstream peer { server ${plan.inbound}; keepalive 256; keepalive_requests 1000000; keepalive_timeout 75s; }
  server {
    listen ${plan.outbound} backlog=4096;
    listen ${plan.outboundH2} http2 backlog=4096;
    location / {
      proxy_pass https://peer;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_certificate ${certs}/client-chain.pem;
      proxy_ssl_certificate_key ${certs}/client-key.pem;
      proxy_ssl_trusted_certificate ${certs}/root-cert.pem;
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 3;
      proxy_ssl_name inbound.nginx.bench;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
`;
}

/** inboundConfig is the server-side proxy: mutual TLS in (client certificate required), plain HTTP to the app. */
export function inboundConfig(plan: NginxPlan, dir: string, certs: string): string {
  return `${head(dir)}
http {
  ${accessLog(plan, dir)}
  ${KEEPALIVE}
  upstream app { server ${plan.app}; keepalive 256; keepalive_requests 1000000; keepalive_timeout 75s; }
  server {
    listen ${plan.inbound} ssl backlog=4096;
    ssl_certificate ${certs}/server-chain.pem;
    ssl_certificate_key ${certs}/server-key.pem;
    ssl_client_certificate ${certs}/root-cert.pem;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_session_cache shared:in:1m;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-Client-Cert "Subject=$ssl_client_s_dn";
    }
  }
}
`;
}

/**
 * writeNginxCerts issues, from the mesh CA in `caDir` (Istio's plug-in layout), a server certificate for the
 * inbound nginx (DNS SAN `inbound.nginx.bench`, which the outbound nginx verifies) and a client X509-SVID for the
 * outbound nginx, both P-256 like our proxies' certificates, and writes them with the root under `dir`.
 */
export async function writeNginxCerts(caDir: string, dir: string): Promise<void> {
  const ca = await CertificateAuthority.createSelfSigned({ stateDir: caDir, trustDomain: 'cluster.local' });
  fs.mkdirSync(dir, { recursive: true });
  const server = await generateKeyPair('ec-p256');
  const client = await generateKeyPair('ec-p256');
  const s = await ca.signServing({ publicKey: server.publicKey, dnsNames: ['inbound.nginx.bench'] });
  const c = await ca.signWorkload({
    publicKey: client.publicKey,
    identity: { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'nginx-outbound' },
  });
  fs.writeFileSync(path.join(dir, 'server-chain.pem'), s.chainPem.join(''));
  fs.writeFileSync(path.join(dir, 'server-key.pem'), server.privateKeyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'client-chain.pem'), c.chainPem.join(''));
  fs.writeFileSync(path.join(dir, 'client-key.pem'), client.privateKeyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'root-cert.pem'), ca.rootCertsPem.join(''));
}

/** startNginx writes `config` and runs nginx on it pinned to `cpu` (taskset); resolves once it is listening. */
export async function startNginx(name: string, baseDir: string, config: string, cpu: number): Promise<NginxInstance> {
  const dir = path.join(baseDir, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'nginx.conf'), config);
  const child = spawn(
    'taskset',
    ['-c', String(cpu), 'nginx', '-p', dir, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(path.join(dir, 'nginx.pid'))) {
    if (child.exitCode !== null) throw new Error(`nginx ${name} exited: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`nginx ${name} did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { name, child, dir };
}

/** stopNginx stops an instance (QUIT, then KILL after 3 s) and waits for its master to exit. */
export async function stopNginx(n: NginxInstance): Promise<void> {
  if (n.child.exitCode !== null || n.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => n.child.once('exit', () => r()));
  n.child.kill('SIGQUIT');
  const timer = setTimeout(() => n.child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

/** nginxPids returns the master's pid and its workers' (from /proc), for RSS and CPU accounting. */
export function nginxPids(n: NginxInstance): number[] {
  const master = Number(fs.readFileSync(path.join(n.dir, 'nginx.pid'), 'utf8').trim());
  let workers: number[] = [];
  try {
    workers = fs
      .readFileSync(`/proc/${master}/task/${master}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    // gone
  }
  return [master, ...workers];
}
