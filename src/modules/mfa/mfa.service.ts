import { createHmac, timingSafeEqual } from 'node:crypto';
import { and, eq, gt, inArray, isNull, lt, notLike, sql } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import type { Config } from '../../config.js';
import { type Envelope, envelopeFor } from '../../platform/crypto/envelope.js';
import { randomToken, sha256Hex } from '../../platform/crypto/tokens.js';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { recordAudit } from '../activity/audit.js';
import { users } from '../users/users.table.js';
import { type MfaChallengeView, MfaRequiredError, mfaErrors } from './mfa.errors.js';
import { mfaChallenges, mfaRecoveryCodes, mfaTotp } from './mfa.table.js';

const ISSUER = 'Gatehouse';
const PERIOD_SECONDS = 30;
// RFC 6238 §5.2: accept one step either side for clock drift, and no more.
const WINDOW = 1;
const RECOVERY_CODES = 10;
export const MFA_TOKEN_TTL_SECONDS = 300;
// Guessing a 6-digit code within one challenge: 5 tries in 10^6, then the password step again.
const MAX_ATTEMPTS_PER_CHALLENGE = 5;

/** The context (AAD) a TOTP secret is sealed with: it binds the value to its user. */
export const totpSealContext = (userId: string) => `mfa_totp:${userId}`;

function totpFor(secret: OTPAuth.Secret, label: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: ISSUER, label, algorithm: 'SHA1', digits: 6, period: PERIOD_SECONDS, secret });
}

async function findTotp(db: DbOrTx, userId: string) {
  const [row] = await db.select().from(mfaTotp).where(eq(mfaTotp.userId, userId));
  return row;
}

/** Whose authenticator: a signed-in user, or the account of an enrolment challenge. */
interface TotpOwner {
  userId: string;
  organizationId: string;
}

/**
 * Starts (or restarts) TOTP enrolment: a new secret, sealed under MASTER_KEY, pending until a code
 * confirms it. Refused while a confirmed authenticator exists.
 */
export async function enrolTotp(db: Db, config: Config, owner: TotpOwner, label: string) {
  const existing = await findTotp(db, owner.userId);
  if (existing?.confirmedAt) throw mfaErrors.alreadyEnabled();
  const secret = new OTPAuth.Secret({ size: 20 });
  const sealed = envelopeFor(config).seal(secret.base32, totpSealContext(owner.userId));
  await db
    .insert(mfaTotp)
    .values({ organizationId: owner.organizationId, userId: owner.userId, secretSealed: sealed })
    .onConflictDoUpdate({
      target: [mfaTotp.organizationId, mfaTotp.userId],
      set: { secretSealed: sealed, confirmedAt: null, lastUsedStep: null },
    });
  return { secret: secret.base32, otpauth_uri: totpFor(secret, label).toString() };
}

function newRecoveryCode(): string {
  // 50 random bits in two groups of five base32 characters: easy to type, never guessed.
  const text = new OTPAuth.Secret({ size: 10 }).base32.toLowerCase().slice(0, 10);
  return `${text.slice(0, 5)}-${text.slice(5)}`;
}

/**
 * Recovery codes are stored as `v2.<master key id>.<hex>`: an HMAC, under a key derived from the
 * master key, of the SHA-256 of the normalised code. A plain hash of 50 bits would fall to one
 * offline pass over a copy of the table; the HMAC needs MASTER_KEY as well. Hashing the SHA-256
 * (rather than the code) lets a row of the earlier, unkeyed form be converted without its code.
 */
const RECOVERY_CODE_VERSION = 'v2';
const RECOVERY_CODE_PURPOSE = 'mfa recovery code';

function unkeyedRecoveryCodeHash(code: string): string {
  return sha256Hex(code.toLowerCase().replace(/[\s-]/g, ''));
}

function keyedRecoveryCodeHash(envelope: Envelope, unkeyed: string): string {
  return `${RECOVERY_CODE_VERSION}.${envelope.digest(RECOVERY_CODE_PURPOSE, unkeyed)}`;
}

/** What a stored hash of `code` may be: under the current master key, or a previous one not yet rotated away. */
function recoveryCodeHashes(envelope: Envelope, code: string): string[] {
  const unkeyed = unkeyedRecoveryCodeHash(code);
  return envelope.digestsUnderRing(RECOVERY_CODE_PURPOSE, unkeyed).map((d) => `${RECOVERY_CODE_VERSION}.${d}`);
}

/**
 * Rewrites recovery codes stored in the earlier unkeyed form (bare SHA-256 hex) into the keyed one,
 * in batches, each row only if it still holds the value read, so nodes starting together do not
 * clash. Run at start-up: afterwards no unkeyed hash is left at rest. Answers how many it converted.
 */
