import { and, eq, isNull, or, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../../platform/db/client.js';
import { accountLockouts } from '../lockout/lockout.table.js';
import { mfaTotp } from '../mfa/mfa.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { normalizeUsername } from '../users/users.schemas.js';
import type { UserStatus } from '../users/users.table.js';
import { users } from '../users/users.table.js';
import { refreshTokens, sessions } from './auth.table.js';

export interface SessionStateRow {
  sessionId: string;
  userId: string;
  organizationId: string;
  organizationCode: string;
  organizationActive: boolean;
  userStatus: UserStatus;
  email: string;
  username: string | null;
  firstName: string;
  lastName: string;
  isStaff: boolean;
  isSuperuser: boolean;
  emailVerified: boolean;
  revokedAt: Date | null;
  expiresAt: Date;
}

/** What decides whether a session's tokens still work: the session, its user and its organization. */
export async function findSessionState(db: DbOrTx, sessionId: string): Promise<SessionStateRow | undefined> {
  const [row] = await db
    .select({
      sessionId: sessions.id,
      userId: sessions.userId,
      organizationId: sessions.organizationId,
      organizationCode: organizations.code,
      organizationActive: organizations.isActive,
      userStatus: users.status,
      email: users.email,
      username: users.username,
      firstName: users.firstName,
      lastName: users.lastName,
      isStaff: users.isStaff,
      isSuperuser: users.isSuperuser,
      emailVerified: users.emailVerified,
      revokedAt: sessions.revokedAt,
      expiresAt: sessions.expiresAt,
    })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .innerJoin(organizations, eq(organizations.id, sessions.organizationId))
    .where(eq(sessions.id, sessionId))
    .limit(1);
  return row;
}

/** Revokes every open session of a user; returns how many were open. */
export async function revokeSessionsOfUser(db: DbOrTx, userId: string, reason: string): Promise<number> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length;
}

/** Revokes every open session in an organization. */
export async function revokeSessionsOfOrganization(
  db: DbOrTx,
  organizationId: string,
  reason: string,
): Promise<number> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.organizationId, organizationId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length;
}

/** A session as its audit events name it. */
export interface SessionOwner {
  sessionId: string;
  userId: string;
  organizationId: string;
}

/** Revokes one session if it is still open; answers it when it was, undefined otherwise. */
export async function revokeSessionById(
  db: DbOrTx,
  sessionId: string,
  reason: string,
): Promise<SessionOwner | undefined> {
  const [row] = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))
    .returning({ sessionId: sessions.id, userId: sessions.userId, organizationId: sessions.organizationId });
  return row;
}

export interface LoginCandidate {
  id: string;
  organizationId: string;
  organizationCode: string;
  organizationActive: boolean;
  email: string;
  username: string | null;
  firstName: string;
  lastName: string;
  status: UserStatus;
  isStaff: boolean;
  isSuperuser: boolean;
  passwordHash: string | null;
  emailVerified: boolean;
  /** The organization's `settings.require_email_verification` is true. */
  requireEmailVerification: boolean;
  /** A confirmed TOTP authenticator, and the organization's `settings.require_mfa`. */
  mfaEnabled: boolean;
  mfaRequired: boolean;
}

/**
 * Accounts a login names: by email, by username (or an email typed into the username field), or
 * with both by the accounts both name, compared case-insensitively, across organizations unless one
 * is given. At most `limit` rows. Both must match: an email that names nobody beside a username
 * must not fall back on the username (the per-account rate limit counts each identifier sent).
 */
export async function findLoginCandidates(
  db: DbOrTx,
  identifier: { email?: string | undefined; username?: string | undefined },
  organizationCode: string | undefined,
  limit: number,
): Promise<LoginCandidate[]> {
  // Compared in the byte collation of the email and username indexes (users.table.ts), so a login
  // is an index look-up at any size; equality means the same in either collation.
  const emailKey = sql`lower(${users.email}) collate "C"`;
  const usernameKey = sql`lower(${users.username}) collate "C"`;
  const matches: (SQL | undefined)[] = [];
  if (identifier.email !== undefined) matches.push(sql`${emailKey} = lower(${identifier.email})`);
  if (identifier.username !== undefined) {
    // Stored composed (NFC): a name typed decomposed finds it too.
    const byUsername = sql`${usernameKey} = lower(${normalizeUsername(identifier.username)})`;
    matches.push(
      identifier.username.includes('@') ? or(byUsername, sql`${emailKey} = lower(${identifier.username})`) : byUsername,
    );
  }
  // Naming nobody must never mean "anyone".
  if (matches.length === 0) return [];
  return db
    .select({
      id: users.id,
      organizationId: users.organizationId,
      organizationCode: organizations.code,
      organizationActive: organizations.isActive,
      email: users.email,
      username: users.username,
      firstName: users.firstName,
      lastName: users.lastName,
      status: users.status,
      isStaff: users.isStaff,
      isSuperuser: users.isSuperuser,
      passwordHash: users.passwordHash,
      emailVerified: users.emailVerified,
      requireEmailVerification: sql<boolean>`coalesce(${organizations.settings} -> 'require_email_verification' = 'true'::jsonb, false)`,
      // Second-factor state rides along: one round trip instead of two per login. The lock is not
      // read here: each attempt claims its turn (claimLoginAttempts) before its password is checked.
      mfaEnabled: sql<boolean>`exists (select 1 from ${mfaTotp} where ${mfaTotp.userId} = ${users.id} and ${mfaTotp.confirmedAt} is not null)`,
      mfaRequired: sql<boolean>`coalesce(${organizations.settings} -> 'require_mfa' = 'true'::jsonb, false)`,
    })
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(...matches, organizationCode !== undefined ? eq(organizations.code, organizationCode) : undefined))
    .orderBy(users.id)
    .limit(limit);
}

