import { availableParallelism } from 'node:os';
import { type Algorithm, hash } from '@node-rs/argon2';
import { describe, expect, it } from 'vitest';
import { AppError } from '../http/errors.js';
import { hashPassword, needsRehash, verifyDummyPassword, verifyPassword } from './passwords.js';

describe('passwords', () => {
  it('hashes with argon2id at OWASP parameters and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse battery');
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(needsRehash(hash)).toBe(false);
    expect(await verifyPassword(hash, 'correct horse battery')).toBe(true);
    expect(await verifyPassword(hash, 'correct horse batterY')).toBe(false);
  });

  it('hashes the NFKC form, so one password typed with composed or decomposed accents is the same', async () => {
    const composed = 'caf\u00e9 cr\u00e8me br\u00fbl\u00e9e';
    const decomposed = composed.normalize('NFD');
    expect(decomposed).not.toBe(composed);
    const fromComposed = await hashPassword(composed);
    expect(await verifyPassword(fromComposed, decomposed)).toBe(true);
    const fromDecomposed = await hashPassword(decomposed);
    expect(await verifyPassword(fromDecomposed, composed)).toBe(true);
    // Compatibility forms too: a full-width letter is its ASCII letter.
    expect(await verifyPassword(await hashPassword('ｐａｓｓword 42!'), 'password 42!')).toBe(true);
    expect(await verifyPassword(fromComposed, 'cafe creme brulee')).toBe(false);
    // A hash made of the text as typed, before normalisation, still verifies with that text.
    const asTyped = await hash(decomposed, {
      algorithm: 2 as Algorithm,
      memoryCost: 19_456,
      timeCost: 2,
      parallelism: 1,
    });
    expect(await verifyPassword(asTyped, decomposed)).toBe(true);
  });

  it('salts every hash', async () => {
    const [a, b] = await Promise.all([hashPassword('same password'), hashPassword('same password')]);
    expect(a).not.toBe(b);
  });

  it('treats an unreadable stored hash as a non-match instead of throwing', async () => {
    expect(await verifyPassword('not-a-hash', 'whatever')).toBe(false);
    expect(await verifyPassword('', 'whatever')).toBe(false);
    expect(needsRehash('pbkdf2_sha256$600000$salt$hash')).toBe(true);
  });

  it('never accepts a password through the dummy check', async () => {
    expect(await verifyDummyPassword('gatehouse dummy password, never a real credential')).toBe(false);
    expect(await verifyDummyPassword('anything')).toBe(false);
  });

  it('answers 503 server_busy with Retry-After when the hash queue cannot drain within its deadline', async () => {
    // Far more work than the capped pool finishes in the 2 s queue deadline.
    const attempts = Array.from({ length: availableParallelism() * 200 + 20 }, () =>
      verifyPassword(
        '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWg',
        'x',
      ),
    );
    const results = await Promise.allSettled(attempts);
    const busy = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    expect(busy.length).toBeGreaterThan(0);
    expect(busy[0]).toBeInstanceOf(AppError);
    expect(busy[0]).toMatchObject({ status: 503, code: 'server_busy', headers: { 'retry-after': '2' } });
    // Work that was admitted finished normally.
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    // And the pool recovers once the burst is over.
    expect(await verifyPassword(await hashPassword('after the burst'), 'after the burst')).toBe(true);
  }, 20_000);
});
