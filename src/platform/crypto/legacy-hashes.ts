import { createHash, pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';

/**
 * Password hashes imported from other systems (DESIGN: security model). They verify once and are
 * replaced by an argon2id hash on the next successful login (`needsRehash` is true for all of them).
 *
 * Formats, as Django's `contrib/auth/hashers.py` writes them:
 * - `pbkdf2_sha256$<iterations>$<salt>$<base64 of the 32-byte PBKDF2-HMAC-SHA256>`
 * - `bcrypt$<bcrypt hash>` and raw `$2a$` / `$2b$` / `$2y$` bcrypt hashes
 * - `bcrypt_sha256$<bcrypt hash>`: bcrypt over the lower-case hex SHA-256 of the password (Django
 *   wraps the password so bcrypt's 72-byte limit does not truncate it)
 * - `argon2$argon2id$v=19$…` (Django's prefix before a PHC string); plain PHC `$argon2…` strings are
 *   read by the argon2 verifier directly
 */

const pbkdf2Async = promisify(pbkdf2);

// Django 5.x uses 870,000–1,200,000 iterations. An imported hash with an absurd count would let one
// login burn a core for minutes; such a hash is treated as unreadable.
const MAX_PBKDF2_ITERATIONS = 5_000_000;
// bcrypt cost 4–17: beyond that a single check takes many seconds.
const BCRYPT_SHAPE = /^\$2[aby]\$(0[4-9]|1[0-7])\$[./A-Za-z0-9]{53}$/;
const PBKDF2_SHAPE = /^pbkdf2_sha256\$(\d{1,8})\$([^$]{1,256})\$([A-Za-z0-9+/]{43}=)$/;

export type LegacyScheme = 'pbkdf2_sha256' | 'bcrypt' | 'bcrypt_sha256';

/** The argon2 PHC string inside a Django `argon2$…` hash, or the hash itself when it is already one. */
export function argon2PhcOf(storedHash: string): string | undefined {
  if (storedHash.startsWith('$argon2')) return storedHash;
  if (storedHash.startsWith('argon2$argon2')) return storedHash.slice('argon2'.length);
  return undefined;
}

/** Which legacy scheme a stored hash uses, or undefined when it is none of them. */
export function legacySchemeOf(storedHash: string): LegacyScheme | undefined {
  if (storedHash.startsWith('pbkdf2_sha256$')) return 'pbkdf2_sha256';
  if (storedHash.startsWith('bcrypt_sha256$')) return 'bcrypt_sha256';
  if (storedHash.startsWith('bcrypt$') || /^\$2[aby]\$/.test(storedHash)) return 'bcrypt';
  return undefined;
}

async function verifyPbkdf2Sha256(storedHash: string, password: string): Promise<boolean> {
  const match = PBKDF2_SHAPE.exec(storedHash);
  if (!match) return false;
  const iterations = Number(match[1]);
  if (iterations < 1 || iterations > MAX_PBKDF2_ITERATIONS) return false;
  const expected = Buffer.from(match[3] as string, 'base64');
  const actual = await pbkdf2Async(password, match[2] as string, iterations, expected.length, 'sha256');
  return timingSafeEqual(actual, expected);
}

/** bcrypt recomputed with the stored salt and compared in constant time (bcryptjs's compare is not). */
async function verifyBcrypt(bcryptHash: string, password: string): Promise<boolean> {
  if (!BCRYPT_SHAPE.test(bcryptHash)) return false;
  // bcryptjs writes $2b$; the $2a$/$2y$ variants compute the same digest for the same input.
  const computed = await bcrypt.hash(password, `$2b$${bcryptHash.slice(4, 29)}`);
  const expected = Buffer.from(`$2b$${bcryptHash.slice(4)}`);
  const actual = Buffer.from(computed);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/**
 * Checks a password against a legacy hash; false for a non-match and for any hash it cannot read.
 * Argon2 hashes are not handled here (see `argon2PhcOf`).
 */
export async function verifyLegacyPassword(storedHash: string, password: string): Promise<boolean> {
  try {
    switch (legacySchemeOf(storedHash)) {
      case 'pbkdf2_sha256':
        return await verifyPbkdf2Sha256(storedHash, password);
      case 'bcrypt_sha256':
        return await verifyBcrypt(
          storedHash.slice('bcrypt_sha256$'.length),
          createHash('sha256').update(password).digest('hex'),
        );
      case 'bcrypt':
        return await verifyBcrypt(
          storedHash.startsWith('bcrypt$') ? storedHash.slice('bcrypt$'.length) : storedHash,
          password,
        );
      default:
        return false;
    }
  } catch {
    return false;
  }
}
