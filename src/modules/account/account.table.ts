import { index, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { createdAt, idColumn } from '../../platform/db/columns.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

export const ACCOUNT_TOKEN_PURPOSES = ['verify_email', 'password_reset', 'invite'] as const;
export type AccountTokenPurpose = (typeof ACCOUNT_TOKEN_PURPOSES)[number];

/**
 * Single-use tokens mailed to a user (email verification, password reset, invitation). Only the
 * SHA-256 of the token is stored, so a database leak yields no working link.
 */
export const accountTokens = pgTable(
  'account_tokens',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    userId: userIdColumn(),
    purpose: text('purpose').$type<AccountTokenPurpose>().notNull(),
    tokenHash: text('token_hash').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('account_tokens_hash_key').on(t.tokenHash),
    index('account_tokens_org_user_idx').on(t.organizationId, t.userId, t.purpose),
  ],
);

export type AccountToken = typeof accountTokens.$inferSelect;
