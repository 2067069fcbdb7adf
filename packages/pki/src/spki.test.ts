import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { publicKeyFromSpki, spkiDer } from './spki.js';

function keys(): KeyObject[] {
  return [
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey,
    generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    generateKeyPairSync('ed25519').publicKey,
  ];
}

describe('publicKeyFromSpki', () => {
  it('imports the same key as Node does from the DER, and spkiDer gives back the exact bytes', () => {
    for (const expected of keys()) {
      const der = expected.export({ type: 'spki', format: 'der' });
      const key = publicKeyFromSpki(der);
      assert.ok(key.equals(expected), `${expected.asymmetricKeyType}`);
      assert.deepEqual(key.asymmetricKeyDetails, expected.asymmetricKeyDetails);
      assert.ok(spkiDer(key).equals(der));
    }
  });

  it('takes compressed points through the general path, and refuses points off the curve', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const jwk = p256.export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')]);
    const uncompressed = p256.export({ type: 'spki', format: 'der' });
    const header = uncompressed.subarray(0, uncompressed.length - 65);
    const y = point.subarray(32);
    const compressedPoint = Buffer.concat([Buffer.of(0x02 | ((y[31] ?? 0) & 1)), point.subarray(0, 32)]);
    // SEQUENCE { AlgorithmIdentifier, BIT STRING (0x00 || point) } with lengths fixed up for the 33-byte point.
    const algorithm = header.subarray(2, header.length - 3);
    const bitString = Buffer.concat([Buffer.of(0x03, 34, 0x00), compressedPoint]);
    const body = Buffer.concat([algorithm, bitString]);
    const compressed = Buffer.concat([Buffer.of(0x30, body.length), body]);
    assert.ok(publicKeyFromSpki(compressed).equals(createPublicKey({ key: compressed, format: 'der', type: 'spki' })));
    assert.ok(spkiDer(publicKeyFromSpki(compressed)).equals(compressed));

    const offCurve = Buffer.from(uncompressed);
    offCurve[offCurve.length - 1] = (offCurve[offCurve.length - 1] ?? 0) ^ 0x01;
    assert.throws(() => publicKeyFromSpki(offCurve));
  });
});