export async function convertLegacyRecoveryCodes(db: Db, envelope: Envelope, batchSize = 500): Promise<number> {
  let converted = 0;
  for (;;) {
    const batch = await db
      .select({ id: mfaRecoveryCodes.id, codeHash: mfaRecoveryCodes.codeHash })
      .from(mfaRecoveryCodes)
      .where(notLike(mfaRecoveryCodes.codeHash, `${RECOVERY_CODE_VERSION}.%`))
      .limit(batchSize);
    for (const row of batch) {
      const updated = await db
        .update(mfaRecoveryCodes)
        .set({ codeHash: keyedRecoveryCodeHash(envelope, row.codeHash) })
        .where(and(eq(mfaRecoveryCodes.id, row.id), eq(mfaRecoveryCodes.codeHash, row.codeHash)))
        .returning({ id: mfaRecoveryCodes.id });
      converted += updated.length;
    }
    if (batch.length < batchSize) return converted;
  }
}

/**
 * Checks a TOTP code against the user's authenticator (confirmed or, with `pending`, not yet) and
 * records its time step, so the same code never works twice. Whitespace is dropped first: apps show
 * codes as "123 456", and every path that takes a code (login, confirm, disable) comes through here.
 */
async function useTotpCode(
  db: DbOrTx,
  config: Config,
  row: typeof mfaTotp.$inferSelect,
  typed: string,
): Promise<boolean> {
  const code = typed.replace(/\s/g, '');
  if (!/^\d{6}$/.test(code)) return false;
  const secret = envelopeFor(config).openText(row.secretSealed, totpSealContext(row.userId));
  const now = Date.now();
  const delta = totpFor(OTPAuth.Secret.fromBase32(secret), 'x').validate({
    token: code,
    timestamp: now,
    window: WINDOW,
  });
  if (delta === null) return false;
  const step = Math.floor(now / 1000 / PERIOD_SECONDS) + delta;
  // Conditional on the last step, so two requests racing with the same code cannot both pass.
  const updated = await db
    .update(mfaTotp)
    .set({ lastUsedStep: step })
    .where(
      and(eq(mfaTotp.userId, row.userId), sql`(${mfaTotp.lastUsedStep} is null or ${mfaTotp.lastUsedStep} < ${step})`),
    )
    .returning({ userId: mfaTotp.userId });
  return updated.length === 1;
}

async function useRecoveryCode(db: DbOrTx, config: Config, userId: string, code: string): Promise<boolean> {
  const used = await db
    .update(mfaRecoveryCodes)
    .set({ usedAt: new Date() })
    .where(
      and(
        eq(mfaRecoveryCodes.userId, userId),
        inArray(mfaRecoveryCodes.codeHash, recoveryCodeHashes(envelopeFor(config), code)),
        isNull(mfaRecoveryCodes.usedAt),
      ),
    )
    .returning({ id: mfaRecoveryCodes.id });
  return used.length === 1;
}

/** Activates the pending authenticator with a first code and answers ten fresh recovery codes (stored hashed). */
export async function confirmTotp(db: Db, config: Config, actor: UserActor, code: string): Promise<string[]> {
  return db.transaction(async (tx) => {
    const codes = await activateTotp(tx, config, actor, code);
    if (codes === null) throw mfaErrors.invalidCode();
    return codes;
  });
}

/**
 * In the caller's transaction: turns the owner's pending authenticator on if `code` is current,
 * replacing any recovery codes with ten fresh ones (answered, stored hashed); null for a wrong code.
 */
async function activateTotp(tx: DbOrTx, config: Config, owner: TotpOwner, code: string): Promise<string[] | null> {
  const row = await findTotp(tx, owner.userId);
  if (!row) throw mfaErrors.notEnrolled();
  if (row.confirmedAt) throw mfaErrors.alreadyEnabled();
  if (!(await useTotpCode(tx, config, row, code))) return null;
  await tx.update(mfaTotp).set({ confirmedAt: new Date() }).where(eq(mfaTotp.userId, owner.userId));
  await tx.delete(mfaRecoveryCodes).where(eq(mfaRecoveryCodes.userId, owner.userId));
  const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode);
  await tx.insert(mfaRecoveryCodes).values(
    codes.map((c) => ({
      organizationId: owner.organizationId,
      userId: owner.userId,
      codeHash: keyedRecoveryCodeHash(envelopeFor(config), unkeyedRecoveryCodeHash(c)),
    })),
  );
  await recordAudit(tx, {
    type: 'mfa.enrolled',
    category: 'authentication',
    organizationId: owner.organizationId,
    userId: owner.userId,
    actorUserId: owner.userId,
    description: 'Authenticator (TOTP) enabled',
    objectType: 'user',
    objectId: owner.userId,
  });
  return codes;
}

