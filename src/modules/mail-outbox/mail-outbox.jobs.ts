import { and, lt, ne, sql } from 'drizzle-orm';
import type { Config } from '../../config.js';
import type { DbOrTx } from '../../platform/db/client.js';
import { firstIdAt } from '../../platform/db/ids.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { registerJobHandler } from '../../platform/jobs/registry.js';
import { mailOutbox } from '../../platform/mail/outbox.table.js';

/**
 * Mail leaves the outbox after `MAIL_OUTBOX_RETENTION_DAYS`: stored bodies hold reset and
 * invitation links, and the table would otherwise grow with every mail ever sent. Mail still
 * queued for delivery stays whatever its age. Like the other recurring jobs, this one enqueues its
 * next run when it starts, and every app start enqueues one.
 */
export const OUTBOX_RETENTION_JOB = 'mail.outbox-retention';
const PERIOD_MS = 6 * 3_600_000;

export async function scheduleOutboxRetention(
  db: DbOrTx,
  config: Pick<Config, 'mailOutboxRetentionDays'>,
  now = Date.now(),
): Promise<void> {
  if (config.mailOutboxRetentionDays <= 0) return;
  await enqueueJob(
    db,
    OUTBOX_RETENTION_JOB,
    {},
    { singletonKey: OUTBOX_RETENTION_JOB, startAfter: new Date(now + PERIOD_MS) },
  );
}

/**
 * Deletes delivered, stored and failed mail older than `days`, a bounded chunk per statement (on
 * PGlite each statement holds the only connection), until none is left or `maxChunks` were done.
 */
export async function pruneOutbox(
  db: DbOrTx,
  days: number,
  options: { now?: Date; chunkSize?: number; maxChunks?: number } = {},
): Promise<{ deleted: number }> {
  if (days <= 0) return { deleted: 0 };
  const boundary = firstIdAt((options.now ?? new Date()).getTime() - days * 86_400_000);
  const chunk = options.chunkSize ?? 1000;
  let deleted = 0;
  for (let i = 0; i < (options.maxChunks ?? 50); i++) {
    const expired = and(lt(mailOutbox.id, boundary), ne(mailOutbox.status, 'queued'));
    const gone = await db
      .delete(mailOutbox)
      .where(sql`${mailOutbox.id} in (select ${mailOutbox.id} from ${mailOutbox} where ${expired} limit ${chunk})`)
      .returning({ id: mailOutbox.id });
    deleted += gone.length;
    if (gone.length < chunk) break;
  }
  return { deleted };
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
