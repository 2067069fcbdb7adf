// A self-signed root CA kept on disk in Istio's plug-in layout.
import { generateKeyPair as nodeGenerateKeyPair } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { name, toDer } from './asn1.js';
import type { CaMaterialPem } from './ca-material.js';
import { PkiError } from './errors.js';
import { basicConstraints, keyUsage, KeyUsageBit, subjectAltName, subjectKeyIdentifier } from './extensions.js';
import { keyIdentifier, signatureAlgorithmFor, spkiDer } from './keys.js';
import { derToPem } from './pem.js';
import { randomSerialNumber, signCertificate, truncateToSeconds } from './x509.js';

/** The plug-in CA file names, in the order loadPluggedCa reads them. */
export const PLUGGED_CA_FILES = ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem'] as const;

const ROOT_TTL_MS = 10 * 365 * 24 * 60 * 60 * 1000;
const generate = promisify(nodeGenerateKeyPair);

/** createSelfSignedRoot makes an ECDSA P-256 root CA valid for 10 years, as plug-in PEM material. */
export async function createSelfSignedRoot(options: {
  trustDomain: string;
  organization: string;
}): Promise<CaMaterialPem> {
  const { privateKey, publicKey } = await generate('ec', { namedCurve: 'P-256' });
  const spki = spkiDer(publicKey);
  const subject = toDer(name({ organization: options.organization, commonName: 'fedmesh root CA' }));
  const now = Date.now();
  const der = await signCertificate(
    {
      serialNumber: randomSerialNumber(),
      issuerName: subject,
      subjectName: subject,
      notBefore: truncateToSeconds(new Date(now - 60_000)),
      notAfter: truncateToSeconds(new Date(now + ROOT_TTL_MS)),
      spki,
      extensions: [
        basicConstraints(true),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(spki)),
        subjectAltName({ uris: [`spiffe://${options.trustDomain}`] }, false),
      ],
    },
    { privateKey, algorithm: signatureAlgorithmFor({ keyType: 'ec', curve: 'P-256' }) },
  );
  const certPem = derToPem(der);
  return {
    caCertPem: certPem,
    caKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    rootCertPem: certPem,
    certChainPem: certPem,
  };
}

/** The on-disk state of a self-signed CA. */
export interface SelfSignedState {
  readonly pem: CaMaterialPem;
  readonly created: boolean;
  /** insecureKeyMode is true when ca-key.pem is readable by group or others. */
  readonly insecureKeyMode: boolean;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * readOrCreateState loads the four plug-in files from `dir`, or, when none exists, makes them with `create` and
 * writes them (directory 0700, key 0600, exclusive create so a concurrent writer is never overwritten). Throws
 * PkiError `CA_FILES_MISSING` when only some files exist.
 */
export async function readOrCreateState(dir: string, create: () => Promise<CaMaterialPem>): Promise<SelfSignedState> {
  const present = await Promise.all(PLUGGED_CA_FILES.map((file) => exists(join(dir, file))));
  if (present.every(Boolean)) {
    const [caCertPem = '', caKeyPem = '', rootCertPem = '', certChainPem = ''] = await Promise.all(
      PLUGGED_CA_FILES.map((file) => readFile(join(dir, file), 'utf8')),
    );
    const keyMode = (await stat(join(dir, 'ca-key.pem'))).mode;
    return {
      pem: { caCertPem, caKeyPem, rootCertPem, certChainPem },
      created: false,
      insecureKeyMode: (keyMode & 0o077) !== 0,
    };
  }
  if (present.some(Boolean)) {
    const missing = PLUGGED_CA_FILES.filter((_, i) => present[i] !== true);
    throw new PkiError(
      'CA_FILES_MISSING',
      `${dir} holds a partial CA (missing ${missing.join(', ')}); not overwriting`,
    );
  }
  const pem = await create();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'ca-key.pem'), pem.caKeyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(join(dir, 'ca-cert.pem'), pem.caCertPem, { mode: 0o644, flag: 'wx' });
  await writeFile(join(dir, 'cert-chain.pem'), pem.certChainPem, { mode: 0o644, flag: 'wx' });
  await writeFile(join(dir, 'root-cert.pem'), pem.rootCertPem, { mode: 0o644, flag: 'wx' });
  return { pem, created: true, insecureKeyMode: false };
}
