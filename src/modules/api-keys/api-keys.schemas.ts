import { type Static, Type } from '@fastify/type-provider-typebox';
import { readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';
import { OrganizationCode } from '../organizations/organizations.schemas.js';

/** What an API key may be granted; routes declare one of these as `{ auth: { scope } }`. */
export const API_KEY_SCOPES = ['provisioning', 'scim', 'authorize', 'read:users'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/**
 * The permissions a key's creator must hold for each scope, when the key is made and whenever it
 * is used: a key reaches no further than the user who made it. Superusers' and the operator's keys
 * have no creator to bound them. `scim` includes roles.manage because SCIM Groups are the
 * organization's roles; `authorize` answers which roles grant a user what.
 */
export const SCOPE_PERMISSIONS: Record<ApiKeyScope, readonly string[]> = {
  'read:users': ['users.view'],
  provisioning: ['users.view', 'users.update'],
  scim: ['users.view', 'users.update', 'users.delete', 'roles.manage'],
  authorize: ['users.view', 'roles.view'],
};

export function isApiKeyScope(value: string): value is ApiKeyScope {
  return (API_KEY_SCOPES as readonly string[]).includes(value);
}

const Scope = Type.Union(
  API_KEY_SCOPES.map((s) => Type.Literal(s)),
  { description: 'What the key may do.' },
);

/** What a key is for, as people read it in lists and audit events: a blank one tells nobody anything. */
export const ApiKeyName = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: readablePattern('\\S', 'Must not be blank.'),
  description: 'What the key is for: 1 to 200 characters, not only spaces.',
});

export const CreateApiKeyBody = Type.Object(
  {
    name: ApiKeyName,
    organization: Type.Optional(
      Type.Union([OrganizationCode, Type.Null()], {
        description:
          'Organization code; null for a platform-wide key (superusers only). Default: the caller’s organization.' +
          ' An `organization_id` in the body is refused (400 naming it).',
      }),
    ),
    scopes: Type.Array(Scope, { minItems: 1, maxItems: API_KEY_SCOPES.length, uniqueItems: true }),
    expires_at: Type.Optional(Type.String({ format: 'date-time', description: 'When the key stops working.' })),
  },
  // Closed: a misspelt `scope` or `expiry` answers 400 naming it, not a key made without it.
  { additionalProperties: false },
);
export type CreateApiKeyInput = Static<typeof CreateApiKeyBody>;

export const ApiKeyIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const ListApiKeysQuery = Type.Object({
  ...PageQuery,
  organization: Type.Optional(Type.String({ maxLength: 100, description: 'Only keys of this organization (code).' })),
});

const Timestamp = Type.String({ format: 'date-time' });
const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

const apiKeyFields = {
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to recognise it.' }),
  organization: Type.Union([Type.String(), Type.Null()], { description: 'Code; null for a platform-wide key.' }),
  organization_id: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  scopes: Type.Array(Type.String()),
  expires_at: NullableTimestamp,
  last_used_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
  created_at: Timestamp,
};

export const ApiKeyView = Type.Object(apiKeyFields);

export const CreatedApiKeyView = Type.Object(
  {
    ...apiKeyFields,
    key: Type.String({ description: 'The key itself: shown only in this answer, stored only as a hash.' }),
  },
  { description: 'The new key. Keep `key` now; it cannot be shown again.' },
);

export const ApiKeyPage = Page(ApiKeyView);
