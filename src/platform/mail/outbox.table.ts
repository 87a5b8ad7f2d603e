import { sql } from 'drizzle-orm';
import { index, integer, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn } from '../db/columns.js';

/**
 * Every outgoing mail is recorded here first. Without SMTP_URL this table is the delivery target
 * (the admin console reads it); with SMTP the row tracks delivery attempts, and a sent mail's body
 * is emptied.
 */
export const mailOutbox = pgTable(
  'mail_outbox',
  {
    id: idColumn(),
    /**
     * The account the mail is to, when it is to one: deleting the user deletes their mail. No foreign
     * key: the platform knows no users, and a mail to an address without an account has none.
     */
    userId: uuid('user_id'),
    toAddress: text('to_address').notNull(),
    subject: text('subject').notNull(),
    textBody: text('text_body').notNull(),
    htmlBody: text('html_body'),
    status: text('status').$type<'queued' | 'sent' | 'stored' | 'failed'>().notNull().default('queued'),
    attempts: integer('attempts').notNull().default(0),
    lastError: text('last_error'),
    createdAt: createdAt(),
    sentAt: timestamp('sent_at', { withTimezone: true }),
  },
  (t) => [
    index('mail_outbox_status_idx').on(t.status, t.id),
    index('mail_outbox_user_idx').on(t.userId).where(sql`${t.userId} is not null`),
  ],
);

export type OutboxMail = typeof mailOutbox.$inferSelect;
