import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { and, desc, eq, isNotNull, or, sql } from 'drizzle-orm';
import { envelopeFor } from '../../platform/crypto/envelope.js';
import { organizationScopeOf } from '../../platform/http/auth.js';
import { integrationErrors } from '../integrations/integrations.errors.js';
import { findIntegration } from '../integrations/integrations.queries.js';
import { IntegrationIdParams } from '../integrations/integrations.schemas.js';
import { assertMaySendUsers } from '../integrations/integrations.service.js';
import { addressRulesOf } from '../integrations/refused-addresses.js';
import { scheduleSyncSweep } from './downstream-sync.jobs.js';
import { assertSyncTarget, countPending, heldNow, retired, syncIntegration } from './downstream-sync.service.js';
import { userSyncStates } from './downstream-sync.table.js';

const tags = ['integrations'];
const Failure = Type.Object({ user_id: Type.String(), keycloak_id: Type.String(), error: Type.String() });

const SyncBody = Type.Object(
  {
    dry_run: Type.Optional(Type.Boolean({ description: 'Count what would be sent; send nothing.' })),
    full: Type.Optional(Type.Boolean({ description: 'Send every user again, not only the changed ones.' })),
  },
  { additionalProperties: false },
);

const SyncView = Type.Object({
  integration_id: Type.String(),
  dry_run: Type.Boolean(),
  pending: Type.Integer({ description: 'Users (and keycloak_ids no user holds any more) that needed sending.' }),
  upserted: Type.Integer(),
  deactivated: Type.Integer(),
  failed: Type.Integer(),
  stopped: Type.Union([Type.String(), Type.Null()], {
    description: 'Why the run stopped early (the downstream gave no usable answer); the rest goes next time.',
  }),
  failures: Type.Array(Failure, { description: 'The first 100 refusals.' }),
});

const SyncStatusView = Type.Object({
  synced: Type.Integer({ description: 'Users the downstream holds as Gatehouse last sent them.' }),
  pending: Type.Integer({
    description:
      'Users the next sync sends, and keycloak_ids it deactivates that no user holds any more (deleted users, changed keycloak_ids).',
  }),
  failed: Type.Integer({
    description: 'Users (or keycloak_ids no user holds any more) whose last attempt the downstream refused.',
  }),
  last_synced_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  failures: Type.Array(Type.Object({ ...Failure.properties, attempted_at: Type.String({ format: 'date-time' }) }), {
    description: 'The 50 latest refusals.',
  }),
});

export const downstreamSyncRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const envelope = envelopeFor(app.config);
  const rules = addressRulesOf(app.config);
  await scheduleSyncSweep(db, app.config);

  async function syncTarget(actor: Parameters<typeof organizationScopeOf>[0], id: string) {
    const integration = await findIntegration(db, id, organizationScopeOf(actor));
    if (!integration) throw integrationErrors.notFound(id);
    return integration;
  }

  app.post(
    '/api/v1/integrations/:id/sync',
    {
      config: { auth: { permission: 'integrations.manage' } },
      schema: {
        operationId: 'syncIntegrationUsers',
        tags,
        description:
          'Sends the organization’s users to a `user_provisioning` integration (a downstream system with seed 000’s ' +
          'provisioning API at its `base_url`) now: users with a `keycloak_id` that changed since the downstream ' +
          'last took them, active ones by bulk upsert, those no longer active by deactivation; first, the ' +
          'keycloak_ids the downstream holds as active that no user holds any more (a deleted user, a changed ' +
          'keycloak_id) are deactivated. It discloses the users to the downstream, so it needs `users.view` as ' +
          'well as `integrations.manage` (403 naming it otherwise). 400 ' +
          '`not_a_sync_target` for other service types; 409 for a deactivated integration, and 409 ' +
          '`sync_in_progress` while another sync to it runs (a dry run only counts, and runs beside it).',
        params: IntegrationIdParams,
        body: SyncBody,
        response: { 200: SyncView },
      },
      // Every field is optional, so a call without a body is the same as one with `{}` (a JSON `null` is refused).
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
      await assertMaySendUsers(app.can, req.actor);
      const integration = await syncTarget(req.actor, req.params.id);
      return syncIntegration(db, envelope, rules, integration, {
        dryRun: req.body.dry_run,
        full: req.body.full,
        actor: req.actor,
      });
    },
  );

  app.get(
    '/api/v1/integrations/:id/sync-status',
    {
      config: { auth: { permission: 'integrations.view' } },
      schema: {
        operationId: 'getIntegrationSyncStatus',
        tags,
        description:
          'Where the sync of users to a `user_provisioning` integration stands, and its latest refusals. They ' +
          'name users by id and keycloak_id, so it needs `users.view` as well as `integrations.view` (403 otherwise).',
        params: IntegrationIdParams,
        response: { 200: SyncStatusView },
      },
    },
    async (req) => {
      await assertMaySendUsers(
        app.can,
        req.actor,
        'The sync status names users: it needs the users.view permission as well.',
      );
      const integration = await syncTarget(req.actor, req.params.id);
      assertSyncTarget(integration);
      const ofIntegration = and(
        eq(userSyncStates.organizationId, integration.organizationId),
        eq(userSyncStates.integrationId, integration.id),
      );
      // A state no user holds is a keycloak_id still to deactivate (pending, or failed when refused), or
      // one the next run drops; only a held one counts as synced.
      const tracked = or(heldNow, retired);
      const [counts] = await db
        .select({
          synced: sql<number>`count(*) filter (where ${userSyncStates.lastError} is null and ${heldNow})`.mapWith(
            Number,
          ),
          failed: sql<number>`count(*) filter (where ${userSyncStates.lastError} is not null and ${tracked})`.mapWith(
            Number,
          ),
          last: sql<Date | null>`max(${userSyncStates.syncedAt})`.mapWith((v) => (v ? new Date(v) : null)),
        })
        .from(userSyncStates)
        .where(ofIntegration);
      const failures = await db
        .select({
          userId: userSyncStates.userId,
          keycloakId: userSyncStates.keycloakId,
          error: userSyncStates.lastError,
          attemptedAt: userSyncStates.attemptedAt,
        })
        .from(userSyncStates)
        .where(and(ofIntegration, isNotNull(userSyncStates.lastError), tracked))
        .orderBy(desc(userSyncStates.attemptedAt))
        .limit(50);
      return {
        synced: counts?.synced ?? 0,
        pending: await countPending(db, integration),
        failed: counts?.failed ?? 0,
        last_synced_at: counts?.last?.toISOString() ?? null,
        failures: failures.map((f) => ({
          user_id: f.userId,
          keycloak_id: f.keycloakId,
          error: f.error ?? '',
          attempted_at: f.attemptedAt.toISOString(),
        })),
      };
    },
  );
};
