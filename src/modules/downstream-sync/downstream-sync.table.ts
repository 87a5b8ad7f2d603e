import { sql } from 'drizzle-orm';
import { boolean, index, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { integrationIdColumn } from '../integrations/integrations.table.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

/**
 * What a downstream system holds of each user, as far as Gatehouse last told it (seed 000's
 * `is_provisioned_to_debt_collection`, per downstream). A user is sent again when its row changed
 * since (`updated_at` differs from `synced_version`) or the last attempt failed.
 */
export const userSyncStates = pgTable(
  'user_sync_states',
  {
    organizationId: organizationIdColumn(),
    integrationId: integrationIdColumn(),
    userId: userIdColumn(),
    /** The user's `updated_at` the downstream last accepted; null before the first success. */
    syncedVersion: timestamp('synced_version', { withTimezone: true }),
    /** Whether the downstream holds the user as active: an inactive user is only sent to deactivate it there. */
    syncedActive: boolean('synced_active').notNull().default(false),
    syncedAt: timestamp('synced_at', { withTimezone: true }),
    attemptedAt: timestamp('attempted_at', { withTimezone: true }).notNull(),
    /** The downstream's refusal of the last attempt; null when it succeeded. */
    lastError: text('last_error'),
  },
  (t) => [
    // The organization leads the key, as on every organization-owned table (distribution by organization).
    primaryKey({ columns: [t.organizationId, t.integrationId, t.userId] }),
    index('user_sync_states_failed_idx').on(t.integrationId, t.attemptedAt).where(sql`last_error is not null`),
  ],
);

export type UserSyncState = typeof userSyncStates.$inferSelect;

/**
 * The sync running for an integration, if any: the scheduled job, the admin API and the CLI may
 * start one at the same moment (on several nodes), and two runs would send the same users twice.
 * A lease on the database clock that the holder renews with every batch, so a run that dies blocks
 * the next one for a few minutes at most.
 */
export const downstreamSyncLeases = pgTable(
  'downstream_sync_leases',
  {
    organizationId: organizationIdColumn(),
    integrationId: integrationIdColumn(),
    /** The running sync's own id: only it renews or gives back the lease. */
    holder: uuid('holder').notNull(),
    leaseUntil: timestamp('lease_until', { withTimezone: true }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.integrationId] })],
);
