import { and, desc, eq, gte, lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { mailOutbox, type OutboxMail } from '../../platform/mail/outbox.table.js';

export interface OutboxFilter {
  to?: string | undefined;
  status?: OutboxMail['status'] | undefined;
  since?: Date | undefined;
}

/** Outbox rows newest first, `limit + 1` of them after the row `after` (an id), for toPage. */
export async function listOutboxMails(
  db: DbOrTx,
  filter: OutboxFilter,
  limit: number,
  after: string | undefined,
): Promise<OutboxMail[]> {
  return db
    .select()
    .from(mailOutbox)
    .where(
      and(
        filter.to !== undefined ? sql`lower(${mailOutbox.toAddress}) = lower(${filter.to})` : undefined,
        filter.status ? eq(mailOutbox.status, filter.status) : undefined,
        filter.since ? gte(mailOutbox.createdAt, filter.since) : undefined,
        // uuidv7 ids sort by creation time, so the id alone is the cursor.
        after ? lt(mailOutbox.id, after) : undefined,
      ),
    )
    .orderBy(desc(mailOutbox.id))
    .limit(limit + 1);
}

/** One outbox row with its bodies, or undefined (also for a value that cannot be an id). */
export async function findOutboxMail(db: DbOrTx, id: string): Promise<OutboxMail | undefined> {
  if (!isUuid(id)) return undefined;
  const [row] = await db.select().from(mailOutbox).where(eq(mailOutbox.id, id));
  return row;
}

/**
 * Deletes every mail to a user, queued or not: the address and any body (a live link included) go
 * with the account. A queued delivery then finds no row and sends nothing.
 */
export async function deleteUserMails(db: DbOrTx, userId: string): Promise<void> {
  await db.delete(mailOutbox).where(eq(mailOutbox.userId, userId));
}
