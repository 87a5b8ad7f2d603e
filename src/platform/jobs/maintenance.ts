import type PgBoss from 'pg-boss';
import { type BossDb, JOB_SCHEMA, sender } from './pgboss.js';
import type { JobLog } from './registry.js';

export interface MaintenanceOptions {
  intervalSeconds?: number;
  /** Completed and cancelled jobs move to the archive after this long (pg-boss's default: 12 h). */
  archiveCompletedAfterSeconds?: number;
  /** Failed jobs move to the archive after this long. */
  archiveFailedAfterSeconds?: number;
  /** Archived jobs are deleted after this long (pg-boss's default: 7 days). */
  deleteAfterSeconds?: number;
  /** Rows per statement: each statement holds PGlite's only connection for its duration. */
  chunkSize?: number;
  /** Time one pass may take; the rest waits for the next pass. */
  budgetMs?: number;
}

const DEFAULTS: Required<MaintenanceOptions> = {
  intervalSeconds: 120,
  archiveCompletedAfterSeconds: 12 * 3600,
  archiveFailedAfterSeconds: 12 * 3600,
  deleteAfterSeconds: 7 * 86_400,
  chunkSize: 500,
  budgetMs: 2_000,
};

const S = JOB_SCHEMA;
const JOB_COLUMNS =
  'id, name, priority, data, state, retry_limit, retry_count, retry_delay, retry_backoff, start_after, started_on, singleton_key, singleton_on, expire_in, created_on, completed_on, keep_until, dead_letter, policy, output';

// The same rules as pg-boss 10's archive/drop plans (schema version 24), cut into bounded chunks.
const SELECT_EXPIRED = `
  SELECT name, id FROM ${S}.job
  WHERE state = 'active' AND (started_on + expire_in) < now()
  LIMIT $1`;

const ARCHIVE_CHUNK = `
  WITH victims AS (
    SELECT name, id FROM ${S}.job
    WHERE (state <> 'failed' AND completed_on < now() - $1::int * interval '1 second')
       OR (state = 'failed' AND completed_on < now() - $2::int * interval '1 second')
       OR (state < 'active' AND keep_until < now())
    LIMIT $3
  ), archived_rows AS (
    DELETE FROM ${S}.job j USING victims v
    WHERE j.name = v.name AND j.id = v.id
    RETURNING j.*
  ), copied AS (
    INSERT INTO ${S}.archive (${JOB_COLUMNS})
    SELECT ${JOB_COLUMNS} FROM archived_rows
    ON CONFLICT DO NOTHING
  )
  SELECT count(*)::int AS n FROM archived_rows`;

const DROP_CHUNK = `
  WITH victims AS (
    SELECT name, id FROM ${S}.archive
    WHERE archived_on < now() - $1::int * interval '1 second'
    LIMIT $2
  ), dropped AS (
    DELETE FROM ${S}.archive a USING victims v
    WHERE a.name = v.name AND a.id = v.id
    RETURNING 1
  )
  SELECT count(*)::int AS n FROM dropped`;

const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve));

async function countOf(db: BossDb, text: string, values: unknown[]): Promise<number> {
  const result = await db.executeSql(text, values);
  return (result?.rows[0] as { n?: number } | undefined)?.n ?? 0;
}

/**
 * One maintenance pass in chunks: fails attempts that outlived their expiry (a crashed worker's),
 * archives finished jobs, deletes old archive rows. Between chunks other queries get the
 * connection. Stops early when `shouldStop` says so or the time budget is spent.
 */
export async function maintainJobs(
  db: BossDb,
  options: MaintenanceOptions = {},
  shouldStop: () => boolean = () => false,
): Promise<{ expired: number; archived: number; dropped: number }> {
  const o = { ...DEFAULTS, ...options };
  const deadline = Date.now() + o.budgetMs;
  const more = (n: number) => n === o.chunkSize && !shouldStop() && Date.now() < deadline;
  const counts = { expired: 0, archived: 0, dropped: 0 };

  for (let n = o.chunkSize; more(n); ) {
    const { rows } = await db.executeSql(SELECT_EXPIRED, [o.chunkSize]);
    const expired = rows as { name: string; id: string }[];
    n = expired.length;
    const byQueue = new Map<string, string[]>();
    for (const { name, id } of expired) byQueue.set(name, [...(byQueue.get(name) ?? []), id]);
    for (const [name, ids] of byQueue) {
      // pg-boss's own fail path, so retries and dead letters behave as after any failed attempt.
      // pg-boss's types omit the (ids, data, options) form its code accepts.
      const fail = sender.fail as (
        name: string,
        ids: string[],
        data: object,
        options: PgBoss.ConnectionOptions,
      ) => Promise<void>;
      await fail.call(sender, name, ids, { message: 'job expired while active' }, { db: db as PgBoss.Db });
    }
    counts.expired += n;
    await yieldToOthers();
  }
  for (let n = o.chunkSize; more(n); ) {
    n = await countOf(db, ARCHIVE_CHUNK, [o.archiveCompletedAfterSeconds, o.archiveFailedAfterSeconds, o.chunkSize]);
    counts.archived += n;
    await yieldToOthers();
  }
  for (let n = o.chunkSize; more(n); ) {
    n = await countOf(db, DROP_CHUNK, [o.deleteAfterSeconds, o.chunkSize]);
    counts.dropped += n;
    await yieldToOthers();
  }
  return counts;
}

/** Runs `maintainJobs` every interval until stopped; a pass never overlaps the previous one. */
export function startChunkedMaintenance(
  db: BossDb,
  log: JobLog,
  options: MaintenanceOptions = {},
): { stop(): Promise<void> } {
  let stopped = false;
  let running: Promise<unknown> | undefined;
  const intervalMs = (options.intervalSeconds ?? DEFAULTS.intervalSeconds) * 1000;
  const timer = setInterval(() => {
    if (running) return;
    running = maintainJobs(db, options, () => stopped)
      .then((counts) => {
        if (counts.expired + counts.archived + counts.dropped > 0) log.debug(counts, 'job maintenance');
      })
      .catch((err: unknown) =>
        log.warn({ error: err instanceof Error ? err.message : String(err) }, 'job maintenance failed'),
      )
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
