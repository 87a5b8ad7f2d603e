import { lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { firstIdAt } from '../../platform/db/ids.js';
import { integrationHealthChecks, integrationLogs } from './integrations.table.js';

/**
 * Deletes request logs and health checks older than `days`, a bounded chunk per statement (on
 * PGlite each statement holds the only connection), until none is left or `maxChunks` were done.
 */
export async function pruneIntegrationHistory(
  db: DbOrTx,
  days: number,
  options: { now?: Date; chunkSize?: number; maxChunks?: number } = {},
): Promise<{ deleted: number }> {
  if (days <= 0) return { deleted: 0 };
  const boundary = firstIdAt((options.now ?? new Date()).getTime() - days * 86_400_000);
  const chunk = options.chunkSize ?? 1000;
  let deleted = 0;
  for (const table of [integrationLogs, integrationHealthChecks]) {
    for (let i = 0; i < (options.maxChunks ?? 50); i++) {
      const gone = await db
        .delete(table)
        .where(sql`${table.id} in (select ${table.id} from ${table} where ${lt(table.id, boundary)} limit ${chunk})`)
        .returning({ id: table.id });
      deleted += gone.length;
      if (gone.length < chunk) break;
    }
  }
  return { deleted };
}
