// ca-sign: CSRs signed per second per core by the CA's server-side path (parseCsr + CertificateAuthority.signWorkload),
// against the 2,000/s target and against node-forge's pure-JS signing of the same certificate; then the full gRPC
// path (IstioCertificateService/CreateCertificate over TLS with a token). Run after `pnpm build`:
//   node --import tsx bench/ca-sign.ts [--seconds 3] [--grpc-requests 480]
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { parseArgs } from 'node:util';
import {
  CertificateAuthority,
  createCsr,
  createIntermediateCa,
  createRootCa,
  generateKeyPair,
  loadIstioCertificateService,
  parseCsr,
  requestCertificate,
  type CaMaterialPem,
  type KeyType,
} from '../packages/pki/dist/index.js';
import { LocalTokenAuthenticator, startCaServer } from '../packages/istiod/dist/ca/index.js';
import type Forge from 'node-forge';
import type * as GrpcJs from '../packages/pki/node_modules/@grpc/grpc-js/build/src/index.js';

// node-forge and grpc-js are dependencies of @fedmesh/pki, not of the repository root: load pki's copies.
const requireFromPki = createRequire(new URL('../packages/pki/package.json', import.meta.url));
const forge = requireFromPki('node-forge') as typeof Forge;
const grpc = requireFromPki('@grpc/grpc-js') as typeof GrpcJs;

const TARGET_PER_SECOND = 2000;
const SAMPLES = new URL('../../shared/fixtures/istio-samples/certs/', import.meta.url);
const identity = { trustDomain: 'cluster.local', namespace: 'bench', serviceAccount: 'workload' };
const { values: args } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, 'grpc-requests': { type: 'string', default: '480' } },
});
const caseMs = Number(args.seconds) * 1000;
const grpcRequests = Number(args['grpc-requests']);

interface Measurement {
  readonly count: number;
  readonly wallMs: number;
  readonly cpuMs: number;
}

/** measure runs `op` one at a time for `budgetMs` (after a 300 ms warm-up) and reports wall and process CPU time. */
async function measure(op: () => Promise<void> | void, budgetMs: number): Promise<Measurement> {
  for (const end = performance.now() + 300; performance.now() < end;) await op();
  const cpu = process.cpuUsage();
  const start = performance.now();
  let count = 0;
  while (performance.now() - start < budgetMs) {
    await op();
    count++;
  }
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { count, wallMs, cpuMs: (used.user + used.system) / 1000 };
}

const perSecond = (m: Measurement): number => (m.count * 1000) / m.wallMs;
/** perCpuSecond counts every thread of the process (Node signs on the libuv pool): certificates per core-second. */
const perCpuSecond = (m: Measurement): number => (m.count * 1000) / Math.max(m.cpuMs, 1);

async function csrPool(keyType: KeyType, size: number): Promise<string[]> {
  const pool: string[] = [];
  for (let i = 0; i < size; i++) {
    const key = await generateKeyPair(keyType);
    pool.push(createCsr({ privateKey: key.privateKey, subjectAltNames: { uris: ['spiffe://ignored/ns/x/sa/y'] } }));
  }
  return pool;
}

/** loadRsaCa returns Istio's RSA sample CA, or a fresh RSA-2048 root and intermediate when ../shared is absent. */
async function loadRsaCa(): Promise<{ label: string; material: CaMaterialPem }> {
  const files = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'].map((f) => new URL(f, SAMPLES));
  if (files.every((file) => existsSync(file))) {
    const [caCertPem = '', caKeyPem = '', rootCertPem = '', certChainPem = ''] = files.map((f) =>
      readFileSync(f, 'utf8'),
    );
    return { label: "Istio's RSA-2048 sample CA", material: { caCertPem, caKeyPem, rootCertPem, certChainPem } };
  }
  const root = await createRootCa({ keyType: 'rsa-2048' });
  const material = await createIntermediateCa({ ...root, cluster: 'bench', keyType: 'rsa-2048' });
  return { label: 'generated RSA-2048 CA (no ../shared)', material };
}

