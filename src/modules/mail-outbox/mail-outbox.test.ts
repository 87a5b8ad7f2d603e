import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { and, eq, sql } from 'drizzle-orm';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, clientWithRole, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { firstIdAt } from '../../platform/db/ids.js';
import { encodeCursor } from '../../platform/http/pagination.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { runPendingJobs } from '../../platform/jobs/worker.js';
import { queueMail } from '../../platform/mail/mail.js';
import { mailOutbox } from '../../platform/mail/outbox.table.js';
import { activities } from '../activity/activity.table.js';
import { OUTBOX_RETENTION_JOB, pruneOutbox } from './mail-outbox.jobs.js';

interface Summary {
  id: string;
  to: string;
  subject: string;
  status: string;
  attempts: number;
  last_error: string | null;
  created_at: string;
  sent_at: string | null;
}

describe('mail outbox API', () => {
  let t: TestApp;
  let root: Client;

  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
  });
  afterAll(() => t.close());

  /** Runs queued work (reset requests and deliveries are jobs), as the worker would. */
  const runJobs = () => runPendingJobs(t.database, { config: t.config, log: t.app.log });
  const address = () => `${unique('mail')}@example.com`;
  const results = (res: { json(): unknown }) => (res.json() as { results: Summary[] }).results;

  it('shows a password-reset mail, stored without SMTP_URL, and its link in the body', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const requested = await t.request({
      method: 'POST',
      url: '/api/v1/users/password-reset/',
      payload: { email: user.email },
    });
    expect(requested.statusCode, requested.body).toBeLessThan(300);
    // The reset job queues the mail; the delivery job then stores it.
    await runJobs();
    await runJobs();

    const list = await root.get(`/api/v1/mail-outbox/?to=${encodeURIComponent(user.email)}`);
    expect(list.statusCode, list.body).toBe(200);
    expect(list.json()).toMatchObject({ next: null });
    const [summary] = results(list);
    expect(results(list)).toHaveLength(1);
    expect(summary).toMatchObject({
      to: user.email,
      subject: 'Reset your password',
      status: 'stored',
      attempts: 0,
      last_error: null,
      sent_at: null,
    });
    // The list carries no bodies: a reset link is only in the audited read.
    expect(list.body).not.toContain('token');

    const one = await root.get(`/api/v1/mail-outbox/${summary!.id}/`);
    expect(one.statusCode, one.body).toBe(200);
    expect(one.headers['cache-control']).toBe('no-store');
    expect(one.json()).toMatchObject({ id: summary!.id, to: user.email, status: 'stored', html_body: null });
    expect(one.json().text_body).toMatch(/http:\/\/gatehouse\.test\/admin\/set-password#token=[A-Za-z0-9_-]+/);
  });

  it('records each read of a mail as an audit event naming the reader, and no event for the list', async () => {
    const to = address();
    const { id } = await queueMail(t.database.db, {
      to,
      subject: 'Invitation',
      text: 'join: https://x.test/?token=abc',
    });
    const viewed = () =>
      t.database.db
        .select()
        .from(activities)
        .where(and(eq(activities.activityType, 'mail.viewed'), eq(activities.objectId, id)));

    await root.get(`/api/v1/mail-outbox/?to=${to}`);
    expect(await viewed()).toEqual([]);

    expect((await root.get(`/api/v1/mail-outbox/${id}`)).statusCode).toBe(200);
    expect((await root.get(`/api/v1/mail-outbox/${id}`)).statusCode).toBe(200);
    const events = await viewed();
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      kind: 'audit',
      category: 'system',
      severity: 'warning',
      actorType: 'user',
      actorId: root.user.id,
      objectType: 'mail',
      organizationId: null,
      details: { to, subject: 'Invitation', status: 'queued' },
    });
    // The event names the mail, never its body.
    expect(JSON.stringify(events)).not.toContain('token=abc');

    // A superuser finds them in the activity list too.
    const listed = await root.get('/api/v1/activities/?activity_type=mail.viewed');
    expect(listed.json().results.some((e: { details: { to?: string } }) => e.details.to === to)).toBe(true);
  });

  it('pages newest first with opaque cursors', async () => {
    const to = address();
    const ids: string[] = [];
    for (const n of [1, 2, 3]) ids.push((await queueMail(t.database.db, { to, subject: `Page ${n}`, text: 'x' })).id);

    const first = await root.get(`/api/v1/mail-outbox/?to=${to}&limit=2`);
    expect(results(first).map((m) => m.id)).toEqual([ids[2], ids[1]]);
    const next = first.json().next as string;
    expect(next).toEqual(expect.any(String));
    const second = await root.get(`/api/v1/mail-outbox/?to=${to}&limit=2&cursor=${next}`);
    expect(results(second).map((m) => m.id)).toEqual([ids[0]]);
    expect(second.json().next).toBeNull();
  });

  it('answers 400 invalid_cursor for a cursor this list did not produce', async () => {
    for (const cursor of ['not-a-cursor', encodeCursor(["x' or 1=1"])]) {
      const res = await root.get(`/api/v1/mail-outbox/?cursor=${cursor}`);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ field: 'cursor' }] });
    }
  });

  it('filters by recipient (any case), status and since', async () => {
    const to = address();
    const old = await queueMail(t.database.db, { to, subject: 'Old', text: 'x' });
    await t.database.db
      .update(mailOutbox)
      .set({ createdAt: new Date('2020-01-01T00:00:00Z'), status: 'sent', sentAt: new Date('2020-01-01T00:00:05Z') })
      .where(eq(mailOutbox.id, old.id));
    const fresh = await queueMail(t.database.db, { to, subject: 'New', text: 'x' });
    const other = await queueMail(t.database.db, { to: address(), subject: 'Other', text: 'x' });

    const byRecipient = await root.get(`/api/v1/mail-outbox/?to=${to.toUpperCase()}`);
    expect(results(byRecipient).map((m) => m.id)).toEqual([fresh.id, old.id]);

    const sent = await root.get(`/api/v1/mail-outbox/?to=${to}&status=sent`);
    expect(results(sent)).toEqual([
      expect.objectContaining({ id: old.id, status: 'sent', sent_at: '2020-01-01T00:00:05.000Z' }),
    ]);

    const since = await root.get(`/api/v1/mail-outbox/?to=${to}&since=2021-01-01T00:00:00Z`);
    expect(results(since).map((m) => m.id)).toEqual([fresh.id]);

    const queued = results(await root.get('/api/v1/mail-outbox/?status=queued&limit=500')).map((m) => m.id);
    expect(queued).toEqual(expect.arrayContaining([fresh.id, other.id]));
    expect(queued).not.toContain(old.id);
  });

  it('answers 400 problem+json naming the field for a bad filter', async () => {
    for (const [query, field] of [
      ['status=lost', 'status'],
      ['since=yesterday', 'since'],
      ['since=0000-01-01T00:00:00Z', 'since'],
      ['since=9999-12-31T23:59:59-01:00', 'since'],
      ['limit=0', 'limit'],
      [`to=${'a'.repeat(321)}`, 'to'],
    ] as const) {
      const res = await root.get(`/api/v1/mail-outbox/?${query}`);
      expect(res.statusCode, query).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json(), query).toMatchObject({ status: 400, errors: [{ field }] });
    }
  });

  it('answers 404 mail_not_found for an unknown id or one that cannot be an id', async () => {
    for (const id of ['0190a000-0000-7000-8000-000000000000', 'nope']) {
      const res = await root.get(`/api/v1/mail-outbox/${id}`);
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ code: 'mail_not_found' });
    }
  });

  it('is for superusers only: 401 anonymous, 403 for an organization admin and for a platform-wide API key', async () => {
    const { id } = await queueMail(t.database.db, { to: address(), subject: 'Secret', text: 'reset: token=s3cret' });
    const urls = ['/api/v1/mail-outbox/', `/api/v1/mail-outbox/${id}/`];

    for (const url of urls) {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode, url).toBe(401);
    }

    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    for (const url of urls) {
      const res = await admin.get(url);
      expect(res.statusCode, url).toBe(403);
      expect(res.body).not.toContain('s3cret');
    }

    const created = await root.post('/api/v1/api-keys/', {
      name: 'everything',
      organization: null,
      scopes: ['provisioning', 'authorize', 'read:users'],
    });
    expect(created.statusCode, created.body).toBe(201);
    for (const url of urls) {
      const res = await t.request({ method: 'GET', url, headers: { 'x-api-key': created.json().key } });
      expect(res.statusCode, url).toBe(403);
    }

    // None of the refused calls read the mail.
    const events = await t.database.db.select().from(activities).where(eq(activities.objectId, id));
    expect(events).toEqual([]);
  });

  it('deletes mail older than MAIL_OUTBOX_RETENTION_DAYS from a scheduled job, but never mail still queued', async () => {
    const day = 86_400_000;
    // Ids are UUIDv7: the first 48 bits are the time the mail was queued.
    const idAt = (ms: number, n: number) => firstIdAt(ms).replace(/0{12}$/, String(n).padStart(12, '0'));
    const to = address();
    const old = Date.now() - 40 * day;
    await t.database.db.insert(mailOutbox).values([
      { id: idAt(old, 1), toAddress: to, subject: 'sent', textBody: '', status: 'sent' },
      { id: idAt(old, 2), toAddress: to, subject: 'stored', textBody: 'https://reset/link', status: 'stored' },
      { id: idAt(old, 3), toAddress: to, subject: 'failed', textBody: 'x', status: 'failed' },
      { id: idAt(old, 4), toAddress: to, subject: 'queued', textBody: 'x', status: 'queued' },
      { id: idAt(Date.now() - 20 * day, 5), toAddress: to, subject: 'recent', textBody: 'x', status: 'stored' },
    ]);
    const kept = async () =>
      (await t.database.db.select().from(mailOutbox).where(eq(mailOutbox.toAddress, to))).map((m) => m.subject).sort();

    expect((await pruneOutbox(t.database.db, 0)).deleted).toBe(0);
    expect(await kept()).toHaveLength(5);

    await enqueueJob(
      t.database.db,
      OUTBOX_RETENTION_JOB,
      {},
      { singletonKey: 'due-now', startAfter: new Date(Date.now() - 1000) },
    );
    const ran = await runPendingJobs(t.database, { config: t.config, log: t.app.log, names: [OUTBOX_RETENTION_JOB] });
    expect(ran).toEqual({ completed: 1, failed: 0 });
    expect(t.config.mailOutboxRetentionDays).toBe(30);
    expect(await kept()).toEqual(['queued', 'recent']);
  });
});

