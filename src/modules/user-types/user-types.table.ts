import { jsonb, pgTable, text, unique, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn, updatedAt } from '../../platform/db/columns.js';
import { organizations } from '../organizations/organizations.table.js';

/**
 * Kinds of users (seed 001: students, staff, admin HODs). A type with no organization is global and
 * applies to every organization; an organization's own type with the same code or plural wins there.
 * `schema` is a JSON Schema for the type's profile data (users.attributes.profile).
 */
export const userTypes = pgTable(
  'user_types',
  {
    organizationId: uuid('organization_id').references(() => organizations.id, { onDelete: 'cascade' }),
    id: idColumn(),
    code: text('code').notNull(),
    plural: text('plural').notNull(),
    label: text('label').notNull(),
    schema: jsonb('schema').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // NULLS NOT DISTINCT: two global types may not share a code or plural either.
    unique('user_types_org_code_key').on(t.organizationId, t.code).nullsNotDistinct(),
    unique('user_types_org_plural_key').on(t.organizationId, t.plural).nullsNotDistinct(),
  ],
);

export type UserType = typeof userTypes.$inferSelect;
