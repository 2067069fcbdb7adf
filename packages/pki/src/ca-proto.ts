import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

/**
 * CA_PROTO_PATH is the absolute path of `proto/ca.proto` (Istio's `istio.v1.auth.IstioCertificateService`). It is
 * resolved from the package root, so it works from both `src/` (tsx) and `dist/`.
 */
export const CA_PROTO_PATH = fileURLToPath(new URL('../proto/ca.proto', import.meta.url));

/** IstioCertificateRequest as proto-loader decodes it (`keepCase`, int64 as number). */
export interface IstioCertificateRequest {
  readonly csr: string;
  /** validity_duration is the requested lifetime in seconds; 0 means the CA default. */
  readonly validity_duration: number;
  readonly metadata?: unknown;
}

/** IstioCertificateResponse: `cert_chain` is [leaf, intermediates…, root], one PEM each. */
export interface IstioCertificateResponse {
  readonly cert_chain: string[];
}

/** IstioCertificateServiceGrpc is the loaded gRPC service: its definition (for servers) and client constructor. */
export interface IstioCertificateServiceGrpc {
  readonly service: grpc.ServiceDefinition;
  readonly Client: grpc.ServiceClientConstructor;
}

/**
 * loadIstioCertificateService loads `istio.v1.auth.IstioCertificateService` from {@link CA_PROTO_PATH} with
 * proto-loader (`keepCase`, longs as numbers, defaults filled). Each call loads afresh; cache the result.
 */
export function loadIstioCertificateService(): IstioCertificateServiceGrpc {
  const definition = protoLoader.loadSync(CA_PROTO_PATH, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  const Client = loaded.istio.v1.auth.IstioCertificateService;
  return { service: Client.service, Client };
}
