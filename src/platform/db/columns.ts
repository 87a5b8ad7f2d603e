import { type SQL, sql } from 'drizzle-orm';
import { type PgColumn, timestamp, uuid } from 'drizzle-orm/pg-core';
import { newId } from './ids.js';

/** Time-ordered primary key: inserts append to the index and keyset cursors follow creation order. */
export const idColumn = () =>
  uuid('id')
    .primaryKey()
    .$defaultFn(() => newId());

export const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
export const updatedAt = () =>
  timestamp('updated_at', { withTimezone: true })
    .notNull()
    .defaultNow()
    .$onUpdateFn(() => new Date());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a path value can be an id: anything else is simply not found, never a database error. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/**
 * `column = any($1::uuid[])`: the whole list as one array parameter. Drizzle's `inArray` sends one
 * parameter per id, and a 500-id look-up then cost PostgreSQL eight times as much (parsing and
 * planning an IN list of 500 parameters).
 */
export function anyUuid(column: PgColumn | SQL, ids: string[]): SQL {
  return sql`${column} = any(${sql.param(ids)}::uuid[])`;
}
