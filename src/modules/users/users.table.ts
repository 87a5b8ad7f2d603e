import { sql } from 'drizzle-orm';
import { boolean, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { idColumn, instant, updatedAt } from '../../platform/db/columns.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';

export const USER_STATUSES = ['active', 'suspended', 'locked', 'deactivated'] as const;
export type UserStatus = (typeof USER_STATUSES)[number];

export const users = pgTable(
  'users',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    /** Seed 000's `keycloak_id`: an identity provider's subject, unique across the installation. */
    externalId: text('external_id'),
    /** A SCIM client's id for the user (RFC 7643 `externalId`), unique within the organization. */
    scimExternalId: text('scim_external_id'),
    username: text('username'),
    email: text('email').notNull(),
    firstName: text('first_name').notNull().default(''),
    lastName: text('last_name').notNull().default(''),
    userType: text('user_type'),
    attributes: jsonb('attributes').$type<Record<string, unknown>>().notNull().default({}),
    status: text('status').$type<UserStatus>().notNull().default('active'),
    isStaff: boolean('is_staff').notNull().default(false),
    isSuperuser: boolean('is_superuser').notNull().default(false),
    passwordHash: text('password_hash'),
    /** Set when the user follows the link mailed at registration. */
    emailVerified: boolean('email_verified').notNull().default(false),
    lastLogin: timestamp('last_login', { withTimezone: true }),
    // Imported join dates may be of any year: read in full (see `instant`).
    dateJoined: instant('date_joined').notNull().default(sql`now()`),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('users_external_id_key').on(t.externalId),
    uniqueIndex('users_org_scim_external_id_key').on(t.organizationId, t.scimExternalId),
    // Case-insensitive uniqueness within an organization; the same address may exist in another one.
    // In byte order ("C"), so the same index serves the organization's email order and prefix search:
    // equality under a deterministic collation is byte equality, so what is unique does not change.
    // Email look-ups compare `lower(email) collate "C"` to use it.
    uniqueIndex('users_org_email_key').on(t.organizationId, sql`lower(${t.email}) collate "C"`),
    uniqueIndex('users_org_username_key').on(t.organizationId, sql`lower(${t.username})`),
    // Keyset pages, newest or oldest first, by id (UUIDv7 = creation order), within an organization or across all.
    index('users_org_id_idx').on(t.organizationId, t.id),
    // Only the users who are not active: nearly every row is active, and a page of active users reads
    // the id order above with a filter that rarely skips a row. A new or updated active user enters
    // two indexes fewer.
    index('users_org_status_idx').on(t.organizationId, t.status, t.id).where(sql`status <> 'active'`),
    index('users_status_idx').on(t.status, t.id).where(sql`status <> 'active'`),
    // Email/username order and prefix search. Byte order ("C") lets one index serve both ORDER BY and LIKE 'x%'.
    index('users_email_lower_idx').on(sql`lower(${t.email}) collate "C"`, t.id),
    index('users_username_lower_idx').on(sql`lower(${t.username}) collate "C"`, t.id),
    // Name prefixes: with the two above, a rare `search` term is a bitmap OR of four index ranges.
    index('users_first_name_lower_idx').on(sql`lower(${t.firstName}) collate "C"`),
    index('users_last_name_lower_idx').on(sql`lower(${t.lastName}) collate "C"`),
  ],
);

export type User = typeof users.$inferSelect;

/** A column naming the user a row belongs to; the row goes when the user is deleted. */
export const userIdColumn = () =>
  uuid('user_id')
    .notNull()
    .references(() => users.id, { onDelete: 'cascade' });
