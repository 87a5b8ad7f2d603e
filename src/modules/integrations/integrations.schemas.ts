import { type Static, Type } from '@fastify/type-provider-typebox';
import { readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';
import { OrganizationCode } from '../organizations/organizations.schemas.js';
import { PATH_PATTERN, PATH_RULE } from './outbound-http.js';

export const SERVICE_TYPES = [
  'payment_gateway',
  'sms_provider',
  'email_provider',
  'storage',
  'analytics',
  'crm',
  'identity_provider',
  'rates_api',
  'webhook',
  // A downstream system with seed 000's provisioning API: the organization's users are synced to it.
  'user_provisioning',
  'other',
] as const;
export const AUTH_TYPES = ['none', 'api_key', 'basic', 'bearer', 'oauth2'] as const;
export const HEALTH_STATUSES = ['HEALTHY', 'DEGRADED', 'DOWN', 'UNKNOWN'] as const;
export const CREDENTIAL_NAMES = ['api_key', 'api_secret', 'username', 'password', 'token', 'client_secret'] as const;

export type AuthType = (typeof AUTH_TYPES)[number];
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

const literals = <T extends readonly string[]>(values: T, description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

const ServiceType = literals(SERVICE_TYPES, 'What kind of service this is.');
const AuthTypeSchema = literals(
  AUTH_TYPES,
  'How calls authenticate: `api_key` (header named by `api_key_header`), `basic` (username and password), ' +
    '`bearer` (token), `oauth2` (access token from the OAuth2 grant), `none`.',
);
const HealthStatusSchema = literals(
  HEALTH_STATUSES,
  'HEALTHY: 0 consecutive failures; DEGRADED: 1–2; DOWN: 3 or more.',
);

const Secret = Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 4096 }), Type.Null()]));

export const CredentialsInput = Type.Object(
  {
    api_key: Secret,
    api_secret: Secret,
    username: Secret,
    password: Secret,
    token: Secret,
    client_secret: Secret,
  },
  {
    additionalProperties: false,
    description:
      'Secrets, stored encrypted and never shown again. On update, a value replaces the stored one, null removes it, ' +
      'and an omitted one is kept — except when the update moves `base_url` or an OAuth2 endpoint to another ' +
      'origin: then `credentials` is required and replaces the stored set whole. What goes into a header must be ' +
      'sendable there: `api_key` visible ASCII (spaces inside), `token` visible ASCII without spaces, `username` ' +
      'and `password` (Basic) no control characters and no colon in `username`; anything else is refused with 400.',
  },
);
export type CredentialsInputValue = Partial<Record<(typeof CREDENTIAL_NAMES)[number], string | null>>;

const HttpUrl = Type.String({ minLength: 1, maxLength: 2000, description: 'An http:// or https:// URL.' });

export const OAuth2SettingsInput = Type.Object(
  {
    grant: Type.Optional(
      Type.Union([Type.Literal('authorization_code'), Type.Literal('client_credentials')], {
        description: 'Default `authorization_code` (with PKCE).',
      }),
    ),
    issuer: Type.Optional({
      ...HttpUrl,
      description:
        'The authorization server’s issuer identifier. Given alone, its endpoints are discovered (RFC 8414); ' +
        'it is also what an `iss` in the authorization response must equal (RFC 9207).',
    }),
    authorization_url: Type.Optional(HttpUrl),
    token_url: Type.Optional(HttpUrl),
    client_id: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    scope: Type.Optional(Type.String({ maxLength: 1000 })),
  },
  {
    additionalProperties: false,
    description: 'For auth_type `oauth2`. The client secret goes in `credentials.client_secret`.',
  },
);

const Settings = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  maxProperties: 100,
  description: 'Free-form, non-secret settings of the integration.',
});

const integrationInputFields = {
  name: Type.String({
    minLength: 1,
    maxLength: 200,
    pattern: readablePattern('\\S', 'Must not be blank.'),
  }),
  service_type: ServiceType,
  provider_name: Type.String({ maxLength: 200 }),
  description: Type.String({ maxLength: 2000 }),
  auth_type: AuthTypeSchema,
  base_url: HttpUrl,
  health_check_path: Type.String({
    maxLength: 2000,
    pattern: readablePattern(PATH_PATTERN, PATH_RULE),
    description:
      'Path below `base_url` that health checks GET (default `/`): not `//`, which would name another host, no ' +
      'backslash (read as `/`) or control character, and no `..` that climbs above the path of `base_url`.',
  }),
  api_key_header: Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: readablePattern(
      "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
      "A header name: letters, digits and !#$%&'*+.^_`|~- only.",
    ),
    description: 'Header that carries the API key (default `X-API-Key`).',
  }),
  timeout_ms: Type.Integer({ minimum: 100, maximum: 60_000, description: 'Per-call timeout (default 10000).' }),
  is_active: Type.Boolean(),
  is_test_mode: Type.Boolean({ description: 'Sandbox credentials and endpoints.' }),
  settings: Settings,
  oauth2: OAuth2SettingsInput,
  credentials: CredentialsInput,
};

