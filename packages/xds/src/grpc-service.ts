import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { xdsIncludeDirs, type AnyMessage } from '@fedmesh/api/xds';

/** XdsNode is Envoy's `config.core.v3.Node` as fedmesh reads it; `metadata` is the Struct as plain JSON. */
export interface XdsNode {
  id: string;
  cluster?: string;
  metadata?: Record<string, unknown>;
  locality?: { region?: string; zone?: string; sub_zone?: string };
  user_agent_name?: string;
}

/** WireStatus is `google.rpc.Status` as carried in `DiscoveryRequest.error_detail`. */
export interface WireStatus {
  code?: number;
  message?: string;
}

/** WireDiscoveryRequest is `envoy.service.discovery.v3.DiscoveryRequest` as proto-loader decodes it (snake_case). */
export interface WireDiscoveryRequest {
  version_info?: string;
  node?: WireNode;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: WireStatus;
}

/** WireDiscoveryResponse is `envoy.service.discovery.v3.DiscoveryResponse` as proto-loader encodes it. */
export interface WireDiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

/** WireDeltaDiscoveryRequest is `envoy.service.discovery.v3.DeltaDiscoveryRequest` as proto-loader decodes it. */
export interface WireDeltaDiscoveryRequest {
  node?: WireNode;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  /** initial_resource_versions maps resource name → version (first request of a type on a reconnected stream). */
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: WireStatus;
}

/** WireDeltaResource is `envoy.service.discovery.v3.Resource`: one named, versioned resource (no `resource`: absent). */
export interface WireDeltaResource {
  name: string;
  version: string;
  resource?: AnyMessage;
}

/** WireDeltaDiscoveryResponse is `envoy.service.discovery.v3.DeltaDiscoveryResponse` as proto-loader encodes it. */
export interface WireDeltaDiscoveryResponse {
  system_version_info: string;
  resources: WireDeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

/** WireNode is `config.core.v3.Node` on the wire: metadata is a `google.protobuf.Struct`. */
export interface WireNode {
  id?: string;
  cluster?: string;
  metadata?: WireStruct;
  locality?: { region?: string; zone?: string; sub_zone?: string };
  user_agent_name?: string;
}

/** WireStruct is `google.protobuf.Struct` in proto-loader's object form. */
export interface WireStruct {
  fields?: Record<string, WireValue>;
}

/**
 * WireValue is `google.protobuf.Value` in proto-loader's object form (a oneof of the kinds below). protobufjs ships
 * the well-known types with camelCase field names, so these stay camelCase even with `keepCase`.
 */
export interface WireValue {
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values?: WireValue[] };
}

/** structToJson converts a `google.protobuf.Struct` into plain JSON. */
export function structToJson(s: WireStruct | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: WireValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.structValue !== undefined) return structToJson(v.structValue);
  if (v.listValue !== undefined) return (v.listValue.values ?? []).map(valueToJson);
  return null;
}

/** jsonToStruct converts plain JSON into a `google.protobuf.Struct`; `undefined` members are left out. */
export function jsonToStruct(obj: Record<string, unknown>): WireStruct {
  const fields: Record<string, WireValue> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = jsonToValue(v);
  return { fields };
}

function jsonToValue(v: unknown): WireValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(jsonToValue) } };
  if (typeof v === 'object') return { structValue: jsonToStruct(v as Record<string, unknown>) };
  return { stringValue: typeof v === 'bigint' ? v.toString() : '' };
}

/** nodeFromWire turns a wire Node into an {@link XdsNode} with plain-JSON metadata. */
export function nodeFromWire(n: WireNode): XdsNode {
  const node: XdsNode = { id: n.id ?? '' };
  if (n.cluster) node.cluster = n.cluster;
  if (n.metadata) node.metadata = structToJson(n.metadata);
  if (n.locality) node.locality = n.locality;
  if (n.user_agent_name) node.user_agent_name = n.user_agent_name;
  return node;
}

/** nodeToWire turns an {@link XdsNode} into its wire form. */
export function nodeToWire(n: XdsNode): WireNode {
  const wire: WireNode = { id: n.id };
  if (n.cluster !== undefined) wire.cluster = n.cluster;
  if (n.metadata) wire.metadata = jsonToStruct(n.metadata);
  if (n.locality) wire.locality = n.locality;
  if (n.user_agent_name !== undefined) wire.user_agent_name = n.user_agent_name;
  return wire;
}

/**
 * AdsServiceClient is the generated client constructor's instance type for `AggregatedDiscoveryService`: the
 * State-of-the-World and the Delta (incremental) stream.
 */
export interface AdsServiceClient extends grpc.Client {
  StreamAggregatedResources(
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<WireDiscoveryRequest, WireDiscoveryResponse>;
  DeltaAggregatedResources(
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<WireDeltaDiscoveryRequest, WireDeltaDiscoveryResponse>;
}

/** AdsGrpc bundles the ADS service definition (for servers) and client constructor (for clients). */
export interface AdsGrpc {
  service: grpc.ServiceDefinition;
  Client: new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions,
  ) => AdsServiceClient;
}

let cached: AdsGrpc | undefined;

/**
 * loadAdsGrpc loads `envoy.service.discovery.v3.AggregatedDiscoveryService` with proto-loader (snake_case,
 * enums and longs as strings, unset fields omitted), once per process. `Any` resources stay raw
 * `{type_url, value}` so that each type is decoded by its own {@link XdsResourceType}.
 */
export function loadAdsGrpc(): AdsGrpc {
  if (cached) return cached;
  const includeDirs = xdsIncludeDirs();
  const def = protoLoader.loadSync(path.join(includeDirs[0] ?? '', 'envoy/service/discovery/v3/ads.proto'), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: false,
    includeDirs,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } } };
  };
  const ctor = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService;
  cached = { service: ctor.service, Client: ctor as unknown as AdsGrpc['Client'] };
  return cached;
}
