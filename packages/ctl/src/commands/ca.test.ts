import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import {
  CertificateAuthority,
  generateKeyPair,
  spiffeCheckServerIdentity,
  spiffeUri,
  verifySpiffePeer,
  type SpiffeIdentity,
} from '@fedmesh/pki';

const REPO = new URL('../../../../', import.meta.url).pathname;
const MAIN = new URL('../main.ts', import.meta.url).pathname;
const TD = 'cluster.local';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** fedmesh runs the CLI from source as a child process, the way a user would run it. */
function fedmesh(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: REPO }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const run = await fedmesh(...args);
  assert.equal(run.code, 0, `fedmesh ${args.join(' ')} failed: ${run.stderr}`);
  return run.stdout;
}

async function fails(pattern: RegExp, ...args: string[]): Promise<void> {
  const run = await fedmesh(...args);
  assert.equal(run.code, 1, `fedmesh ${args.join(' ')} should fail`);
  assert.match(run.stderr, pattern);
  assert.doesNotMatch(run.stdout + run.stderr, /PRIVATE KEY|CERTIFICATE REQUEST/, 'no key or CSR material printed');
}

const mode = async (file: string): Promise<number> => (await stat(file)).mode & 0o777;

interface Workload {
  readonly identity: SpiffeIdentity;
  readonly chainPem: string;
  readonly keyPem: string;
}

async function workload(ca: CertificateAuthority, namespace: string, serviceAccount: string): Promise<Workload> {
  const key = await generateKeyPair('ec-p256');
  const identity = { trustDomain: ca.trustDomain, namespace, serviceAccount };
  const issued = await ca.signWorkload({ publicKey: key.publicKey, identity });
  return { identity, chainPem: issued.chainPem.join(''), keyPem: key.privateKeyPem };
}

type Handshake =
  | { readonly ok: true; readonly serverSaw: string; readonly clientSaw: string }
  | { readonly ok: false; readonly error: string; readonly serverRejected: boolean; readonly reachedApp: boolean };

/**
 * handshake runs a real mTLS connection on 127.0.0.1: `server` and `client` present their chains and trust only the
 * given roots. The server answers with the client's SPIFFE ID; the client checks the server's SPIFFE ID.
 */
