import { integer, pgTable, primaryKey, timestamp } from 'drizzle-orm/pg-core';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

/**
 * Failed-login counters and temporary locks, one row per account that ever failed a login. Kept
 * apart from `users.status`: a lock lifts by itself when `locked_until` passes, with nothing to
 * reset, and an administrator's `locked` status (indefinite) stays a separate decision.
 */
export const accountLockouts = pgTable(
  'account_lockouts',
  {
    organizationId: organizationIdColumn(),
    userId: userIdColumn(),
    /** Failures since `window_started_at`; back to 0 when the account locks or a login succeeds. */
    failedCount: integer('failed_count').notNull().default(0),
    windowStartedAt: timestamp('window_started_at', { withTimezone: true }),
    lockedUntil: timestamp('locked_until', { withTimezone: true }),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.userId] })],
);