/** fedmeshSign is the CA's server-side path minus gRPC: verify the CSR, then build with forge and sign with Node. */
function fedmeshSign(ca: CertificateAuthority, pool: readonly string[]): () => Promise<void> {
  let i = 0;
  return async () => {
    const csr = parseCsr(pool[i++ % pool.length] ?? '');
    await ca.signWorkload({ publicKey: csr.publicKey, identity });
  };
}

/** forgeSign is the same path in pure node-forge: parse and verify the CSR, build and sign the same X509-SVID. */
function forgeSign(material: CaMaterialPem, pool: readonly string[]): { op: () => void; sample: () => string } {
  const caCert = forge.pki.certificateFromPem(material.caCertPem);
  const pkcs1 = createPrivateKey(material.caKeyPem).export({ type: 'pkcs1', format: 'pem' }).toString();
  const caKey = forge.pki.privateKeyFromPem(pkcs1);
  const caKeyId = caCert.generateSubjectKeyIdentifier().getBytes();
  let i = 0;
  const build = (): string => {
    const csr = forge.pki.certificationRequestFromPem(pool[i++ % pool.length] ?? '');
    if (!csr.verify()) throw new Error('CSR signature does not verify');
    const cert = forge.pki.createCertificate();
    cert.publicKey = csr.publicKey as Forge.pki.rsa.PublicKey;
    cert.serialNumber = `01${randomBytes(16).toString('hex')}`;
    const now = Date.now();
    cert.validity.notBefore = new Date(now - 60_000);
    cert.validity.notAfter = new Date(now + 24 * 3600_000);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      {
        name: 'subjectAltName',
        critical: true,
        altNames: [{ type: 6, value: 'spiffe://cluster.local/ns/bench/sa/workload' }],
      },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: caKeyId },
    ]);
    cert.sign(caKey, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  };
  return { op: () => void build(), sample: build };
}

type Call = (csrPem: string, token: string) => Promise<void>;

interface GrpcMeasurement extends Measurement {
  readonly p50: number;
  readonly p99: number;
}

/** drive runs `total` calls with `inFlight` at once (after one warm-up round) and reports rate, CPU and latency. */
async function drive(
  call: Call,
  mint: (n: number) => string,
  pool: readonly string[],
  total: number,
  inFlight: number,
) {
  const latencies: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const n = next++;
      const token = mint(n);
      const started = performance.now();
      await call(pool[n % pool.length] ?? '', token);
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  next = 0;
  latencies.length = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  const result: GrpcMeasurement = {
    count: total,
    wallMs,
    cpuMs: (used.user + used.system) / 1000,
    p50: pct(0.5),
    p99: pct(0.99),
  };
  return result;
}

/**
 * grpcPaths measures CreateCertificate end to end against startCaServer (TLS, token authentication, CSR checks,
 * signing), `inFlight` at once: first through requestCertificate, which opens a channel (and a TLS handshake) per
 * request as an agent renewing once a day does; then over one reused channel, which shows the server's capacity.
 */
async function grpcPaths(ca: CertificateAuthority, pool: readonly string[], total: number, inFlight: number) {
  const tokens = new LocalTokenAuthenticator({ trustDomain: identity.trustDomain });
  const mint = (n: number): string => tokens.mint({ namespace: 'bench', serviceAccount: `sa-${n % 64}` });
  const server = await startCaServer({ ca, authenticators: [tokens] });
  const { Client } = loadIstioCertificateService();
  const client = new Client(server.address, grpc.credentials.createSsl(Buffer.from(ca.rootCertsPem.join(''))), {
    'grpc.ssl_target_name_override': 'localhost',
    'grpc.default_authority': 'localhost',
  }) as unknown as { CreateCertificate: UnaryCall; close(): void };
  try {
    const perRequest = await drive(
      async (csrPem, token) => {
        const options = { address: server.address, rootCertsPem: ca.rootCertsPem, serverName: 'localhost' };
        await requestCertificate({ ...options, csrPem, token });
      },
      mint,
      pool,
      total,
      inFlight,
    );
    const reused = await drive(
      (csrPem, token) =>
        new Promise<void>((resolve, reject) => {
          const metadata = new grpc.Metadata();
          metadata.set('authorization', `Bearer ${token}`);
          client.CreateCertificate({ csr: csrPem, validity_duration: 0 }, metadata, (err) =>
            err === null ? resolve() : reject(err),
          );
        }),
      mint,
      pool,
      total,
      inFlight,
    );
    return { perRequest, reused };
  } finally {
    client.close();
    await server.close();
  }
}

