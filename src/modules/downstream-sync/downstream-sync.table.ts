import { sql } from 'drizzle-orm';
import { boolean, index, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { integrationIdColumn } from '../integrations/integrations.table.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';

/**
 * What a downstream system holds of each user, as far as Gatehouse last told it (seed 000's
 * `is_provisioned_to_debt_collection`, per downstream). A user is sent again when its row changed
 * since (`updated_at` differs from `synced_version`) or the last attempt failed.
 *
 * Keyed by the keycloak_id, as the downstream is, not by the user: the row is the downstream's
 * record of that identity, and it outlives the user it was sent for. A user deleted here, or whose
 * keycloak_id changed or was taken away, leaves a row no user holds any more; while it says the
 * downstream holds the identity as active, the next sync deactivates it there and then drops the
 * row. A foreign key to the user would cascade that record away with the deletion, so `user_id` is
 * only the user it was last sent for.
 */
export const userSyncStates = pgTable(
  'user_sync_states',
  {
    organizationId: organizationIdColumn(),
    integrationId: integrationIdColumn(),
    /** Seed 000's `keycloak_id` the user was sent under (`users.external_id` then). */
    keycloakId: text('keycloak_id').notNull(),
    /** The user it was last sent for; no foreign key: the row stays after the user's deletion (above). */
    userId: uuid('user_id').notNull(),
    /** The user's `updated_at` the downstream last accepted; null before the first success. */
    syncedVersion: timestamp('synced_version', { withTimezone: true }),
    /** Whether the downstream holds the identity as active: an inactive one is only sent to deactivate it there. */
    syncedActive: boolean('synced_active').notNull().default(false),
    syncedAt: timestamp('synced_at', { withTimezone: true }),
    attemptedAt: timestamp('attempted_at', { withTimezone: true }).notNull(),
    /** The downstream's refusal of the last attempt; null when it succeeded. */
    lastError: text('last_error'),
  },
  (t) => [
    // The organization leads the key, as on every organization-owned table (distribution by organization).
    primaryKey({ columns: [t.organizationId, t.integrationId, t.keycloakId] }),
    index('user_sync_states_failed_idx').on(t.integrationId, t.attemptedAt).where(sql`last_error is not null`),
  ],
);

export type UserSyncState = typeof userSyncStates.$inferSelect;

/**
 * The sync running for an integration, if any: the scheduled job, the admin API and the CLI may
 * start one at the same moment (on several nodes), and two runs would send the same users twice.
 * A lease on the database clock that the holder renews before its calls once 30 seconds have
 * passed, so a run that dies blocks the next one for a few minutes at most.
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
