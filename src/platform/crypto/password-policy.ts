import { readFileSync } from 'node:fs';
import { AppError } from '../http/errors.js';

/** What a new password must satisfy; organizations may raise (or lower, to 8) the minimum length. */
export interface PasswordPolicy {
  minLength: number;
}

export const DEFAULT_PASSWORD_MIN_LENGTH = 10;
/** NIST SP 800-63B §5.1.1.2: memorized secrets are at least 8 characters; no setting goes below. */
export const LOWEST_MIN_LENGTH = 8;
const HIGHEST_MIN_LENGTH = 128;
// A local part or username shorter than this would refuse half of all passwords by containment.
const MIN_PERSONAL_LENGTH = 3;

export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = { minLength: DEFAULT_PASSWORD_MIN_LENGTH };

/** The policy an organization's settings ask for (`password_min_length`); invalid values fall back to the default. */
export function passwordPolicyOf(settings: Record<string, unknown> | undefined): PasswordPolicy {
  const raw = settings?.password_min_length;
  if (typeof raw === 'number' && Number.isInteger(raw) && raw >= LOWEST_MIN_LENGTH && raw <= HIGHEST_MIN_LENGTH) {
    return { minLength: raw };
  }
  return DEFAULT_PASSWORD_POLICY;
}

let commonPasswords: Set<string> | undefined;

function loadCommonPasswords(): Set<string> {
  // Next to this module in src/ and, copied by scripts/build.mjs, in dist/.
  const text = readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8');
  const set = new Set<string>();
  for (const line of text.split('\n')) {
    const entry = line.trim();
    if (entry && !entry.startsWith('#')) set.add(entry.toLowerCase());
  }
  return set;
}

/** Whether the password, or its stem without the digits and symbols people append, is a common one. */
export function isCommonPassword(password: string): boolean {
  commonPasswords ??= loadCommonPasswords();
  const lower = password.toLowerCase();
  if (commonPasswords.has(lower)) return true;
  const stem = lower.replace(/[\d\W_]+$/, '');
  return stem.length > 0 && stem !== lower && commonPasswords.has(stem);
}

/** Who the password belongs to: a password made of these is guessed first. */
export interface PasswordOwner {
  email?: string | null | undefined;
  username?: string | null | undefined;
}

/** Why the password breaks the policy, in one sentence; undefined when it is acceptable. */
export function passwordWeakness(
  password: string,
  owner: PasswordOwner,
  policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY,
): string | undefined {
  // Judged as it is hashed (NFKC, passwords.ts): full-width "ｐａｓｓｗｏｒｄ" is "password".
  const text = password.normalize('NFKC');
  // Code points, not UTF-16 units: an emoji is one character to the person typing it.
  if ([...text].length < policy.minLength) return `The password must be at least ${policy.minLength} characters.`;
  if (new Set(text).size < 3) return 'The password repeats too few different characters.';
  const lower = text.toLowerCase();
  const personal = [owner.email?.split('@')[0], owner.username]
    .map((s) => s?.trim().toLowerCase())
    .filter((s): s is string => s !== undefined && s.length >= MIN_PERSONAL_LENGTH);
  if (personal.some((s) => lower.includes(s))) return 'The password must not contain your username or email address.';
  if (isCommonPassword(text)) return 'This password is too common; choose one that is harder to guess.';
  return undefined;
}

/** Throws 400 `password_too_weak` naming `field` when the password breaks the policy. */
export function assertPasswordPolicy(
  password: string,
  owner: PasswordOwner,
  policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY,
  field = 'password',
): void {
  const weakness = passwordWeakness(password, owner, policy);
  if (weakness) throw new AppError(400, 'password_too_weak', weakness, { errors: [{ field, message: weakness }] });
}
