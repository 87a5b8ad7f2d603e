import { type Static, Type } from '@fastify/type-provider-typebox';
import { LOWEST_MIN_LENGTH } from '../../platform/crypto/password-policy.js';
import { readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';
import type { UserWithOrganization } from './users.queries.js';
import { USER_STATUSES } from './users.table.js';

const Status = Type.Union(
  USER_STATUSES.map((s) => Type.Literal(s)),
  { description: 'Only `active` users can log in.' },
);
const Email = Type.String({ format: 'email', maxLength: 254 });
/**
 * Django's username rule (seed 001's services): letters, digits and `_ . @ + -`, where letters and
 * digits are those of any script (Django's `\w` is Unicode's; JavaScript's is ASCII only); and `'`
 * and `#`, which identity providers' usernames hold: an address such as o'brien@example.com, and
 * the user principal name of an Entra ID guest (jo_example.com#EXT#@tenant.onmicrosoft.com). A
 * letter may carry combining marks (`\p{M}`: Devanagari and Tamil vowel signs, an accent typed
 * decomposed); usernames are stored composed (NFC, `normalizeUsername`).
 */
export const Username = Type.String({
  minLength: 1,
  maxLength: 150,
  pattern: readablePattern("^(?:\\p{L}\\p{M}*|[\\p{N}_.@+'#-])+$", "Use letters, digits and _ . @ + - ' # only."),
});

/**
 * A username as stored and looked up: Unicode NFC, so "José" typed precomposed or as "e" and a
 * combining accent is one name, to the unique index and to login alike.
 */
export function normalizeUsername(username: string): string {
  return username.normalize('NFC');
}
const Name = Type.String({ maxLength: 150 });
const UserType = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: readablePattern('^[a-z][a-z0-9_]*$', 'Use lower-case letters, digits and _, starting with a letter.'),
});
const Attributes = Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form profile data.' });
// The schema holds the floor any organization may set; the organization's own minimum (default 10)
// is applied with the rest of its password policy.
const Password = Type.String({
  minLength: LOWEST_MIN_LENGTH,
  maxLength: 1024,
  description:
    "Stored as an argon2id hash, never returned. At least the organization's `password_min_length` (default 10).",
});
/**
 * An identity provider's subject (seed 000's keycloak_id), the provisioning upsert key. Seed 000's
 * clients put it in a URL path unencoded (`f"{base}/users/{keycloak_id}"`), where a user with "."
 * or "..", or with "/", "?", "#" or "%" in the id, could never be read or deactivated (or another
 * user would be): such ids are refused. Nothing blank and no space at either end: " kc-1 " and
 * "kc-1" would be two users for one subject, and "   " a user no one can tell from a missing id.
 */
export const ExternalId = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: readablePattern(
    '^(?!\\.\\.?$)[^\\s/?#%](?:[^/?#%]*[^\\s/?#%])?$',
    'Must not be "." or "..", be blank, begin or end with a space, or hold "/", "?", "#" or "%" (it is sent in URL paths).',
  ),
  description:
    'An identity provider\'s subject (seed 000\'s keycloak_id); unique across the installation. Without "/", "?", ' +
    '"#" or "%": clients send it in URL paths.',
});

/**
 * The same id where it names an existing user (a URL path): an id stored before "/", "?", "#" and
 * "%" were refused can still be read and deactivated by a client that encodes it.
 */
export const ExternalIdKey = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: readablePattern(
    '^(?!\\.\\.?$)\\S(?:[\\s\\S]*\\S)?$',
    'Must not be "." or "..", be blank, or begin or end with a space.',
  ),
  description: "An identity provider's subject (seed 000's keycloak_id); unique across the installation.",
});

export const UserView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  organization: Type.String({ description: 'Organization code.' }),
  organization_id: Type.String({ format: 'uuid' }),
  external_id: Type.Union([Type.String(), Type.Null()]),
  username: Type.Union([Type.String(), Type.Null()]),
  email: Type.String(),
  email_verified: Type.Boolean(),
  first_name: Type.String(),
  last_name: Type.String(),
  user_type: Type.Union([Type.String(), Type.Null()]),
  attributes: Attributes,
  status: Status,
  is_active: Type.Boolean(),
  is_staff: Type.Boolean(),
  is_superuser: Type.Boolean(),
  has_password: Type.Boolean(),
  mfa_enabled: Type.Boolean({
    description: 'Read-only: whether a confirmed TOTP authenticator is on (a pending enrolment is not).',
  }),
  last_login: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  date_joined: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const CreateUserBody = Type.Object(
  {
    email: Email,
    username: Type.Optional(Username),
    first_name: Type.Optional(Name),
    last_name: Type.Optional(Name),
    organization: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description:
          "Organization code; default: the caller's. An `organization_id` in the body is refused (400 naming it).",
      }),
    ),
    external_id: Type.Optional(ExternalId),
    user_type: Type.Optional(UserType),
    attributes: Type.Optional(Attributes),
    status: Type.Optional(Status),
    is_staff: Type.Optional(
      Type.Boolean({
        description:
          'Opens the staff-only user export and import. Only staff members and superusers change it (403 ' +
          '`staff_protected`), and not on themselves (403 `own_flags`).',
      }),
    ),
    is_active: Type.Optional(
      Type.Boolean({
        description:
          'false creates the user `deactivated` (as a later `is_active: false` would); given with `status`, the two ' +
          'must agree.',
      }),
    ),
    is_superuser: Type.Optional(Type.Boolean()),
    password: Type.Optional(Password),
  },
  // Closed: a misspelt or read-only field is refused by name instead of creating a user other than meant.
  { additionalProperties: false },
);
export type CreateUserInput = Static<typeof CreateUserBody>;

