import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { envelopeFor } from '../../platform/crypto/envelope.js';
import { organizationScopeOf } from '../../platform/http/auth.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import { listingScope } from '../organizations/organizations.queries.js';
import { runHealthCheck } from './health-checks.js';
import { integrationErrors } from './integrations.errors.js';
import { scheduleHealthSweep } from './integrations.jobs.js';
import {
  findIntegration,
  type IntegrationRow,
  listHealthChecks,
  listIntegrationLogs,
  listIntegrations,
} from './integrations.queries.js';
import {
  AuthorizationView,
  AuthorizeBody,
  CallbackQuery,
  CallbackView,
  CREDENTIAL_NAMES,
  CreateIntegrationBody,
  HealthCheckBody,
  HealthCheckPage,
  HealthCheckResult,
  HistoryQuery,
  IntegrationIdParams,
  IntegrationLogPage,
  IntegrationPage,
  IntegrationView,
  ListIntegrationsQuery,
  ListLogsQuery,
  UpdateIntegrationBody,
} from './integrations.schemas.js';
import {
  assertMaySendUsers,
  createIntegration,
  deleteIntegration,
  integrationManagerOf,
  setIntegrationActive,
  USER_PROVISIONING_TYPE,
  updateIntegration,
} from './integrations.service.js';
import type { IntegrationHealthCheck, IntegrationLog } from './integrations.table.js';
import { callbackPath, completeAuthorization, startAuthorization } from './oauth2.js';
import { addressRulesOf } from './refused-addresses.js';

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function toIntegrationView(row: IntegrationRow) {
  const credentials = Object.fromEntries(
    CREDENTIAL_NAMES.map((name) => {
      const stored = row.credentialHints[name];
      return [name, { set: stored !== undefined, hint: stored?.hint ?? null }];
    }),
  ) as Record<(typeof CREDENTIAL_NAMES)[number], { set: boolean; hint: string | null }>;
  return {
    id: row.id,
    organization: row.organizationCode,
    organization_id: row.organizationId,
    name: row.name,
    service_type: row.serviceType,
    provider_name: row.providerName,
    description: row.description,
    auth_type: row.authType,
    base_url: row.baseUrl,
    health_check_path: row.healthCheckPath,
    api_key_header: row.apiKeyHeader,
    timeout_ms: row.timeoutMs,
    is_active: row.isActive,
    is_test_mode: row.isTestMode,
    settings: row.settings,
    oauth2: row.oauth2,
    credentials,
    oauth2_token:
      row.tokenHasRefresh === null
        ? null
        : { scope: row.tokenScope, expires_at: iso(row.tokenExpiresAt), has_refresh_token: row.tokenHasRefresh },
    health_status: row.healthStatus,
    consecutive_failures: row.consecutiveFailures,
    total_requests: row.totalRequests,
    failed_requests: row.failedRequests,
    success_rate:
      row.totalRequests === 0
        ? null
        : Math.round(((row.totalRequests - row.failedRequests) / row.totalRequests) * 10_000) / 100,
    last_health_check_at: iso(row.lastHealthCheckAt),
    last_used_at: iso(row.lastUsedAt),
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

export function toHealthCheckView(c: IntegrationHealthCheck) {
  return {
    id: c.id,
    integration_id: c.integrationId,
    status: c.status,
    response_time_ms: c.responseTimeMs,
    http_status: c.httpStatus,
    error_message: c.errorMessage,
    checked_at: c.checkedAt.toISOString(),
  };
}

function toLogView(l: IntegrationLog) {
  return {
    id: l.id,
    integration_id: l.integrationId,
    method: l.method,
    endpoint: l.endpoint,
    request_headers: l.requestHeaders,
    request_body: l.requestBody,
    response_status: l.responseStatus,
    response_body: l.responseBody,
    duration_ms: l.durationMs,
    success: l.success,
    error_message: l.errorMessage,
    created_at: l.createdAt.toISOString(),
  };
}

const tags = ['integrations'];
const view = { permission: 'integrations.view' };
const manage = { permission: 'integrations.manage' };

export const integrationsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const envelope = envelopeFor(app.config);
  const rules = addressRulesOf(app.config);
  await scheduleHealthSweep(db, app.config);

  /** The integration the caller may see, or 404 — another organization's answers as if it did not exist. */
  async function visibleIntegration(actor: Parameters<typeof organizationScopeOf>[0], id: string) {
    const row = await findIntegration(db, id, organizationScopeOf(actor));
    if (!row) throw integrationErrors.notFound(id);
    return row;
  }

  /**
   * The scheduled sync sends the users to every active user_provisioning integration, so setting one
   * up, changing it (its `base_url` above all) or turning it on is checked as running a sync would
   * be; turning it off is not (it stops the sending).
   */
  async function assertMayChangeReceiver(
    actor: Parameters<typeof organizationScopeOf>[0],
    id: string,
    change: Record<string, unknown>,
  ) {
    const given = Object.entries(change).filter(([, value]) => value !== undefined);
    if (given.every(([field, value]) => field === 'is_active' && value === false)) return;
    const receives =
      change.service_type === USER_PROVISIONING_TYPE ||
      (await visibleIntegration(actor, id)).serviceType === USER_PROVISIONING_TYPE;
    if (receives) await assertMaySendUsers(app.can, actor);
  }

  app.post(
    '/api/v1/integrations',
    {
      config: { auth: manage },
      preValidation: refuseOrganizationId,
      schema: {
        operationId: 'createIntegration',
        tags,
        description:
          'Registers an external service. Credentials are encrypted at rest and never shown again; the answer ' +
          'says which are set. Organization administrators register integrations for their own organization; ' +
          'superusers may name any organization. A `user_provisioning` integration receives the organization’s ' +
          'users, so registering one needs `users.view` as well (403 otherwise).',
        body: CreateIntegrationBody,
        response: { 201: IntegrationView },
      },
    },
    async (req, reply) => {
      if (req.body.service_type === USER_PROVISIONING_TYPE) await assertMaySendUsers(app.can, req.actor);
      const row = await createIntegration(db, envelope, rules, integrationManagerOf(req.actor), req.body);
      return reply.code(201).send(toIntegrationView(row));
    },
  );

  app.get(
    '/api/v1/integrations',
    {
      config: { auth: view },
      schema: {
        operationId: 'listIntegrations',
        tags,
        description: 'Integrations, newest first, with filters and a name or provider search.',
        querystring: ListIntegrationsQuery,
        response: { 200: IntegrationPage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const organizationId = await listingScope(db, req.actor, req.query.organization);
      if (organizationId === null) return { results: [], next: null };
      const rows = await listIntegrations(db, organizationId, { ...req.query, limit });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toIntegrationView), next: page.next };
    },
  );

  app.get(
    '/api/v1/integrations/:id',
    {
      config: { auth: view },
      schema: { operationId: 'getIntegration', tags, params: IntegrationIdParams, response: { 200: IntegrationView } },
    },
    async (req) => toIntegrationView(await visibleIntegration(req.actor, req.params.id)),
  );

  app.patch(
    '/api/v1/integrations/:id',
    {
      config: { auth: manage },
      schema: {
        operationId: 'updateIntegration',
        tags,
        description:
          'Changes an integration. In `credentials`, a value replaces the stored secret, null removes it and an ' +
          'omitted one is kept. Secrets follow the host: a change of the origin (scheme, host or port) of ' +
          '`base_url` or of an OAuth2 endpoint (`oauth2.token_url`, `oauth2.authorization_url`, or the `issuer` ' +
          'they are discovered from) is refused with 400 `integration_credentials_required` unless `credentials` ' +
          'is in the same request; the credentials given then replace the stored set whole (`{}` keeps none), ' +
          'and the stored OAuth2 tokens and pending authorizations are dropped, so an `authorization_code` ' +
          'integration must be authorized again. A change of path only keeps everything. The audit event ' +
          'records the origin changes and what was dropped. Changing a `user_provisioning` integration (or making ' +
          'one), other than turning it off, needs `users.view` as well (403 otherwise): it receives the users. ' +
          PARTIAL_UPDATE_RULES,
        params: IntegrationIdParams,
        body: UpdateIntegrationBody,
        response: { 200: IntegrationView },
      },
      ...partialUpdate({
        params: IntegrationIdParams,
        body: UpdateIntegrationBody,
        view: IntegrationView,
        current: async (req) => toIntegrationView(await visibleIntegration(req.actor, req.params.id)),
      }),
    },
    async (req) => {
      await assertMayChangeReceiver(req.actor, req.params.id, req.body);
      return toIntegrationView(
        await updateIntegration(db, envelope, rules, integrationManagerOf(req.actor), req.params.id, req.body),
      );
    },
  );

  app.delete(
    '/api/v1/integrations/:id',
    {
      config: { auth: manage },
      schema: {
        operationId: 'deleteIntegration',
        tags,
        description: 'Deletes the integration with its tokens, health-check history and request logs.',
        params: IntegrationIdParams,
        response: { 204: { type: 'null', description: 'Deleted.' } },
      },
    },
    async (req, reply) => {
      await deleteIntegration(db, integrationManagerOf(req.actor), req.params.id);
      return reply.code(204).send();
    },
  );

  for (const [action, active] of [
    ['activate', true],
    ['deactivate', false],
  ] as const) {
    app.post(
      `/api/v1/integrations/:id/${action}`,
      {
        config: { auth: manage },
        schema: {
          operationId: `${action}Integration`,
          tags,
          description: active
            ? 'Turns the integration on: it is called and checked again. A `user_provisioning` one then receives ' +
              'the users again, so turning it on needs `users.view` as well (403 otherwise).'
            : 'Turns the integration off: calls are refused and scheduled health checks skip it.',
          params: IntegrationIdParams,
          response: { 200: IntegrationView },
        },
      },
      async (req) => {
        await assertMayChangeReceiver(req.actor, req.params.id, { is_active: active });
        return toIntegrationView(
          await setIntegrationActive(db, envelope, rules, integrationManagerOf(req.actor), req.params.id, active),
        );
      },
    );
  }

  app.get(
    '/api/v1/integrations/:id/health-checks',
    {
      config: { auth: view },
      schema: {
        operationId: 'listIntegrationHealthChecks',
        tags,
        description: 'Health-check history of the integration, newest first.',
        params: IntegrationIdParams,
        querystring: HistoryQuery,
        response: { 200: HealthCheckPage },
      },
    },
    async (req) => {
      const integration = await visibleIntegration(req.actor, req.params.id);
      const limit = req.query.limit ?? 50;
      const rows = await listHealthChecks(db, integration.organizationId, integration.id, {
        limit,
        cursor: req.query.cursor,
      });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toHealthCheckView), next: page.next };
    },
  );

  app.get(
    '/api/v1/integrations/:id/logs',
    {
      config: { auth: view },
      schema: {
        operationId: 'listIntegrationLogs',
        tags,
        description:
          'Calls Gatehouse made to the integration, newest first. Sensitive headers and body fields are redacted ' +
          'and bodies are cut to a bound before they are stored. The calls to a `user_provisioning` integration ' +
          'carry the users sent (emails, names, keycloak_ids in bodies and endpoints), so reading its logs needs ' +
          '`users.view` as well as `integrations.view` (403 otherwise).',
        params: IntegrationIdParams,
        querystring: ListLogsQuery,
        response: { 200: IntegrationLogPage },
      },
    },
    async (req) => {
      const integration = await visibleIntegration(req.actor, req.params.id);
      if (integration.serviceType === USER_PROVISIONING_TYPE) {
        await assertMaySendUsers(
          app.can,
          req.actor,
          'The request logs of a user_provisioning integration name the users sent: they need the users.view permission as well.',
        );
      }
      const limit = req.query.limit ?? 50;
      const rows = await listIntegrationLogs(db, integration.organizationId, integration.id, {
        limit,
        cursor: req.query.cursor,
        success: req.query.success,
      });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toLogView), next: page.next };
    },
  );

  app.post(
    '/api/v1/integrations/:id/health-check',
    {
      config: { auth: manage },
      schema: {
        operationId: 'checkIntegrationHealth',
        tags,
        description:
          'Checks the integration now: GET of `base_url` + `health_check_path` with its authentication, within ' +
          '`timeout_ms` (an OAuth2 token renewal included). A 2xx status is a success; anything else, a redirect ' +
          'too (it is not followed), a failure; no answer in time a timeout. The body takes no fields. The check ' +
          'joins the history, and the health status follows the consecutive failures: 0 HEALTHY, 1–2 DEGRADED, ' +
          '3 or more DOWN. A deactivated integration is not called (409 `integration_inactive`); one deleted ' +
          'meanwhile, or of another organization, answers 404. One whose address, authentication or timeout ' +
          'changed while it was checked answers 409 `integration_changed`, and the outdated result is not recorded.',
        params: IntegrationIdParams,
        body: HealthCheckBody,
        response: { 200: HealthCheckResult },
      },
      // A call without a body is the same as one with `{}`.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req) => {
      const integration = await visibleIntegration(req.actor, req.params.id);
      const check = await runHealthCheck(db, envelope, rules, {
        organizationId: integration.organizationId,
        integrationId: integration.id,
      });
      return {
        check: toHealthCheckView(check),
        integration: toIntegrationView(await visibleIntegration(req.actor, integration.id)),
      };
    },
  );

  app.post(
    '/api/v1/integrations/:id/oauth2/authorize',
    {
      config: { auth: manage },
      schema: {
        operationId: 'authorizeIntegration',
        tags,
        description:
          'Starts the OAuth2 authorization-code flow with PKCE for an integration with auth_type `oauth2`. Send ' +
          'the user to `authorization_url`; the provider returns them to the callback, which stores the tokens. ' +
          'The pending authorization expires after 10 minutes and can be completed once.',
        params: IntegrationIdParams,
        body: AuthorizeBody,
        response: { 200: AuthorizationView },
      },
      // Every field is optional, so a call without a body is the same as one with `{}`.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req) => {
      const visible = await visibleIntegration(req.actor, req.params.id);
      const started = await startAuthorization(db, envelope, rules, visible, {
        redirectUri: req.body.redirect_uri ?? `${app.config.publicUrl}${callbackPath}`,
        userId: req.actor.kind === 'user' ? req.actor.userId : null,
      });
      return { authorization_url: started.authorizationUrl, expires_at: started.expiresAt.toISOString() };
    },
  );

  app.get(
    callbackPath,
    {
      schema: {
        operationId: 'completeIntegrationAuthorization',
        tags,
        description:
          'Where the OAuth2 provider returns the user. Needs no credential: the `state` (random, single-use, ' +
          'expiring, bound to one integration) authorizes it. Exchanges the code with the PKCE verifier and ' +
          'stores the tokens encrypted. A browser (`Accept: text/html`) is then sent on to the integration’s ' +
          'page in the admin console (303); other clients get the outcome as JSON.',
        querystring: CallbackQuery,
        response: { 200: CallbackView },
      },
    },
    async (req, reply) => {
      const params = new URLSearchParams();
      for (const [name, value] of Object.entries(req.query)) if (value !== undefined) params.set(name, value);
      const done = await completeAuthorization(db, envelope, rules, params);
      if (req.headers.accept?.includes('text/html')) {
        return reply.redirect(`${app.config.publicUrl}/admin/integrations/${done.integration.id}/show`, 303);
      }
      return {
        integration_id: done.integration.id,
        status: 'authorized' as const,
        scope: done.scope,
        expires_at: done.expiresAt?.toISOString() ?? null,
      };
    },
  );
};
