import { createHash, pbkdf2Sync } from 'node:crypto';
import { hash } from '@node-rs/argon2';
import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { needsRehash, verifyPassword } from './passwords.js';

/** Django's PBKDF2PasswordHasher.encode, from its published format. */
function djangoPbkdf2(password: string, salt: string, iterations: number): string {
  const digest = pbkdf2Sync(password, salt, iterations, 32, 'sha256').toString('base64');
  return `pbkdf2_sha256$${iterations}$${salt}$${digest}`;
}

describe('legacy password hashes', () => {
  it('accepts a Django pbkdf2_sha256 hash for the right password only', async () => {
    const stored = djangoPbkdf2('s3cret pass', 'P9fGh2kLq0Zx', 1000);
    expect(await verifyPassword(stored, 's3cret pass')).toBe(true);
    expect(await verifyPassword(stored, 's3cret pasS')).toBe(false);
    expect(needsRehash(stored)).toBe(true);
  });

  it('hashes a non-ASCII password as UTF-8, as Django does', async () => {
    const stored = djangoPbkdf2('lètmein', 'seasalt', 1);
    expect(await verifyPassword(stored, 'lètmein')).toBe(true);
    expect(await verifyPassword(stored, 'letmein')).toBe(false);
  });

  it('accepts bcrypt hashes, raw and in Django form, in the $2a$, $2b$ and $2y$ variants', async () => {
    const raw = bcrypt.hashSync('bcrypt password', 4);
    expect(raw.startsWith('$2b$')).toBe(true);
    for (const variant of [raw, `$2a$${raw.slice(4)}`, `$2y$${raw.slice(4)}`, `bcrypt$${raw}`]) {
      expect(await verifyPassword(variant, 'bcrypt password')).toBe(true);
      expect(await verifyPassword(variant, 'bcrypt passwore')).toBe(false);
      expect(needsRehash(variant)).toBe(true);
    }
  });

  it('accepts Django bcrypt_sha256: bcrypt over the hex SHA-256 of the password', async () => {
    const long = 'x'.repeat(100); // longer than bcrypt's 72 bytes: the SHA-256 wrapping keeps every byte
    const inner = bcrypt.hashSync(createHash('sha256').update(long).digest('hex'), 4);
    const stored = `bcrypt_sha256$${inner}`;
    expect(await verifyPassword(stored, long)).toBe(true);
    expect(await verifyPassword(stored, `${'x'.repeat(99)}y`)).toBe(false);
  });

  it('accepts argon2 hashes in PHC and Django form and asks to upgrade weaker parameters', async () => {
    const weak = await hash('argon pass', { algorithm: 2, memoryCost: 1024, timeCost: 1, parallelism: 1 });
    expect(await verifyPassword(weak, 'argon pass')).toBe(true);
    expect(await verifyPassword(`argon2${weak}`, 'argon pass')).toBe(true);
    expect(await verifyPassword(`argon2${weak}`, 'argon pasS')).toBe(false);
    expect(needsRehash(weak)).toBe(true);
    const argon2i = await hash('argon pass', { algorithm: 1, memoryCost: 1024, timeCost: 1, parallelism: 1 });
    expect(await verifyPassword(`argon2${argon2i}`, 'argon pass')).toBe(true);
  });

  it('treats unreadable or abusive hashes as a non-match', async () => {
    for (const stored of [
      '',
      'md5$salt$abc',
      'pbkdf2_sha256$notanumber$salt$hash',
      'pbkdf2_sha256$99999999$salt$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      '$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234',
      'bcrypt$nonsense',
      'argon2$argon2id$broken',
    ]) {
      expect(await verifyPassword(stored, 'anything')).toBe(false);
    }
  });
});