export const UpdateUserBody = Type.Partial(
  Type.Object({
    email: Email,
    username: Type.Union([Username, Type.Null()]),
    first_name: Name,
    last_name: Name,
    external_id: Type.Union([ExternalId, Type.Null()]),
    user_type: Type.Union([UserType, Type.Null()]),
    attributes: Attributes,
    status: Status,
    is_active: Type.Boolean({
      description:
        'false sets the status to `deactivated` (ending the user’s sessions); true reactivates a deactivated ' +
        'user, leaving a suspended or locked one as it is. Given with `status`, the two must agree.',
    }),
    is_staff: Type.Boolean({
      description:
        'Opens the staff-only user export and import. Only staff members and superusers change it (403 ' +
        '`staff_protected`), and not on themselves (403 `own_flags`).',
    }),
    is_superuser: Type.Boolean(),
    password: Password,
  }),
  // Closed: the fields the user view shows are dropped before the schema when sent back unchanged (see
  // partialUpdate), so only a field neither side knows, such as a misspelt one, is refused.
  { minProperties: 1, additionalProperties: false },
);
export type UpdateUserInput = Static<typeof UpdateUserBody>;

export const UserIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const USER_SORTS = ['-date_joined', 'date_joined', 'email', '-email'] as const;
export type UserSort = (typeof USER_SORTS)[number];

export const ListUsersQuery = Type.Object({
  ...PageQuery,
  search: Type.Optional(
    Type.String({ minLength: 1, maxLength: 254, description: 'Prefix of the email, username, first or last name.' }),
  ),
  email: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 254,
      description: 'Prefix of the email (index-backed; pairs with sort=email).',
    }),
  ),
  organization: Type.Optional(Type.String({ maxLength: 100, description: 'Organization code or id.' })),
  id: Type.Optional(
    Type.Array(Type.String({ format: 'uuid' }), {
      minItems: 1,
      maxItems: 100,
      description:
        'Only these users (the parameter repeated, up to 100 ids). An id the caller may not read, or no ' +
        'user has, is left out, where `GET /users/{id}/` would answer 404: a client naming the users a ' +
        'page shows learns which of them it may see in one request.',
    }),
  ),
  status: Type.Optional(Status),
  user_type: Type.Optional(Type.String({ maxLength: 64 })),
  is_staff: Type.Optional(Type.Boolean()),
  is_active: Type.Optional(
    Type.Boolean({ description: 'true: status `active`; false: any other status (suspended, locked, deactivated).' }),
  ),
  sort: Type.Optional(
    Type.Union(
      USER_SORTS.map((s) => Type.Literal(s)),
      { description: 'Default `-date_joined` (newest first), or `email` with `search`/`email`.' },
    ),
  ),
});
export type ListUsersInput = Static<typeof ListUsersQuery>;

export const UserPage = Page(UserView);

/** The admin view of a user: never the password hash, only whether there is one. */
export function toUserView(u: UserWithOrganization) {
  return {
    id: u.id,
    organization: u.organizationCode,
    organization_id: u.organizationId,
    external_id: u.externalId,
    username: u.username,
    email: u.email,
    email_verified: u.emailVerified,
    first_name: u.firstName,
    last_name: u.lastName,
    user_type: u.userType,
    attributes: u.attributes,
    status: u.status,
    is_active: u.status === 'active',
    is_staff: u.isStaff,
    is_superuser: u.isSuperuser,
    has_password: u.passwordHash !== null,
    mfa_enabled: u.mfaEnabled,
    last_login: u.lastLogin?.toISOString() ?? null,
    date_joined: u.dateJoined.toISOString(),
    updated_at: u.updatedAt.toISOString(),
  };
}
