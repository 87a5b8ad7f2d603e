import { and, eq, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../../platform/db/client.js';
import { accountLockouts } from './lockout.table.js';

/** When failed logins lock an account (LOCKOUT_THRESHOLD, LOCKOUT_WINDOW, LOCKOUT_DURATION). */
export interface LockoutPolicy {
  threshold: number;
  windowSeconds: number;
  durationSeconds: number;
}

export interface AccountRef {
  organizationId: string;
  id: string;
}

/**
 * Claims one login attempt of each account before its password (or code) is checked: counts it in
 * the account's window (a window older than the policy's starts over), refused while the account is
 * locked or once the window holds `threshold` attempts. One statement under the row lock, so however
 * many requests race, at most `threshold` checks run per window. Answers each claimed account's
 * attempt number; an account missing from the answer must not be checked. A check that fails goes
 * on to `lockAfterFailedAttempt`; one that passes without opening a session, to `returnLoginAttempts`.
 */
export async function claimLoginAttempts(
  db: DbOrTx,
  accounts: AccountRef[],
  policy: LockoutPolicy,
): Promise<Map<string, number>> {
  if (accounts.length === 0) return new Map();
  const window = sql`make_interval(secs => ${policy.windowSeconds})`;
  const inWindow = sql`coalesce(account_lockouts.window_started_at > now() - ${window}, false)`;
  const values = sql.join(
    accounts.map((a) => sql`(${a.organizationId}::uuid, ${a.id}::uuid)`),
    sql`, `,
  );
  // Only accounts that still exist, held (key share) against a deletion until the statement's
  // transaction ends: one deleted since the login read it is left out (refused unchecked) rather
  // than failing the whole statement on the foreign key.
  const rows = await queryRows<{ user_id: string; failed_count: number }>(
    db,
    sql`insert into account_lockouts (organization_id, user_id, failed_count, window_started_at)
        select a.organization_id, a.user_id, 1, now()
        from (values ${values}) as a (organization_id, user_id)
        join users on users.id = a.user_id
        for key share of users
        on conflict (organization_id, user_id) do update set
          failed_count = case when ${inWindow} then account_lockouts.failed_count + 1 else 1 end,
          window_started_at = case when ${inWindow} then account_lockouts.window_started_at else now() end
        where (account_lockouts.locked_until is null or account_lockouts.locked_until <= now())
          and not (${inWindow} and account_lockouts.failed_count >= ${policy.threshold})
        returning user_id, failed_count`,
  );
  return new Map(rows.map((r) => [r.user_id, Number(r.failed_count)]));
}

/**
 * Of accounts whose attempt was not claimed, those refused because a lock is in force; the others
 * were refused only because their window is full of checks still running.
 */
export async function findLockedAccounts(db: DbOrTx, accounts: AccountRef[]): Promise<Set<string>> {
  if (accounts.length === 0) return new Set();
  const ids = sql.join(
    accounts.map((a) => sql`${a.id}::uuid`),
    sql`, `,
  );
  const rows = await queryRows<{ user_id: string }>(
    db,
    sql`select user_id from account_lockouts where user_id in (${ids}) and locked_until > now()`,
  );
  return new Set(rows.map((r) => r.user_id));
}

/**
 * After a claimed attempt failed: locks the account when its window holds `threshold` attempts,
 * starting the count again from zero. Answers the lock's end when this call locked the account.
 */
export async function lockAfterFailedAttempt(
  db: DbOrTx,
  account: AccountRef,
  policy: LockoutPolicy,
): Promise<Date | undefined> {
  const [locked] = await db
    .update(accountLockouts)
    .set({
      failedCount: 0,
      windowStartedAt: null,
      lockedUntil: sql`now() + make_interval(secs => ${policy.durationSeconds})`,
    })
    .where(
      and(
        eq(accountLockouts.organizationId, account.organizationId),
        eq(accountLockouts.userId, account.id),
        // A success since the claim cleared the count (no lock then); a lock in force is not extended.
        sql`${accountLockouts.failedCount} >= ${policy.threshold}`,
        sql`${accountLockouts.windowStartedAt} > now() - make_interval(secs => ${policy.windowSeconds})`,
        sql`(${accountLockouts.lockedUntil} is null or ${accountLockouts.lockedUntil} <= now())`,
      ),
    )
    .returning({ lockedUntil: accountLockouts.lockedUntil });
  return locked?.lockedUntil ?? undefined;
}

/**
 * Gives back claimed attempts whose check passed without a login (a second factor due, an inactive
 * account, another account of the same identifier logging in): only failures count.
 */
export async function returnLoginAttempts(db: DbOrTx, accounts: AccountRef[]): Promise<void> {
  for (const account of accounts) {
    await db
      .update(accountLockouts)
      .set({ failedCount: sql`greatest(${accountLockouts.failedCount} - 1, 0)` })
      .where(and(eq(accountLockouts.organizationId, account.organizationId), eq(accountLockouts.userId, account.id)));
  }
}

/**
 * For the transaction that opens a session: whether the account is locked, read under its row
 * lock, so a lock committed by a failed attempt racing this login wins and none committed after
 * it can miss the new session (the lock ends the account's sessions).
 */
export async function isAccountLockedForLogin(db: DbOrTx, account: AccountRef): Promise<boolean> {
  const [row] = await queryRows<{ locked: boolean }>(
    db,
    sql`select coalesce(locked_until > now(), false) as locked from account_lockouts
        where organization_id = ${account.organizationId} and user_id = ${account.id}
        for update`,
  );
  return row?.locked === true;
}

/** Forgets an account's failed logins and any lock (a successful login, an administrator's unlock). */
export async function clearLockout(db: DbOrTx, account: AccountRef): Promise<void> {
  await db
    .delete(accountLockouts)
    .where(and(eq(accountLockouts.organizationId, account.organizationId), eq(accountLockouts.userId, account.id)));
}

export interface LockoutState {
  failedCount: number;
  lockedUntil: Date | null;
}

/** The counters of one account; undefined when it has no failed login on record. */
export async function findLockout(db: DbOrTx, account: AccountRef): Promise<LockoutState | undefined> {
  const [row] = await db
    .select({ failedCount: accountLockouts.failedCount, lockedUntil: accountLockouts.lockedUntil })
    .from(accountLockouts)
    .where(and(eq(accountLockouts.organizationId, account.organizationId), eq(accountLockouts.userId, account.id)));
  return row;
}
