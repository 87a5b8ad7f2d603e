import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireUser } from '../../platform/http/auth.js';
import { instantOf } from '../../platform/http/date-time.js';
import { noStore } from '../../platform/http/no-store.js';
import { cursorId, toPage } from '../../platform/http/pagination.js';
import type { OutboxMail } from '../../platform/mail/outbox.table.js';
import { mailOutboxErrors } from './mail-outbox.errors.js';
import { scheduleOutboxRetention } from './mail-outbox.jobs.js';
import { listOutboxMails } from './mail-outbox.queries.js';
import { ListOutboxQuery, OutboxMailIdParams, OutboxMailPage, OutboxMailView } from './mail-outbox.schemas.js';
import { readOutboxMail } from './mail-outbox.service.js';

function toOutboxSummary(m: OutboxMail) {
  return {
    id: m.id,
    to: m.toAddress,
    subject: m.subject,
    status: m.status,
    attempts: m.attempts,
    last_error: m.lastError,
    created_at: m.createdAt.toISOString(),
    sent_at: m.sentAt?.toISOString() ?? null,
  };
}

function toOutboxView(m: OutboxMail) {
  return { ...toOutboxSummary(m), text_body: m.textBody, html_body: m.htmlBody };
}

const tags = ['mail-outbox'];
// Mail belongs to no organization and its bodies hold other people's reset and invitation links:
// superusers only, never an organization admin or an API key.
const auth = 'superuser' as const;

export const mailOutboxRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  await scheduleOutboxRetention(db, app.config);

  app.get(
    '/api/v1/mail-outbox',
    {
      config: { auth },
      schema: {
        operationId: 'listOutboxMail',
        tags,
        description:
          'Every mail Gatehouse has queued (verification, password reset, invitation), newest first, without ' +
          'the bodies. Without SMTP_URL the outbox is where mail goes: a message is `queued` until the job ' +
          'worker takes it, then `stored`, and is read here. With SMTP_URL the outbox is the delivery queue: ' +
          '`queued` (with `attempts` and `last_error` between retries), then `sent` (with `sent_at`) or, when ' +
          'the retries run out, `failed`. Superusers only.',
        querystring: ListOutboxQuery,
        response: { 200: OutboxMailPage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const rows = await listOutboxMails(
        db,
        {
          to: req.query.to,
          status: req.query.status,
          since: req.query.since ? instantOf(req.query.since, 'since') : undefined,
        },
        limit,
        req.query.cursor ? cursorId(req.query.cursor) : undefined,
      );
      const page = toPage(rows, limit, (m) => [m.id]);
      return { results: page.results.map(toOutboxSummary), next: page.next };
    },
  );

  app.get(
    '/api/v1/mail-outbox/:id',
    {
      config: { auth },
      schema: {
        operationId: 'getOutboxMail',
        tags,
        description:
          'One outbox mail with its text and HTML bodies. The bodies may hold password-reset and invitation ' +
          'links, bearer secrets of the recipient: each read is recorded as a `mail.viewed` audit event naming ' +
          'the reader. Superusers only.',
        params: OutboxMailIdParams,
        response: { 200: OutboxMailView },
      },
    },
    async (req, reply) => {
      const mail = await readOutboxMail(db, requireUser(req.actor), req.params.id);
      if (!mail) throw mailOutboxErrors.notFound(req.params.id);
      // A body with a live reset link is kept out of every cache between here and the reader.
      noStore(reply);
      return toOutboxView(mail);
    },
  );
};
