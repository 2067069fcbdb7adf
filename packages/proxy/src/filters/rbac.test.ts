/**
 * The RBAC filter as the proxy applies it: Envoy's engine semantics (ALLOW/DENY/LOG, shadow rules, policy
 * order), matchers, and the decoder's refusal of anything it does not implement (the Listener is NACKed with
 * the field path, so an authorization filter is never half-applied).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TypeUrl, encodeAny } from '@fedmesh/api/xds';
import { ListenerType } from '../xds/resource-types.js';
import { RBAC_FILTER_TYPE } from '../xds/rbac-schemas.js';
import { RbacFilter, type RbacRequest } from './rbac.js';

const SLEEP = 'spiffe://cluster.local/ns/default/sa/sleep';

function req(over: Partial<RbacRequest> = {}): RbacRequest {
  return {
    method: 'GET',
    path: '/',
    authority: 'reviews:9080',
    scheme: 'http',
    headers: {},
    peerPrincipal: SLEEP,
    directRemoteIp: '127.0.9.9',
    remoteIp: '127.0.9.9',
    destinationIp: '127.0.9.5',
    destinationPort: 9080,
    requestedServerName: undefined,
    ...over,
  };
}

function filter(config: object): RbacFilter {
  return new RbacFilter({ '@type': RBAC_FILTER_TYPE, ...config }, 'test');
}

const ANY = [{ any: true as const }];

describe('engine semantics (Envoy RoleBasedAccessControlEngineImpl)', () => {
  it('ALLOW lets through only a matching request; with no policies it denies everything', () => {
    const f = filter({
      rules: {
        action: 'ALLOW',
        policies: { p: { permissions: [{ url_path: { path: { exact: '/public' } } }], principals: ANY } },
      },
    });
    assert.equal(f.evaluate(req({ path: '/public?x=1' })).allowed, true, 'url_path ignores the query');
    assert.equal(f.evaluate(req({ path: '/private' })).allowed, false);
    assert.equal(filter({ rules: { action: 'ALLOW' } }).evaluate(req()).allowed, false);
    assert.equal(filter({ rules: {} }).evaluate(req()).allowed, false, 'an absent action is ALLOW (proto3 zero value)');
  });

  it('DENY refuses a matching request and names the first matching policy by name', () => {
    const deny = { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: ANY };
    const f = filter({ rules: { action: 'DENY', policies: { zeta: deny, alpha: deny } } });
    const v = f.evaluate(req({ path: '/admin/x' }));
    assert.deepEqual([v.allowed, v.policyId], [false, 'alpha']);
    assert.equal(f.evaluate(req({ path: '/public' })).allowed, true);
  });

  it('LOG never refuses and reports whether it matched; shadow rules are evaluated but never enforced', () => {
    const f = filter({
      rules: {
        action: 'LOG',
        policies: {
          audit: { permissions: [{ header: { name: ':method', string_match: { exact: 'DELETE' } } }], principals: ANY },
        },
      },
      shadow_rules: { action: 'DENY', policies: { dry: { permissions: ANY, principals: ANY } } },
    });
    const hit = f.evaluate(req({ method: 'DELETE' }));
    assert.deepEqual([hit.allowed, hit.logged, hit.shadow], [true, true, { allowed: false, policyId: 'dry' }]);
    assert.equal(f.evaluate(req()).logged, false);
    const shadowOnly = filter({
      shadow_rules: { action: 'DENY', policies: { dry: { permissions: ANY, principals: ANY } } },
    });
    assert.equal(shadowOnly.evaluate(req()).allowed, true);
  });
});

describe('matchers', () => {
  it('authenticated principals need a verified peer: plaintext never matches, even `.+`', () => {
    const f = filter({
      rules: {
        action: 'ALLOW',
        policies: {
          p: { permissions: ANY, principals: [{ authenticated: { principal_name: { safe_regex: { regex: '.+' } } } }] },
        },
      },
    });
    assert.equal(f.evaluate(req()).allowed, true);
    assert.equal(f.evaluate(req({ peerPrincipal: undefined })).allowed, false);
  });

  it('CIDRs (IPv4, IPv4-mapped IPv6, IPv6), ports, port ranges, SNI, not_rule and and/or sets', () => {
    const f = filter({
      rules: {
        action: 'ALLOW',
        policies: {
          p: {
            permissions: [
              {
                and_rules: {
                  rules: [
                    {
                      or_rules: {
                        rules: [{ destination_port: 9080 }, { destination_port_range: { start: 9100, end: 9200 } }],
                      },
                    },
                    { not_rule: { header: { name: 'x-block', present_match: true } } },
                  ],
                },
              },
            ],
            principals: [
              {
                or_ids: {
                  ids: [
                    { direct_remote_ip: { address_prefix: '127.0.9.0', prefix_len: { value: 24 } } },
                    { remote_ip: { address_prefix: 'fd00::', prefix_len: { value: 8 } } },
                  ],
                },
              },
            ],
          },
        },
      },
    });
    assert.equal(f.evaluate(req()).allowed, true);
    assert.equal(f.evaluate(req({ directRemoteIp: '::ffff:127.0.9.200' })).allowed, true);
    assert.equal(f.evaluate(req({ directRemoteIp: '127.0.8.1', remoteIp: '127.0.8.1' })).allowed, false);
    assert.equal(f.evaluate(req({ directRemoteIp: '10.0.0.1', remoteIp: 'fd12::1' })).allowed, true);
    assert.equal(f.evaluate(req({ destinationPort: 9199 })).allowed, true);
    assert.equal(f.evaluate(req({ destinationPort: 9200 })).allowed, false, 'ranges are half-open');
    assert.equal(f.evaluate(req({ headers: { 'x-block': '1' } })).allowed, false);
  });

  it('header matchers join repeated headers with "," and a leading (?i) makes a regex case-insensitive', () => {
    const f = filter({
      rules: {
        action: 'DENY',
        policies: {
          h: { permissions: [{ header: { name: 'x-group', string_match: { exact: 'a,b' } } }], principals: ANY },
          p: {
            permissions: [{ url_path: { path: { safe_regex: { regex: '(?i)/+admin(?:;[^/]*)?/*' } } } }],
            principals: ANY,
          },
        },
      },
    });
    assert.equal(f.evaluate(req({ headers: { 'x-group': ['a', 'b'] } })).allowed, false);
    for (const p of ['/admin', '/ADMIN', '//admin', '/admin;jsessionid=1', '/admin/'])
      assert.equal(f.evaluate(req({ path: p })).allowed, false, p);
    assert.equal(f.evaluate(req({ path: '/administrator' })).allowed, true);
  });
});

/** listenerWith wraps one RBAC filter config into a Listener as istiod would send it (encoded protobuf). */
function listenerWith(rbacConfig: object): ReturnType<typeof encodeAny> {
  return encodeAny(TypeUrl.Listener, {
    name: 'virtualInbound',
    address: { socket_address: { address: '127.0.9.5', port_value: 15006 } },
    filter_chains: [
      {
        name: 'inbound|9080||',
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type':
                'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'inbound|9080||',
              route_config: {
                name: 'r',
                virtual_hosts: [
                  {
                    name: 'v',
                    domains: ['*'],
                    routes: [{ match: { prefix: '/' }, route: { cluster: 'inbound|9080||' } }],
                  },
                ],
              },
              http_filters: [
                { name: 'envoy.filters.http.rbac', typed_config: { '@type': RBAC_FILTER_TYPE, ...rbacConfig } },
                {
                  name: 'envoy.filters.http.router',
                  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                },
              ],
            },
          },
        ],
      },
    ],
  });
}

