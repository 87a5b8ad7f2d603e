import { type Static, Type } from '@fastify/type-provider-typebox';
import { readablePattern } from '../../platform/http/errors.js';
import { OrganizationCode } from '../organizations/organizations.schemas.js';
import { ExternalId, ExternalIdKey, Username } from '../users/users.schemas.js';
import { USER_STATUSES } from '../users/users.table.js';

const Email = Type.String({ format: 'email', maxLength: 254 });
const Name = Type.String({ maxLength: 150 });
const KeycloakId = {
  ...ExternalId,
  description: "The identity provider's subject; unique across the installation, the upsert key.",
};
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

/** An item of the provisioning core, in Gatehouse terms (see provisioning.service.ts). */
export const CoreItemSchema = Type.Object({
  id: Type.Optional(Type.String({ format: 'uuid' })),
  externalId: Type.Optional(Nullable(KeycloakId)),
  organization: Type.Optional(OrganizationCode),
  email: Type.Optional(Email),
  username: Type.Optional(Nullable(Username)),
  firstName: Type.Optional(Name),
  lastName: Type.Optional(Name),
  active: Type.Optional(Type.Boolean()),
  attributes: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  profileChanges: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  scimExternalId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 255 }))),
  sendInvite: Type.Optional(Type.Boolean()),
  status: Type.Optional(Type.Union(USER_STATUSES.map((s) => Type.Literal(s)))),
  userType: Type.Optional(
    Nullable(
      Type.String({
        minLength: 1,
        maxLength: 64,
        pattern: readablePattern('^[a-z][a-z0-9_]*$', 'Use lower-case letters, digits and _, starting with a letter.'),
      }),
    ),
  ),
  isStaff: Type.Optional(Type.Boolean()),
  isSuperuser: Type.Optional(Type.Boolean()),
  passwordHash: Type.Optional(Type.String({ minLength: 1 })),
  createOnly: Type.Optional(Type.Boolean()),
  writesScim: Type.Optional(Type.Boolean()),
  dateJoined: Type.Optional(Type.String({ format: 'date-time' })),
});

// ---------------------------------------------------------------------------------------------
// Seed 000 (API-CONTRACT §3)

export const ProvisionUserBody = Type.Object({
  keycloak_id: KeycloakId,
  email: Email,
  engagemx_client_id: { ...OrganizationCode, description: 'The organization code.' },
  first_name: Type.Optional(Type.Union([Name, Type.Null()], { description: 'null is stored as empty.' })),
  last_name: Type.Optional(Type.Union([Name, Type.Null()], { description: 'null is stored as empty.' })),
  is_active: Type.Optional(
    Type.Boolean({
      default: true,
      description:
        'Default true: an upsert reactivates a deactivated user (suspended or locked users stay so). false deactivates and ends sessions.',
    }),
  ),
  send_invite: Type.Optional(
    Type.Boolean({ description: 'Mail an invitation to set a password when the user is active and has none.' }),
  ),
});
export type ProvisionUserInput = Static<typeof ProvisionUserBody>;

export const BulkProvisionBody = Type.Array(ProvisionUserBody, {
  description:
    'Up to BULK_MAX_ITEMS items (default 10,000; 413 beyond) and BODY_LIMIT bytes (default 10 MiB). ' +
    'Each item is checked on its own: an invalid item is reported in `errors` and the others are written.',
});

export const DryRunQuery = Type.Object({
  dry_run: Type.Optional(
    Type.Boolean({ default: false, description: 'Answer what would happen (with `changes`) and write nothing.' }),
  ),
});

const FieldChangeView = Type.Object({
  field: Type.String(),
  from: Type.Unknown(),
  to: Type.Unknown(),
});

const Changes = Type.Optional(
  Type.Array(FieldChangeView, { description: 'Dry runs only: the fields that would change; empty when none.' }),
);
const Action = Type.Union([Type.Literal('created'), Type.Literal('updated')]);
const IdOrPlanned = Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
  description: 'null only in a dry run, for a user that would be created.',
});

export const ProvisionedUserView = Type.Object({
  id: IdOrPlanned,
  keycloak_id: Type.String(),
  email: Type.String(),
  first_name: Type.String(),
  last_name: Type.String(),
  engagemx_client_id: Type.String(),
  is_active: Type.Boolean(),
  action: Action,
  message: Type.String(),
  invited: Type.Optional(Type.Boolean()),
  dry_run: Type.Optional(Type.Boolean()),
  changes: Changes,
});

export const BulkProvisionView = Type.Object({
  success_count: Type.Integer(),
  error_count: Type.Integer(),
  users: Type.Array(
    Type.Object({
      id: IdOrPlanned,
      keycloak_id: Type.String(),
      email: Type.String(),
      action: Action,
      message: Type.String(),
      invited: Type.Optional(Type.Boolean()),
      changes: Changes,
    }),
  ),
  errors: Type.Array(
    Type.Object({
      index: Type.Integer({ description: 'Position of the item in the request body.' }),
      keycloak_id: Type.Union([Type.String(), Type.Null()]),
      error: Type.String(),
      code: Type.String({ description: 'Stable snake_case code, as in problem documents.' }),
      status: Type.Integer({ description: 'The status a single-item call would have answered.' }),
      fields: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
    }),
  ),
  dry_run: Type.Optional(Type.Boolean()),
});

export const KeycloakIdParams = Type.Object({
  keycloak_id: { ...ExternalIdKey, description: 'The `keycloak_id` of the user (URL-encoded).' },
});

export const ProvisionedUserDetail = Type.Object({
  id: Type.String({ format: 'uuid' }),
  keycloak_id: Type.String(),
  email: Type.String(),
  first_name: Type.String(),
  last_name: Type.String(),
  engagemx_client_id: Type.String(),
  is_active: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const DeactivationView = Type.Object({
  message: Type.String(),
  action: Type.Literal('deactivated'),
  timestamp: Type.String({ format: 'date-time' }),
  user: Type.Object({
    id: Type.String({ format: 'uuid' }),
    email: Type.String(),
    is_active: Type.Boolean(),
  }),
});

export const ListByClientQuery = Type.Object({
  client_id: { ...OrganizationCode, description: 'The organization code (seed 000: engagemx_client_id).' },
});

export const ClientUsersView = Type.Object({
  client_id: Type.String(),
  count: Type.Integer(),
  users: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      keycloak_id: Type.Union([Type.String(), Type.Null()]),
      email: Type.String(),
      first_name: Type.String(),
      last_name: Type.String(),
      engagemx_client_id: Type.String(),
      is_active: Type.Boolean(),
    }),
  ),
});