/**
 * Checks a second factor of a user with TOTP enabled: a current TOTP code, or an unused recovery
 * code (which is then used up). False when the user has no confirmed authenticator.
 */
export async function verifySecondFactor(db: DbOrTx, config: Config, userId: string, code: string): Promise<boolean> {
  const row = await findTotp(db, userId);
  if (!row?.confirmedAt) return false;
  if (await useTotpCode(db, config, row, code)) return true;
  return useRecoveryCode(db, config, userId, code);
}

/**
 * Turns TOTP off for the caller, who proves it with a current code (or a recovery code). A wrong
 * code is reported to `onWrongCode` (the account's failed-login counter), as at the login's second
 * step: an access token alone must not buy the guesses that switch the factor off. While the
 * account is locked no code is checked, as no password is at login. Refused in an organization that
 * requires a second factor: the member would otherwise be without one until the next login; an
 * administrator's reset (`resetMfa`) remains the way to replace a lost authenticator.
 */
export async function disableTotp(
  db: Db,
  config: Config,
  actor: UserActor,
  code: string,
  attempts: CredentialAttempts,
): Promise<void> {
  // Nothing to turn off is no guess at a code: it costs no turn; nor is a refusal of the organization.
  if (!(await findTotp(db, actor.userId))?.confirmedAt) throw mfaErrors.notEnrolled();
  if (await isMfaRequired(db, actor.organizationId)) throw mfaErrors.requiredByOrganization();
  const account = { id: actor.userId, organizationId: actor.organizationId };
  const attempt = await attempts.claim(account);
  if (attempt === undefined) {
    await attempts.refused(account);
    throw mfaErrors.invalidCode();
  }
  const disabled = await db.transaction(async (tx) => {
    const row = await findTotp(tx, actor.userId);
    if (!row?.confirmedAt) throw mfaErrors.notEnrolled();
    if (!(await verifySecondFactor(tx, config, actor.userId, code))) return false;
    await removeFactors(tx, actor.userId);
    await recordAudit(tx, {
      type: 'mfa.disabled',
      category: 'authentication',
      organizationId: actor.organizationId,
      userId: actor.userId,
      actor,
      description: 'Authenticator (TOTP) turned off',
      severity: 'warning',
      objectType: 'user',
      objectId: actor.userId,
    });
    return true;
  });
  if (!disabled) {
    // After the transaction above, which changed nothing: the count must stick.
    await attempts.failed(account, attempt);
    throw mfaErrors.invalidCode();
  }
  await attempts.passed(account);
}

/** Whether the organization's `settings.require_mfa` is on, as an SQL boolean. */
const mfaRequiredBy = (organizationId: string) =>
  sql`coalesce((select settings -> 'require_mfa' = 'true'::jsonb from organizations where id = ${organizationId}), false)`;

async function isMfaRequired(db: DbOrTx, organizationId: string): Promise<boolean> {
  const [row] = await queryRows<{ required: boolean }>(db, sql`select ${mfaRequiredBy(organizationId)} as required`);
  return row?.required === true;
}

async function removeFactors(tx: DbOrTx, userId: string): Promise<void> {
  await tx.delete(mfaTotp).where(eq(mfaTotp.userId, userId));
  await tx.delete(mfaRecoveryCodes).where(eq(mfaRecoveryCodes.userId, userId));
  await endMfaChallenges(tx, userId);
}

/**
 * Ends every pending mfa_token of a user (login and enrolment challenges), in the caller's
 * transaction: whatever ends the account's sessions ends the logins halfway through too.
 */
export async function endMfaChallenges(db: DbOrTx, userId: string): Promise<void> {
  await db.delete(mfaChallenges).where(eq(mfaChallenges.userId, userId));
}

/** An administrator's reset: removes the user's authenticator, recovery codes and open challenges. */
export async function resetMfa(db: Db, userId: string, scopeOrganizationId?: string, actor?: Actor): Promise<void> {
  await db.transaction(async (tx) => {
    const [user] = isUuid(userId)
      ? await tx
          .select({ id: users.id, organizationId: users.organizationId })
          .from(users)
          .where(
            scopeOrganizationId
              ? and(eq(users.id, userId), eq(users.organizationId, scopeOrganizationId))
              : eq(users.id, userId),
          )
      : [];
    if (!user) throw mfaErrors.userNotFound(userId);
    await removeFactors(tx, userId);
    await recordAudit(tx, {
      type: 'mfa.reset',
      category: 'authentication',
      organizationId: user.organizationId,
      userId,
      actor,
      description: 'Second factor reset by an administrator',
      severity: 'warning',
      objectType: 'user',
      objectId: userId,
    });
  });
}