export const CreateIntegrationBody = Type.Object(
  {
    ...Type.Partial(Type.Object(integrationInputFields)).properties,
    name: integrationInputFields.name,
    service_type: integrationInputFields.service_type,
    auth_type: integrationInputFields.auth_type,
    base_url: integrationInputFields.base_url,
    organization: Type.Optional(
      Type.Union([OrganizationCode], {
        description:
          'Organization code (superusers). Default: the caller’s organization. An `organization_id` in the body is refused (400 naming it).',
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateIntegrationInput = Static<typeof CreateIntegrationBody>;

export const UpdateIntegrationBody = Type.Partial(Type.Object(integrationInputFields), {
  additionalProperties: false,
  minProperties: 1,
});
export type UpdateIntegrationInput = Static<typeof UpdateIntegrationBody>;

export const IntegrationIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const ListIntegrationsQuery = Type.Object({
  ...PageQuery,
  organization: Type.Optional(Type.String({ maxLength: 100, description: 'Only this organization (code).' })),
  service_type: Type.Optional(ServiceType),
  auth_type: Type.Optional(AuthTypeSchema),
  health_status: Type.Optional(HealthStatusSchema),
  is_active: Type.Optional(Type.Boolean()),
  is_test_mode: Type.Optional(Type.Boolean()),
  search: Type.Optional(
    Type.String({ minLength: 1, maxLength: 200, description: 'Part of the name or provider name (case-insensitive).' }),
  ),
});
export type ListIntegrationsFilter = Static<typeof ListIntegrationsQuery>;

const Timestamp = Type.String({ format: 'date-time' });
const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

const CredentialState = Type.Object({
  set: Type.Boolean(),
  hint: Type.Union([Type.String(), Type.Null()], {
    description: 'The last four characters of a long API key or token, to recognise it; null otherwise.',
  }),
});

export const IntegrationView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  organization: Type.String({ description: 'Organization code.' }),
  organization_id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  service_type: Type.String(),
  provider_name: Type.String(),
  description: Type.String(),
  auth_type: Type.String(),
  base_url: Type.String(),
  health_check_path: Type.String(),
  api_key_header: Type.String(),
  timeout_ms: Type.Integer(),
  is_active: Type.Boolean(),
  is_test_mode: Type.Boolean(),
  settings: Type.Record(Type.String(), Type.Unknown()),
  oauth2: Type.Object({
    grant: Type.Optional(Type.String()),
    issuer: Type.Optional(Type.String()),
    authorization_url: Type.Optional(Type.String()),
    token_url: Type.Optional(Type.String()),
    client_id: Type.Optional(Type.String()),
    scope: Type.Optional(Type.String()),
  }),
  credentials: Type.Object(
    {
      api_key: CredentialState,
      api_secret: CredentialState,
      username: CredentialState,
      password: CredentialState,
      token: CredentialState,
      client_secret: CredentialState,
    },
    { description: 'Which secrets are stored; never their values.' },
  ),
  oauth2_token: Type.Union([
    Type.Object({
      scope: Type.Union([Type.String(), Type.Null()]),
      expires_at: NullableTimestamp,
      has_refresh_token: Type.Boolean(),
    }),
    Type.Null(),
  ]),
  health_status: Type.String(),
  consecutive_failures: Type.Integer(),
  total_requests: Type.Integer(),
  failed_requests: Type.Integer(),
  success_rate: Type.Union([Type.Number(), Type.Null()], {
    description: 'Percentage of successful requests, null before the first one.',
  }),
  last_health_check_at: NullableTimestamp,
  last_used_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const IntegrationPage = Page(IntegrationView);

export const HealthCheckView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  integration_id: Type.String({ format: 'uuid' }),
  status: Type.String({ description: '`success`, `failure` or `timeout`.' }),
  response_time_ms: Type.Union([Type.Integer(), Type.Null()]),
  http_status: Type.Union([Type.Integer(), Type.Null()]),
  error_message: Type.Union([Type.String(), Type.Null()]),
  checked_at: Timestamp,
});

export const HealthCheckBody = Type.Object({}, { additionalProperties: false });

export const HealthCheckResult = Type.Object({
  check: HealthCheckView,
  integration: IntegrationView,
});

export const HealthCheckPage = Page(HealthCheckView);

export const IntegrationLogView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  integration_id: Type.String({ format: 'uuid' }),
  method: Type.String(),
  endpoint: Type.String(),
  request_headers: Type.Record(Type.String(), Type.Unknown()),
  request_body: Type.Union([Type.String(), Type.Null()]),
  response_status: Type.Union([Type.Integer(), Type.Null()]),
  response_body: Type.Union([Type.String(), Type.Null()]),
  duration_ms: Type.Integer(),
  success: Type.Boolean(),
  error_message: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp,
});

export const IntegrationLogPage = Page(IntegrationLogView);

export const HistoryQuery = Type.Object({ ...PageQuery });

export const ListLogsQuery = Type.Object({
  ...PageQuery,
  success: Type.Optional(Type.Boolean()),
});

export const AuthorizeBody = Type.Object(
  {
    redirect_uri: Type.Optional({
      ...HttpUrl,
      description:
        'Where the provider sends the user back: an absolute http:// or https:// URL without a fragment or credentials (user:password@); default ' +
        '`PUBLIC_URL` + `/api/v1/integrations/oauth2/callback`. ' +
        'A different one must itself deliver `code` and `state` to that callback.',
    }),
  },
  { additionalProperties: false },
);

export const AuthorizationView = Type.Object({
  authorization_url: Type.String({ description: 'Send the user here to grant access.' }),
  expires_at: Timestamp,
});

export const CallbackQuery = Type.Object({
  state: Type.String({ minLength: 1, maxLength: 512 }),
  code: Type.Optional(Type.String({ maxLength: 4096 })),
  error: Type.Optional(Type.String({ maxLength: 200 })),
  error_description: Type.Optional(Type.String({ maxLength: 2000 })),
  iss: Type.Optional(Type.String({ maxLength: 2000 })),
});

export const CallbackView = Type.Object({
  integration_id: Type.String({ format: 'uuid' }),
  status: Type.Literal('authorized'),
  scope: Type.Union([Type.String(), Type.Null()]),
  expires_at: NullableTimestamp,
});
