import { type Static, Type } from '@fastify/type-provider-typebox';
import { readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';

export const OrganizationCode = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: readablePattern(
    '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
    'Use letters, digits, _ . and -, starting with a letter or digit.',
  ),
  description: 'Stable identifier clients use (seed 000: engagemx_client_id).',
});

export const OrganizationView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  code: Type.String(),
  name: Type.String(),
  description: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()),
  is_active: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

// The settings Gatehouse reads are checked by type and range (a value it would ignore is refused,
// not stored to mislead whoever set it); any other key is the organization's own.
const Settings = Type.Object(
  {
    self_registration: Type.Optional(
      Type.Boolean({ description: '`false` closes self-registration (403 `registration_closed`).' }),
    ),
    require_email_verification: Type.Optional(
      Type.Boolean({ description: '`true` refuses logins until the mailed verification link was followed.' }),
    ),
    require_mfa: Type.Optional(
      Type.Boolean({
        description:
          '`true`: accounts without a confirmed TOTP authenticator cannot log in (403 `mfa_enrollment_required`, with an ' +
          '`mfa_token` to enrol one at `/api/v1/users/login/mfa/enrol/`).',
      }),
    ),
    password_min_length: Type.Optional(
      Type.Integer({ minimum: 8, maximum: 128, description: 'Minimum password length (default 10).' }),
    ),
  },
  {
    description:
      'Settings: those named here are read by Gatehouse; any other key is kept as given. At most 64 KiB ' +
      '(65536 bytes) as JSON (400 naming `settings` otherwise).',
  },
);

/**
 * The most bytes an organization's settings take as JSON. They are copied into every read of the
 * organization and into the audit event of each change (from and to), so a body within the
 * server's limit (megabytes) would otherwise multiply into every answer and the activity trail.
 */
export const SETTINGS_MAX_BYTES = 64 * 1024;

/** The serialised size of settings over SETTINGS_MAX_BYTES, or undefined when they fit. */
export function oversizedSettings(settings: Record<string, unknown> | undefined): number | undefined {
  if (settings === undefined) return undefined;
  const bytes = Buffer.byteLength(JSON.stringify(settings));
  return bytes > SETTINGS_MAX_BYTES ? bytes : undefined;
}

// Closed at the top (a misspelt `is_actve` answers 400 naming it rather than success for a change not
// made); `settings` stays open for the organization's own keys.
export const CreateOrganizationBody = Type.Object(
  {
    code: OrganizationCode,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    settings: Type.Optional(Settings),
    is_active: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateOrganizationInput = Static<typeof CreateOrganizationBody>;

export const UpdateOrganizationBody = Type.Partial(
  Type.Object({
    name: Type.String({ minLength: 1, maxLength: 200 }),
    description: Type.String({ maxLength: 2000 }),
    settings: Settings,
    is_active: Type.Boolean(),
  }),
  { minProperties: 1, additionalProperties: false },
);
export type UpdateOrganizationInput = Static<typeof UpdateOrganizationBody>;

export const OrganizationRefParams = Type.Object({
  ref: Type.String({ minLength: 1, maxLength: 100, description: 'Organization id or code.' }),
});

export const ListOrganizationsQuery = Type.Object({
  ...PageQuery,
  search: Type.Optional(Type.String({ maxLength: 200, description: 'Prefix of the code or name.' })),
  is_active: Type.Optional(Type.Boolean()),
});
export type ListOrganizationsInput = Static<typeof ListOrganizationsQuery>;

export const OrganizationPage = Page(OrganizationView);
