import dgram from 'node:dgram';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import {
  ErrorCode,
  InvalidConfigError,
  MAX_VM_FILE_BYTES,
  MeshError,
  parseClusterEnv,
  parseHostsFile,
  parseMeshConfigFile,
  VM_FILES,
  type HostsEntry,
  type VmClusterEnv,
} from '@fedmesh/api';
import { splitPemBundle } from '@fedmesh/pki';

/** VmBootstrap is what the onboarding files in the config directory say, validated. */
export interface VmBootstrap {
  configDir: string;
  env: VmClusterEnv;
  /** discoveryAddress is istiod's ADS and CA address (15012) as `mesh.yaml` names it, `host:port`. */
  discoveryAddress: string;
  /** dialAddress is where to connect: the `hosts` file's address for the discovery host, else `discoveryAddress`. */
  dialAddress: string;
  /** rootCertPem is the trust bundle istiod's serving certificate is checked against until SDS sends its own. */
  rootCertPem: string;
  hosts: HostsEntry[];
  /** tokenFile is the bootstrap token's path (it may be gone once a certificate is persisted). */
  tokenFile: string;
}

/** MAX_TOKEN_BYTES bounds the bootstrap token file (8 KiB). */
export const MAX_TOKEN_BYTES = 8 * 1024;

async function readBounded(file: string, maxBytes: number): Promise<string | undefined> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MeshError(ErrorCode.NOT_FOUND, `${file}: cannot be read: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes)
      throw new InvalidConfigError([{ path: '', message: `larger than ${maxBytes} bytes` }], path.basename(file));
    const buf = Buffer.alloc(size);
    const { bytesRead } = await handle.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

async function required(configDir: string, name: string): Promise<string> {
  const text = await readBounded(path.join(configDir, name), MAX_VM_FILE_BYTES);
  if (text === undefined)
    throw new MeshError(
      ErrorCode.NOT_FOUND,
      `${path.join(configDir, name)} is missing: copy the files \`fedmesh vm config\` wrote into ${configDir}`,
    );
  return text;
}

function checkRootCerts(pem: string): void {
  const certs = splitPemBundle(pem);
  const issues = certs.length === 0 ? [{ path: '', message: 'holds no PEM certificate' }] : [];
  certs.forEach((c, i) => {
    try {
      new X509Certificate(c);
    } catch {
      issues.push({ path: `certificate ${i + 1}`, message: 'is not a valid X.509 certificate' });
    }
  });
  if (issues.length > 0) throw new InvalidConfigError(issues, VM_FILES.rootCert);
}

/**
 * readBootstrap reads and validates the onboarding files in `configDir`: `cluster.env`, `mesh.yaml` and
 * `root-cert.pem` are required, `hosts` is optional, the token is read later ({@link readToken}). Throws MeshError
 * `FEDMESH_ERR_NOT_FOUND` naming a missing file, InvalidConfigError (file, key or field path) for bad content:
 * a probe kind the agent cannot run (gRPC), or `mesh.yaml` and `cluster.env` naming different trust domains.
 */
export async function readBootstrap(configDir: string): Promise<VmBootstrap> {
  const env = parseClusterEnv(await required(configDir, VM_FILES.clusterEnv));
  const mesh = parseMeshConfigFile(await required(configDir, VM_FILES.meshConfig));
  const rootCertPem = await required(configDir, VM_FILES.rootCert);
  checkRootCerts(rootCertPem);
  const hostsText = await readBounded(path.join(configDir, VM_FILES.hosts), MAX_VM_FILE_BYTES);
  const hosts = hostsText === undefined ? [] : parseHostsFile(hostsText);
  if (env.probe?.grpc)
    throw new InvalidConfigError(
      [
        {
          path: 'FEDMESH_READINESS_PROBE.grpc',
          message: 'gRPC probes are not supported; use httpGet, tcpSocket or exec',
        },
      ],
      VM_FILES.clusterEnv,
    );
  if (mesh.trustDomain !== undefined && mesh.trustDomain !== env.trustDomain)
    throw new InvalidConfigError(
      [{ path: 'trustDomain', message: `is ${mesh.trustDomain} but cluster.env says ${env.trustDomain}` }],
      VM_FILES.meshConfig,
    );
  const discoveryAddress = mesh.defaultConfig.discoveryAddress;
  const sep = discoveryAddress.lastIndexOf(':');
  const host = discoveryAddress.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = discoveryAddress.slice(sep + 1);
  const mapped = hosts.find((h) => h.names.includes(host))?.address;
  const dialAddress =
    mapped === undefined ? discoveryAddress : isIP(mapped) === 6 ? `[${mapped}]:${port}` : `${mapped}:${port}`;
  return {
    configDir,
    env,
    discoveryAddress,
    dialAddress,
    rootCertPem,
    hosts,
    tokenFile: path.join(configDir, VM_FILES.token),
  };
}

/** TokenFile is the bootstrap token and whether its file is readable by everyone (a warning: make it 0640 or 0600). */
export interface TokenFile {
  token: string;
  looseMode: boolean;
}

/** readToken reads the bootstrap token file; undefined when it does not exist (or is empty). Never log the token. */
export async function readToken(file: string): Promise<TokenFile | undefined> {
  const text = await readBounded(file, MAX_TOKEN_BYTES);
  const token = text?.trim();
  if (!token) return undefined;
  const { mode } = await fs.stat(file);
  return { token, looseMode: (mode & 0o007) !== 0 };
}

/**
 * detectInstanceIp returns the local address this host uses to reach `dialAddress` (`host:port`), found by
 * connecting a UDP socket (no packet is sent). Rejects after `timeoutMs` (default 5 s) or when there is no route.
 */
export function detectInstanceIp(dialAddress: string, timeoutMs = 5_000): Promise<string> {
  const sep = dialAddress.lastIndexOf(':');
  const host = dialAddress.slice(0, sep).replace(/^\[|\]$/g, '');
  const port = Number(dialAddress.slice(sep + 1));
  const socket = dgram.createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new MeshError(ErrorCode.TIMEOUT, `no local address toward ${dialAddress} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.close();
      reject(new MeshError(ErrorCode.UNAVAILABLE, `no route toward ${dialAddress}: ${err.message}`, { cause: err }));
    });
    socket.connect(port, host, () => {
      clearTimeout(timer);
      const { address } = socket.address();
      socket.close();
      resolve(address);
    });
  });
}