// --- login

/**
 * What ties an mfa_token to the password hash its login matched: an HMAC of the token's random part
 * keyed with that hash (as Django's password-reset tokens fold in the hash). A new password, however
 * it was set, makes every token of the old one fail, even where its challenge row was left in place:
 * the row does not record the hash. The whole token is stored hashed, so the binding cannot be
 * altered, and it tells nothing of the hash (salted, and unknown to the token's holder).
 */
function passwordBinding(random: string, passwordHash: string | null): string {
  return createHmac('sha256', passwordHash ?? '')
    .update(random)
    .digest('base64url')
    .slice(0, 22);
}

/** Whether an mfa_token was issued for this password hash (see passwordBinding). */
function isTokenOfPassword(mfaToken: string, passwordHash: string | null): boolean {
  const dot = mfaToken.lastIndexOf('.');
  if (dot < 0) return false;
  const given = Buffer.from(mfaToken.slice(dot + 1));
  const expected = Buffer.from(passwordBinding(mfaToken.slice(0, dot), passwordHash));
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The password hash of a challenge's user now; null for a user gone or without one. */
async function currentPasswordHash(db: DbOrTx, userId: string): Promise<string | null> {
  const [row] = await db.select({ passwordHash: users.passwordHash }).from(users).where(eq(users.id, userId));
  return row?.passwordHash ?? null;
}

/**
 * Stores a single-use login challenge (hashed, 5 minutes) and answers its token, bound to the
 * password hash the login matched.
 */
async function newChallenge(
  db: DbOrTx,
  account: { id: string; organizationId: string; passwordHash: string | null },
  purpose: 'login' | 'enrol',
): Promise<string> {
  const random = randomToken();
  const token = `${random}.${passwordBinding(random, account.passwordHash)}`;
  await db.insert(mfaChallenges).values({
    organizationId: account.organizationId,
    userId: account.id,
    tokenHash: sha256Hex(token),
    purpose,
    expiresAt: new Date(Date.now() + MFA_TOKEN_TTL_SECONDS * 1000),
  });
  return token;
}

/** The unused, unexpired challenge of a token (and not worn out by wrong codes), if any. */
async function openChallenge(db: DbOrTx, mfaToken: string) {
  const [challenge] = await db
    .select()
    .from(mfaChallenges)
    .where(
      and(
        eq(mfaChallenges.tokenHash, sha256Hex(mfaToken)),
        isNull(mfaChallenges.usedAt),
        gt(mfaChallenges.expiresAt, new Date()),
        lt(mfaChallenges.failedAttempts, MAX_ATTEMPTS_PER_CHALLENGE),
      ),
    );
  return challenge;
}

/**
 * The password step's hand-over: when the account has TOTP enabled, stores a single-use challenge
 * and throws MfaRequiredError carrying its token. When the organization's `settings.require_mfa` is
 * true and the account has no authenticator, the login is refused with an enrolment challenge
 * instead: its token enrols an authenticator (`enrolWithChallenge`), whose first code then logs in.
 */
export async function requireSecondFactor(
  db: DbOrTx,
  account: { id: string; organizationId: string; passwordHash: string | null },
  known?: { enabled: boolean; required: boolean },
): Promise<void> {
  // Login already read the state with its candidates; other callers look it up.
  const [state] = known
    ? [known]
    : await queryRows<{ enabled: boolean; required: boolean }>(
        db,
        sql`select
          exists (select 1 from ${mfaTotp} where ${mfaTotp.userId} = ${account.id} and ${mfaTotp.confirmedAt} is not null) as enabled,
          ${mfaRequiredBy(account.organizationId)} as required`,
      );
  if (!state?.enabled) {
    if (state?.required) {
      throw mfaErrors.enrolmentRequired(await newChallenge(db, account, 'enrol'), MFA_TOKEN_TTL_SECONDS);
    }
    return;
  }
  const challenge: MfaChallengeView = {
    mfa_required: true,
    mfa_token: await newChallenge(db, account, 'login'),
    methods: ['totp'],
    expires_in: MFA_TOKEN_TTL_SECONDS,
  };
  throw new MfaRequiredError(challenge);
}

/**
 * How a credential check counts against the account's lockout (see the lockout module): a login's
 * second step, or a signed-in user's check (a code to turn the factor off, the current password).
 */
export interface CredentialAttempts {
  /** Claims the account's attempt before the check; undefined: locked, nothing may be checked. */
  claim(account: { id: string; organizationId: string }): Promise<number | undefined>;
  /** A claimed check failed. */
  failed(account: { id: string; organizationId: string }, attempt: number): Promise<void>;
  /** A claimed check passed without a login (which clears the count itself): the turn goes back. */
  passed(account: { id: string; organizationId: string }): Promise<void>;
  /** The account was locked: refused without checking. */
  refused(account: { id: string; organizationId: string }): Promise<void>;
}

/**
 * Starts TOTP enrolment for the account of an enrolment challenge (its password matched, its
 * organization requires a second factor): the secret to set up, confirmed by logging in with its
 * first code. The challenge stays open for that.
 */
export async function enrolWithChallenge(db: Db, config: Config, mfaToken: string) {
  const challenge = await openChallenge(db, mfaToken);
  if (challenge?.purpose !== 'enrol') throw mfaErrors.invalidMfaToken();
  const [owner] = await db
    .select({ email: users.email, passwordHash: users.passwordHash })
    .from(users)
    .where(eq(users.id, challenge.userId));
  if (!owner || !isTokenOfPassword(mfaToken, owner.passwordHash)) throw mfaErrors.invalidMfaToken();
  return enrolTotp(db, config, challenge, owner.email);
}

/**
 * The second step: checks the code for the challenge's user and uses the challenge up. Answers the
 * user id to log in, and for an enrolment challenge the recovery codes of the authenticator its
 * first code turned on. Each try is counted on the challenge before the code is checked (five, then
 * log in again) and claimed as a login attempt of the account, so concurrent tries cannot outrun
 * either limit; while the account is locked no code is checked and the answer is a wrong code's.
 */
export async function finishMfaChallenge(
  db: Db,
  config: Config,
  input: { mfa_token: string; code: string },
  attempts: CredentialAttempts,
): Promise<{ userId: string; organizationId: string; passwordHash: string | null; recoveryCodes?: string[] }> {
  const tokenHash = sha256Hex(input.mfa_token);
  // `failed_attempts` counts tries: the one that succeeds uses the challenge up anyway.
  const [challenge] = await db
    .update(mfaChallenges)
    .set({ failedAttempts: sql`${mfaChallenges.failedAttempts} + 1` })
    .where(
      and(
        eq(mfaChallenges.tokenHash, tokenHash),
        isNull(mfaChallenges.usedAt),
        gt(mfaChallenges.expiresAt, new Date()),
        lt(mfaChallenges.failedAttempts, MAX_ATTEMPTS_PER_CHALLENGE),
      ),
    )
    .returning();
  if (!challenge) throw mfaErrors.invalidMfaToken();
  // Issued for a password the account no longer has: the login it finishes was started by someone
  // who knew the old one. Refused before any code is checked or counted.
  const passwordHash = await currentPasswordHash(db, challenge.userId);
  if (!isTokenOfPassword(input.mfa_token, passwordHash)) throw mfaErrors.invalidMfaToken();
  const account = { id: challenge.userId, organizationId: challenge.organizationId };
  const attempt = await attempts.claim(account);
  if (attempt === undefined) {
    await attempts.refused(account);
    throw mfaErrors.invalidCode();
  }
  const outcome = await db.transaction(async (tx) => {
    let recoveryCodes: string[] | undefined;
    if (challenge.purpose === 'enrol') {
      const codes = await activateTotp(tx, config, challenge, input.code);
      if (codes === null) return null;
      recoveryCodes = codes;
    } else if (!(await verifySecondFactor(tx, config, challenge.userId, input.code))) return null;
    const used = await tx
      .update(mfaChallenges)
      .set({ usedAt: new Date() })
      .where(and(eq(mfaChallenges.id, challenge.id), isNull(mfaChallenges.usedAt)))
      .returning({ id: mfaChallenges.id });
    // Lost a race with another request on the same token: that one logged in.
    if (used.length === 0) throw mfaErrors.invalidMfaToken();
    return { recoveryCodes };
  });
  if (outcome === null) {
    // Outside the transaction above, which verified nothing: the count must stick.
    await attempts.failed(account, attempt);
    throw mfaErrors.invalidCode();
  }
  return {
    userId: challenge.userId,
    organizationId: challenge.organizationId,
    passwordHash,
    ...(outcome.recoveryCodes ? { recoveryCodes: outcome.recoveryCodes } : {}),
  };
}
