import { boolean, jsonb, pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn, updatedAt } from '../../platform/db/columns.js';

/** Tenants. `code` is what clients name an organization by (seed 000's `engagemx_client_id`). */
export const organizations = pgTable(
  'organizations',
  {
    id: idColumn(),
    code: text('code').notNull(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
    isActive: boolean('is_active').notNull().default(true),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('organizations_code_key').on(t.code)],
);

export type Organization = typeof organizations.$inferSelect;

/**
 * The first column of every organization-owned table: it keeps tenants apart in every query and is
 * the distribution key if the schema is ever sharded by organization. Deleting an organization
 * deletes what it owns.
 */
export const organizationIdColumn = () =>
  uuid('organization_id')
    .notNull()
    .references(() => organizations.id, { onDelete: 'cascade' });
