import { type SQL, sql } from 'drizzle-orm';
import { customType, type PgColumn, timestamp, uuid } from 'drizzle-orm/pg-core';
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

/**
 * A timestamptz read in full for any year. Drizzle's own timestamp hands the driver's text
 * ("0049-06-01 12:00:00+00") to `new Date`, whose non-ISO reading takes a year below 100 as a
 * two-digit year (0049 → 2049, 0050 → 1950); an imported join date can be that old (year 1 is Go's
 * zero time). The text is made ISO 8601 first, which `new Date` reads as written.
 */
export const instant = customType<{ data: Date; driverData: string | Date }>({
  dataType: () => 'timestamp with time zone',
  toDriver: (value) => value.toISOString(),
  fromDriver: (value) => {
    if (typeof value !== 'string') return value;
    // "YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]" → "YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM".
    const iso = value.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00');
    return new Date(iso);
  },
});

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
