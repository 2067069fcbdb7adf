/**
 * The CORS filter as the proxy applies it: Envoy's `CorsFilter` decisions (preflights answered locally or
 * forwarded, headers on actual responses, `*` echoes, `filter_enabled`), and the decoders' refusal of what the
 * proxy does not implement (RouteConfiguration and Listener NACKed with the field path). Configs go through the
 * real protobuf encoding, as they arrive from istiod.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { ListenerType, RouteConfigurationType } from '../xds/resource-types.js';
import { corsDecodeHeaders, type CorsPolicy, type CorsRequest } from './cors.js';

const POLICY_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
const CORS = 'envoy.filters.http.cors';

function routeConfig(cors: object): ReturnType<typeof encodeAny> {
  return encodeAny(TypeUrl.RouteConfiguration, {
    name: 'outbound',
    virtual_hosts: [
      {
        name: 'ratings.prod.svc.cluster.local:9080',
        domains: ['ratings.prod.svc.cluster.local:9080'],
        routes: [
          {
            name: 'r',
            match: { prefix: '/' },
            route: { cluster: 'outbound|9080|v1|ratings.prod.svc.cluster.local' },
            typed_per_filter_config: { [CORS]: { '@type': POLICY_TYPE, ...cors } },
          },
        ],
      },
    ],
  });
}

/** policy decodes and compiles a CorsPolicy the way the proxy receives it from istiod. */
function policy(cors: object): CorsPolicy {
  const r = RouteConfigurationType.decode(routeConfig(cors));
  assert.ok('value' in r, 'error' in r ? r.error : '');
  const p = r.value.virtualHost('ratings.prod.svc.cluster.local:9080')?.routes[0]?.cors;
  assert.ok(p, 'the route carries its CORS policy');
  return p;
}

function nackRoute(cors: object): string {
  const r = RouteConfigurationType.decode(routeConfig(cors));
  assert.ok('error' in r, 'the RouteConfiguration must be NACKed');
  return r.error;
}

const preflight = (origin: string, extra: Record<string, string> = {}): CorsRequest => ({
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', ...extra },
});
const actual = (origin: string | undefined, method = 'GET'): CorsRequest => ({
  method,
  headers: origin === undefined ? {} : { origin },
});
const never = (): number => assert.fail('no draw expected at 100%');

// Istio's docs example (virtual-service reference, CorsPolicy) as istiod translates it.
const ISTIO_EXAMPLE = {
  allow_origin_string_match: [{ exact: 'https://example.com' }],
  allow_methods: 'POST,GET',
  allow_headers: 'X-Foo-Bar',
  max_age: '86400',
  allow_credentials: { value: false },
  filter_enabled: { default_value: { numerator: 100, denominator: 'HUNDRED' } },
  forward_not_matching_preflights: { value: true },
};

describe("Envoy's CORS filter decisions", () => {
  it('answers a preflight from an allowed origin with the allow-* headers', () => {
    assert.deepEqual(corsDecodeHeaders(policy(ISTIO_EXAMPLE), preflight('https://example.com'), never), {
      preflight: {
        'access-control-allow-origin': 'https://example.com',
        'access-control-allow-methods': 'POST,GET',
        'access-control-allow-headers': 'X-Foo-Bar',
        'access-control-max-age': '86400',
      },
    });
  });

  it('forwards a preflight from another origin by default, and answers it without allow-origin under IGNORE', () => {
    assert.equal(corsDecodeHeaders(policy(ISTIO_EXAMPLE), preflight('https://evil.example'), never), undefined);
    const ignore = policy({ ...ISTIO_EXAMPLE, forward_not_matching_preflights: { value: false } });
    const d = corsDecodeHeaders(ignore, preflight('https://evil.example'), never);
    assert.ok(d?.preflight, 'answered locally');
    assert.equal(d.preflight['access-control-allow-origin'], undefined);
    assert.equal(d.response, undefined);
  });

  it('sets allow-origin, credentials and expose-headers on actual responses only for an allowed origin', () => {
    const p = policy({
      ...ISTIO_EXAMPLE,
      allow_origin_string_match: [
        { prefix: 'https://app.' },
        { safe_regex: { regex: 'https://[a-z]+\\.example\\.org' } },
      ],
      allow_credentials: { value: true },
      expose_headers: 'x-request-id,x-trace',
    });
    const want = (origin: string): object => ({
      response: {
        'access-control-allow-origin': origin,
        'access-control-allow-credentials': 'true',
        'access-control-expose-headers': 'x-request-id,x-trace',
      },
    });
    assert.deepEqual(corsDecodeHeaders(p, actual('https://app.example.com'), never), want('https://app.example.com'));
    assert.deepEqual(
      corsDecodeHeaders(p, actual('https://www.example.org', 'POST'), never),
      want('https://www.example.org'),
    );
    // A regex is a full match: a suffix after the allowed origin does not match.
    assert.equal(corsDecodeHeaders(p, actual('https://www.example.org.evil.com'), never), undefined);
    assert.equal(corsDecodeHeaders(p, actual('https://evil.example'), never), undefined);
    // No Origin, or an empty one: not a CORS request.
    assert.equal(corsDecodeHeaders(p, actual(undefined), never), undefined);
    assert.equal(corsDecodeHeaders(p, actual(''), never), undefined);
    // OPTIONS without Access-Control-Request-Method is an actual request, not a preflight.
    assert.deepEqual(corsDecodeHeaders(p, actual('https://app.x', 'OPTIONS'), never), want('https://app.x'));
  });

  it('a matcher that matches "*" allows every origin, which is echoed back; "*" methods and headers echo the request', () => {
    const p = policy({
      allow_origin_string_match: [{ safe_regex: { regex: '.*' } }],
      allow_methods: '*',
      allow_headers: '*',
      allow_private_network_access: { value: true },
    });
    assert.deepEqual(
      corsDecodeHeaders(
        p,
        preflight('http://anything.test', {
          'access-control-request-method': 'PATCH',
          'access-control-request-headers': 'content-type,x-a',
          'access-control-request-private-network': 'true',
        }),
        never,
      ),
      {
        preflight: {
          'access-control-allow-origin': 'http://anything.test',
          'access-control-allow-methods': 'PATCH',
          'access-control-allow-headers': 'content-type,x-a',
          'access-control-allow-private-network': 'true',
        },
      },
    );
  });

  it('filter_enabled draws per request: 0% leaves every request alone, 25% acts on draws below 0.25', () => {
    const off = policy({ ...ISTIO_EXAMPLE, filter_enabled: { default_value: { numerator: 0 } } });
    assert.equal(
      corsDecodeHeaders(off, preflight('https://example.com'), () => 0),
      undefined,
    );
    const quarter = policy({
      ...ISTIO_EXAMPLE,
      filter_enabled: { default_value: { numerator: 2500, denominator: 'TEN_THOUSAND' } },
    });
    assert.ok(corsDecodeHeaders(quarter, preflight('https://example.com'), () => 0.2)?.preflight);
    assert.equal(
      corsDecodeHeaders(quarter, preflight('https://example.com'), () => 0.3),
      undefined,
    );
  });

  it('a route without a CORS policy is left alone', () => {
    assert.equal(corsDecodeHeaders(undefined, preflight('https://example.com'), never), undefined);
  });
});

