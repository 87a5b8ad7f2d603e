import { bigint, index, integer, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { createdAt, idColumn, updatedAt } from '../../platform/db/columns.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

/**
 * A user's TOTP authenticator (RFC 6238). The secret is sealed under MASTER_KEY; the factor is
 * pending until a first code confirms it. `lastUsedStep` refuses a code seen before (replay).
 */
export const mfaTotp = pgTable(
  'mfa_totp',
  {
    organizationId: organizationIdColumn(),
    userId: userIdColumn(),
    secretSealed: text('secret_sealed').notNull(),
    confirmedAt: timestamp('confirmed_at', { withTimezone: true }),
    lastUsedStep: bigint('last_used_step', { mode: 'number' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.userId] }), uniqueIndex('mfa_totp_user_key').on(t.userId)],
);

/** Single-use recovery codes, stored as keyed hashes (see `convertLegacyRecoveryCodes`). */
export const mfaRecoveryCodes = pgTable(
  'mfa_recovery_codes',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    userId: userIdColumn(),
    codeHash: text('code_hash').notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [index('mfa_recovery_codes_user_idx').on(t.userId)],
);

/** The second step of a login: a short-lived, single-use token (stored hashed) issued after the password matched. */
export const mfaChallenges = pgTable(
  'mfa_challenges',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    userId: userIdColumn(),
    tokenHash: text('token_hash').notNull(),
    /** `login`: a second factor is due; `enrol`: the organization requires one the account lacks. */
    purpose: text('purpose').$type<'login' | 'enrol'>().notNull().default('login'),
    failedAttempts: integer('failed_attempts').notNull().default(0),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('mfa_challenges_token_hash_key').on(t.tokenHash)],
);
