import { type Static, Type } from '@fastify/type-provider-typebox';

/** Which users both export endpoints count or take. */
const ExportFilters = {
  filter: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 4096,
      description:
        'A SCIM filter (RFC 7644 §3.4.2.2) over the users, with the attributes `GET /scim/v2/Users` filters on, e.g. ' +
        '`emails.value ew "@example.com" and title eq "Teacher"`.',
    }),
  ),
  user_type: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Only users of this type.' })),
  flag: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z_][A-Za-z0-9_]{0,99}$',
      description: 'Only users whose attribute of this name is `true` (e.g. `tv_service`, as seed 003 exports).',
    }),
  ),
  include_inactive: Type.Optional(
    Type.Boolean({
      default: false,
      description: 'Also deactivated, suspended and locked users (default: active only).',
    }),
  ),
  organization: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 100,
      description: 'Organization code. Superusers export every organization without it; staff only their own.',
    }),
  ),
};

export const ExportUsersQuery = Type.Object({
  ...ExportFilters,
  format: Type.Optional(
    Type.Union([Type.Literal('json'), Type.Literal('csv'), Type.Literal('ndjson')], {
      default: 'json',
      description: 'json: seed 003’s answer; csv and ndjson: one user per line, as a download.',
    }),
  ),
});
export type ExportUsersInput = Static<typeof ExportUsersQuery>;

export const ExportStatsQuery = Type.Object(ExportFilters);
export type ExportStatsInput = Static<typeof ExportStatsQuery>;

const NullableString = Type.Union([Type.String(), Type.Null()]);
const FieldErrors = Type.Array(Type.Object({ field: Type.String(), message: Type.String() }));

export const ExportedUser = Type.Object({
  id: Type.String({ format: 'uuid' }),
  username: Type.String(),
  email: Type.String(),
  first_name: Type.String(),
  last_name: Type.String(),
  is_active: Type.Boolean(),
  date_joined: Type.String({ format: 'date-time' }),
  status: Type.String({ description: 'active, suspended, locked or deactivated.' }),
  user_type: NullableString,
  organization: Type.String(),
  organization_id: Type.String({ format: 'uuid' }),
  external_id: Type.Union([Type.String(), Type.Null()], {
    description: "The identity provider's subject (seed 000's keycloak_id), unique across the installation.",
  }),
  scim_external_id: Type.Union([Type.String(), Type.Null()], {
    description: "A SCIM client's id for the user (the SCIM `externalId`), unique within the organization.",
  }),
  last_login: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  attributes: Type.Record(Type.String(), Type.Unknown()),
});

export const ExportUsersView = Type.Object({
  success: Type.Literal(true),
  count: Type.Integer(),
  users: Type.Array(ExportedUser),
  message: Type.String(),
});

export const ExportStatsView = Type.Object({
  success: Type.Literal(true),
  stats: Type.Object({
    total_users: Type.Integer({ description: 'Users in scope, whatever their status.' }),
    total_active_users: Type.Integer(),
    exportable_users: Type.Integer({ description: 'What `export-users` with the same filters would give.' }),
    by_user_type: Type.Array(Type.Object({ user_type: NullableString, count: Type.Integer() })),
  }),
});

/** Seed 003's failure shape, which these two endpoints keep (API-CONTRACT §2). */
export const ExportFailureView = Type.Object({
  success: Type.Literal(false),
  error: Type.String(),
  code: Type.String({ description: 'The stable snake_case code other endpoints give in problem+json.' }),
  errors: Type.Optional(FieldErrors),
});

export const ImportUsersBody = Type.Object(
  {
    users: Type.Array(Type.Unknown(), {
      description:
        'Users as `export-users` gives them (seed 003’s fields: `email`, `username`, `first_name`, `last_name`, ' +
        '`is_active`, `date_joined`; also `status`, `user_type`, `attributes`, `external_id`, `scim_external_id`); ' +
        'other fields are ignored. `date_joined` (a date-time; one without a zone is read as UTC) is kept, else the ' +
        'user joins now; `status` ' +
        '(active, suspended, locked or deactivated) wins over `is_active`, another value is ignored. The whole ' +
        'answer of an export may be sent as the body.',
    }),
    organization: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'Organization code (superusers); staff: their own.' }),
    ),
    organization_id: Type.Optional(
      Type.String({
        format: 'uuid',
        description: 'The organization by id instead of code; both given must name the same one.',
      }),
    ),
    dry_run: Type.Optional(Type.Boolean({ description: 'Answer what would happen and write nothing.' })),
    send_invite: Type.Optional(
      Type.Boolean({ description: 'Mail each created active user an invitation to set a password.' }),
    ),
  },
  { additionalProperties: true },
);
export type ImportUsersInput = Static<typeof ImportUsersBody>;

export const ImportUsersView = Type.Object({
  success: Type.Literal(true),
  created: Type.Integer(),
  skipped: Type.Integer({
    description: 'Users the organization already holds (same email, username, external id or SCIM externalId).',
  }),
  failed: Type.Integer(),
  dry_run: Type.Boolean(),
  results: Type.Array(
    Type.Object({
      index: Type.Integer({ description: 'Position in `users`.' }),
      action: Type.Union([Type.Literal('created'), Type.Literal('skipped'), Type.Literal('failed')]),
      id: Type.Optional(Type.Union([Type.String({ format: 'uuid' }), Type.Null()])),
      email: Type.Union([Type.String(), Type.Null()]),
      code: Type.Optional(Type.String()),
      error: Type.Optional(Type.String()),
      errors: Type.Optional(FieldErrors),
    }),
  ),
  message: Type.String(),
});
