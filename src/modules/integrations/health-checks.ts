import type { Envelope } from '../../platform/crypto/envelope.js';
import type { Db } from '../../platform/db/client.js';
import { AppError } from '../../platform/http/errors.js';
import { authHeadersFor } from './integration-calls.js';
import { integrationErrors } from './integrations.errors.js';
import { findOrganizationIntegration, listIntegrationsDueForCheck } from './integrations.queries.js';
import { recordOutcome } from './integrations.service.js';
import { type IntegrationHealthCheck, integrationHealthChecks } from './integrations.table.js';
import { joinUrl, sendOutbound } from './outbound-http.js';

/** A health check reads little: the status code decides, the body is only drained. */
const MAX_HEALTH_BODY_BYTES = 16 * 1024;

/**
 * Checks one integration now: GET of `base_url` + `health_check_path` with its authentication and
 * timeout. A status below 400 is a success, anything else a failure, no answer in time a timeout.
 * The check is kept as history and moves the health status (integrations.service `healthStatusFor`),
 * in one transaction.
 */
export async function runHealthCheck(
  db: Db,
  envelope: Envelope,
  target: { organizationId: string; integrationId: string },
): Promise<IntegrationHealthCheck> {
  const integration = await findOrganizationIntegration(db, target.organizationId, target.integrationId);
  if (!integration) throw integrationErrors.notFound(target.integrationId);

  let headers: Record<string, string> = {};
  let authError: string | null = null;
  try {
    headers = await authHeadersFor(db, envelope, integration);
  } catch (err) {
    // An OAuth2 integration without a usable token is unhealthy, not an error of the check itself.
    if (!(err instanceof AppError)) throw err;
    authError = err.message;
  }
  const result =
    authError === null
      ? await sendOutbound(
          joinUrl(integration.baseUrl, integration.healthCheckPath),
          { method: 'GET', headers: { accept: '*/*', ...headers } },
          { timeoutMs: integration.timeoutMs, maxBodyBytes: MAX_HEALTH_BODY_BYTES },
        )
      : ({ ok: false, failure: 'network', message: authError, durationMs: 0 } as const);

  const status = result.ok
    ? result.status < 400
      ? 'success'
      : 'failure'
    : result.failure === 'timeout'
      ? 'timeout'
      : 'failure';
  const at = new Date();
  return db.transaction(async (tx) => {
    const [check] = await tx
      .insert(integrationHealthChecks)
      .values({
        organizationId: integration.organizationId,
        integrationId: integration.id,
        status,
        responseTimeMs: result.durationMs,
        httpStatus: result.ok ? result.status : null,
        errorMessage: result.ok ? (status === 'success' ? null : `HTTP ${result.status}`) : result.message,
        checkedAt: at,
      })
      .returning();
    await recordOutcome(tx, integration, { success: status === 'success', asRequest: false, at });
    return check as IntegrationHealthCheck;
  });
}

/**
 * The scheduled sweep: checks every active integration not checked within `intervalSeconds`,
 * a few at a time, until none is due or `budgetMs` is spent (the next sweep continues).
 */
export async function checkDueIntegrations(
  db: Db,
  envelope: Envelope,
  options: {
    intervalSeconds: number;
    now?: Date;
    budgetMs?: number;
    concurrency?: number;
    aborted?: () => boolean;
    onError?: (integrationId: string, err: unknown) => void;
  },
): Promise<{ checked: number; failed: number }> {
  const now = options.now ?? new Date();
  const started = Date.now();
  const budget = options.budgetMs ?? 60_000;
  const concurrency = options.concurrency ?? 4;
  const before = new Date(now.getTime() - options.intervalSeconds * 1000);
  let checked = 0;
  let failed = 0;
  const seen = new Set<string>();
  while (Date.now() - started < budget && !options.aborted?.()) {
    // Integrations whose check could not even be recorded stay due; they are skipped, not retried, in this run.
    const due = (await listIntegrationsDueForCheck(db, before, concurrency + failed)).filter((d) => !seen.has(d.id));
    if (due.length === 0) break;
    await Promise.all(
      due.slice(0, concurrency).map(async (d) => {
        seen.add(d.id);
        try {
          await runHealthCheck(db, envelope, { organizationId: d.organizationId, integrationId: d.id });
          checked++;
        } catch (err) {
          // One broken integration (say, credentials sealed under a retired master key) must not stop the sweep.
          failed++;
          options.onError?.(d.id, err);
        }
      }),
    );
  }
  return { checked, failed };
}
