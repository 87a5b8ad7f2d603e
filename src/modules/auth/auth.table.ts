import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn } from '../../platform/db/columns.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

/** One login: every refresh token of the session belongs to it, and revoking it ends them all. */
export const sessions = pgTable(
  'sessions',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    userId: userIdColumn(),
    ipAddress: text('ip_address'),
    userAgent: text('user_agent'),
    deviceType: text('device_type'),
    browser: text('browser'),
    os: text('os'),
    /** SHA-256 of the browser cookie of a cookie session (POST /api/login/); null for token sessions. */
    cookieTokenHash: text('cookie_token_hash'),
    createdAt: createdAt(),
    lastActivityAt: timestamp('last_activity_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revokedReason: text('revoked_reason'),
  },
  (t) => [
    index('sessions_org_user_idx').on(t.organizationId, t.userId, t.id),
    uniqueIndex('sessions_cookie_token_hash_key').on(t.cookieTokenHash),
  ],
);

/**
 * Opaque refresh tokens, stored as SHA-256 hashes. A token is used once: its successor is issued
 * in the same transaction, and presenting a used token again revokes the whole session.
 */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    sessionId: uuid('session_id')
      .notNull()
      .references(() => sessions.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('refresh_tokens_hash_key').on(t.tokenHash), index('refresh_tokens_session_idx').on(t.sessionId)],
);

export type Session = typeof sessions.$inferSelect;
