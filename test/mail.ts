import { desc, eq } from 'drizzle-orm';
import { runPendingJobs } from '../src/platform/jobs/worker.js';
import { mailOutbox } from '../src/platform/mail/outbox.table.js';
import type { TestApp } from './test-app.js';

/**
 * Test support: the newest mail to an address, after running the queued work (a reset request and
 * a delivery are jobs) as the worker would, and the account token its text carries.
 */
export async function lastMailTo(t: TestApp, address: string) {
  await runPendingJobs(t.database, { config: t.config, log: t.app.log });
  const [mail] = await t.database.db
    .select()
    .from(mailOutbox)
    .where(eq(mailOutbox.toAddress, address))
    .orderBy(desc(mailOutbox.id))
    .limit(1);
  const token = mail ? /token=([A-Za-z0-9_-]+)/.exec(mail.textBody)?.[1] : undefined;
  return { mail, token };
}
