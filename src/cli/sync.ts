import type { Command } from 'commander';
import { syncAllTargets } from '../modules/downstream-sync/downstream-sync.jobs.js';
import { type SyncReport, syncIntegration } from '../modules/downstream-sync/downstream-sync.service.js';
import { integrationErrors } from '../modules/integrations/integrations.errors.js';
import { findIntegration } from '../modules/integrations/integrations.queries.js';
import { addressRulesOf } from '../modules/integrations/refused-addresses.js';
import { findOrganizationByCode } from '../modules/organizations/organizations.queries.js';
import { envelopeFor } from '../platform/crypto/envelope.js';
import { commonErrors } from '../platform/http/errors.js';
import { runRefusing } from './context.js';

interface SyncOptions {
  organization?: string;
  integration?: string;
  dryRun?: boolean;
  full?: boolean;
}

function printReport(report: SyncReport, dryRun: boolean): void {
  const counts = dryRun
    ? `${report.pending} users would be sent`
    : `${report.pending} pending, ${report.upserted} upserted, ${report.deactivated} deactivated, ${report.failed} failed`;
  console.log(`${report.integration_id}: ${counts}${report.stopped ? ` (stopped: ${report.stopped})` : ''}`);
  for (const f of report.failures) console.log(`  failed ${f.keycloak_id} (${f.user_id}): ${f.error}`);
}

/** Seed 000's `sync_debt_collection_users` management command, for every downstream at once or one. */
export function registerSyncCommand(program: Command): void {
  program
    .command('sync')
    .description('Send changed users to the downstream systems registered as user_provisioning integrations')
    .option('--organization <code>', 'only the integrations of this organization')
    .option('--integration <id>', 'only this integration')
    .option('--dry-run', 'count what would be sent; send nothing')
    .option('--full', 'send every user again, not only the changed ones')
    .action(async (options: SyncOptions) => {
      let reports: SyncReport[] = [];
      // Integrations whose sync failed (said on stderr): there were some, even when no report came back.
      let failedTargets = 0;
      await runRefusing('sync', async (db, config) => {
        const envelope = envelopeFor(config);
        const rules = addressRulesOf(config);
        let organizationId: string | undefined;
        if (options.organization !== undefined) {
          const organization = await findOrganizationByCode(db, options.organization);
          if (!organization) throw commonErrors.notFound(`Organization ${options.organization}`);
          organizationId = organization.id;
        }
        const run = { dryRun: options.dryRun, full: options.full };
        if (options.integration !== undefined) {
          const integration = await findIntegration(db, options.integration, organizationId);
          if (!integration) throw integrationErrors.notFound(options.integration);
          reports = [await syncIntegration(db, envelope, rules, integration, run)];
        } else {
          reports = await syncAllTargets(db, envelope, rules, {
            ...run,
            organizationId,
            onError: (id, err) => {
              console.error(`gatehouse: sync ${id}: ${(err as Error).message}`);
              failedTargets++;
              process.exitCode = 1;
            },
          });
        }
      });
      if (reports.length === 0 && failedTargets === 0) console.log('no active user_provisioning integrations');
      for (const report of reports) printReport(report, options.dryRun === true);
      if (reports.some((r) => r.failed > 0 || r.stopped)) process.exitCode = 1;
    });
}
