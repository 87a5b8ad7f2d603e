import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { JOB_SCHEMA } from './pgboss.js';
import { enqueueJob } from './queue.js';

/**
 * Makes sure one run of a recurring job (a `stately` queue, keyed by the job's name) is waiting
 * and starts within `periodSeconds`. A run already waiting keeps its place unless it is due later
 * than that: it was queued under a longer period, and left alone a shortened period would apply
 * only after it fired. Its start is moved forward in place rather than the job replaced, so one
 * run is waiting at every moment and nodes starting together cannot leave two or none.
 */
export async function scheduleRecurringJob(
  db: DbOrTx,
  name: string,
  periodSeconds: number,
  now = Date.now(),
): Promise<void> {
  const next = new Date(now + periodSeconds * 1000);
  await db.execute(sql`
    update ${sql.identifier(JOB_SCHEMA)}.job set start_after = ${next.toISOString()}::timestamptz
    where name = ${name} and singleton_key = ${name} and state = 'created'
      and start_after > ${next.toISOString()}::timestamptz`);
  await enqueueJob(db, name, {}, { singletonKey: name, startAfter: next });
}
