import { eq, sql } from 'drizzle-orm';
import { createTransport } from 'nodemailer';
import type { DbOrTx } from '../db/client.js';
import { enqueueJob } from '../jobs/queue.js';
import { type Job, type JobContext, registerJobHandler } from '../jobs/registry.js';
import { withoutSecrets } from '../secret-text.js';
import { mailOutbox } from './outbox.table.js';

export interface OutgoingMail {
  /** The account the mail is to: its deletion takes the mail out of the outbox. */
  userId?: string;
  to: string;
  subject: string;
  text: string;
  html?: string;
}

const SEND_MAIL = 'mail.send';
const ADDRESS = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;

/**
 * Records a mail in the outbox and enqueues its delivery, both in the caller's transaction when
 * given one (so a rolled-back change sends nothing). Bodies may carry secrets such as reset links:
 * they live only in the outbox row, never in the job data or a log line. Returns the outbox id.
 */
export async function queueMail(dbOrTx: DbOrTx, mail: OutgoingMail): Promise<{ id: string }> {
  if (!ADDRESS.test(mail.to)) throw new Error('queueMail: "to" must be one plain email address');
  // A line break in a header field would let the value add headers of its own.
  if (/[\r\n]/.test(mail.subject)) throw new Error('queueMail: the subject must be one line');
  // On a root handle this opens a transaction; on a transaction, a savepoint inside it.
  return dbOrTx.transaction(async (tx) => {
    const [row] = await tx
      .insert(mailOutbox)
      .values({
        userId: mail.userId ?? null,
        toAddress: mail.to,
        subject: mail.subject,
        textBody: mail.text,
        htmlBody: mail.html ?? null,
      })
      .returning({ id: mailOutbox.id });
    if (!row) throw new Error('queueMail: the outbox insert returned no row');
    await enqueueJob(tx, SEND_MAIL, { mailId: row.id });
    return { id: row.id };
  });
}

interface Transport {
  send: ReturnType<typeof createTransport>;
  /** What a server's reply may quote of SMTP_URL's credentials; cut from every recorded error. */
  secrets: string[];
}
const transports = new Map<string, Transport>();

/**
 * The password of SMTP_URL in every form an SMTP server may echo in a refusal: as written in the
 * URL and decoded, and base64-encoded as AUTH LOGIN (RFC 4954 §4) and AUTH PLAIN (RFC 4616 §2)
 * send it, alone, as `\0user\0password`, and as a `user:password` pair.
 */
function credentialsOf(smtpUrl: string): string[] {
  const url = new URL(smtpUrl);
  if (!url.password) return [];
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const user = decode(url.username);
  const password = decode(url.password);
  const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
  return [url.password, password, base64(password), base64(`\0${user}\0${password}`), base64(`${user}:${password}`)];
}

function transportFor(smtpUrl: string): Transport {
  let transport = transports.get(smtpUrl);
  if (!transport) {
    // One connection per message (no pool, so nothing to close); bounded waits so an attempt
    // ends well within the job's expiry when the server hangs.
    const send = createTransport({
      url: smtpUrl,
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 30_000,
    });
    transport = { send, secrets: credentialsOf(smtpUrl) };
    transports.set(smtpUrl, transport);
  }
  return transport;
}

function senderDomain(mailFrom: string): string {
  return mailFrom.replace(/^.*<([^>]+)>\s*$/, '$1').split('@')[1] ?? 'localhost';
}

/**
 * Keeps what an operator needs (code, server reply) and bounds it; never message content, never
 * the SMTP credentials (a server may quote them when it refuses the login). The text is stored,
 * shown by the outbox API, kept with the job and logged.
 */
function deliveryError(err: unknown, secrets: string[]): string {
  const e = err as { code?: string; responseCode?: number; message?: string };
  const parts = [e.code, e.responseCode, e.message ?? String(err)].filter((p) => p !== undefined && p !== '');
  // Cut before bounding: a bound falling inside a secret would leave its beginning.
  return withoutSecrets(parts.join(' '), secrets).slice(0, 500);
}

/**
 * Delivers one outbox row. With SMTP_URL it sends through nodemailer and records the attempt;
 * without it the outbox itself is the destination and the row becomes `stored`. A row already
 * sent or stored is left alone, so a repeated attempt never mails twice from here.
 */
async function deliverMail(job: Job<{ mailId: string }>, ctx: JobContext): Promise<void> {
  const [mail] = await ctx.db.select().from(mailOutbox).where(eq(mailOutbox.id, job.data.mailId));
  if (!mail || mail.status === 'sent' || mail.status === 'stored') return;
  const smtpUrl = ctx.config.smtpUrl;
  if (!smtpUrl) {
    await ctx.db.update(mailOutbox).set({ status: 'stored' }).where(eq(mailOutbox.id, mail.id));
    return;
  }
  const transport = transportFor(smtpUrl);
  try {
    await transport.send.sendMail({
      from: ctx.config.mailFrom,
      to: mail.toAddress,
      subject: mail.subject,
      text: mail.textBody,
      ...(mail.htmlBody ? { html: mail.htmlBody } : {}),
      // Stable across retries, so a receiver can tell a repeat from a new message.
      messageId: `<${mail.id}@${senderDomain(ctx.config.mailFrom)}>`,
    });
  } catch (err) {
    const lastError = deliveryError(err, transport.secrets);
    const final = job.retryCount >= job.retryLimit;
    await ctx.db
      .update(mailOutbox)
      .set({ attempts: sql`${mailOutbox.attempts} + 1`, lastError, status: final ? 'failed' : 'queued' })
      .where(eq(mailOutbox.id, mail.id));
    // A fresh error: pg-boss stores what is thrown with the job, and the original may carry more.
    throw new Error(`mail ${mail.id} not delivered: ${lastError}`);
  }
  // Delivered: the body has done its work here. It may hold a live link (a password reset, an
  // invitation), a bearer secret that should not wait in the database until it expires.
  await ctx.db
    .update(mailOutbox)
    .set({
      attempts: sql`${mailOutbox.attempts} + 1`,
      lastError: null,
      status: 'sent',
      sentAt: new Date(),
      textBody: '',
      htmlBody: null,
    })
    .where(eq(mailOutbox.id, mail.id));
}

// Five retries backing off from 30 s (doubling, with jitter) ride out 15 to 30 minutes of SMTP outage.
registerJobHandler(SEND_MAIL, deliverMail, {
  retryLimit: 5,
  retryDelay: 30,
  retryBackoff: true,
  expireInSeconds: 120,
  concurrency: 2,
});
