import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  CertificateAuthority,
  createIntermediateCa,
  createIntermediateCsr,
  createRootCa,
  DEFAULT_CA_ORG,
  isPkiError,
  signIntermediate,
  writeCaFiles,
  writePluggedCa,
  type KeyType,
} from '@fedmesh/pki';

/** ROOT_FILES are the files `fedmesh ca root create` writes: the root certificate and its key (mode 0600). */
export const ROOT_FILES = { cert: 'root-cert.pem', key: 'root-key.pem' } as const;
/** INTERMEDIATE_CSR_FILE is the request `fedmesh ca intermediate csr` writes next to `ca-key.pem`. */
export const INTERMEDIATE_CSR_FILE = 'ca-csr.pem';

const DAY_MS = 24 * 60 * 60 * 1000;

function days(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1 || n > 36500)
    throw new InvalidArgumentError('must be a whole number of days, 1-36500');
  return n;
}

const keyTypeOption = (): Option =>
  new Option('--key-type <type>', 'key type of the new CA key').choices(['ec-p256', 'rsa-2048']).default('ec-p256');

/** failure turns a library error into a one-line CLI error with its stable reason; other errors pass through. */
function failure(what: string, err: unknown): Error {
  if (isPkiError(err)) return new Error(`${what}: ${err.message} (${err.reason})`, { cause: err });
  if (err instanceof TypeError) return new Error(`${what}: ${err.message}`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

async function readPem(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(`cannot read ${what} ${file} (${code})`, { cause: err });
  }
}

/** readRoot reads `root-cert.pem` and `root-key.pem` from a directory made by `fedmesh ca root create`. */
async function readRoot(dir: string): Promise<{ rootCertPem: string; rootKeyPem: string }> {
  const keyFile = path.join(dir, ROOT_FILES.key);
  // In order, so a missing directory is always reported as its first file (Promise.all would race the two errors).
  const rootCertPem = await readPem(path.join(dir, ROOT_FILES.cert), 'the root certificate');
  const rootKeyPem = await readPem(keyFile, 'the root key');
  if (((await stat(keyFile)).mode & 0o077) !== 0) {
    console.error(`warning: ${keyFile} is readable by group or others; chmod 600 it`);
  }
  return { rootCertPem, rootKeyPem };
}

function describeCert(pem: string): string {
  const cert = new X509Certificate(pem);
  const subject = cert.subject.split('\n').join(', ');
  const san = cert.subjectAltName === undefined ? '' : `, ${cert.subjectAltName}`;
  return `${subject}${san}; valid until ${new Date(cert.validTo).toISOString()}; sha256 ${cert.fingerprint256}`;
}

interface RootCreateOptions {
  out: string;
  trustDomain: string;
  org: string;
  days: number;
  keyType: KeyType;
  force?: boolean;
}

async function rootCreate(o: RootCreateOptions): Promise<void> {
  try {
    const root = await createRootCa({
      trustDomain: o.trustDomain,
      org: o.org,
      ttlMs: o.days * DAY_MS,
      keyType: o.keyType,
    });
    await writeCaFiles(
      o.out,
      [
        { name: ROOT_FILES.key, contents: root.rootKeyPem, secret: true },
        { name: ROOT_FILES.cert, contents: root.rootCertPem },
      ],
      { force: o.force === true },
    );
    console.log(`root CA: ${describeCert(root.rootCertPem)}`);
    console.log(`wrote ${path.join(o.out, ROOT_FILES.cert)} and ${path.join(o.out, ROOT_FILES.key)} (mode 0600)`);
    console.log('keep root-key.pem offline; sign intermediates with `fedmesh ca intermediate sign`');
  } catch (err) {
    throw failure('ca root create', err);
  }
}

interface IntermediateCreateOptions {
  root: string;
  cluster: string;
  out: string;
  trustDomain?: string;
  org: string;
  days: number;
  keyType: KeyType;
  force?: boolean;
}

async function intermediateCreate(o: IntermediateCreateOptions): Promise<void> {
  const root = await readRoot(o.root);
  try {
    const material = await createIntermediateCa({
      ...root,
      cluster: o.cluster,
      org: o.org,
      keyType: o.keyType,
      ttlMs: o.days * DAY_MS,
      ...(o.trustDomain === undefined ? {} : { trustDomain: o.trustDomain }),
    });
    await writePluggedCa(o.out, material, { force: o.force === true });
    console.log(`intermediate CA: ${describeCert(material.caCertPem)}`);
    console.log(`wrote ${o.out}/{ca-cert.pem, ca-key.pem (mode 0600), root-cert.pem, cert-chain.pem}`);
  } catch (err) {
    throw failure('ca intermediate create', err);
  }
}

interface IntermediateCsrOptions {
  cluster: string;
  out: string;
  org: string;
  keyType: KeyType;
  force?: boolean;
}

async function intermediateCsr(o: IntermediateCsrOptions): Promise<void> {
  try {
    const { csrPem, keyPem } = await createIntermediateCsr({ cluster: o.cluster, org: o.org, keyType: o.keyType });
    await writeCaFiles(
      o.out,
      [
        { name: 'ca-key.pem', contents: keyPem, secret: true },
        { name: INTERMEDIATE_CSR_FILE, contents: csrPem },
      ],
      { force: o.force === true },
    );
    const csrFile = path.join(o.out, INTERMEDIATE_CSR_FILE);
    console.log(`wrote ${path.join(o.out, 'ca-key.pem')} (mode 0600) and ${csrFile}`);
    console.log(
      `on the root's host: fedmesh ca intermediate sign --root <dir> --csr ${INTERMEDIATE_CSR_FILE} --out <dir>`,
    );
    console.log(`then copy ca-cert.pem, root-cert.pem and cert-chain.pem back into ${o.out}`);
  } catch (err) {
    throw failure('ca intermediate csr', err);
  }
}

interface IntermediateSignOptions {
  root: string;
  csr: string;
  out: string;
  trustDomain?: string;
  days: number;
  force?: boolean;
}

/** keyNextTo returns `ca-key.pem` from `dir` when it exists there (the csr and sign steps share a directory). */
async function keyNextTo(dir: string): Promise<string | undefined> {
  try {
    return await readFile(path.join(dir, 'ca-key.pem'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function intermediateSign(o: IntermediateSignOptions): Promise<void> {
  const root = await readRoot(o.root);
  const csrPem = await readPem(o.csr, 'the CSR');
  try {
    const signed = await signIntermediate({
      ...root,
      csrPem,
      ttlMs: o.days * DAY_MS,
      ...(o.trustDomain === undefined ? {} : { trustDomain: o.trustDomain }),
    });
    const caKeyPem = await keyNextTo(o.out);
    if (caKeyPem !== undefined) {
      if (!new X509Certificate(signed.caCertPem).checkPrivateKey(createPrivateKey(caKeyPem))) {
        throw new Error(`${path.join(o.out, 'ca-key.pem')} is not the key of this CSR; not writing`);
      }
      CertificateAuthority.fromPem({ ...signed, caKeyPem }, signed.trustDomain);
    }
    await writeCaFiles(
      o.out,
      [
        { name: 'ca-cert.pem', contents: signed.caCertPem },
        { name: 'root-cert.pem', contents: signed.rootCertPem },
        { name: 'cert-chain.pem', contents: signed.certChainPem },
      ],
      { force: o.force === true },
    );
    console.log(`intermediate CA: ${describeCert(signed.caCertPem)}`);
    console.log(`wrote ${o.out}/{ca-cert.pem, root-cert.pem, cert-chain.pem}`);
    if (caKeyPem === undefined) console.log(`copy them next to the ca-key.pem that made ${path.basename(o.csr)}`);
  } catch (err) {
    throw failure('ca intermediate sign', err);
  }
}

/**
 * registerCa adds `fedmesh ca`: an offline root (`ca root create`) and per-cluster intermediates in Istio's plug-in
 * layout, made in one go (`ca intermediate create`) or through a CSR so the root key never leaves its host
 * (`ca intermediate csr` where the intermediate will live, `ca intermediate sign` where the root lives). Failures
 * throw an Error with a one-line message (the main program prints it and exits 1). Keys are never printed.
 */
export function registerCa(program: Command): void {
  const ca = program.command('ca').description('make CA material: an offline root and per-cluster intermediates');

  ca.command('root')
    .description('the offline root CA')
    .command('create')
    .description('create a root CA: root-cert.pem and root-key.pem (mode 0600)')
    .requiredOption('--out <dir>', 'directory to write into (created mode 0700)')
    .option('--trust-domain <td>', 'trust domain named in the root (URI SAN spiffe://<td>)', 'cluster.local')
    .option('--org <org>', 'subject O=', DEFAULT_CA_ORG)
    .option('--days <n>', 'lifetime in days', days, 3650)
    .addOption(keyTypeOption())
    .option('--force', 'overwrite existing files')
    .action(rootCreate);

  const intermediate = ca.command('intermediate').description("a cluster's intermediate CA, signed by the root");

  intermediate
    .command('create')
    .description(
      'make an intermediate key and sign it with the root: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem',
    )
    .requiredOption('--root <dir>', 'directory with root-cert.pem and root-key.pem')
    .requiredOption('--cluster <name>', 'cluster name (subject L=)')
    .requiredOption('--out <dir>', 'directory to write the plug-in CA files into')
    .option('--trust-domain <td>', "trust domain (URI SAN spiffe://<td>; default: the root's)")
    .option('--org <org>', 'subject O=', DEFAULT_CA_ORG)
    .option('--days <n>', 'lifetime in days (capped at the root expiry)', days, 730)
    .addOption(keyTypeOption())
    .option('--force', 'overwrite existing files')
    .action(intermediateCreate);

  intermediate
    .command('csr')
    .description(
      `make an intermediate key and CSR where the intermediate will live: ca-key.pem (0600), ${INTERMEDIATE_CSR_FILE}`,
    )
    .requiredOption('--cluster <name>', 'cluster name (subject L=)')
    .requiredOption('--out <dir>', 'directory to write into')
    .option('--org <org>', 'subject O=', DEFAULT_CA_ORG)
    .addOption(keyTypeOption())
    .option('--force', 'overwrite existing files')
    .action(intermediateCsr);

  intermediate
    .command('sign')
    .description('sign an intermediate CSR with the root: ca-cert.pem, root-cert.pem, cert-chain.pem')
    .requiredOption('--root <dir>', 'directory with root-cert.pem and root-key.pem')
    .requiredOption('--csr <file>', 'the CSR from `fedmesh ca intermediate csr`')
    .requiredOption('--out <dir>', 'directory to write into (may be the one holding ca-key.pem)')
    .option('--trust-domain <td>', "trust domain (URI SAN spiffe://<td>; default: the root's)")
    .option('--days <n>', 'lifetime in days (capped at the root expiry)', days, 730)
    .option('--force', 'overwrite existing files')
    .action(intermediateSign);
}
