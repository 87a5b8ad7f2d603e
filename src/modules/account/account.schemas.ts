import { type Static, Type } from '@fastify/type-provider-typebox';
import { Username, UserView } from '../users/users.schemas.js';

const Email = Type.String({ format: 'email', maxLength: 254 });
const Name = Type.String({ maxLength: 150 });
const Attributes = Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form profile data.' });
// The policy (length, common passwords, personal data) answers with its own reasons; the schema only caps the size.
const NewPassword = Type.String({
  minLength: 1,
  maxLength: 1024,
  description:
    'At least 10 characters (or the organization’s `password_min_length`), not a common password, and not containing the username or the email’s local part.',
});
const Token = Type.String({ minLength: 1, maxLength: 256, description: 'The token from the mailed link.' });
// Clients that serialise an unset field as null mean "no organization named", as at login.
const OrganizationCode = Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()], {
  description: 'Organization code; default (or null) `default`.',
});

/** The caller's own account: the user view without the identity provider's subject. */
export const ProfileView = Type.Omit(UserView, ['external_id']);

const PasswordConfirmation = Type.String({
  maxLength: 1024,
  description: 'The password typed again, as registration forms send it: it must equal `password`.',
});

/**
 * Closed: a field it does not know (`organization_id`, a misspelt `organisation`, `is_staff`,
 * `user_type`) answers 400 naming it, rather than an account created without it, perhaps in another
 * organization than the one the client meant.
 */
export const RegisterBody = Type.Object(
  {
    email: Email,
    password: NewPassword,
    password2: Type.Optional(PasswordConfirmation),
    password_confirm: Type.Optional(PasswordConfirmation),
    username: Type.Optional(Username),
    first_name: Type.Optional(Name),
    last_name: Type.Optional(Name),
    organization: Type.Optional(OrganizationCode),
  },
  { additionalProperties: false },
);
export type RegisterInput = Static<typeof RegisterBody>;

export const UpdateProfileBody = Type.Object(
  {
    username: Type.Optional(Type.Union([Username, Type.Null()])),
    first_name: Type.Optional(Name),
    last_name: Type.Optional(Name),
    attributes: Type.Optional(Attributes),
  },
  // Closed (fields the profile shows are dropped before the schema when sent back): a misspelt field is
  // refused by name rather than answered 200 with nothing changed.
  { minProperties: 1, additionalProperties: false },
);

/**
 * Fields only an administrator sets that the profile does not show; the profile refuses them by name,
 * as it does the fields it shows but does not take (email, status, flags, organization, …).
 */
export const ADMIN_ONLY_FIELDS = ['password', 'external_id'] as const;

export const ChangePasswordBody = Type.Object({
  old_password: Type.String({ minLength: 1, maxLength: 1024 }),
  new_password: NewPassword,
});

export const TokenBody = Type.Object({ token: Token });
export const TokenQuery = Type.Object({ token: Token });

export const PasswordResetBody = Type.Object({
  email: Email,
  organization: Type.Optional(
    Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()], {
      description: 'Organization code; default (or null): every organization.',
    }),
  ),
});

export const PasswordResetConfirmBody = Type.Object({ token: Token, new_password: NewPassword });

export const DetailView = Type.Object({ detail: Type.String() });
export const EmailVerifiedView = Type.Object({ detail: Type.String(), email_verified: Type.Literal(true) });
export const TokenStatusView = Type.Object({
  valid: Type.Literal(true),
  purpose: Type.Union([Type.Literal('password_reset'), Type.Literal('invite')]),
  expires_at: Type.String({ format: 'date-time' }),
});
export const InvitationView = Type.Object({
  detail: Type.String(),
  expires_at: Type.String({ format: 'date-time' }),
});

export const UserIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
