import { Type } from '@fastify/type-provider-typebox';
import { Page, PageQuery } from '../../platform/http/pagination.js';

const OutboxStatus = Type.Union(
  [Type.Literal('queued'), Type.Literal('sent'), Type.Literal('stored'), Type.Literal('failed')],
  {
    description:
      '`queued`: waiting for delivery, or between SMTP attempts; `sent`: accepted by the SMTP server; ' +
      '`stored`: kept here because SMTP_URL is unset (the outbox is its destination); `failed`: the SMTP ' +
      'attempts ran out.',
  },
);

export const ListOutboxQuery = Type.Object({
  ...PageQuery,
  to: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 320,
      description: 'Only mail to this address (compared case-insensitively).',
    }),
  ),
  status: Type.Optional(OutboxStatus),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Only mail queued at or after this moment.' })),
});

export const OutboxMailIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

const Timestamp = Type.String({ format: 'date-time' });

const outboxFields = {
  id: Type.String({ format: 'uuid' }),
  to: Type.String({ description: 'The recipient.' }),
  subject: Type.String(),
  status: OutboxStatus,
  attempts: Type.Integer({ description: 'SMTP delivery attempts so far (0 without SMTP_URL).' }),
  last_error: Type.Union([Type.String(), Type.Null()], {
    description: 'The SMTP error of the last failed attempt; null once sent.',
  }),
  created_at: Timestamp,
  sent_at: Type.Union([Timestamp, Type.Null()], { description: 'When the SMTP server accepted it.' }),
};

export const OutboxMailSummary = Type.Object(outboxFields);

export const OutboxMailView = Type.Object({
  ...outboxFields,
  text_body: Type.String({
    description: 'The plain-text body; empty once `sent` (a delivered body is not kept: it may hold a live link).',
  }),
  html_body: Type.Union([Type.String(), Type.Null()], { description: 'The HTML alternative, if the mail has one.' }),
});

export const OutboxMailPage = Page(OutboxMailSummary);
