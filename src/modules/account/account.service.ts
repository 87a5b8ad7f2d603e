import { and, eq } from 'drizzle-orm';
import type { Config } from '../../config.js';
import { assertPasswordPolicy, passwordPolicyOf } from '../../platform/crypto/password-policy.js';
import { hashPassword, verifyDummyPassword, verifyPassword } from '../../platform/crypto/passwords.js';
import { randomToken, sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import type { UserActor } from '../../platform/http/auth.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { queueMail } from '../../platform/mail/mail.js';
import { recordAudit } from '../activity/audit.js';
import {
  type ClientInfo,
  type CredentialCheck,
  DEFAULT_ORGANIZATION_CODE,
  ensureDefaultOrganization,
  invalidateUserState,
  lockoutAttempts,
  revokeUserSessions,
} from '../auth/auth.service.js';
import { clearLockout } from '../lockout/lockout.queries.js';
import { endMfaChallenges } from '../mfa/mfa.service.js';
import { organizationErrors } from '../organizations/organizations.errors.js';
import {
  findOrganizationByCode,
  findOrganizationById,
  holdActiveOrganization,
  holdActiveOrganizations,
} from '../organizations/organizations.queries.js';
import type { Organization } from '../organizations/organizations.table.js';
import { userErrors } from '../users/users.errors.js';
import { findUserById, type UserWithOrganization } from '../users/users.queries.js';
import { normalizeUsername } from '../users/users.schemas.js';
import { users } from '../users/users.table.js';
import { accountErrors } from './account.errors.js';
import {
  consumeAccountToken,
  countRecentMailings,
  endAccountTokens,
  findResetCandidates,
  findUsableAccountToken,
  insertAccountToken,
  lockAddressMailings,
  PASSWORD_PURPOSES,
  revokeOtherSessionsOfUser,
} from './account.queries.js';
import type { RegisterInput } from './account.schemas.js';
import type { AccountToken, AccountTokenPurpose } from './account.table.js';

const HOUR_MS = 3_600_000;
const TOKEN_LIFETIME_MS: Record<AccountTokenPurpose, number> = {
  verify_email: 72 * HOUR_MS,
  password_reset: HOUR_MS,
  invite: 7 * 24 * HOUR_MS,
};
// Reset and invitation links set a password through the same confirm endpoint (and console page).
// One address may have an account in several organizations; each gets its own link, up to this many.
const MAX_RESET_ACCOUNTS = 10;
// Anyone may ask for a reset or a new verification link for any address: past this many mailings of
// one kind per address and window, more requests (from any IP, on any node) mail nothing, so the
// endpoints cannot flood someone's mailbox. The answer stays the same 202.
const MAILINGS_PER_ADDRESS = 3;
const MAILING_WINDOW_SECONDS = 15 * 60;

/**
 * Takes the address's turn to be mailed links of this purpose (in the caller's transaction, until it
 * ends) and answers whether it is still under its limit of mailings in the window.
 */
async function mayMailAddress(tx: DbOrTx, email: string, purpose: AccountTokenPurpose): Promise<boolean> {
  await lockAddressMailings(tx, email, purpose);
  return (await countRecentMailings(tx, email, purpose, MAILING_WINDOW_SECONDS)) < MAILINGS_PER_ADDRESS;
}

/**
 * The accounts whose organization is still active, held so until the caller's transaction ends:
 * the accounts were found before it, and a deactivation committed since (which ended the open links)
 * must not be followed by a new link.
 */
async function inActiveOrganizations<T extends { organizationId: string }>(tx: DbOrTx, accounts: T[]): Promise<T[]> {
  const active = await holdActiveOrganizations(tx, [...new Set(accounts.map((a) => a.organizationId))]);
  return accounts.filter((a) => active.has(a.organizationId));
}

function settingsOf(org: Organization | undefined): Record<string, unknown> {
  return org?.settings ?? {};
}

/**
 * Creates a single-use token for a user (superseding their open ones of the same purpose) and
 * answers the raw token, which exists only in the mail; the database keeps its SHA-256.
 */
async function issueAccountToken(
  tx: DbOrTx,
  user: { id: string; organizationId: string },
  purpose: AccountTokenPurpose,
): Promise<{ token: string; expiresAt: Date }> {
  const token = randomToken();
  const expiresAt = new Date(Date.now() + TOKEN_LIFETIME_MS[purpose]);
  await endAccountTokens(tx, {
    organizationId: user.organizationId,
    userIds: [user.id],
    purposes: purpose === 'verify_email' ? ['verify_email'] : PASSWORD_PURPOSES,
  });
  await insertAccountToken(tx, {
    organizationId: user.organizationId,
    userId: user.id,
    purpose,
    tokenHash: sha256Hex(token),
    expiresAt,
  });
  return { token, expiresAt };
}

/** The admin console's public pages that mailed links open (console/src, no sign-in needed). */
type LinkPage = 'set-password' | 'verify-email';

/**
 * A mailed link: a console page a person can use, not the JSON endpoint the page calls. The token
 * rides in the fragment, which a browser never sends: it stays out of the server's and any proxy's
 * request logs, and out of a Referer.
 */
function link(config: Config, page: LinkPage, token: string): string {
  return `${config.publicUrl}/admin/${page}#token=${encodeURIComponent(token)}`;
}

async function mailVerification(
  tx: DbOrTx,
  config: Config,
  user: { id: string; email: string },
  token: string,
): Promise<void> {
  const url = link(config, 'verify-email', token);
  await queueMail(tx, {
    userId: user.id,
    to: user.email,
    subject: 'Confirm your email address',
    text:
      `Welcome! Confirm that ${user.email} is your address by opening this link:\n\n${url}\n\n` +
      `The link works once and expires in ${TOKEN_LIFETIME_MS.verify_email / HOUR_MS} hours. ` +
      'If you did not create an account, ignore this message.\n',
  });
}

/**
 * Self-registration (API-CONTRACT §4) into the named organization (default `default`), unless its
 * settings say `self_registration: false`. The user starts active with an unverified address; the
 * verification mail is queued in the same transaction as the insert.
 */
export async function registerUser(db: Db, config: Config, input: RegisterInput): Promise<UserWithOrganization> {
  // Registration forms send the password twice: a mistyped second one must not set the first.
  for (const field of ['password2', 'password_confirm'] as const) {
    if (input[field] !== undefined && input[field] !== input.password) throw accountErrors.confirmationDiffers(field);
  }
  const code = input.organization ?? DEFAULT_ORGANIZATION_CODE;
  let org = await findOrganizationByCode(db, code);
  if (!org && code === DEFAULT_ORGANIZATION_CODE) org = await ensureDefaultOrganization(db);
  if (!org) throw userErrors.organizationNotFound(code);
  if (!org.isActive || org.settings.self_registration === false) throw accountErrors.registrationClosed(code);
  assertPasswordPolicy(
    input.password,
    { email: input.email, username: input.username },
    passwordPolicyOf(org.settings),
  );
  // Hash before the transaction: argon2 must not hold a connection.
  const passwordHash = await hashPassword(input.password);
  const organizationId = org.id;
  return db.transaction(async (tx) => {
    // Checked again under a lock held to commit: a deactivation since the look-up closes the door too.
    if (!(await holdActiveOrganization(tx, organizationId))) throw accountErrors.registrationClosed(code);
    const [user] = await tx
      .insert(users)
      .values({
        organizationId,
        email: input.email,
        username: input.username === undefined ? null : normalizeUsername(input.username),
        firstName: input.first_name ?? '',
        lastName: input.last_name ?? '',
        passwordHash,
        status: 'active',
      })
      .returning();
    if (!user) throw new Error('registerUser: the insert returned no row');
    const { token } = await issueAccountToken(tx, user, 'verify_email');
    await mailVerification(tx, config, user, token);
    await recordAudit(tx, {
      type: 'user.registered',
      category: 'user_management',
      organizationId,
      userId: user.id,
      description: `User ${user.id} registered`,
      objectType: 'user',
      objectId: user.id,
    });
    return (await findUserById(tx, user.id)) as UserWithOrganization;
  });
}

/**
 * Answers a request for a new verification link by queueing it, as requestPasswordReset does: the
 * request costs the same single insert whether or not an unverified account has the address, so its
 * timing tells nothing. The job (sendVerificationMails) looks the address up and mails the links.
 */
export async function resendVerification(
  db: Db,
  input: { email: string; organization?: string | null | undefined },
): Promise<void> {
  await enqueueJob(db, VERIFICATION_RESEND_JOB, { email: input.email, organization: input.organization ?? null });
}

export const VERIFICATION_RESEND_JOB = 'account.verification-resend';

/**
 * Mails a new verification link to each active, unverified account with the address (the first one
 * expired or got lost), within the address's limit of mailings (job of resendVerification).
 */
export async function sendVerificationMails(
  db: Db,
  config: Config,
  input: { email: string; organization: string | null },
): Promise<void> {
  const found = await findResetCandidates(db, input.email, input.organization ?? undefined, MAX_RESET_ACCOUNTS);
  const unverified = found.filter((account) => !account.emailVerified);
  if (unverified.length === 0) return;
  await db.transaction(async (tx) => {
    const accounts = await inActiveOrganizations(tx, unverified);
    if (accounts.length === 0) return;
    if (!(await mayMailAddress(tx, input.email, 'verify_email'))) return;
    for (const account of accounts) {
      const { token } = await issueAccountToken(tx, account, 'verify_email');
      await mailVerification(tx, config, account, token);
    }
  });
}

/** Uses up a verification token and marks the address verified, recording it. */
export async function verifyEmail(db: Db, token: string): Promise<void> {
  await db.transaction(async (tx) => {
    const used = await consumeAccountToken(tx, sha256Hex(token), ['verify_email']);
    if (!used) throw accountErrors.invalidToken();
    await tx.update(users).set({ emailVerified: true }).where(eq(users.id, used.userId));
    await recordAudit(tx, {
      type: 'user.email_verified',
      category: 'user_management',
      organizationId: used.organizationId,
      userId: used.userId,
      // The link's holder proved the address: the user acts on their own account.
      actorUserId: used.userId,
      description: 'Email address verified',
      objectType: 'user',
      objectId: used.userId,
    });
  });
}

/**
 * The caller proves they know their password again (changing it, turning on a second factor): a
 * wrong one counts as a failed login of the account (lockout), and while the account is locked none
 * is checked. Answers the user.
 */
export async function provePassword(
  db: Db,
  config: Config,
  actor: UserActor,
  password: string,
  client: ClientInfo,
  check: { field: string; purpose: CredentialCheck },
): Promise<UserWithOrganization> {
  const user = await findUserById(db, actor.userId);
  if (!user) throw userErrors.notFound(actor.userId);
  const attempts = lockoutAttempts(db, config, client, check.purpose);
  const attempt = await attempts.claim(user);
  if (attempt === undefined) {
    // Locked: nothing is checked, in the time a check takes.
    await verifyDummyPassword(password);
    await attempts.refused(user);
    throw accountErrors.wrongPassword(check.field);
  }
  const matches = user.passwordHash
    ? await verifyPassword(user.passwordHash, password)
    : await verifyDummyPassword(password);
  if (!matches) {
    await attempts.failed(user, attempt);
    throw accountErrors.wrongPassword(check.field);
  }
  await attempts.passed(user);
  return user;
}

/**
 * Changes the caller's password after checking the current one. Every other session of the user,
 * and every login of theirs waiting for its second step, ends in the same transaction; the caller's
 * own session stays signed in. A wrong current password
 * counts as a failed login of the account (lockout), and while the account is locked the current
 * password is checked all the same but never matches, as at login. The password must still be the
 * one checked when the new one is written: otherwise 400 wrong_password.
 */
export async function changePassword(
  db: Db,
  config: Config,
  actor: UserActor,
  input: { old_password: string; new_password: string },
  client: ClientInfo,
): Promise<void> {
  const user = await provePassword(db, config, actor, input.old_password, client, {
    field: 'old_password',
    purpose: 'change_password',
  });
  if (input.new_password === input.old_password) throw accountErrors.samePassword();
  const org = await findOrganizationById(db, user.organizationId);
  assertPasswordPolicy(
    input.new_password,
    { email: user.email, username: user.username },
    passwordPolicyOf(settingsOf(org)),
    'new_password',
  );
  const passwordHash = await hashPassword(input.new_password);
  await db.transaction(async (tx) => {
    // Only over the hash the old password was checked against: of changes racing from one old
    // password, the first to commit wins and the others find another hash (as would a later change).
    const [changed] = await tx
      .update(users)
      .set({ passwordHash })
      .where(and(eq(users.id, user.id), eq(users.passwordHash, user.passwordHash as string)))
      .returning({ id: users.id });
    if (!changed) throw accountErrors.wrongPassword('old_password');
    // A reset link mailed before the change must not undo it.
    await endAccountTokens(tx, {
      organizationId: user.organizationId,
      userIds: [user.id],
      purposes: PASSWORD_PURPOSES,
    });
    await revokeOtherSessionsOfUser(tx, user.id, actor.sessionId, 'password_changed');
    // A login that matched the old password and waits for its second step (or for an authenticator to
    // enrol) is a session being opened: it ends too, or it would finish with the password just retired.
    await endMfaChallenges(tx, user.id);
    await invalidateUserState(tx, user.id);
    await recordAudit(tx, {
      type: 'auth.password_changed',
      category: 'authentication',
      organizationId: user.organizationId,
      userId: user.id,
      actor,
      description: 'Password changed',
      objectType: 'user',
      objectId: user.id,
    });
  });
}

/**
 * Answers a reset request by queueing it: every request, for a known address or not, costs the
 * caller the same single insert, so neither the answer nor its timing tells whether an account
 * exists. The job (sendPasswordResetMails) looks the address up and mails the links.
 */
export async function requestPasswordReset(
  db: Db,
  input: { email: string; organization?: string | null | undefined },
): Promise<void> {
  await enqueueJob(db, PASSWORD_RESET_JOB, { email: input.email, organization: input.organization ?? null });
}

export const PASSWORD_RESET_JOB = 'account.password-reset';

/**
 * Mails a single-use reset link to each active account with the address, within the address's limit
 * of mailings (job of requestPasswordReset).
 */
export async function sendPasswordResetMails(
  db: Db,
  config: Config,
  input: { email: string; organization: string | null },
): Promise<void> {
  const candidates = await findResetCandidates(db, input.email, input.organization ?? undefined, MAX_RESET_ACCOUNTS);
  if (candidates.length === 0) return;
  await db.transaction(async (tx) => {
    const accounts = await inActiveOrganizations(tx, candidates);
    if (accounts.length === 0) return;
    if (!(await mayMailAddress(tx, input.email, 'password_reset'))) return;
    for (const account of accounts) {
      const { token } = await issueAccountToken(tx, account, 'password_reset');
      const url = link(config, 'set-password', token);
      await queueMail(tx, {
        userId: account.id,
        to: account.email,
        subject: 'Reset your password',
        text:
          `Someone asked to reset the password of your account in ${account.organizationName} (${account.organizationCode}).\n\n` +
          `Choose a new password by opening this link:\n\n${url}\n\n` +
          'The link works once and expires in 1 hour. If you did not ask for this, ignore this message: ' +
          'your password stays as it is.\n\n' +
          `For an application that asks for the reset token instead: ${token}\n`,
      });
    }
  });
}

/** Whether a reset or invitation token can still be used (the link's landing); nothing is consumed. */
export async function describePasswordToken(db: Db, token: string): Promise<AccountToken> {
  return (await passwordTokenAccount(db, sha256Hex(token))).token;
}

/**
 * A usable reset or invitation token and its account, as setting the password takes them: a link
 * whose account left `active`, or whose organization was deactivated, is no longer valid (checking a
 * link says so too, rather than valid and then refused).
 */
async function passwordTokenAccount(db: Db, tokenHash: string) {
  const token = await findUsableAccountToken(db, tokenHash, PASSWORD_PURPOSES);
  if (!token) throw accountErrors.invalidToken();
  const user = await findUserById(db, token.userId);
  if (!user) throw accountErrors.invalidToken();
  const org = await findOrganizationById(db, user.organizationId);
  // Links are mailed only to active accounts of active organizations, and end when that changes;
  // this holds the line for a link that outlived the change some other way.
  if (user.status !== 'active' || org?.isActive === false) throw accountErrors.invalidToken();
  return { token, user, org };
}

/**
 * Sets a new password with a reset or invitation token: uses the token up, sets the hash, marks the
 * address verified (the mail reached its owner), lifts a lock from failed logins and ends every
 * session of the user, in one transaction. The policy is checked before the token is used, so a
 * refused password keeps the link.
 */
export async function confirmPasswordReset(db: Db, input: { token: string; new_password: string }): Promise<void> {
  const tokenHash = sha256Hex(input.token);
  const { user, org } = await passwordTokenAccount(db, tokenHash);
  assertPasswordPolicy(
    input.new_password,
    { email: user.email, username: user.username },
    passwordPolicyOf(settingsOf(org)),
    'new_password',
  );
  const passwordHash = await hashPassword(input.new_password);
  await db.transaction(async (tx) => {
    // Used up here, atomically: of two confirmations racing with one token, one wins.
    const used = await consumeAccountToken(tx, tokenHash, PASSWORD_PURPOSES);
    if (!used) throw accountErrors.invalidToken();
    await tx.update(users).set({ passwordHash, emailVerified: true }).where(eq(users.id, used.userId));
    await endAccountTokens(tx, {
      organizationId: used.organizationId,
      userIds: [used.userId],
      purposes: PASSWORD_PURPOSES,
    });
    // The mail reached the account's owner, who now has a password nobody guessed: a lock from
    // failed logins (someone else's guesses, or their own forgotten password) has done its work.
    await clearLockout(tx, { organizationId: user.organizationId, id: used.userId });
    await revokeUserSessions(tx, used.userId, used.purpose === 'invite' ? 'invitation_accepted' : 'password_reset');
    await recordAudit(tx, {
      type: used.purpose === 'invite' ? 'auth.invitation_accepted' : 'auth.password_reset',
      category: 'authentication',
      organizationId: user.organizationId,
      userId: used.userId,
      description:
        used.purpose === 'invite' ? 'Invitation accepted: password set' : 'Password reset with a mailed token',
      objectType: 'user',
      objectId: used.userId,
    });
  });
}

/**
 * Mails an invitation to set a password to an active user who has none (provisioned accounts);
 * the link opens the console's set-password page (the password-reset confirm endpoint) and lives 7 days.
 */
export async function inviteUser(
  db: Db,
  config: Config,
  userId: string,
  scopeOrganizationId: string | undefined,
): Promise<{ expiresAt: Date }> {
  return db.transaction(async (tx) => {
    const user = await findUserById(tx, userId, scopeOrganizationId);
    if (!user) throw userErrors.notFound(userId);
    // Held to commit: a deactivation of the organization (which ends its links) waits for this one, or refuses it.
    if (!(await holdActiveOrganization(tx, user.organizationId))) {
      throw organizationErrors.inactive(user.organizationCode);
    }
    if (user.status !== 'active') throw accountErrors.userNotActive(user.status);
    if (user.passwordHash !== null) throw accountErrors.alreadyHasPassword();
    const org = await findOrganizationById(tx, user.organizationId);
    const { token, expiresAt } = await issueAccountToken(tx, user, 'invite');
    const url = link(config, 'set-password', token);
    await queueMail(tx, {
      userId: user.id,
      to: user.email,
      subject: 'Set your password',
      text:
        `You have an account in ${org?.name ?? user.organizationCode} (${user.organizationCode}). ` +
        'Choose a password to sign in.\n\n' +
        `Open this link to choose it:\n\n${url}\n\n` +
        'The link works once and expires in 7 days.\n\n' +
        `For an application that asks for the invitation token instead: ${token}\n`,
    });
    await recordAudit(tx, {
      type: 'user.invited',
      category: 'user_management',
      organizationId: user.organizationId,
      userId: user.id,
      description: 'Invitation to set a password mailed',
      details: { expires_at: expiresAt.toISOString() },
      objectType: 'user',
      objectId: user.id,
    });
    return { expiresAt };
  });
}
