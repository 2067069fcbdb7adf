import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/**
 * XDS_PROTO_FILES lists the Envoy v3 proto files fedmesh loads, relative to the envoy-api include root.
 * Only v3 files are loaded: some v2 leftovers shipped by `@grpc/grpc-js-xds` import files it does not ship.
 */
export const XDS_PROTO_FILES: readonly string[] = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/http/cors/v3/cors.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
];

/**
 * xdsIncludeDirs returns the include roots of the Envoy v3, xds, googleapis and protoc-gen-validate protos that
 * `@grpc/grpc-js-xds` ships under `deps/`, in lookup order. Throws if the package is not installed.
 */
export function xdsIncludeDirs(): string[] {
  const pkgJson = require.resolve('@grpc/grpc-js-xds/package.json');
  const deps = path.join(path.dirname(pkgJson), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(deps, d));
}

let cachedRoot: protobuf.Root | undefined;

/**
 * loadXdsRoot loads (once per process; protos are immutable) a protobufjs Root holding the Envoy v3 messages in
 * {@link XDS_PROTO_FILES} and their imports. Google's well-known types come from protobufjs itself.
 * Throws if a file is missing.
 */
export function loadXdsRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const common = protobuf.common as unknown as Record<string, unknown> & ((name: string, json: unknown) => void);
  if (!common['google/protobuf/descriptor.proto']) {
    const descriptor = require('protobufjs/google/protobuf/descriptor.json') as {
      nested: { google: { nested: { protobuf: { nested: unknown } } } };
    };
    common('descriptor', descriptor.nested.google.nested.protobuf.nested);
  }
  const includes = xdsIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (common[target]) return target;
    for (const dir of includes) {
      const candidate = path.join(dir, target);
      if (fs.existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(
    XDS_PROTO_FILES.map((f) => path.join(includes[0] ?? '', f)),
    { keepCase: true },
  );
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/** AnyMessage is a `google.protobuf.Any` on the wire: a type URL and the serialized message bytes. */
export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

/** TO_OBJECT_OPTIONS are the protobufjs conversion options every fedmesh decoder uses: snake_case keys as in
 * the proto, enums as strings, 64-bit integers as strings, nested `Any` expanded to `{'@type', …}`, and unset
 * fields left out so that "set" can be told from "default". */
export const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = {
  enums: String,
  longs: String,
  bytes: String,
  defaults: false,
  json: true,
};

function messageName(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

/**
 * encodeAny serializes a plain object (snake_case fields, nested `Any` as `{'@type': url, …}`) as the message
 * named by `typeUrl` and wraps it in an {@link AnyMessage}. Throws if the type is unknown or a field does not
 * fit the proto (protobufjs `verify`).
 */
export function encodeAny(typeUrl: string, value: object): AnyMessage {
  const type = loadXdsRoot().lookupType(messageName(typeUrl));
  const message = type.fromObject(value);
  const problem = type.verify(message);
  if (problem) throw new Error(`${messageName(typeUrl)}: ${problem}`);
  return { type_url: typeUrl, value: type.encode(message).finish() };
}

/**
 * decodeAny parses an {@link AnyMessage} into a plain object with {@link TO_OBJECT_OPTIONS}. Throws on an
 * unknown type URL or bytes that are not a valid message of that type.
 */
export function decodeAny(any: AnyMessage): Record<string, unknown> {
  const type = loadXdsRoot().lookupType(messageName(any.type_url));
  return type.toObject(type.decode(any.value), TO_OBJECT_OPTIONS);
}
