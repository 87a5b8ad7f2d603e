import type PgBoss from 'pg-boss';
import type { Config } from '../../config.js';
import type { Database } from '../db/client.js';
import { type MaintenanceOptions, startChunkedMaintenance } from './maintenance.js';
import { bossDbFor, newBoss, sender, TrackedBossDb } from './pgboss.js';
import { type JobContext, type JobDefinition, type JobLog, jobDefinitions } from './registry.js';

export interface StartJobsOptions {
  config: Config;
  log: JobLog;
  /** How often an idle queue is polled (pg-boss's minimum is 0.5 s). */
  pollingIntervalSeconds?: number;
  /** How long `stop()` lets running attempts finish before failing them back to the queue. */
  stopTimeoutSeconds?: number;
  /** PGlite only: the chunked maintenance that replaces pg-boss's (see maintenance.ts). */
  maintenance?: MaintenanceOptions;
}

export interface JobWorker {
  /** The queues this worker runs. */
  readonly queues: string[];
  /**
   * Stops fetching, lets running attempts finish for up to `stopTimeoutSeconds`, fails whatever
   * is still running back to its queue (it is retried later), then drains pg-boss's own writes.
   * The database can be closed once it resolves.
   */
  stop(): Promise<void>;
}

type BossJob = PgBoss.JobWithMetadata<unknown>;

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs one attempt through its handler with logging that names the job, never its data. */
async function runAttempt(definition: JobDefinition, job: BossJob, ctx: JobContext): Promise<void> {
  const started = performance.now();
  const attempt = { job: job.id, queue: job.name, attempt: job.retryCount + 1, of: job.retryLimit + 1 };
  try {
    await definition.handler(
      { id: job.id, name: job.name, data: job.data, retryCount: job.retryCount, retryLimit: job.retryLimit },
      ctx,
    );
    ctx.log.debug({ ...attempt, ms: Math.round(performance.now() - started) }, 'job completed');
  } catch (err) {
    const final = job.retryCount >= job.retryLimit;
    ctx.log.warn(
      { ...attempt, error: describeError(err) },
      final ? 'job failed on its last attempt' : 'job attempt failed; it will be retried',
    );
    throw err;
  }
}

/**
 * Starts pg-boss's workers for every registered handler on this database. On PostgreSQL pg-boss
 * also runs its own maintenance (one node at a time, under its lock); on PGlite that is replaced
 * by chunked maintenance so one large archive pass never holds the only connection.
 */
export async function startJobs(database: Database, options: StartJobsOptions): Promise<JobWorker> {
  const db = new TrackedBossDb(bossDbFor(database));
  const embedded = database.kind === 'pglite';
  const boss = newBoss(db, {
    supervise: !embedded,
    // State monitoring stays off (pg-boss's default): it counts the whole job table and nothing reads it.
    migrate: true,
  });
  boss.on('error', (err: unknown) => options.log.error({ error: describeError(err) }, 'job worker error'));

  const aborter = new AbortController();
  const ctx: JobContext = {
    db: database.db,
    database,
    config: options.config,
    log: options.log,
    signal: aborter.signal,
  };
  await boss.start();

  const definitions = jobDefinitions();
  const maintenance = embedded ? startChunkedMaintenance(db, options.log, options.maintenance) : undefined;
  try {
    for (const definition of definitions) {
      for (let i = 0; i < definition.options.concurrency; i++) {
        await boss.work<unknown>(
          definition.name,
          {
            batchSize: 1,
            includeMetadata: true,
            pollingIntervalSeconds: options.pollingIntervalSeconds ?? 2,
          },
          async (jobs: BossJob[]) => {
            for (const job of jobs) await runAttempt(definition, job, ctx);
          },
        );
      }
    }
  } catch (err) {
    await maintenance?.stop();
    await boss.stop({ graceful: false });
    await db.close();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    queues: definitions.map((d) => d.name),
    stop: () => {
      stopping ??= (async () => {
        aborter.abort();
        await maintenance?.stop();
        await boss.stop({ graceful: true, timeout: (options.stopTimeoutSeconds ?? 10) * 1000 });
        await db.close();
      })();
      return stopping;
    },
  };
}

export interface RunPendingJobsOptions {
  config: Config;
  log: JobLog;
  /** Queues to run; all registered ones by default. */
  names?: string[];
  /** Upper bound on attempts in one call. */
  limit?: number;
}

/**
 * Runs, in this call and without a worker, every attempt that is due now, then returns the counts.
 * For tests and one-shot CLI commands: deterministic, no timers. Outcomes are recorded exactly as
 * the worker records them (completed, or failed and scheduled for retry).
 */
export async function runPendingJobs(
  database: Database,
  options: RunPendingJobsOptions,
): Promise<{ completed: number; failed: number }> {
  const db = bossDbFor(database);
  const ctx: JobContext = {
    db: database.db,
    database,
    config: options.config,
    log: options.log,
    signal: new AbortController().signal,
  };
  const definitions = jobDefinitions().filter((d) => !options.names || options.names.includes(d.name));
  const limit = options.limit ?? 1000;
  const counts = { completed: 0, failed: 0 };
  for (const definition of definitions) {
    while (counts.completed + counts.failed < limit) {
      const [job] = await sender.fetch<unknown>(definition.name, {
        batchSize: 1,
        includeMetadata: true,
        db: db as PgBoss.Db,
      });
      if (!job) break;
      try {
        await runAttempt(definition, job, ctx);
        await sender.complete(definition.name, job.id, {}, { db: db as PgBoss.Db });
        counts.completed++;
      } catch (err) {
        await sender.fail(definition.name, job.id, { message: describeError(err) }, { db: db as PgBoss.Db });
        counts.failed++;
      }
    }
  }
  return counts;
}
