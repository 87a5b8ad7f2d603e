import { ne } from 'drizzle-orm';
import type { Config } from '../../config.js';
import type { DbOrTx } from '../../platform/db/client.js';
import { deleteOlderThan, type RetentionOptions } from '../../platform/db/retention.js';
import { scheduleRecurringJob } from '../../platform/jobs/recurring.js';
import { registerJobHandler } from '../../platform/jobs/registry.js';
import { mailOutbox } from '../../platform/mail/outbox.table.js';

/**
 * Mail leaves the outbox after `MAIL_OUTBOX_RETENTION_DAYS`: stored bodies hold reset and
 * invitation links, and the table would otherwise grow with every mail ever sent. Mail still
 * queued for delivery stays whatever its age. Like the other recurring jobs, this one enqueues its
 * next run when it starts, and every app start enqueues one.
 */
export const OUTBOX_RETENTION_JOB = 'mail.outbox-retention';
const PERIOD_SECONDS = 6 * 3_600;

export async function scheduleOutboxRetention(
  db: DbOrTx,
  config: Pick<Config, 'mailOutboxRetentionDays'>,
  now = Date.now(),
): Promise<void> {
  if (config.mailOutboxRetentionDays <= 0) return;
  await scheduleRecurringJob(db, OUTBOX_RETENTION_JOB, PERIOD_SECONDS, now);
}

/** Deletes delivered, stored and failed mail older than `days`, in bounded chunks; queued mail stays. */
export async function pruneOutbox(
  db: DbOrTx,
  days: number,
  options: RetentionOptions = {},
): Promise<{ deleted: number }> {
  return {
    deleted: await deleteOlderThan(db, mailOutbox, days, { ...options, where: ne(mailOutbox.status, 'queued') }),
  };
}

registerJobHandler(
  OUTBOX_RETENTION_JOB,
  async (_job, ctx) => {
    await scheduleOutboxRetention(ctx.db, ctx.config);
    const pruned = await pruneOutbox(ctx.db, ctx.config.mailOutboxRetentionDays);
    if (pruned.deleted > 0) ctx.log.info(pruned, 'old mail deleted from the outbox');
  },
  { policy: 'stately', retryLimit: 1, retryDelay: 60, expireInSeconds: 900 },
);
