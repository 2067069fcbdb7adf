/**
 * VirtualService `fault.abort.grpcStatus` for sidecars: istiod's translation to Envoy's `FaultAbort.grpc_status`
 * (the same for proxyless gRPC), and what the fedmesh proxy's decoder accepts and NACKs of a fault abort (its
 * `error_type` oneof: `http_status` or `grpc_status`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { RouteConfigurationType } from '@fedmesh/proxy';
import { faultConfig, grpcStatusCode } from './rds.js';

const FAULT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

/** decodeWithAbort runs the proxy's RouteConfiguration decoder on one route whose fault has `abort`. */
function decodeWithAbort(abort: object): ReturnType<typeof RouteConfigurationType.decode> {
  const rc = {
    name: 'outbound',
    virtual_hosts: [
      {
        name: 'probe',
        domains: ['probe:50051'],
        routes: [
          {
            name: 'r',
            match: { prefix: '/' },
            route: { cluster: 'outbound|50051||probe.default.svc.cluster.local' },
            typed_per_filter_config: { 'envoy.filters.http.fault': { '@type': FAULT_TYPE, abort } },
          },
        ],
      },
    ],
  };
  return RouteConfigurationType.decode(encodeAny(TypeUrl.RouteConfiguration, rc));
}

describe('fault.abort.grpcStatus', () => {
  it('istiod translates a grpcStatus abort, by name or number, to abort.grpc_status with its percentage', () => {
    const byName = faultConfig({ abort: { grpcStatus: 'unavailable', percentage: { value: 50 } } });
    assert.deepEqual(byName.config.abort, {
      grpc_status: 14,
      percentage: { numerator: 500000, denominator: 'MILLION' },
    });
    assert.equal(byName.abortLeftOut, false);
    assert.deepEqual(
      (faultConfig({ abort: { grpcStatus: '7' } }).config.abort as { grpc_status: number }).grpc_status,
      7,
    );
    assert.equal(grpcStatusCode('PERMISSION_DENIED'), 7);
    assert.equal(grpcStatusCode('17'), undefined);
    assert.equal(grpcStatusCode(''), undefined);
    assert.equal(grpcStatusCode('NOPE'), undefined);
  });

  it('an unknown grpcStatus or an http2Error abort is left out and flagged, the delay kept', () => {
    const bad = faultConfig({ abort: { grpcStatus: 'NOPE' }, delay: { fixedDelay: '1s' } });
    assert.equal(bad.config.abort, undefined);
    assert.equal(bad.abortLeftOut, true);
    assert.ok(bad.config.delay);
    assert.equal(faultConfig({ abort: { http2Error: 'REFUSED_STREAM' } }).abortLeftOut, true);
  });

  it('the proxy applies grpc_status, and NACKs an abort with both error types or neither, with the field path', () => {
    const ok = decodeWithAbort({ grpc_status: 14 });
    assert.ok('value' in ok, 'grpc_status alone is accepted');
    assert.equal(ok.value.virtualHost('probe:50051')?.routes[0]?.fault?.abortGrpcStatus, 14);
    assert.equal(ok.value.virtualHost('probe:50051')?.routes[0]?.fault?.abortStatus, undefined);
    const both = decodeWithAbort({ http_status: 503, grpc_status: 14 });
    assert.ok('error' in both);
    assert.match(
      String(both.error),
      /virtual_hosts\[0\]\.routes\[0\]\.typed_per_filter_config\.envoy\.filters\.http\.fault\.abort: http_status and grpc_status/,
    );
    const neither = decodeWithAbort({ percentage: { numerator: 100, denominator: 'HUNDRED' } });
    assert.ok('error' in neither);
    assert.match(String(neither.error), /abort: http_status or grpc_status is required/);
  });
});
