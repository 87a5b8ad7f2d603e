import type { DbOrTx } from '../../platform/db/client.js';
import { deleteOlderThan, type RetentionOptions } from '../../platform/db/retention.js';
import { integrationHealthChecks, integrationLogs } from './integrations.table.js';

/** Deletes request logs and health checks older than `days`, in bounded chunks. */
export async function pruneIntegrationHistory(
  db: DbOrTx,
  days: number,
  options: RetentionOptions = {},
): Promise<{ deleted: number }> {
  let deleted = 0;
  for (const table of [integrationLogs, integrationHealthChecks])
    deleted += await deleteOlderThan(db, table, days, options);
  return { deleted };
}
