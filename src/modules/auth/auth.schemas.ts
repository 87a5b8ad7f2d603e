import { type Static, Type } from '@fastify/type-provider-typebox';
import { USER_STATUSES } from '../users/users.table.js';

// Generous caps: argon2 copes with long input, but unbounded bodies are a denial-of-service lever.
const Password = Type.String({ minLength: 1, maxLength: 1024 });
// Room for any token a client may send by mistake (an access token is longer than a refresh token):
// it answers 401 as an invalid refresh token rather than 400.
const RefreshToken = Type.String({ minLength: 1, maxLength: 4096 });

export const LoginBody = Type.Object({
  email: Type.Optional(Type.String({ minLength: 1, maxLength: 320, description: 'Email address (or give username).' })),
  username: Type.Optional(Type.String({ minLength: 1, maxLength: 320, description: 'Username, or an email address.' })),
  password: Password,
  organization: Type.Optional(
    Type.Union(
      [
        Type.String({ minLength: 1, maxLength: 100 }),
        // Clients that serialise an unset field as null mean "no organization named".
        Type.Null(),
      ],
      { description: 'Organization code; needed only when the credentials match accounts in several organizations.' },
    ),
  ),
});
export type LoginInput = Static<typeof LoginBody>;

/** Grant types of `POST /api/token/` (RFC 6749 §4.3 and §6); the discovery document lists them. */
export const GRANT_TYPES = ['password', 'refresh_token'] as const;

const PasswordGrant = Type.Object({ grant_type: Type.Optional(Type.Literal('password')), ...LoginBody.properties });
const RefreshTokenGrant = Type.Object({ grant_type: Type.Literal('refresh_token'), refresh_token: RefreshToken });
type TokenInput = Static<typeof PasswordGrant> | Static<typeof RefreshTokenGrant>;

/**
 * The token endpoint's body: a login (LoginBody) or an OAuth2 refresh grant. One object whose
 * required fields follow `grant_type` rather than a union of the two, so a missing field is named
 * as such ("password: This field is required.") instead of as a mismatch with the other grant.
 * Other grant types are refused before validation, as `unsupported_grant_type`.
 */
export const TokenBody = Type.Unsafe<TokenInput>(
  Type.Object(
    {
      grant_type: Type.Optional(
        Type.Union(
          GRANT_TYPES.map((g) => Type.Literal(g)),
          {
            description:
              'OAuth2 grant type (RFC 6749): `password` (the default) logs in; `refresh_token` trades `refresh_token` as `/api/token/refresh/` does.',
          },
        ),
      ),
      ...Type.Partial(LoginBody).properties,
      refresh_token: Type.Optional({
        ...RefreshToken,
        description: 'With `grant_type=refresh_token` (RFC 6749 §6): the refresh token to trade.',
      }),
    },
    {
      if: { properties: { grant_type: { const: 'refresh_token' } }, required: ['grant_type'] },
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then/else; this object is never awaited.
      then: { required: ['refresh_token'] },
      else: { required: ['password'] },
    },
  ),
);

export const TokenUserView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  username: Type.Union([Type.String(), Type.Null()]),
  first_name: Type.String(),
  last_name: Type.String(),
  organization: Type.String({ description: 'Organization code.' }),
  organization_id: Type.String({ format: 'uuid' }),
  is_staff: Type.Boolean(),
  is_superuser: Type.Boolean(),
  status: Type.Union(USER_STATUSES.map((s) => Type.Literal(s))),
});
export type TokenUser = Static<typeof TokenUserView>;

export const TokenPairView = Type.Object({
  access: Type.String({ description: 'ES256 JWT access token.' }),
  refresh: Type.String({ description: 'Opaque refresh token; single use.' }),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer({ description: 'Seconds until the access token expires.' }),
  user: TokenUserView,
});

export const RefreshBody = Type.Object({ refresh: RefreshToken });

export const RefreshedView = Type.Object({
  access: Type.String(),
  refresh: Type.String({ description: 'The successor refresh token; the one presented is now used up.' }),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
});

export const LogoutBody = Type.Object({
  refresh: Type.Optional(RefreshToken),
  all: Type.Optional(
    Type.Boolean({
      description:
        "`true`: sign out everywhere, ending every session of the Bearer token's user (this one included); needs the Bearer token.",
    }),
  ),
});

export const ValidTokenView = Type.Object({
  valid: Type.Literal(true),
  user: TokenUserView,
  exp: Type.Integer({ description: 'Expiry of the access token (seconds since the epoch).' }),
});
export const InvalidTokenView = Type.Object({ valid: Type.Literal(false) });