async function handshake(
  server: Workload,
  client: Workload,
  serverRoots: string,
  clientRoots: string,
): Promise<Handshake> {
  let reachedApp = false;
  const listener = tls.createServer(
    { key: server.keyPem, cert: server.chainPem, ca: serverRoots, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      reachedApp = true;
      socket.end(spiffeUri(verifySpiffePeer(socket.getPeerCertificate(), { trustDomains: [TD] })));
    },
  );
  const serverRejected = new Promise<boolean>((resolve) => {
    listener.once('tlsClientError', () => resolve(true));
    listener.once('close', () => resolve(false));
  });
  const sockets = new Set<tls.TLSSocket>();
  listener.on('secureConnection', (socket) => sockets.add(socket));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  try {
    const { port } = listener.address() as AddressInfo;
    const outcome = await new Promise<
      { ok: true; serverSaw: string; clientSaw: string } | { ok: false; error: string }
    >((resolve) => {
      let clientSaw = '';
      let data = '';
      const socket = tls.connect({
        host: '127.0.0.1',
        port,
        key: client.keyPem,
        cert: client.chainPem,
        ca: clientRoots,
        checkServerIdentity: (host, cert) => {
          const err = spiffeCheckServerIdentity({ trustDomains: [TD] })(host, cert);
          if (err === undefined)
            clientSaw = spiffeUri(verifySpiffePeer(cert, { trustDomains: [TD], peerRole: 'server' }));
          return err;
        },
      });
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => (data += chunk));
      socket.on('error', (err) => resolve({ ok: false, error: err.message }));
      socket.on('end', () =>
        resolve(data === '' ? { ok: false, error: 'closed' } : { ok: true, serverSaw: data, clientSaw }),
      );
    });
    if (outcome.ok) return outcome;
    // The server's verdict, if it had one, is reported within a moment of the client's failure.
    const timeout = new Promise<boolean>((resolve) => setTimeout(resolve, 1000, false).unref());
    return { ...outcome, serverRejected: await Promise.race([serverRejected, timeout]), reachedApp };
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => listener.close(resolve));
  }
}

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedmesh-ctl-ca-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('fedmesh ca', () => {
  let root = '';
  let east: CertificateAuthority;
  let west: CertificateAuthority;
  let foreign: CertificateAuthority;

  it('root create writes root-cert.pem and a 0600 root-key.pem, and refuses to overwrite them', async () => {
    root = join(tmp, 'root');
    const out = await ok('ca', 'root', 'create', '--out', root);
    assert.match(out, /CN=Root CA, URI:spiffe:\/\/cluster\.local/);
    assert.deepEqual((await readdir(root)).sort(), ['root-cert.pem', 'root-key.pem']);
    assert.equal(await mode(join(root, 'root-key.pem')), 0o600);
    assert.equal(await mode(root), 0o700);
    const cert = new X509Certificate(await readFile(join(root, 'root-cert.pem')));
    assert.ok(cert.ca && cert.verify(cert.publicKey));

    const key = await readFile(join(root, 'root-key.pem'), 'utf8');
    await fails(
      /root-key\.pem, root-cert\.pem; not overwriting without force \(CA_FILES_EXIST\)/,
      'ca',
      'root',
      'create',
      '--out',
      root,
    );
    assert.equal(await readFile(join(root, 'root-key.pem'), 'utf8'), key);
  });

  it('intermediate create writes the plug-in layout for a cluster, which loadPluggedCa loads', async () => {
    const dir = join(tmp, 'east');
    await ok('ca', 'intermediate', 'create', '--root', root, '--cluster', 'east', '--out', dir);
    assert.deepEqual((await readdir(dir)).sort(), ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem']);
    assert.equal(await mode(join(dir, 'ca-key.pem')), 0o600);
    const chain = await readFile(join(dir, 'cert-chain.pem'), 'utf8');
    const caCert = await readFile(join(dir, 'ca-cert.pem'), 'utf8');
    const rootCert = await readFile(join(root, 'root-cert.pem'), 'utf8');
    assert.equal(chain, caCert + rootCert, 'cert-chain.pem = intermediate + root');
    assert.equal(await readFile(join(dir, 'root-cert.pem'), 'utf8'), rootCert);
    assert.equal(new X509Certificate(caCert).subject, 'O=fedmesh\nCN=Intermediate CA\nL=east');
    east = await CertificateAuthority.loadPluggedCa(dir);
  });

  it('intermediate csr + sign: the key stays in the cluster dir, the root signs elsewhere, and the result loads', async () => {
    const cluster = join(tmp, 'west');
    await ok('ca', 'intermediate', 'csr', '--cluster', 'west', '--out', cluster);
    assert.deepEqual((await readdir(cluster)).sort(), ['ca-csr.pem', 'ca-key.pem']);
    assert.equal(await mode(join(cluster, 'ca-key.pem')), 0o600);

    // On the root's host: only the CSR travels there, and only certificates come back.
    const rootHost = join(tmp, 'root-host-out');
    const csrCopy = join(tmp, 'west-ca-csr.pem');
    await copyFile(join(cluster, 'ca-csr.pem'), csrCopy);
    await ok('ca', 'intermediate', 'sign', '--root', root, '--csr', csrCopy, '--out', rootHost);
    assert.deepEqual((await readdir(rootHost)).sort(), ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']);
    for (const file of ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']) {
      await copyFile(join(rootHost, file), join(cluster, file));
    }
    west = await CertificateAuthority.loadPluggedCa(cluster);
    assert.equal(west.rootCertPem, east.rootCertPem, 'one root for both clusters');
    assert.equal(new X509Certificate(west.caCertPem).subject, 'O=fedmesh\nCN=Intermediate CA\nL=west');

    // Signing straight into a directory whose ca-key.pem belongs to another CSR is refused before writing.
    await fails(
      /is not the key of this CSR/,
      'ca',
      'intermediate',
      'sign',
      '--root',
      root,
      '--csr',
      csrCopy,
      '--out',
      join(tmp, 'east'),
    );
  });

  it('issues workload leaves that verify with X509Certificate.verify up to the shared root', async () => {
    const rootCert = new X509Certificate(east.rootCertPem);
    for (const ca of [east, west]) {
      const leaf = await workload(ca, 'default', 'sleep');
      const [leafPem, intermediatePem] = leaf.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
      const leafCert = new X509Certificate(leafPem ?? '');
      const intermediate = new X509Certificate(intermediatePem ?? '');
      assert.ok(leafCert.checkIssued(intermediate) && leafCert.verify(intermediate.publicKey));
      assert.ok(intermediate.checkIssued(rootCert) && intermediate.verify(rootCert.publicKey));
      assert.ok(!leafCert.verify(rootCert.publicKey), 'the root signs only intermediates');
    }
  });

  it('lets workloads of two clusters complete mTLS under the one root, and refuses a leaf from another root', async () => {
    const a = await workload(east, 'bookinfo', 'productpage');
    const b = await workload(west, 'bookinfo', 'reviews');
    const cross = await handshake(a, b, east.rootCertPem, west.rootCertPem);
    assert.deepEqual(cross, {
      ok: true,
      serverSaw: 'spiffe://cluster.local/ns/bookinfo/sa/reviews',
      clientSaw: 'spiffe://cluster.local/ns/bookinfo/sa/productpage',
    });
    const back = await handshake(b, a, west.rootCertPem, east.rootCertPem);
    assert.equal(back.ok, true);

    const otherRoot = join(tmp, 'other-root');
    await ok('ca', 'root', 'create', '--out', otherRoot);
    await ok('ca', 'intermediate', 'create', '--root', otherRoot, '--cluster', 'east', '--out', join(tmp, 'other'));
    foreign = await CertificateAuthority.loadPluggedCa(join(tmp, 'other'));
    const impostor = await workload(foreign, 'bookinfo', 'reviews');

    // The impostor trusts the mesh root (it is public), so only the server's check can stop it.
    const asClient = await handshake(a, impostor, east.rootCertPem, east.rootCertPem);
    assert.equal(asClient.ok, false, 'the server refuses a client certificate from another root');
    assert.ok(!asClient.ok && asClient.serverRejected && !asClient.reachedApp, 'refused in the handshake');
    const asServer = await handshake(impostor, b, west.rootCertPem, west.rootCertPem);
    assert.equal(asServer.ok, false, 'the client refuses a server certificate from another root');
    assert.ok(!asServer.ok && /issuer|verify/i.test(asServer.error), asServer.ok ? '' : asServer.error);
  });

  it('fails with a clear message and exit code 1 on a missing root, a bad cluster name or a tampered CSR', async () => {
    await fails(
      /cannot read the root certificate .*root-cert\.pem \(ENOENT\)/,
      'ca',
      'intermediate',
      'create',
      '--root',
      join(tmp, 'nope'),
      '--cluster',
      'x',
      '--out',
      join(tmp, 'x'),
    );
    await fails(/cluster must be/, 'ca', 'intermediate', 'csr', '--cluster', 'no spaces', '--out', join(tmp, 'y'));
    await fails(/--days/, 'ca', 'root', 'create', '--out', join(tmp, 'z'), '--days', '0');

    const csr = await readFile(join(tmp, 'west-ca-csr.pem'), 'utf8');
    const lines = csr.trim().split('\n');
    const der = Buffer.from(lines.slice(1, -1).join(''), 'base64');
    der[der.length - 3] = (der[der.length - 3] ?? 0) ^ 0x01;
    const tampered = join(tmp, 'tampered.csr');
    await writeFile(
      tampered,
      `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
    );
    const out = join(tmp, 'tampered-out');
    await fails(
      /CSR signature does not verify \(CSR_BAD_SIGNATURE\)/,
      'ca',
      'intermediate',
      'sign',
      '--root',
      root,
      '--csr',
      tampered,
      '--out',
      out,
    );
    await assert.rejects(stat(out), { code: 'ENOENT' }, 'nothing written');
  });
});
