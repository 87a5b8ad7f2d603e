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
 * Counts one failed login in the account's window (a window older than the policy's starts over)
 * and, at the threshold, locks the account and starts counting again from zero. Atomic across
 * nodes: the upsert holds the row lock. An account already locked is left as it is, so failures
 * during a lock never extend it. Answers the lock's end when this failure locked the account.
 */
export async function recordLoginFailure(
  db: DbOrTx,
  account: AccountRef,
  policy: LockoutPolicy,
): Promise<Date | undefined> {
  const window = sql`make_interval(secs => ${policy.windowSeconds})`;
  const inWindow = sql`account_lockouts.window_started_at > now() - ${window}`;
  const [row] = await queryRows<{ failed_count: number }>(
    db,
    sql`insert into account_lockouts (organization_id, user_id, failed_count, window_started_at)
        values (${account.organizationId}, ${account.id}, 1, now())
        on conflict (organization_id, user_id) do update set
          failed_count = case when ${inWindow} then account_lockouts.failed_count + 1 else 1 end,
          window_started_at = case when ${inWindow} then account_lockouts.window_started_at else now() end
        where account_lockouts.locked_until is null or account_lockouts.locked_until <= now()
        returning failed_count`,
  );
  if (!row || Number(row.failed_count) < policy.threshold) return undefined;
  const [locked] = await db
    .update(accountLockouts)
    .set({
      failedCount: 0,
      windowStartedAt: null,
      lockedUntil: sql`now() + make_interval(secs => ${policy.durationSeconds})`,
    })
    .where(and(eq(accountLockouts.organizationId, account.organizationId), eq(accountLockouts.userId, account.id)))
    .returning({ lockedUntil: accountLockouts.lockedUntil });
  return locked?.lockedUntil ?? undefined;
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

/** Whether failed logins have locked the account right now, on the database's clock (as login reads it). */
export async function isAccountLocked(db: DbOrTx, account: AccountRef): Promise<boolean> {
  const [row] = await db
    .select({ locked: sql<boolean>`${accountLockouts.lockedUntil} > now()` })
    .from(accountLockouts)
    .where(and(eq(accountLockouts.organizationId, account.organizationId), eq(accountLockouts.userId, account.id)));
  return row?.locked === true;
}
