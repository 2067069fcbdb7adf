import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metadata } from '@grpc/grpc-js';
import { isPkiError, type PkiReason } from '@fedmesh/pki';
import { LocalTokenAuthenticator } from './index.js';

const TD = 'cluster.local';

function withAuthorization(...values: string[]): { metadata: Metadata } {
  const metadata = new Metadata();
  for (const value of values) metadata.add('authorization', value);
  return { metadata };
}

function rejectsWith(reason: PkiReason): (err: unknown) => boolean {
  return (err) => {
    assert.ok(isPkiError(err), `expected PkiError, got ${String(err)}`);
    assert.equal(err.reason, reason);
    return true;
  };
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('LocalTokenAuthenticator', () => {
  it('mints ES256 JWTs bound to a namespace and service account, with aud istio-ca, iss, exp and jti', async () => {
    const auth = new LocalTokenAuthenticator({ trustDomain: TD });
    const token = auth.mint({ namespace: 'default', serviceAccount: 'sleep' });
    const [header = '', claims = ''] = token.split('.');
    assert.deepEqual(JSON.parse(Buffer.from(header, 'base64url').toString()), {
      alg: 'ES256',
      typ: 'JWT',
      kid: auth.keyId,
    });
    const body = JSON.parse(Buffer.from(claims, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(body['iss'], 'fedmesh-istiod');
    assert.equal(body['aud'], 'istio-ca');
    assert.equal(body['sub'], 'system:serviceaccount:default:sleep');
    assert.equal((body['exp'] as number) - (body['iat'] as number), 3600);
    assert.equal(typeof body['jti'], 'string');
    assert.deepEqual(await auth.authenticate(withAuthorization(`Bearer ${token}`)), {
      identity: { trustDomain: TD, namespace: 'default', serviceAccount: 'sleep' },
      authenticator: 'local-token',
    });
    assert.throws(() => auth.mint({ namespace: 'a:b', serviceAccount: 'c' }), rejectsWith('IDENTITY_INVALID'));
    assert.throws(() => auth.mint({ namespace: 'a', serviceAccount: 'c', ttlMs: 48 * 3600_000 }), TypeError);
  });

  it('passes (null) on requests without a token or with tokens that are not its own', async () => {
    const auth = new LocalTokenAuthenticator({ trustDomain: TD });
    const other = new LocalTokenAuthenticator({ trustDomain: TD, issuer: 'someone-else' });
    assert.equal(await auth.authenticate({ metadata: new Metadata() }), null);
    assert.equal(await auth.authenticate(withAuthorization('Basic dXNlcjpwYXNz')), null);
    assert.equal(await auth.authenticate(withAuthorization('Bearer opaque-token')), null);
    assert.equal(await auth.authenticate(withAuthorization('Bearer a.b.c')), null);
    const foreign = other.mint({ namespace: 'default', serviceAccount: 'sleep' });
    assert.equal(await auth.authenticate(withAuthorization(`Bearer ${foreign}`)), null);
  });

  it('refuses its own tokens when forged, altered, early, late or ambiguous', async () => {
    let now = Date.now();
    const auth = new LocalTokenAuthenticator({ trustDomain: TD, now: () => now });
    const token = auth.mint({ namespace: 'default', serviceAccount: 'sleep', ttlMs: 120_000 });
    const [header = '', claims = '', signature = ''] = token.split('.');
    const body = JSON.parse(Buffer.from(claims, 'base64url').toString()) as Record<string, unknown>;
    const check = (t: string) => auth.authenticate(withAuthorization(`Bearer ${t}`));

    await assert.rejects(check(`${b64({ alg: 'none', kid: auth.keyId })}.${claims}.`), rejectsWith('TOKEN_MALFORMED'));
    await assert.rejects(
      check(`${b64({ alg: 'HS256', kid: auth.keyId })}.${claims}.${signature}`),
      rejectsWith('TOKEN_MALFORMED'),
    );
    const elevated = b64({ ...body, sub: 'system:serviceaccount:istio-system:istiod' });
    await assert.rejects(check(`${header}.${elevated}.${signature}`), rejectsWith('TOKEN_BAD_SIGNATURE'));
    await assert.rejects(
      check(`${b64({ alg: 'ES256', kid: 'x' })}.${claims}.${signature}`),
      rejectsWith('TOKEN_UNKNOWN_KEY'),
    );
    await assert.rejects(
      auth.authenticate(withAuthorization(`Bearer ${token}`, `Bearer ${token}`)),
      rejectsWith('TOKEN_MALFORMED'),
    );

    now -= 60_000; // 30 s of leeway: a minute early is too early
    await assert.rejects(check(token), rejectsWith('TOKEN_NOT_YET_VALID'));
    now += 60_000 + 120_000 + 29_000; // within the leeway after exp
    assert.ok(await check(token));
    now += 2_000;
    await assert.rejects(check(token), rejectsWith('TOKEN_EXPIRED'));
  });
});