function nack(rbacConfig: object): string {
  const r = ListenerType.decode(listenerWith(rbacConfig));
  assert.ok('error' in r, 'the Listener must be NACKed');
  return r.error;
}

describe('the decoder NACKs what the proxy does not implement (never fails open)', () => {
  const F = 'filter_chains[0].filters[0].typed_config.http_filters[0].typed_config';

  it('accepts a well-formed filter and compiles it into the listener', () => {
    const r = ListenerType.decode(
      listenerWith({ rules: { action: 'DENY', policies: { p: { permissions: ANY, principals: ANY } } } }),
    );
    assert.ok('value' in r, 'error' in r ? r.error : '');
    assert.equal(r.value.security.get(0)?.rbac.length, 1);
  });

  it('unknown permission and principal kinds, CEL conditions, matcher trees and audit options', () => {
    const meta = {
      filter: 'istio_authn',
      path: [{ key: 'request.auth.principal' }],
      value: { string_match: { exact: 'x' } },
    };
    assert.match(
      nack({ rules: { action: 'DENY', policies: { p: { permissions: [{ metadata: meta }], principals: ANY } } } }),
      new RegExp(`${F.replace(/[[\].|]/g, '\\$&')}.rules.policies.p.permissions\\[0\\]`),
    );
    assert.match(
      nack({ rules: { action: 'ALLOW', policies: { p: { permissions: ANY, principals: [{ metadata: meta }] } } } }),
      /principals\[0\]/,
    );
    assert.match(
      nack({
        rules: {
          action: 'ALLOW',
          policies: {
            p: {
              permissions: [
                { uri_template: { name: 'x', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Empty' } } },
              ],
              principals: ANY,
            },
          },
        },
      }),
      /permissions\[0\]/,
    );
    assert.match(
      nack({
        rules: {
          action: 'ALLOW',
          policies: { p: { permissions: ANY, principals: ANY, condition: { const_expr: { bool_value: true } } } },
        },
      }),
      /condition/,
    );
    assert.match(
      nack({ rules: { action: 'ALLOW', audit_logging_options: { audit_condition: 'ON_DENY' } } }),
      /audit_logging_options/,
    );
    assert.match(
      nack({
        matcher: {
          on_no_match: {
            action: { name: 'x', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Empty' } },
          },
        },
      }),
      /matcher/,
    );
  });

  it('a policy without permissions or principals, a bad regex and a bad CIDR', () => {
    assert.match(
      nack({ rules: { action: 'ALLOW', policies: { p: { permissions: ANY, principals: [] } } } }),
      /principals/,
    );
    assert.match(
      nack({
        rules: {
          action: 'DENY',
          policies: { p: { permissions: [{ url_path: { path: { safe_regex: { regex: '(' } } } }], principals: ANY } },
        },
      }),
      /url_path\.path\.safe_regex\.regex: invalid regex/,
    );
    assert.match(
      nack({
        rules: {
          action: 'DENY',
          policies: {
            p: {
              permissions: ANY,
              principals: [{ direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: { value: 33 } } }],
            },
          },
        },
      }),
      /prefix_len: 33 exceeds 32/,
    );
    assert.match(
      nack({
        rules: {
          action: 'DENY',
          policies: {
            p: {
              permissions: ANY,
              principals: [{ remote_ip: { address_prefix: 'not-an-ip', prefix_len: { value: 8 } } }],
            },
          },
        },
      }),
      /not an IP address/,
    );
  });
});
