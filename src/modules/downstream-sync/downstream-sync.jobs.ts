import { and, asc, eq } from 'drizzle-orm';
import type { Config } from '../../config.js';
import { type Envelope, envelopeFor } from '../../platform/crypto/envelope.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { AppError } from '../../platform/http/errors.js';
import { scheduleRecurringJob } from '../../platform/jobs/recurring.js';
import { registerJobHandler } from '../../platform/jobs/registry.js';
import { findIntegration } from '../integrations/integrations.queries.js';
import { integrations } from '../integrations/integrations.table.js';
import { type AddressRules, addressRulesOf } from '../integrations/refused-addresses.js';
import { SYNC_SERVICE_TYPE, type SyncReport, syncIntegration } from './downstream-sync.service.js';

/**
 * The scheduled sync: every `DOWNSTREAM_SYNC_INTERVAL_SECONDS`, changed users go to every active
 * `user_provisioning` integration. Like the integration sweep, the job enqueues its next run when
 * it starts (a `stately` queue keeps one waiting, however many nodes start it).
 */
export const SYNC_SWEEP_JOB = 'downstream-sync.sweep';

/** Makes sure a sync is waiting, due within `DOWNSTREAM_SYNC_INTERVAL_SECONDS`. */
export async function scheduleSyncSweep(
  db: DbOrTx,
  config: Pick<Config, 'downstreamSyncIntervalSeconds'>,
  now = Date.now(),
): Promise<void> {
  const period = config.downstreamSyncIntervalSeconds;
  if (period <= 0) return;
  await scheduleRecurringJob(db, SYNC_SWEEP_JOB, period, now);
}

/** Syncs every active sync target (of one organization, when given); one failing target does not stop the others. */
export async function syncAllTargets(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  options: { organizationId?: string; dryRun?: boolean; full?: boolean; onError?: (id: string, err: unknown) => void },
): Promise<SyncReport[]> {
  const conditions = [eq(integrations.serviceType, SYNC_SERVICE_TYPE), eq(integrations.isActive, true)];
  if (options.organizationId) conditions.push(eq(integrations.organizationId, options.organizationId));
  const targets = await db
    .select({ id: integrations.id, organizationId: integrations.organizationId })
    .from(integrations)
    .where(and(...conditions))
    .orderBy(asc(integrations.id));
  const reports: SyncReport[] = [];
  for (const target of targets) {
    try {
      const integration = await findIntegration(db, target.id, target.organizationId);
      if (integration) reports.push(await syncIntegration(db, envelope, rules, integration, options));
    } catch (err) {
      options.onError?.(target.id, err);
    }
  }
  return reports;
}

registerJobHandler(
  SYNC_SWEEP_JOB,
  async (_job, ctx) => {
    await scheduleSyncSweep(ctx.db, ctx.config);
    const reports = await syncAllTargets(ctx.db, envelopeFor(ctx.config), addressRulesOf(ctx.config), {
      onError: (integrationId, err) =>
        err instanceof AppError && err.code === 'sync_in_progress'
          ? ctx.log.info({ integrationId }, 'downstream sync skipped: another run holds the integration')
          : ctx.log.error({ err, integrationId }, 'downstream sync failed'),
    });
    for (const report of reports) {
      if (report.pending > 0) ctx.log.info({ ...report, failures: undefined }, 'users synced downstream');
    }
  },
  { policy: 'stately', retryLimit: 1, retryDelay: 60, expireInSeconds: 900 },
);