/** A refresh token by its hash, with its session's owner; undefined when unknown. */
export async function findRefreshToken(
  db: DbOrTx,
  tokenHash: string,
): Promise<(SessionOwner & { usedAt: Date | null }) | undefined> {
  const [row] = await db
    .select({
      sessionId: refreshTokens.sessionId,
      userId: sessions.userId,
      organizationId: sessions.organizationId,
      usedAt: refreshTokens.usedAt,
    })
    .from(refreshTokens)
    .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
    .where(eq(refreshTokens.tokenHash, tokenHash))
    .limit(1);
  return row;
}

export interface RotatedRefreshToken extends SessionStateRow {
  /** False when the token was consumed but its session can no longer be used: no successor. */
  rotated: boolean;
}

/**
 * Refresh-token rotation in one call of the `rotate_refresh_token` database function (migration
 * 0002; one round trip, atomic without an explicit transaction, its plan kept by the database): marks the presented token used, reads its session's state, and, only when the
 * session, user and organization are all still usable and the session is younger than its greatest
 * age, inserts the successor and slides the session's expiry (up to that age, never beyond). The `used_at is null` guard under the row lock lets exactly one of concurrent
 * refreshes of the same token win. No row: the token is unknown, expired or already used.
 */
export async function rotateRefreshToken(
  db: DbOrTx,
  input: { tokenHash: string; successorId: string; successorHash: string; expiresAt: Date; maxAgeSeconds: number },
): Promise<RotatedRefreshToken | undefined> {
  const rows = await queryRows<Record<string, unknown>>(
    db,
    sql`select * from rotate_refresh_token(${input.tokenHash}, ${input.successorId}::uuid, ${input.successorHash}, ${input.expiresAt.toISOString()}::timestamptz, ${input.maxAgeSeconds}::integer)`,
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    sessionId: row.session_id as string,
    userId: row.user_id as string,
    organizationId: row.organization_id as string,
    organizationCode: row.organization_code as string,
    organizationActive: row.organization_active as boolean,
    userStatus: row.user_status as UserStatus,
    email: row.email as string,
    username: row.username as string | null,
    firstName: row.first_name as string,
    lastName: row.last_name as string,
    isStaff: row.is_staff as boolean,
    isSuperuser: row.is_superuser as boolean,
    emailVerified: row.email_verified as boolean,
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at as string),
    expiresAt: new Date(row.expires_at as string),
    rotated: row.rotated as boolean,
  };
}

/** A user row as the transaction opening a session re-checks it. */
export interface HeldLoginAccount {
  organizationId: string;
  status: UserStatus;
  passwordHash: string | null;
}

/**
 * For the transaction that opens a session: the user as it now stands, its row held (FOR NO KEY
 * UPDATE, which the session's own last_login write needs anyway) until that transaction ends. A
 * password change, deactivation or deletion then either committed first and is seen here, or waits
 * for the new session and ends it with the others. Undefined when the user is gone.
 */
export async function holdLoginAccount(db: DbOrTx, userId: string): Promise<HeldLoginAccount | undefined> {
  const [row] = await db
    .select({ organizationId: users.organizationId, status: users.status, passwordHash: users.passwordHash })
    .from(users)
    .where(eq(users.id, userId))
    .for('no key update');
  return row;
}

export interface LoginSessionInput {
  organizationId: string;
  userId: string;
  sessionId: string;
  refreshTokenId: string;
  refreshTokenHash: string;
  ipAddress: string | null;
  userAgent: string | null;
  deviceType: string | null;
  browser: string | null;
  os: string | null;
  cookieTokenHash: string | null;
  expiresAt: Date;
}

/**
 * Everything a successful login writes, as one statement: atomic without an explicit transaction
 * and one round trip instead of six (BEGIN, four writes, COMMIT).
 */
export async function insertLoginSession(db: DbOrTx, input: LoginSessionInput): Promise<void> {
  const expiresAt = input.expiresAt.toISOString();
  await db.execute(sql`with new_session as (
      insert into ${sessions} (organization_id, id, user_id, ip_address, user_agent, device_type, browser, os,
        cookie_token_hash, expires_at)
      values (${input.organizationId}::uuid, ${input.sessionId}::uuid, ${input.userId}::uuid, ${input.ipAddress},
        ${input.userAgent}, ${input.deviceType}, ${input.browser}, ${input.os}, ${input.cookieTokenHash},
        ${expiresAt}::timestamptz)
      returning id, organization_id
    ), first_refresh as (
      insert into ${refreshTokens} (organization_id, id, session_id, token_hash, expires_at)
      select organization_id, ${input.refreshTokenId}::uuid, id, ${input.refreshTokenHash}, ${expiresAt}::timestamptz
      from new_session
    ), last_login as (
      -- A login is not an edit of the user: updated_at (SCIM's lastModified, ETags) is left alone.
      update ${users} set last_login = now() where id = ${input.userId}::uuid
    ), cleared as (
      -- The attempt that logs in was claimed (lockout module): its count ends with the others.
      delete from ${accountLockouts}
      where organization_id = ${input.organizationId}::uuid and user_id = ${input.userId}::uuid
    )
    select 1`);
}
