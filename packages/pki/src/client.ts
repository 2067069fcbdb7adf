import * as grpc from '@grpc/grpc-js';
import { X509Certificate } from 'node:crypto';
import { loadIstioCertificateService, type IstioCertificateResponse } from './ca-proto.js';
import { PkiError } from './errors.js';
import { splitPemBundle } from './pem.js';

/** RequestCertificateOptions: where the CA is, how to trust it, what to sign and how to authenticate. */
export interface RequestCertificateOptions {
  /** address is the CA's `host:port` (istiod's 15012). */
  readonly address: string;
  /** rootCertsPem is the trust bundle used to verify the CA's serving certificate. */
  readonly rootCertsPem: string | readonly string[];
  readonly csrPem: string;
  /** token is sent as `authorization: Bearer <token>` metadata. */
  readonly token?: string;
  /** clientCert is the current certificate (leaf + intermediates PEM) and key, for renewal over mTLS. */
  readonly clientCert?: { readonly certPem: string; readonly keyPem: string };
  /** ttlSeconds is the requested lifetime in seconds; 0 or omitted means the CA's default (24 h). */
  readonly ttlSeconds?: number;
  /** serverName overrides the TLS name checked in the CA's certificate (and the :authority). */
  readonly serverName?: string;
  /** timeoutMs is the call deadline in ms. Default 10 s. */
  readonly timeoutMs?: number;
  /**
   * metadata becomes the request's `metadata` Struct (string values only). fedmesh proxies send
   * `fedmesh.io/node-id` so istiod can tell which connected workload holds the certificate; it never changes the
   * identity issued.
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** CertificateResponse is the CA's answer: [leaf, intermediates…, root], one PEM each. */
export interface CertificateResponse {
  readonly certChainPem: string[];
}

const REFUSAL_CODES = new Set([
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.INVALID_ARGUMENT,
]);

/**
 * requestCertificate calls Istio's `IstioCertificateService/CreateCertificate` over TLS with `@grpc/grpc-js`.
 * Resolves to the returned chain split into single PEM certificates. Throws PkiError `CA_REFUSED` when the CA
 * refuses (PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT), `CA_UNAVAILABLE` on any other gRPC failure
 * (cause: the grpc-js error), `CA_BAD_RESPONSE` when the answer holds no parsable certificate.
 */
export async function requestCertificate(options: RequestCertificateOptions): Promise<CertificateResponse> {
  const { Client } = loadIstioCertificateService();
  const roots = typeof options.rootCertsPem === 'string' ? options.rootCertsPem : options.rootCertsPem.join('');
  const credentials = grpc.credentials.createSsl(
    Buffer.from(roots),
    options.clientCert === undefined ? null : Buffer.from(options.clientCert.keyPem),
    options.clientCert === undefined ? null : Buffer.from(options.clientCert.certPem),
  );
  const channelOptions: grpc.ChannelOptions =
    options.serverName === undefined
      ? {}
      : { 'grpc.ssl_target_name_override': options.serverName, 'grpc.default_authority': options.serverName };
  const client = new Client(options.address, credentials, channelOptions);
  const metadata = new grpc.Metadata();
  if (options.token !== undefined) metadata.set('authorization', `Bearer ${options.token}`);
  const request = {
    csr: options.csrPem,
    validity_duration: options.ttlSeconds ?? 0,
    ...(options.metadata === undefined
      ? {}
      : {
          metadata: {
            fields: Object.fromEntries(Object.entries(options.metadata).map(([k, v]) => [k, { stringValue: v }])),
          },
        }),
  };
  try {
    const createCertificate = (client as unknown as { CreateCertificate: CallFn }).CreateCertificate.bind(client);
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    const response = await new Promise<IstioCertificateResponse>((resolve, reject) => {
      createCertificate(request, metadata, { deadline }, (err, value) => {
        if (err !== null || value === undefined) reject(err ?? new Error('empty response'));
        else resolve(value);
      });
    });
    const certChainPem = response.cert_chain.flatMap((pem) => splitPemBundle(pem));
    const leaf = certChainPem[0];
    if (leaf === undefined) throw new PkiError('CA_BAD_RESPONSE', 'CA returned no certificate');
    try {
      new X509Certificate(leaf);
    } catch (err) {
      throw new PkiError('CA_BAD_RESPONSE', 'CA returned an unparsable certificate', { cause: err });
    }
    return { certChainPem };
  } catch (err) {
    if (err instanceof PkiError) throw err;
    const code = (err as Partial<grpc.ServiceError>).code;
    if (code !== undefined && REFUSAL_CODES.has(code)) {
      throw new PkiError('CA_REFUSED', 'the CA refused the certificate request', { cause: err });
    }
    throw new PkiError('CA_UNAVAILABLE', 'the certificate request failed', { cause: err });
  } finally {
    client.close();
  }
}

type CallFn = (
  request: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, value?: IstioCertificateResponse) => void,
) => grpc.ClientUnaryCall;
