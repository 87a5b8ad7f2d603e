import { jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { createdAt } from '../../platform/db/columns.js';

/**
 * JWT signing keys. The private half is sealed under MASTER_KEY; a retired key keeps publishing its
 * public half until `publish_until`, after which no token it signed can still be valid.
 */
export const signingKeys = pgTable('signing_keys', {
  kid: text('kid').primaryKey(),
  algorithm: text('algorithm').notNull(),
  publicJwk: jsonb('public_jwk').$type<Record<string, unknown>>().notNull(),
  privateKeySealed: text('private_key_sealed').notNull(),
  createdAt: createdAt(),
  retiredAt: timestamp('retired_at', { withTimezone: true }),
  publishUntil: timestamp('publish_until', { withTimezone: true }),
});

export type SigningKey = typeof signingKeys.$inferSelect;
