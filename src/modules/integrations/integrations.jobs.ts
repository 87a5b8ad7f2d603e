import type { Config } from '../../config.js';
import { envelopeFor } from '../../platform/crypto/envelope.js';
import type { DbOrTx } from '../../platform/db/client.js';
import { scheduleRecurringJob } from '../../platform/jobs/recurring.js';
import { registerJobHandler } from '../../platform/jobs/registry.js';
import { checkDueIntegrations } from './health-checks.js';
import { pruneIntegrationHistory } from './history-retention.js';
import { addressRulesOf } from './refused-addresses.js';

/**
 * The periodic integration sweep: health checks of the integrations that are due, and deletion of
 * request logs and health checks older than `INTEGRATION_HISTORY_DAYS`. pg-boss cron is off in this
 * product, so the job enqueues its next run when it starts (a `stately` queue keeps at most one
 * waiting, however many nodes start it), and every app start enqueues one too.
 */
export const HEALTH_SWEEP_JOB = 'integrations.health-sweep';

type SweepSettings = Pick<Config, 'integrationHealthIntervalSeconds' | 'integrationHistoryDays'>;

/** Seconds between sweeps: the check interval, or hourly for pruning alone; null when there is nothing to do. */
function sweepPeriod(config: SweepSettings): number | null {
  if (config.integrationHealthIntervalSeconds > 0) return config.integrationHealthIntervalSeconds;
  return config.integrationHistoryDays > 0 ? 3600 : null;
}

/** Makes sure a sweep is waiting, due within the current period. */
export async function scheduleHealthSweep(db: DbOrTx, config: SweepSettings, now = Date.now()): Promise<void> {
  const period = sweepPeriod(config);
  if (period === null) return;
  await scheduleRecurringJob(db, HEALTH_SWEEP_JOB, period, now);
}

registerJobHandler(
  HEALTH_SWEEP_JOB,
  async (_job, ctx) => {
    await scheduleHealthSweep(ctx.db, ctx.config);
    const interval = ctx.config.integrationHealthIntervalSeconds;
    if (interval > 0) {
      const done = await checkDueIntegrations(ctx.db, envelopeFor(ctx.config), addressRulesOf(ctx.config), {
        intervalSeconds: interval,
        aborted: () => ctx.signal.aborted,
        onError: (integrationId, err) => ctx.log.error({ err, integrationId }, 'integration health check failed'),
      });
      if (done.checked + done.failed > 0) ctx.log.info(done, 'integrations health-checked');
    }
    const pruned = await pruneIntegrationHistory(ctx.db, ctx.config.integrationHistoryDays);
    if (pruned.deleted > 0) ctx.log.info(pruned, 'old integration logs and health checks deleted');
  },
  { policy: 'stately', retryLimit: 1, retryDelay: 60, expireInSeconds: 900 },
);
