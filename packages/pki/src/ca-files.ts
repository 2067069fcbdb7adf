// Writing CA material to disk: private keys 0600, exclusive create unless forced, atomic replace when forced.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CaMaterialPem } from './ca-material.js';
import { PkiError } from './errors.js';

/** CaFile is one file to write: a plain file name (no directories), its text, and whether it is secret. */
export interface CaFile {
  readonly name: string;
  readonly contents: string;
  /** secret files (private keys) are written mode 0600; others 0644. */
  readonly secret?: boolean;
}

/** WriteCaFilesOptions: whether existing files may be replaced. */
export interface WriteCaFilesOptions {
  /** force replaces existing files (each atomically, by rename). Default false: refuse to touch any. */
  readonly force?: boolean;
}

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * writeCaFiles writes `files` into `dir` (created mode 0700 if missing): secret files mode 0600, others 0644 (less
 * any umask bits). Without `force`, nothing is written when any of the files exists (PkiError `CA_FILES_EXIST`),
 * each file is created exclusively (`O_EXCL`), and the files already written are removed if a later one fails. With
 * `force`, each file is written to a temporary name with its mode and renamed over the old one, so a replaced key
 * never keeps a looser mode. Throws TypeError for a name that is not a plain file name, and the `fs` error otherwise.
 */
export async function writeCaFiles(
  dir: string,
  files: readonly CaFile[],
  options: WriteCaFilesOptions = {},
): Promise<void> {
  for (const file of files) {
    if (!FILE_NAME.test(file.name)) throw new TypeError(`not a plain file name: ${JSON.stringify(file.name)}`);
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.force === true) {
    for (const file of files) {
      const target = join(dir, file.name);
      const temporary = join(dir, `.${file.name}.${randomBytes(6).toString('hex')}.tmp`);
      await writeFile(temporary, file.contents, { mode: file.secret === true ? 0o600 : 0o644, flag: 'wx' });
      try {
        await rename(temporary, target);
      } catch (err) {
        await unlink(temporary).catch(() => undefined);
        throw err;
      }
    }
    return;
  }
  const present = (
    await Promise.all(files.map(async (file) => ((await exists(join(dir, file.name))) ? file.name : '')))
  ).filter((fileName) => fileName !== '');
  if (present.length > 0) {
    throw new PkiError('CA_FILES_EXIST', `${dir} already holds ${present.join(', ')}; not overwriting without force`);
  }
  const written: string[] = [];
  try {
    for (const file of files) {
      const target = join(dir, file.name);
      await writeFile(target, file.contents, { mode: file.secret === true ? 0o600 : 0o644, flag: 'wx' });
      written.push(target);
    }
  } catch (err) {
    await Promise.all(written.map((path) => unlink(path).catch(() => undefined)));
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new PkiError('CA_FILES_EXIST', `a file appeared in ${dir} while writing; not overwriting`, { cause: err });
    }
    throw err;
  }
}

/**
 * writePluggedCa writes Istio's plug-in CA files into `dir`: `ca-cert.pem`, `ca-key.pem` (mode 0600),
 * `root-cert.pem` and `cert-chain.pem`, the layout `CertificateAuthority.loadPluggedCa` reads and istiod's `cacerts`
 * secret holds. Refuses to overwrite any existing file unless `force` (see {@link writeCaFiles} for the errors).
 * The material is written as given; check it first (`CertificateAuthority.fromPem`) if it did not come from
 * `createIntermediateCa` or `signIntermediate`.
 */
export async function writePluggedCa(
  dir: string,
  material: CaMaterialPem,
  options: WriteCaFilesOptions = {},
): Promise<void> {
  await writeCaFiles(
    dir,
    [
      { name: 'ca-key.pem', contents: material.caKeyPem, secret: true },
      { name: 'ca-cert.pem', contents: material.caCertPem },
      { name: 'root-cert.pem', contents: material.rootCertPem },
      { name: 'cert-chain.pem', contents: material.certChainPem },
    ],
    options,
  );
}
