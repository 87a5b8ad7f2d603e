import { and, countDistinct, eq, gt, inArray, isNull, ne, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { anyUuid } from '../../platform/db/columns.js';
import { sessions } from '../auth/auth.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';
import { type AccountToken, type AccountTokenPurpose, accountTokens } from './account.table.js';

export async function insertAccountToken(db: DbOrTx, values: typeof accountTokens.$inferInsert): Promise<void> {
  await db.insert(accountTokens).values(values);
}

/** The links a password ends: one mailed to set a password would undo it. */
export const PASSWORD_PURPOSES = ['password_reset', 'invite'] as const;

/**
 * Marks open tokens used, so their links no longer work: those of an organization's users (all of
 * them when `userIds` is omitted: the organization is deactivated), of the given purposes (all when
 * omitted: verification, reset and invitation). A newer link supersedes the older ones of its kind;
 * a new password ends the password links; a changed email or an account that left `active` ends
 * them all. One statement for any number of users, on the (organization, user, purpose) index.
 */
export async function endAccountTokens(
  db: DbOrTx,
  scope: { organizationId: string; userIds?: readonly string[]; purposes?: readonly AccountTokenPurpose[] },
): Promise<void> {
  if (scope.userIds?.length === 0) return;
  await db
    .update(accountTokens)
    .set({ usedAt: sql`now()` })
    .where(
      and(
        eq(accountTokens.organizationId, scope.organizationId),
        scope.userIds ? anyUuid(accountTokens.userId, [...scope.userIds]) : undefined,
        scope.purposes ? inArray(accountTokens.purpose, [...scope.purposes]) : undefined,
        isNull(accountTokens.usedAt),
      ),
    );
}

/** The token with this hash, if it is of one of these purposes, unused and unexpired. */
function isUsable(tokenHash: string, purposes: readonly AccountTokenPurpose[]) {
  return and(
    eq(accountTokens.tokenHash, tokenHash),
    inArray(accountTokens.purpose, [...purposes]),
    isNull(accountTokens.usedAt),
    gt(accountTokens.expiresAt, sql`now()`),
  );
}

/** An unused, unexpired token of one of these purposes, by its hash. */
export async function findUsableAccountToken(
  db: DbOrTx,
  tokenHash: string,
  purposes: readonly AccountTokenPurpose[],
): Promise<AccountToken | undefined> {
  const [row] = await db.select().from(accountTokens).where(isUsable(tokenHash, purposes)).limit(1);
  return row;
}

/**
 * Uses a token up in one statement: of two concurrent requests with the same token, exactly one
 * gets the row (the `used_at is null` guard under the row lock). No row: unknown, used or expired.
 */
export async function consumeAccountToken(
  db: DbOrTx,
  tokenHash: string,
  purposes: readonly AccountTokenPurpose[],
): Promise<AccountToken | undefined> {
  const [row] = await db
    .update(accountTokens)
    .set({ usedAt: sql`now()` })
    .where(isUsable(tokenHash, purposes))
    .returning();
  return row;
}

/** Revokes every open session of a user but one (the caller's, after a password change). */
export async function revokeOtherSessionsOfUser(
  db: DbOrTx,
  userId: string,
  keepSessionId: string,
  reason: string,
): Promise<number> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.userId, userId), ne(sessions.id, keepSessionId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length;
}

export interface ResetCandidate {
  id: string;
  organizationId: string;
  organizationCode: string;
  organizationName: string;
  email: string;
  emailVerified: boolean;
}

/** Active accounts with this email (for a reset link or a new verification link) (case-insensitive) in active organizations: one, or all when no code is given. */
export async function findResetCandidates(
  db: DbOrTx,
  email: string,
  organizationCode: string | undefined,
  limit: number,
): Promise<ResetCandidate[]> {
  return db
    .select({
      id: users.id,
      organizationId: users.organizationId,
      organizationCode: organizations.code,
      organizationName: organizations.name,
      email: users.email,
      emailVerified: users.emailVerified,
    })
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(
      and(
        sql`lower(${users.email}) collate "C" = lower(${email})`,
        eq(users.status, 'active'),
        eq(organizations.isActive, true),
        organizationCode !== undefined ? eq(organizations.code, organizationCode) : undefined,
      ),
    )
    .orderBy(users.id)
    .limit(limit);
}

/**
 * Holds, until the caller's transaction ends, the right to mail links of one purpose to one address
 * (case-insensitive): mailings to an address wait for each other across jobs and nodes, so each one
 * counts the others before it decides.
 */
export async function lockAddressMailings(tx: DbOrTx, email: string, purpose: AccountTokenPurpose): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`account.mail:${purpose}:${email.toLowerCase()}`}))`);
}

/**
 * How many mailings of links of this purpose went to accounts with this address (case-insensitive)
 * in the last `windowSeconds`. One mailing is one transaction, which may mail several accounts of
 * the address (one per organization): its tokens share their `created_at` (`now()` is the
 * transaction's start), so distinct timestamps count mailings, not accounts.
 */
export async function countRecentMailings(
  db: DbOrTx,
  email: string,
  purpose: AccountTokenPurpose,
  windowSeconds: number,
): Promise<number> {
  const [row] = await db
    .select({ mailings: countDistinct(accountTokens.createdAt) })
    .from(accountTokens)
    .innerJoin(users, and(eq(users.organizationId, accountTokens.organizationId), eq(users.id, accountTokens.userId)))
    .where(
      and(
        sql`lower(${users.email}) collate "C" = lower(${email})`,
        eq(accountTokens.purpose, purpose),
        gt(accountTokens.createdAt, sql`now() - make_interval(secs => ${windowSeconds})`),
      ),
    );
  return row?.mailings ?? 0;
}
