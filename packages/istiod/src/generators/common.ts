import { encodeAny, type AnyMessage } from '@fedmesh/api/xds';
import type { DestinationRuleObject } from '../model/config.js';
import type { ServiceInstance } from '../model/service.js';

/** GeneratedResource is one resource a generator made: its name, the plain Envoy object, and the `Any`. */
export interface GeneratedResource {
  name: string;
  resource: AnyMessage;
}

/** toResource serializes a plain Envoy object as `typeUrl`; throws if it does not fit the proto (a generator bug). */
export function toResource(typeUrl: string, name: string, value: object): GeneratedResource {
  return { name, resource: encodeAny(typeUrl, value) };
}

/** ADS_SOURCE is the `ConfigSource` that points a reference back at the ADS stream. */
export const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

/** durationToProto converts milliseconds into a `google.protobuf.Duration` object. */
export function durationToProto(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** percentToFraction converts an Istio percentage (0..100, fractional allowed) into a `FractionalPercent` per million. */
export function percentToFraction(value: number | undefined): { numerator: number; denominator: 'MILLION' } {
  return { numerator: Math.round((value ?? 100) * 10_000), denominator: 'MILLION' };
}

/** subsetLabels returns a DestinationRule subset's labels, or undefined when the subset is not defined. */
export function subsetLabels(
  dr: DestinationRuleObject | undefined,
  subset: string,
): Record<string, string> | undefined {
  return (
    dr?.spec.subsets?.find((s) => s.name === subset)?.labels ??
    (dr?.spec.subsets?.some((s) => s.name === subset) ? {} : undefined)
  );
}

/** matchesLabels reports whether `labels` carry every key/value of `selector`. */
export function matchesLabels(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** spiffeIdOf builds the SPIFFE ID of a workload: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. */
export function spiffeIdOf(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** serviceAccountsOf lists the SPIFFE IDs of a set of instances, sorted and unique (a cluster's allowed peer SANs). */
export function serviceAccountsOf(trustDomain: string, instances: readonly ServiceInstance[]): string[] {
  return [
    ...new Set(instances.map((i) => spiffeIdOf(trustDomain, i.endpoint.namespace, i.endpoint.serviceAccount))),
  ].sort();
}
