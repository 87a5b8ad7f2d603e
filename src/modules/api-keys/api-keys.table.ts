import { sql } from 'drizzle-orm';
import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn } from '../../platform/db/columns.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';

/**
 * Credentials for machines (provisioning, SCIM, authorization checks). The key itself is never
 * stored: only its SHA-256 hash, to look it up, and a short visible prefix, to recognise it.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    /** Null for a platform-wide key, which acts across organizations. */
    organizationId: uuid('organization_id').references(() => organizations.id, { onDelete: 'cascade' }),
    id: idColumn(),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    keyHash: text('key_hash').notNull(),
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('api_keys_key_hash_key').on(t.keyHash),
    // Keyset pages, newest first, within an organization or across all.
    index('api_keys_org_id_idx').on(t.organizationId, t.id),
  ],
);

export type ApiKey = typeof apiKeys.$inferSelect;
