import { type Static, Type } from '@fastify/type-provider-typebox';
import { MAX_PAGE_SIZE, Page, PageQuery } from '../../platform/http/pagination.js';
import { SEED_SEVERITIES, SEVERITIES } from './severity.js';

const Uuid = Type.String({ format: 'uuid' });
const NullableUuid = Type.Union([Uuid, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const Timestamp = Type.String({ format: 'date-time' });

/** An RFC 3339 date-time, or a date. */
const Moment = (description: string) =>
  Type.Union([Type.String({ format: 'date-time' }), Type.String({ format: 'date' })], { description });

/** The filters shared by the list, the streams and the export. */
const ActivityFilters = {
  activity_type: Type.Optional(Type.String({ maxLength: 200, description: 'Exact type, e.g. `auth.login_failed`.' })),
  user: Type.Optional(Type.String({ format: 'uuid', description: 'Events about this user (for requests: by them).' })),
  actor: Type.Optional(
    Type.String({
      format: 'uuid',
      description:
        'What this user did: the audit events of changes they made (to any object), their requests and their ' +
        'tracked events.',
    }),
  ),
  organization: Type.Optional(
    Type.String({ maxLength: 100, description: 'Organization code or id (superusers; others see their own).' }),
  ),
  category: Type.Optional(Type.String({ maxLength: 100 })),
  severity: Type.Optional(
    Type.Union(
      [...SEVERITIES, ...SEED_SEVERITIES].map((s) => Type.Literal(s)),
      {
        description:
          'One of info, warning or critical, given once. Seed 002’s names are understood too: low and normal mean ' +
          'info, high means warning.',
      },
    ),
  ),
  success: Type.Optional(Type.Boolean()),
  since: Type.Optional(Moment('From this moment (inclusive); a date alone is its midnight UTC.')),
  until: Type.Optional(Moment('Before this moment; a date alone is its midnight UTC.')),
  tag: Type.Optional(Type.String({ maxLength: 100 })),
  kind: Type.Optional(
    Type.Union([Type.Literal('audit'), Type.Literal('request'), Type.Literal('event')], {
      description: 'audit: security-relevant changes; request: API requests; event: tracked application events.',
    }),
  ),
  search: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: 'Text anywhere in the description.' }),
  ),
};

export const ListActivitiesQuery = Type.Object({ ...PageQuery, ...ActivityFilters });
export type ListActivitiesInput = Static<typeof ListActivitiesQuery>;

export const ExportActivitiesQuery = Type.Object({
  ...ActivityFilters,
  format: Type.Optional(Type.Union([Type.Literal('csv'), Type.Literal('ndjson')], { default: 'ndjson' })),
});

export const ActivityStreamQuery = Type.Object({
  ...PageQuery,
  ...ActivityFilters,
  object_type: Type.Optional(Type.String({ maxLength: 100, description: 'With `object_id`: one object’s history.' })),
  object_id: Type.Optional(Type.String({ maxLength: 200 })),
});

export const ActivityView = Type.Object({
  id: Uuid,
  kind: Type.String(),
  activity_type: Type.String(),
  category: Type.String(),
  severity: Type.String(),
  success: Type.Boolean(),
  user_id: NullableUuid,
  organization: NullableString,
  organization_id: NullableUuid,
  actor_type: Type.String(),
  actor_id: NullableUuid,
  api_key_id: NullableUuid,
  object_type: NullableString,
  object_id: NullableString,
  description: Type.String(),
  details: Type.Record(Type.String(), Type.Unknown()),
  tags: Type.Array(Type.String()),
  ip_address: NullableString,
  user_agent: NullableString,
  method: NullableString,
  path: NullableString,
  status: Type.Union([Type.Integer(), Type.Null()]),
  duration_ms: Type.Union([Type.Number(), Type.Null()]),
  timestamp: Timestamp,
});
export const ActivityPage = Page(ActivityView);

/** Any text: one that cannot be an activity's id is simply not found. */
export const ActivityIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const ActivityStatsQuery = Type.Object({
  ...PageQuery,
  period: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day')], { default: 'hour' })),
  organization: Type.Optional(
    Type.String({
      maxLength: 100,
      description: 'Organization code or id (superusers; default: the whole platform).',
    }),
  ),
  since: Type.Optional(Moment('Periods starting from this moment; a date alone is its midnight UTC.')),
  until: Type.Optional(Moment('Periods starting before this moment; a date alone is its midnight UTC.')),
});

export const ActivityStatsView = Type.Object({
  period_type: Type.String(),
  period_start: Timestamp,
  period_end: Timestamp,
  organization: Type.Union([Type.String(), Type.Null()], {
    description: 'The organization’s code; null for the whole platform’s figures.',
  }),
  organization_id: Type.Union([Uuid, Type.Null()], {
    description: 'The organization’s id; null for the whole platform’s figures.',
  }),
  total_activities: Type.Integer(),
  user_activities: Type.Integer(),
  system_activities: Type.Integer(),
  success_count: Type.Integer(),
  failure_count: Type.Integer(),
  success_rate: Type.Union([Type.Number(), Type.Null()], { description: 'Percent of activities that succeeded.' }),
  request_count: Type.Integer(),
  by_category: Type.Record(Type.String(), Type.Integer()),
  p50_duration_ms: Type.Union([Type.Number(), Type.Null()]),
  p95_duration_ms: Type.Union([Type.Number(), Type.Null()]),
  partial: Type.Boolean({
    description: 'True for the period still running (first on the first page), computed as the activities are now.',
  }),
});
export const ActivityStatsPage = Page(ActivityStatsView);

export const UserSessionsQuery = Type.Object({
  active_within: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1440, default: 5, description: 'Minutes since the last request.' }),
  ),
  organization: Type.Optional(
    Type.String({ maxLength: 100, description: 'Organization code or id (superusers; others see their own).' }),
  ),
  ...PageQuery,
  limit: Type.Optional(
    Type.Integer({ minimum: 1, default: 100, description: `At most ${MAX_PAGE_SIZE}; more is read as that.` }),
  ),
});

export const ActiveUserView = Type.Object({
  user_id: Uuid,
  email: NullableString,
  username: NullableString,
  organization: NullableString,
  organization_id: NullableUuid,
  last_activity: Timestamp,
  current_path: NullableString,
  method: NullableString,
  ip_address: NullableString,
  device_type: NullableString,
  browser: NullableString,
  os: NullableString,
});
export const ActiveUsersPage = Page(ActiveUserView);
