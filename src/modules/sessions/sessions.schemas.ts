import { Type } from '@fastify/type-provider-typebox';
import { Page, PageQuery } from '../../platform/http/pagination.js';

const Nullable = <T extends import('@sinclair/typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = Type.String({ format: 'date-time' });

const sessionFields = {
  id: Type.String({ format: 'uuid' }),
  ip_address: Nullable(Type.String({ description: 'Client address at login (honours TRUST_PROXY).' })),
  device_type: Nullable(
    Type.String({
      description: '`desktop`, `mobile`, `tablet`, `console`, `smarttv`, `wearable`, `embedded` or `other`.',
    }),
  ),
  browser: Nullable(Type.String({ description: 'Browser and major version, e.g. `Chrome 120`.' })),
  os: Nullable(Type.String({ description: 'Operating system and version, e.g. `iOS 17.1`.' })),
  user_agent: Nullable(Type.String()),
  created_at: DateTime,
  last_activity_at: Type.String({
    format: 'date-time',
    description:
      'Last use of the session: its access token on any route (validate-token included), its cookie, or a refresh; ' +
      'written at most once a minute per session and node.',
  }),
  expires_at: DateTime,
  current: Type.Boolean({ description: 'Whether this is the session of the credential making the request.' }),
  active: Type.Boolean({ description: 'Neither revoked nor expired.' }),
};

export const SessionView = Type.Object(sessionFields);
export const SessionPage = Page(SessionView);

export const AdminSessionView = Type.Object({
  ...sessionFields,
  user_id: Type.String({ format: 'uuid' }),
  organization: Type.String({ description: 'Organization code.' }),
  organization_id: Type.String({ format: 'uuid' }),
  revoked_at: Nullable(DateTime),
});
export const AdminSessionPage = Page(AdminSessionView);

const Active = Type.Optional(Type.Boolean({ description: '`true`: only open sessions; `false`: only ended ones.' }));

export const ListOwnSessionsQuery = Type.Object({ ...PageQuery, active: Active });

export const ListSessionsQuery = Type.Object({
  ...PageQuery,
  user: Type.Optional(Type.String({ format: 'uuid', description: 'Only this user’s sessions.' })),
  organization: Type.Optional(Type.String({ maxLength: 100, description: 'Only this organization (code).' })),
  active: Active,
});

export const SessionIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