describe('the decoders NACK what the proxy does not implement, with the field path', () => {
  const AT = 'virtual_hosts[0].routes[0].typed_per_filter_config.envoy.filters.http.cors';
  const esc = (s: string): string => s.replace(/[[\].]/g, '\\$&');

  it('shadow_enabled, a runtime_key, a bad origin regex and a max_age that is not whole seconds', () => {
    assert.match(
      nackRoute({ ...ISTIO_EXAMPLE, shadow_enabled: { default_value: { numerator: 100 } } }),
      new RegExp(`${esc(AT)}: Unrecognized key: "shadow_enabled"`),
    );
    assert.match(
      nackRoute({ ...ISTIO_EXAMPLE, filter_enabled: { default_value: { numerator: 100 }, runtime_key: 'cors.on' } }),
      new RegExp(`${esc(AT)}\\.filter_enabled: Unrecognized key: "runtime_key"`),
    );
    assert.match(
      nackRoute({ allow_origin_string_match: [{ safe_regex: { regex: '(' } }] }),
      new RegExp(`${esc(AT)}\\.allow_origin_string_match\\[0\\]\\.safe_regex\\.regex: invalid regex`),
    );
    assert.match(nackRoute({ max_age: '1.5' }), new RegExp(`${esc(AT)}\\.max_age: must be a whole number of seconds`));
  });

  function listener(filters: string[]): ReturnType<typeof encodeAny> {
    const typed: Record<string, string> = {
      'envoy.filters.http.fault': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
      [CORS]: 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors',
      'envoy.filters.http.router': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
    };
    return encodeAny(TypeUrl.Listener, {
      name: 'virtualOutbound',
      address: { socket_address: { address: '127.0.9.1', port_value: 15001 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'outbound',
                rds: { route_config_name: 'outbound', config_source: { ads: {} } },
                http_filters: filters.map((name) => ({ name, typed_config: { '@type': typed[name] } })),
              },
            },
          ],
        },
      ],
    });
  }

  it("a Listener with Istio's filter order is accepted; CORS before fault, or twice, is refused", () => {
    const ok = ListenerType.decode(listener(['envoy.filters.http.fault', CORS, 'envoy.filters.http.router']));
    assert.ok('value' in ok, 'error' in ok ? ok.error : '');
    const F = 'filter_chains\\[0\\]\\.filters\\[0\\]\\.typed_config\\.http_filters';
    const before = ListenerType.decode(listener([CORS, 'envoy.filters.http.fault', 'envoy.filters.http.router']));
    assert.ok('error' in before);
    assert.match(
      before.error,
      new RegExp(`${F}\\[0\\]\\.name: the CORS filter must come after envoy\\.filters\\.http\\.fault`),
    );
    const twice = ListenerType.decode(listener([CORS, CORS, 'envoy.filters.http.router']));
    assert.ok('error' in twice);
    assert.match(twice.error, new RegExp(`${F}\\[1\\]\\.name: the CORS filter may appear only once`));
  });
});
