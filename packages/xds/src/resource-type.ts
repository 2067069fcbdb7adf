import type { AnyMessage } from '@fedmesh/api/xds';

/** DecodeResult is what a resource type's decoder makes of one `Any`: a value, or an error that becomes a NACK. */
export type DecodeResult<T> = { name: string; value: T } | { name: string; error: string };

/**
 * XdsResourceType is one xDS type a client understands, as in grpc-js-xds: `decode` validates and converts one
 * resource. Validation failures are values (they become the NACK's `error_detail` with the field path); only
 * bugs throw.
 */
export interface XdsResourceType<T> {
  readonly typeUrl: string;
  decode(resource: AnyMessage): DecodeResult<T>;
}
