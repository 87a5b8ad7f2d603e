import type { DbOrTx } from '../../platform/db/client.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { registerJobHandler } from '../../platform/jobs/registry.js';
import { dropExpiredActivityPartitions, ensureActivityPartitions } from './activity-partitions.js';
import { aggregatePendingHours } from './activity-stats.js';
import { sealAuditEvents } from './audit-seal.js';

/**
 * Recurring activity work. pg-boss cron is off in this product, so each job enqueues its next run
 * when it starts (a `stately` queue keeps at most one waiting per job, however many nodes start
 * it), and every app start enqueues one too. A run that is late simply does more: the aggregation
 * backfills missed hours, the sealer covers everything committed since the last seal.
 */
export const ACTIVITY_JOBS = {
  aggregate: {
    name: 'activity.aggregate',
    nextAfterMs: (now: number) => (Math.floor(now / 3_600_000) + 1) * 3_600_000 + 30_000,
  },
  seal: { name: 'audit.seal', nextAfterMs: (now: number) => now + 5 * 60_000 },
  partitions: { name: 'activity.partitions', nextAfterMs: (now: number) => now + 6 * 3_600_000 },
} as const;

type ActivityJob = (typeof ACTIVITY_JOBS)[keyof typeof ACTIVITY_JOBS];

async function scheduleNext(db: DbOrTx, job: ActivityJob, now = Date.now()): Promise<void> {
  await enqueueJob(db, job.name, {}, { singletonKey: job.name, startAfter: new Date(job.nextAfterMs(now)) });
}

/** Makes sure each recurring job has a run waiting; called at every app start. */
export async function scheduleActivityJobs(db: DbOrTx): Promise<void> {
  for (const job of Object.values(ACTIVITY_JOBS)) await scheduleNext(db, job);
}

const stately = { policy: 'stately' as const, retryLimit: 2, retryDelay: 60 };

registerJobHandler(
  ACTIVITY_JOBS.aggregate.name,
  async (_job, ctx) => {
    await scheduleNext(ctx.db, ACTIVITY_JOBS.aggregate);
    const done = await aggregatePendingHours(ctx.db, new Date(), () => ctx.signal.aborted);
    if (done.hours > 0) ctx.log.info(done, 'activity statistics aggregated');
  },
  { ...stately, expireInSeconds: 3600 },
);

registerJobHandler(
  ACTIVITY_JOBS.seal.name,
  async (_job, ctx) => {
    await scheduleNext(ctx.db, ACTIVITY_JOBS.seal);
    const seal = await sealAuditEvents(ctx.db);
    if (seal && seal.rowCount > 0) ctx.log.info({ seal: seal.id, rows: seal.rowCount }, 'audit events sealed');
  },
  { ...stately, expireInSeconds: 1800 },
);

registerJobHandler(
  ACTIVITY_JOBS.partitions.name,
  async (_job, ctx) => {
    await scheduleNext(ctx.db, ACTIVITY_JOBS.partitions);
    const created = await ensureActivityPartitions(ctx.db);
    const dropped = await dropExpiredActivityPartitions(ctx.db, ctx.config.activityRetentionMonths);
    if (created.length + dropped.length > 0) ctx.log.info({ created, dropped }, 'activity partitions maintained');
  },
  { ...stately, expireInSeconds: 1800 },
);
