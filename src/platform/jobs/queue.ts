import type { DbOrTx } from '../db/client.js';
import { bossDbOver, sender } from './pgboss.js';
import { jobDefinition } from './registry.js';

export interface EnqueueOptions {
  /** Seconds from now, or a moment, before the job may run. */
  startAfter?: number | Date;
  /** Higher runs first. */
  priority?: number;
  /** With `singletonSeconds` (or a singleton/stately queue): at most one such job per key. */
  singletonKey?: string;
  singletonSeconds?: number;
  /** Overrides the queue's retry limit for this job. */
  retryLimit?: number;
}

/**
 * Enqueues a job on the connection of `dbOrTx`: given a transaction, the job exists only if that
 * transaction commits. Job data is stored as JSON in the job table and kept for days, so it holds
 * ids, never secrets or mail bodies. Returns the job id, or null when a singleton rule dropped it.
 */
export async function enqueueJob<T>(
  dbOrTx: DbOrTx,
  name: string,
  data: T,
  options: EnqueueOptions = {},
): Promise<string | null> {
  if (!jobDefinition(name)) throw new Error(`job "${name}" has no registered handler (registerJobHandler)`);
  const id = await sender.send(name, JSON.stringify(data ?? null) as unknown as object, {
    ...options,
    db: bossDbOver(dbOrTx),
  });
  if (id === null && options.singletonKey === undefined) {
    // Without a singleton rule, pg-boss returns null only when the queue row is missing.
    throw new Error(`job queue "${name}" does not exist; installJobs(database) creates it at start`);
  }
  return id;
}