describe('mail outbox API with an SMTP server that refuses the login', () => {
  // Reserved characters, percent-encoded in SMTP_URL: the secret to keep out is the decoded one.
  const user = 'mailer';
  const password = 'SMTPPASS-zzz:8080@x';
  const plain = Buffer.from(`\0${user}\0${password}`).toString('base64');
  const login = Buffer.from(password).toString('base64');
  const pair = Buffer.from(`${user}:${password}`).toString('base64');

  /** A real SMTP peer on loopback that answers 535 quoting every form of the credentials it got. */
  async function startEchoingSmtpServer(authMethods: string[]) {
    const server = new SMTPServer({
      authMethods,
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onAuth(auth, _session, callback) {
        callback(
          new Error(
            `Invalid login for ${auth.username} with password ${auth.password} ` +
              `(plain ${plain}, login ${login}, pair ${pair}, escaped ${JSON.stringify(auth.password)})`,
          ),
        );
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.server.address() as AddressInfo;
    return { port, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  for (const method of ['PLAIN', 'LOGIN']) {
    it(`keeps the SMTP password (AUTH ${method}) out of the outbox, the job and the log`, async () => {
      const smtp = await startEchoingSmtpServer([method]);
      let logs = '';
      const stream = new PassThrough();
      stream.on('data', (chunk: Buffer) => {
        logs += chunk.toString('utf8');
      });
      const t = await startTestApp(
        { SMTP_URL: `smtp://${user}:${encodeURIComponent(password)}@127.0.0.1:${smtp.port}` },
        { logStream: stream },
      );
      try {
        const root = await superuserClient(t);
        const org = await seedOrganization(t);
        const member = await seedUser(t, org.id);
        const requested = await t.request({
          method: 'POST',
          url: '/api/v1/users/password-reset/',
          payload: { email: member.email },
        });
        expect(requested.statusCode, requested.body).toBeLessThan(300);
        const runJobs = () => runPendingJobs(t.database, { config: t.config, log: t.app.log });
        await runJobs();
        expect(await runJobs()).toMatchObject({ failed: 1 });

        const list = await root.get(`/api/v1/mail-outbox/?to=${encodeURIComponent(member.email)}`);
        const [summary] = (list.json() as { results: Summary[] }).results;
        // The operator still sees why: the code and the server's reply, the secret cut out.
        expect(summary).toMatchObject({ status: 'queued', attempts: 1 });
        expect(summary?.last_error).toMatch(/^EAUTH 535 .*Invalid login for mailer with password \[REDACTED\]/);
        const one = await root.get(`/api/v1/mail-outbox/${summary!.id}/`);
        const jobs = await t.database.db.execute(
          sql`select output::text as output from pgboss.job where name = 'mail.send'`,
        );
        await new Promise((resolve) => setTimeout(resolve, 50));
        // The reply reached each place, so what follows checks something.
        expect(logs).toMatch(
          /"error":"mail [^"]+ not delivered: EAUTH 535 .*with password \[REDACTED\].*job attempt failed/,
        );
        expect(JSON.stringify(jobs)).toContain('with password [REDACTED]');

        for (const [where, text] of [
          ['list', list.body],
          ['read', one.body],
          ['job', JSON.stringify(jobs)],
          ['log', logs],
        ]) {
          for (const secret of [password, encodeURIComponent(password), plain, login, pair, JSON.stringify(password)]) {
            expect(text, `${where} holds ${secret}`).not.toContain(secret);
          }
        }
      } finally {
        await t.close();
        await smtp.close();
      }
    });
  }
});
