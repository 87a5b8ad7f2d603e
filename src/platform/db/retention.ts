import { and, lt, type SQL, sql } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import type { DbOrTx } from './client.js';
import { firstIdAt } from './ids.js';

export interface RetentionOptions {
  now?: Date;
  chunkSize?: number;
  /** Statements one call runs at most; what is left goes on the next call. */
  maxChunks?: number;
}

/**
 * Deletes a table's rows made more than `days` ago (and matching `where`), for tables keyed by a
 * UUIDv7 `id`: "older than" is an id range on the primary key, so no index of its own. A bounded
 * chunk per statement (on PGlite each statement holds the only connection), until none is left or
 * `maxChunks` were done. Returns how many rows went; `days` 0 or less keeps everything.
 */
export async function deleteOlderThan(
  db: DbOrTx,
  table: PgTable & { id: PgColumn },
  days: number,
  options: RetentionOptions & { where?: SQL } = {},
): Promise<number> {
  if (days <= 0) return 0;
  const boundary = firstIdAt((options.now ?? new Date()).getTime() - days * 86_400_000);
  const expired = and(lt(table.id, boundary), options.where);
  const chunk = options.chunkSize ?? 1000;
  let deleted = 0;
  for (let i = 0; i < (options.maxChunks ?? 50); i++) {
    const gone = await db
      .delete(table)
      .where(sql`${table.id} in (select ${table.id} from ${table} where ${expired} limit ${chunk})`)
      .returning({ id: table.id });
    deleted += gone.length;
    if (gone.length < chunk) break;
  }
  return deleted;
}
