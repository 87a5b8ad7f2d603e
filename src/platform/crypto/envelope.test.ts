import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createEnvelope, EnvelopeError, masterKeyId } from './envelope.js';
import { randomToken, secretsEqual, sha256Hex } from './tokens.js';

describe('envelope', () => {
  const key = randomBytes(32);

  it('round-trips text and bytes, with a fresh IV each time', () => {
    const env = createEnvelope(key);
    const a = env.seal('a secret');
    const b = env.seal('a secret');
    expect(a).not.toBe(b);
    expect(a).not.toContain('a secret');
    expect(env.openText(a)).toBe('a secret');
    const bytes = randomBytes(100);
    expect(env.open(env.seal(bytes)).equals(bytes)).toBe(true);
  });

  it('names the master key in the sealed value', () => {
    const sealed = createEnvelope(key).seal('x');
    expect(sealed.split('.').slice(0, 2)).toEqual(['v1', masterKeyId(key)]);
  });

  it('detects tampering with the ciphertext, the tag, the IV or the key id', () => {
    const env = createEnvelope(key);
    const sealed = env.seal('the payload that matters');
    const parts = sealed.split('.');
    for (const index of [2, 3, 4]) {
      const tampered = [...parts];
      const raw = Buffer.from(tampered[index] as string, 'base64url');
      raw[0] = (raw[0] as number) ^ 1;
      tampered[index] = raw.toString('base64url');
      expect(() => env.open(tampered.join('.'))).toThrow(EnvelopeError);
    }
    const otherId = [...parts];
    otherId[1] = '000000000000';
    expect(() => env.open(otherId.join('.'))).toThrow(/unknown master key/);
    expect(() => env.open('garbage')).toThrow(EnvelopeError);
  });

  it('refuses a value sealed for another context', () => {
    const env = createEnvelope(key);
    const sealed = env.seal('signing key', 'signing_keys:a');
    expect(env.openText(sealed, 'signing_keys:a')).toBe('signing key');
    expect(() => env.open(sealed, 'signing_keys:b')).toThrow(EnvelopeError);
    expect(() => env.open(sealed)).toThrow(EnvelopeError);
  });

  it('refuses to open under another master key', () => {
    const sealed = createEnvelope(key).seal('x');
    expect(() => createEnvelope(randomBytes(32)).open(sealed)).toThrow(EnvelopeError);
  });

  it('opens values sealed under a previous master key after rotation, and flags them for resealing', () => {
    const oldKey = randomBytes(32);
    const sealedOld = createEnvelope(oldKey).seal('kept across rotation');
    const rotated = createEnvelope(key, [oldKey]);
    expect(rotated.openText(sealedOld)).toBe('kept across rotation');
    expect(rotated.needsReseal(sealedOld)).toBe(true);
    const resealed = rotated.seal(rotated.open(sealedOld));
    expect(rotated.needsReseal(resealed)).toBe(false);
    expect(createEnvelope(key).openText(resealed)).toBe('kept across rotation');
  });

  it('digests under a key of its own per purpose, and finds a digest made before a rotation', () => {
    const oldKey = randomBytes(32);
    const before = createEnvelope(oldKey).digest('recovery', 'value');
    expect(before).toMatch(new RegExp(`^${masterKeyId(oldKey)}\\.[0-9a-f]{64}$`));
    expect(createEnvelope(oldKey).digest('recovery', 'value')).toBe(before);
    expect(createEnvelope(oldKey).digest('other', 'value')).not.toBe(before);
    const rotated = createEnvelope(key, [oldKey]);
    expect(rotated.digest('recovery', 'value')).not.toBe(before);
    expect(rotated.digestsUnderRing('recovery', 'value')).toEqual([rotated.digest('recovery', 'value'), before]);
  });

  it('rejects master keys that are not 32 bytes', () => {
    expect(() => createEnvelope(randomBytes(16))).toThrow(EnvelopeError);
  });
});

describe('opaque tokens', () => {
  it('are 256-bit base64url and unique', () => {
    const a = randomToken();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, 'base64url')).toHaveLength(32);
    expect(randomToken()).not.toBe(a);
  });

  it('hash to sha256 hex and compare in constant time', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(secretsEqual('same', 'same')).toBe(true);
    expect(secretsEqual('same', 'different length')).toBe(false);
  });
});
