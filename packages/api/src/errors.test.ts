import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, ErrorCodeGrpcStatus, InvalidConfigError, MeshError } from './errors.js';

describe('MeshError', () => {
  it('carries a stable code, a cause and a name', () => {
    const cause = new Error('socket hang up');
    const err = new MeshError(ErrorCode.UNAVAILABLE, 'etcd unreachable', { cause });
    assert.equal(err.code, 'FEDMESH_ERR_UNAVAILABLE');
    assert.equal(err.message, 'etcd unreachable');
    assert.equal(err.cause, cause);
    assert.equal(err.name, 'MeshError');
    assert.ok(err instanceof Error);
    assert.equal('cause' in new MeshError(ErrorCode.INTERNAL, 'x'), false);
  });

  it('is recognised by its Symbol.for brand, also from another copy of the package', () => {
    assert.ok(MeshError.isMeshError(new MeshError(ErrorCode.NOT_FOUND, 'gone')));
    const foreign = Object.assign(Object.create({ [Symbol.for('fedmesh.error')]: true }) as object, {
      code: 'FEDMESH_ERR_NOT_FOUND',
    });
    assert.ok(MeshError.isMeshError(foreign));
    assert.equal(MeshError.isMeshError(new Error('plain')), false);
    assert.equal(MeshError.isMeshError(null), false);
    assert.equal(MeshError.isMeshError('FEDMESH_ERR_NOT_FOUND'), false);
  });

  it('maps every code to a gRPC status', () => {
    for (const code of Object.values(ErrorCode)) assert.equal(typeof ErrorCodeGrpcStatus[code], 'number', code);
    assert.equal(ErrorCodeGrpcStatus.FEDMESH_ERR_CA_DENIED, 7);
    assert.equal(new Set(Object.values(ErrorCode)).size, Object.values(ErrorCode).length, 'codes are unique');
  });
});

describe('InvalidConfigError', () => {
  it('lists its issues in the message', () => {
    const err = new InvalidConfigError(
      [
        { path: 'spec.http[0].route[1].weight', message: 'must be ≤ 100' },
        { path: '', message: 'bad' },
      ],
      'VirtualService default/reviews',
    );
    assert.equal(err.code, ErrorCode.INVALID_CONFIG);
    assert.equal(err.name, 'InvalidConfigError');
    assert.equal(err.message, 'VirtualService default/reviews: spec.http[0].route[1].weight: must be ≤ 100; bad');
    assert.ok(err instanceof MeshError);
    assert.ok(MeshError.isMeshError(err));
    assert.ok(InvalidConfigError.isInvalidConfigError(err));
    assert.equal(InvalidConfigError.isInvalidConfigError(new MeshError(ErrorCode.INVALID_CONFIG, 'x')), false);
    assert.throws(() => {
      (err.issues as unknown[]).push({ path: 'x', message: 'y' });
    }, TypeError);
  });
});
