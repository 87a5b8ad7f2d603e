import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { eq, sql } from 'drizzle-orm';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase, testConfig } from '../../../test/test-app.js';
import { type Database, queryRows } from '../db/client.js';
import { installJobs } from '../jobs/pgboss.js';
import type { JobLog } from '../jobs/registry.js';
import { runPendingJobs, startJobs } from '../jobs/worker.js';
import { queueMail } from './mail.js';
import { mailOutbox } from './outbox.table.js';

interface Received {
  from: string | false;
  to: string[];
  raw: string;
}

/** A real SMTP server on loopback that keeps every message it accepts. */
async function startSmtpServer(): Promise<{ port: number; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: true,
    // Plain SMTP on loopback: nodemailer would otherwise upgrade and reject the self-signed certificate.
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : false,
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** A loopback port with nothing listening: connecting to it is refused at once. */
async function closedPort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Undoes the transfer encoding nodemailer picks for long or non-ASCII lines (RFC 2045 §6.7). */
function decodeQuotedPrintable(raw: string): string {
  return raw
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 8_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const logLines: string[] = [];
const log = Object.fromEntries(
  ['debug', 'info', 'warn', 'error'].map((level) => [
    level,
    (...args: unknown[]) => logLines.push(JSON.stringify(args)),
  ]),
) as unknown as JobLog;

describe('mail', () => {
  let database: Database;
  let drop: () => Promise<void>;
  let smtp: Awaited<ReturnType<typeof startSmtpServer>>;

  const outboxRow = async (id: string) => (await database.db.select().from(mailOutbox).where(eq(mailOutbox.id, id)))[0];
  const mailJob = async (mailId: string) =>
    (
      await queryRows<{ id: string; state: string; retry_count: number }>(
        database.db,
        sql`select id, state::text, retry_count from pgboss.job where name = 'mail.send' and data->>'mailId' = ${mailId}`,
      )
    )[0];

  beforeAll(async () => {
    ({ database, drop } = await openTestDatabase());
    await installJobs(database);
    smtp = await startSmtpServer();
  });
  afterAll(async () => {
    await smtp.close();
    await drop();
  });

  it('queues nothing when the transaction that queued the mail rolls back', async () => {
    let mailId = '';
    await expect(
      database.db.transaction(async (tx) => {
        mailId = (await queueMail(tx, { to: 'rolled@example.com', subject: 'Never', text: 'never sent' })).id;
        throw new Error('the change that wanted to mail failed');
      }),
    ).rejects.toThrow('the change that wanted to mail failed');

    expect(await outboxRow(mailId)).toBeUndefined();
    expect(await mailJob(mailId)).toBeUndefined();
  });

  it('keeps the mail in the outbox as stored when no SMTP server is configured', async () => {
    const { id } = await queueMail(database.db, {
      to: 'kept@example.com',
      subject: 'Kept',
      text: 'stays in the outbox',
    });
    expect((await outboxRow(id))?.status).toBe('queued');

    await runPendingJobs(database, { config: testConfig(), log, names: ['mail.send'] });

    expect(await outboxRow(id)).toMatchObject({ status: 'stored', textBody: 'stays in the outbox', lastError: null });
    expect((await mailJob(id))?.state).toBe('completed');
    expect(smtp.received).toHaveLength(0);
  });

  it('delivers a queued mail over SMTP from MAIL_FROM to the recipient with its subject and body', async () => {
    const config = testConfig({
      SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
      MAIL_FROM: 'Gatehouse <noreply@gatehouse.test>',
    });
    const worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5 });
    try {
      const { id } = await queueMail(database.db, {
        to: 'ada@example.com',
        subject: 'Reset your password',
        text: 'Open http://gatehouse.test/reset?token=secret-token-1 to choose a new password.',
        html: '<p>Open <a href="http://gatehouse.test/reset?token=secret-token-1">this link</a>.</p>',
      });

      const message = await waitFor('the SMTP server to receive the mail', () => smtp.received[0]);
      expect(message.from).toBe('noreply@gatehouse.test');
      expect(message.to).toEqual(['ada@example.com']);
      expect(message.raw).toMatch(/^From: Gatehouse <noreply@gatehouse\.test>\r$/m);
      expect(message.raw).toMatch(/^To: ada@example\.com\r$/m);
      expect(message.raw).toMatch(/^Subject: Reset your password\r$/m);
      expect(message.raw).toMatch(new RegExp(`^Message-ID: <${id}@gatehouse\\.test>\\r$`, 'mi'));
      const body = decodeQuotedPrintable(message.raw);
      expect(body).toContain('Open http://gatehouse.test/reset?token=secret-token-1 to choose a new password.');
      expect(body).toContain('<p>Open <a href="http://gatehouse.test/reset?token=secret-token-1">this link</a>.</p>');

      const row = await waitFor('the outbox row to be marked sent', async () => {
        const r = await outboxRow(id);
        return r?.status === 'sent' ? r : undefined;
      });
      // Delivered, the body (and the link in it) is not kept.
      expect(row).toMatchObject({ attempts: 1, lastError: null, textBody: '', htmlBody: null });
      expect(row.sentAt).toBeInstanceOf(Date);
    } finally {
      await worker.stop();
    }
  });

  it('records the error and retries with backoff while SMTP is down, then marks the mail failed after the last attempt', async () => {
    const config = testConfig({ SMTP_URL: `smtp://127.0.0.1:${await closedPort()}` });
    const { id } = await queueMail(database.db, { to: 'bob@example.com', subject: 'Welcome', text: 'secret-token-2' });
    const run = () => runPendingJobs(database, { config, log, names: ['mail.send'] });

    expect(await run()).toEqual({ completed: 0, failed: 1 });
    expect(await outboxRow(id)).toMatchObject({
      status: 'queued',
      attempts: 1,
      lastError: expect.stringMatching(/ECONNREFUSED/),
    });
    const job = await mailJob(id);
    expect(job?.state).toBe('retry');

    // The retry waits for its backoff; nothing is due yet.
    expect(await run()).toEqual({ completed: 0, failed: 0 });
    // Advance past the backoff by moving the due time, then make the next attempt the last one.
    await database.db.execute(
      sql`update pgboss.job set start_after = now() - interval '1 second' where id = ${job?.id}`,
    );
    expect(await run()).toEqual({ completed: 0, failed: 1 });
    expect(await outboxRow(id)).toMatchObject({ status: 'queued', attempts: 2 });

    await database.db.execute(
      sql`update pgboss.job set start_after = now() - interval '1 second', retry_limit = retry_count + 1 where id = ${job?.id}`,
    );
    expect(await run()).toEqual({ completed: 0, failed: 1 });
    expect(await outboxRow(id)).toMatchObject({ status: 'failed', attempts: 3 });
    expect((await mailJob(id))?.state).toBe('failed');

    expect(logLines.some((line) => line.includes(job?.id ?? '?'))).toBe(true);
    expect(logLines.join('\n')).not.toMatch(/secret-token/);
  });

  it('refuses an address list or a subject that spans lines', async () => {
    await expect(
      queueMail(database.db, { to: 'a@example.com, b@example.com', subject: 'x', text: 'x' }),
    ).rejects.toThrow(/one plain email address/);
    await expect(
      queueMail(database.db, { to: 'a@example.com', subject: 'x\r\nBcc: c@example.com', text: 'x' }),
    ).rejects.toThrow(/one line/);
  });
});
