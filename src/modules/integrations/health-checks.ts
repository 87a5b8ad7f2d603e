import type { Envelope } from '../../platform/crypto/envelope.js';
import type { Db } from '../../platform/db/client.js';
import { AppError } from '../../platform/http/errors.js';
import { authHeadersFor, isSuccessStatus } from './integration-calls.js';
import { integrationErrors } from './integrations.errors.js';
import { findOrganizationIntegration, listIntegrationsDueForCheck } from './integrations.queries.js';
import { recordOutcome } from './integrations.service.js';
import { type Integration, type IntegrationHealthCheck, integrationHealthChecks } from './integrations.table.js';
import { isOAuth2Timeout } from './oauth2.js';
import { joinUrl, type OutboundResult, sendOutbound } from './outbound-http.js';
import type { AddressRules } from './refused-addresses.js';

/** A health check reads little: the status code decides, the body is only drained. */
const MAX_HEALTH_BODY_BYTES = 16 * 1024;

/**
 * Checks one integration now: GET of `base_url` + `health_check_path` with its authentication and
 * timeout. A 2xx status is a success; anything else (a redirect too: it is not followed, so what it
 * points at was never checked) a failure; no answer in time a timeout.
 * The check is kept as history and moves the health status (integrations.service `healthStatusFor`),
 * in one transaction. A deactivated integration is not called (409); one deleted while the check
 * was out answers 404, one whose address, authentication or timeout changed meanwhile 409
 * `integration_changed`, and neither is recorded.
 */
export async function runHealthCheck(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  target: { organizationId: string; integrationId: string },
): Promise<IntegrationHealthCheck> {
  const integration = await findOrganizationIntegration(db, target.organizationId, target.integrationId);
  if (!integration) throw integrationErrors.notFound(target.integrationId);
  if (!integration.isActive) throw integrationErrors.inactive(integration.id);

  // The whole check, an OAuth2 token renewal included, runs within the integration's timeout.
  const started = performance.now();
  const deadline = Date.now() + integration.timeoutMs;
  const elapsed = () => Math.round(performance.now() - started);
  let url: URL | undefined;
  let headers: Record<string, string> = {};
  let unusable: OutboundResult | null = null;
  try {
    url = joinUrl(integration.baseUrl, integration.healthCheckPath, 'health_check_path');
    headers = await authHeadersFor(db, envelope, rules, integration, new Date(), deadline);
  } catch (err) {
    // A stored path calls cannot take (saved before the rules were tightened), or an OAuth2
    // integration without a usable token: the integration is unhealthy, the check itself did its job.
    if (!(err instanceof AppError)) throw err;
    unusable = isOAuth2Timeout(err)
      ? { ok: false, failure: 'timeout', message: timeoutMessage(integration), durationMs: elapsed() }
      : { ok: false, failure: 'network', message: describeUnusable(err), durationMs: elapsed() };
  }
  const sent =
    unusable ??
    (await sendOutbound(
      url as URL,
      { method: 'GET', headers: { accept: '*/*', ...headers } },
      { timeoutMs: Math.max(1, deadline - Date.now()), maxBodyBytes: MAX_HEALTH_BODY_BYTES, rules },
    ));
  // Timed and worded for the whole check, not only the part of the time its last request was left.
  const result: OutboundResult = {
    ...sent,
    durationMs: elapsed(),
    ...(!sent.ok && sent.failure === 'timeout' ? { message: timeoutMessage(integration) } : {}),
  };

  const status = result.ok
    ? isSuccessStatus(result.status)
      ? 'success'
      : 'failure'
    : result.failure === 'timeout'
      ? 'timeout'
      : 'failure';
  const at = new Date();
  return db.transaction(async (tx) => {
    // Deleted while the check was out: a 404 rather than a foreign-key failure; held until commit,
    // which also keeps an update (it locks the row for update) from slipping in before the result is.
    const now = await findOrganizationIntegration(tx, integration.organizationId, integration.id, {
      lock: 'key share',
    });
    if (!now) throw integrationErrors.notFound(integration.id);
    // Changed while the check was out: the result says nothing about what the integration now calls.
    if (isCheckedDifferently(integration, now)) throw integrationErrors.changedDuringCheck(integration.id);
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

const timeoutMessage = (integration: Integration) => `No answer within ${integration.timeoutMs} ms.`;

/** What a check's request and verdict depend on: where it goes, how it authenticates, how long it waits. */
function isCheckedDifferently(before: Integration, after: Integration): boolean {
  return (
    before.baseUrl !== after.baseUrl ||
    before.healthCheckPath !== after.healthCheckPath ||
    before.authType !== after.authType ||
    before.apiKeyHeader !== after.apiKeyHeader ||
    before.timeoutMs !== after.timeoutMs ||
    before.credentialsSealed !== after.credentialsSealed ||
    JSON.stringify(before.oauth2) !== JSON.stringify(after.oauth2)
  );
}

/** An AppError as one line of history: what each field it names is told, else its detail. */
function describeUnusable(err: AppError): string {
  const fields = (err.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  return fields.length > 0 ? fields.join('; ') : err.message;
}

/**
 * The scheduled sweep: checks every active integration not checked within `intervalSeconds`,
 * a few at a time, until none is due or `budgetMs` is spent (the next sweep continues).
 */
export async function checkDueIntegrations(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
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
          await runHealthCheck(db, envelope, rules, { organizationId: d.organizationId, integrationId: d.id });
          checked++;
        } catch (err) {
          // Deactivated or deleted since it was listed: nothing to check. Changed while checked: due
          // again, checked by the next sweep.
          if (
            err instanceof AppError &&
            (err.code === 'integration_inactive' ||
              err.code === 'integration_not_found' ||
              err.code === 'integration_changed')
          ) {
            return;
          }
          // One broken integration (say, credentials sealed under a retired master key) must not stop the sweep.
          failed++;
          options.onError?.(d.id, err);
        }
      }),
    );
  }
  return { checked, failed };
}