type UnaryCall = (request: object, metadata: GrpcJs.Metadata, callback: (err: Error | null) => void) => void;

const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** row prints one case; the ratio to the target is per core, from certificates per CPU-second. */
function row(label: string, m: Measurement): string {
  const perCore = perCpuSecond(m);
  const cells = [fmt(m.count).padStart(7), fmt(perSecond(m)).padStart(9), fmt(perCore).padStart(11)];
  return `${label.padEnd(52)} ${cells.join(' ')} ${fmt(perCore / TARGET_PER_SECOND, 2).padStart(13)}×`;
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  console.log(
    `ca-sign: node ${process.version}, ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, load average ` +
      `${fmt(os.loadavg()[0] ?? 0, 2)}; ${caseMs / 1000} s per case, one request at a time`,
  );
  const [p256Csrs, rsaCsrs] = await Promise.all([csrPool('ec-p256', 64), csrPool('rsa-2048', 16)]);
  const p256Root = await createRootCa({ keyType: 'ec-p256' });
  const p256Ca = CertificateAuthority.fromPem(await createIntermediateCa({ ...p256Root, cluster: 'bench' }));
  const rsa = await loadRsaCa();
  const rsaCa = CertificateAuthority.fromPem(rsa.material);

  // Both paths must make certificates that verify under the same CA key before they are timed.
  const caPublicKey = new X509Certificate(rsa.material.caCertPem).publicKey;
  const forgeBaseline = forgeSign(rsa.material, rsaCsrs);
  if (!new X509Certificate(forgeBaseline.sample()).verify(caPublicKey)) throw new Error('forge certificate is invalid');
  const csr = parseCsr(rsaCsrs[0] ?? '');
  const ours = await rsaCa.signWorkload({ publicKey: csr.publicKey, identity });
  if (!new X509Certificate(ours.certPem).verify(caPublicKey)) throw new Error('fedmesh certificate is invalid');

  const header = ['certs'.padStart(7), 'certs/s'.padStart(9), 'certs/CPU-s'.padStart(11), 'vs 2,000/s/core'];
  console.log(`${'case (parseCsr + signWorkload unless noted)'.padEnd(52)} ${header.join(' ')}`);
  const p256 = await measure(fedmeshSign(p256Ca, p256Csrs), caseMs);
  console.log(row('P-256 CA, P-256 CSRs', p256));
  const rsaP256 = await measure(fedmeshSign(rsaCa, p256Csrs), caseMs);
  console.log(row(`${rsa.label}, P-256 CSRs`, rsaP256));
  const rsaRsa = await measure(fedmeshSign(rsaCa, rsaCsrs), caseMs);
  console.log(row(`${rsa.label}, RSA-2048 CSRs`, rsaRsa));
  const pureForge = await measure(forgeBaseline.op, caseMs);
  console.log(row('pure node-forge: same cert, same CA, RSA-2048 CSRs', pureForge));
  console.log(
    `forge-build+Node-sign vs pure forge (same RSA CA, same CSRs): ` +
      `${fmt(perCpuSecond(rsaRsa) / perCpuSecond(pureForge))}× per CPU-second ` +
      `(${fmt(perSecond(rsaRsa) / perSecond(pureForge))}× per wall-clock second)`,
  );

  const grpcRuns = await grpcPaths(p256Ca, p256Csrs, grpcRequests, 16);
  for (const [label, m] of [
    ['requestCertificate (new channel + TLS handshake per request)', grpcRuns.perRequest],
    ['one reused channel', grpcRuns.reused],
  ] as const) {
    console.log(
      `gRPC CreateCertificate, P-256 CA, token auth, 16 in flight, ${label}: ${fmt(m.count)} certs in ` +
        `${fmt(m.wallMs / 1000, 2)} s = ${fmt(perSecond(m))} certs/s, ${fmt(perCpuSecond(m))} certs/CPU-s ` +
        `(client and server in this process), p50 ${fmt(m.p50, 1)} ms, p99 ${fmt(m.p99, 1)} ms`,
    );
  }
}

await main();
