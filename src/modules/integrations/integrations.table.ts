import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { createdAt, idColumn, updatedAt } from '../../platform/db/columns.js';
import { organizationIdColumn } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';

/** Which credential kinds an integration may hold; their values are only ever stored sealed. */
export type CredentialName = 'api_key' | 'api_secret' | 'username' | 'password' | 'token' | 'client_secret';

/** What the answers may show about a stored credential: that it is set and, for long keys, its last characters. */
export type CredentialHints = Partial<Record<CredentialName, { hint: string | null }>>;

/** Non-secret settings of the OAuth2 grant an integration uses. */
export interface OAuth2Settings {
  issuer?: string | undefined;
  authorization_url?: string | undefined;
  token_url?: string | undefined;
  client_id?: string | undefined;
  scope?: string | undefined;
  grant?: 'authorization_code' | 'client_credentials' | undefined;
}

/**
 * An external service an organization calls (payment gateway, SMS provider, …). Credentials are
 * one sealed JSON object (envelope, context bound to the row id); `credential_hints` says which of
 * them are set without revealing them.
 */
export const integrations = pgTable(
  'integrations',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    name: text('name').notNull(),
    serviceType: text('service_type').notNull(),
    providerName: text('provider_name').notNull().default(''),
    description: text('description').notNull().default(''),
    authType: text('auth_type').notNull(),
    baseUrl: text('base_url').notNull(),
    healthCheckPath: text('health_check_path').notNull().default('/'),
    apiKeyHeader: text('api_key_header').notNull().default('X-API-Key'),
    timeoutMs: integer('timeout_ms').notNull().default(10_000),
    isActive: boolean('is_active').notNull().default(true),
    isTestMode: boolean('is_test_mode').notNull().default(false),
    settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
    oauth2: jsonb('oauth2').$type<OAuth2Settings>().notNull().default({}),
    credentialsSealed: text('credentials_sealed'),
    credentialHints: jsonb('credential_hints').$type<CredentialHints>().notNull().default({}),
    healthStatus: text('health_status').notNull().default('UNKNOWN'),
    consecutiveFailures: integer('consecutive_failures').notNull().default(0),
    totalRequests: bigint('total_requests', { mode: 'number' }).notNull().default(0),
    failedRequests: bigint('failed_requests', { mode: 'number' }).notNull().default(0),
    lastHealthCheckAt: timestamp('last_health_check_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('integrations_org_name_key').on(t.organizationId, sql`lower(${t.name})`),
    index('integrations_org_id_idx').on(t.organizationId, t.id),
    // The health sweep reads active integrations across organizations, least recently checked first.
    index('integrations_active_checked_idx').on(t.lastHealthCheckAt).where(sql`${t.isActive}`),
    check('integrations_health_status_check', sql`${t.healthStatus} in ('HEALTHY', 'DEGRADED', 'DOWN', 'UNKNOWN')`),
  ],
);

export type Integration = typeof integrations.$inferSelect;

/** A column naming the integration a row belongs to; the row goes when the integration is deleted. */
export const integrationIdColumn = () =>
  uuid('integration_id')
    .notNull()
    .references(() => integrations.id, { onDelete: 'cascade' });

/** One health check of an integration, kept as history. */
export const integrationHealthChecks = pgTable(
  'integration_health_checks',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    integrationId: integrationIdColumn(),
    status: text('status').notNull(),
    responseTimeMs: integer('response_time_ms'),
    httpStatus: integer('http_status'),
    errorMessage: text('error_message'),
    checkedAt: timestamp('checked_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('integration_health_checks_integration_idx').on(t.integrationId, t.id),
    check('integration_health_checks_status_check', sql`${t.status} in ('success', 'failure', 'timeout')`),
  ],
);

export type IntegrationHealthCheck = typeof integrationHealthChecks.$inferSelect;

/** One call made to an integration: sensitive values redacted, bodies cut to a bound. */
export const integrationLogs = pgTable(
  'integration_logs',
  {
    organizationId: organizationIdColumn(),
    id: idColumn(),
    integrationId: integrationIdColumn(),
    method: text('method').notNull(),
    endpoint: text('endpoint').notNull(),
    requestHeaders: jsonb('request_headers').$type<Record<string, unknown>>().notNull().default({}),
    requestBody: text('request_body'),
    responseStatus: integer('response_status'),
    responseBody: text('response_body'),
    durationMs: integer('duration_ms').notNull(),
    success: boolean('success').notNull(),
    errorMessage: text('error_message'),
    /**
     * The users the call concerns (the caller says which): deleting one of them erases the log's
     * bodies and their keycloak_ids in its endpoint, and takes them out of this list. No foreign key:
     * the log outlives the user, erased.
     */
    userIds: uuid('user_ids').array(),
    createdAt: createdAt(),
  },
  (t) => [
    index('integration_logs_integration_idx').on(t.integrationId, t.id),
    index('integration_logs_user_ids_idx').using('gin', t.userIds).where(sql`${t.userIds} is not null`),
  ],
);

export type IntegrationLog = typeof integrationLogs.$inferSelect;

/** The OAuth2 tokens of an integration, sealed; at most one set per integration. */
export const integrationOAuth2Tokens = pgTable(
  'integration_oauth2_tokens',
  {
    organizationId: organizationIdColumn(),
    integrationId: integrationIdColumn(),
    accessTokenSealed: text('access_token_sealed').notNull(),
    refreshTokenSealed: text('refresh_token_sealed'),
    tokenType: text('token_type').notNull().default('Bearer'),
    scope: text('scope'),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    /**
     * Set while one caller renews the token, so that others wait for its result instead of spending
     * the same refresh token again; a lease, so a caller that dies mid-renewal blocks no one for long.
     */
    renewalLeaseUntil: timestamp('renewal_lease_until', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.organizationId, t.integrationId] })],
);

export type IntegrationOAuth2Token = typeof integrationOAuth2Tokens.$inferSelect;

/**
 * Pending OAuth2 authorizations: the state value's hash finds the row, the PKCE verifier is
 * sealed. A row is used once and expires.
 */
export const integrationOAuth2States = pgTable(
  'integration_oauth2_states',
  {
    stateHash: text('state_hash').primaryKey(),
    organizationId: organizationIdColumn(),
    integrationId: integrationIdColumn(),
    codeVerifierSealed: text('code_verifier_sealed').notNull(),
    redirectUri: text('redirect_uri').notNull(),
    createdBy: uuid('created_by').references(() => users.id, { onDelete: 'set null' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('integration_oauth2_states_integration_idx').on(t.integrationId)],
);
