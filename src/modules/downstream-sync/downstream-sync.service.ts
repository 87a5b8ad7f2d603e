import { and, asc, eq, gt, isNotNull, lt, or, type SQL, sql } from 'drizzle-orm';
import type { Envelope } from '../../platform/crypto/envelope.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { newId } from '../../platform/db/ids.js';
import type { Actor } from '../../platform/http/auth.js';
import { AppError } from '../../platform/http/errors.js';
import { recordAudit } from '../activity/audit.js';
import { callIntegration, type IntegrationResponse, MAX_RESPONSE_BYTES } from '../integrations/integration-calls.js';
import { integrationErrors } from '../integrations/integrations.errors.js';
import { findOrganizationIntegration, type IntegrationRow } from '../integrations/integrations.queries.js';
import { USER_PROVISIONING_TYPE } from '../integrations/integrations.service.js';
import type { AddressRules } from '../integrations/refused-addresses.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';
import { downstreamSyncLeases, userSyncStates } from './downstream-sync.table.js';

/**
 * Outbound sync (seed 000 from the other side): an organization's users pushed to a downstream
 * system that speaks seed 000's provisioning API, registered as an integration of service type
 * `user_provisioning` whose `base_url` is the API's base (`…/api/provisioning`).
 *
 * Users with a `keycloak_id` (seed 000's key) are sent when they changed since the downstream last
 * accepted them: active ones in bulk upserts (`POST /users/bulk`, 1,000 a call), and users that left
 * the active state (or whose organization was deactivated), once the downstream holds them as
 * active, with `PUT /users/{id}/deactivate`.
 * Users never sent and not active are not sent at all. A keycloak_id the downstream holds as active
 * that no user here holds any more (the user was deleted, or its keycloak_id changed or was taken
 * away) is deactivated there first, and then forgotten. Every call goes through the integration
 * registry (credentials, request log, usage counters, health). A call that gets no usable answer
 * stops the run: the rest is sent by the next one.
 */

export const SYNC_SERVICE_TYPE = USER_PROVISIONING_TYPE;
const BATCH = 1000;
const MAX_REPORTED_FAILURES = 100;
/** How long a sync holds its integration without renewing: a run that died blocks the next one this long. */
const LEASE_MS = 5 * 60_000;
/** A running sync renews its lease before a downstream call once this much of it has passed. */
const RENEW_AFTER_MS = 30_000;

export interface SyncOptions {
  dryRun?: boolean;
  /** Send every user again, whatever the downstream last accepted. */
  full?: boolean;
  /** Who asked, for the audit event; omitted: the system (the scheduled job). */
  actor?: Actor;
}

export interface SyncFailure {
  user_id: string;
  keycloak_id: string;
  error: string;
}

export interface SyncReport {
  integration_id: string;
  dry_run: boolean;
  /** Users (and keycloak_ids no user holds any more) that needed sending. */
  pending: number;
  upserted: number;
  deactivated: number;
  failed: number;
  /** Why the run stopped before the end (the downstream gave no usable answer), else null. */
  stopped: string | null;
  failures: SyncFailure[];
}

interface Candidate {
  id: string;
  externalId: string;
  email: string;
  firstName: string;
  lastName: string;
  active: boolean;
  /** `updated_at` as PostgreSQL's text: it keeps the microseconds a JavaScript Date would drop. */
  version: string;
}

export function assertSyncTarget(integration: IntegrationRow): void {
  if (integration.serviceType !== SYNC_SERVICE_TYPE) {
    throw new AppError(
      400,
      'not_a_sync_target',
      `Only integrations of service type ${SYNC_SERVICE_TYPE} receive users; this one is ${integration.serviceType}.`,
    );
  }
  if (!integration.isActive) throw integrationErrors.inactive(integration.id);
}

/** A user's sync state for the integration, by its keycloak_id (absent before the first attempt). */
const stateOf = (integration: IntegrationRow) =>
  and(
    eq(userSyncStates.organizationId, users.organizationId),
    eq(userSyncStates.integrationId, integration.id),
    eq(userSyncStates.keycloakId, users.externalId),
  );

/** The integration's sync states. */
const statesOf = (integration: IntegrationRow) =>
  and(eq(userSyncStates.organizationId, integration.organizationId), eq(userSyncStates.integrationId, integration.id));

/** Whether a user of the organization holds the state's keycloak_id now. */
export const heldNow = sql`exists (select 1 from ${users} where ${users.organizationId} = ${userSyncStates.organizationId}
  and ${users.externalId} = ${userSyncStates.keycloakId})`;

/** A keycloak_id the downstream holds as active that no user here holds any more: to deactivate. */
export const retired = and(eq(userSyncStates.syncedActive, true), sql`not ${heldNow}`) as SQL;

/**
 * Whether a user is active as the downstream should hold them: active here, in an organization that
 * is active. A deactivated organization's users can no longer sign in, so they go out as deactivated,
 * and as active again once it is reactivated.
 */
const activeHere = sql`(${users.status} = 'active' and exists (select 1 from ${organizations}
  where ${organizations.id} = ${users.organizationId} and ${organizations.isActive}))`;

/**
 * Users the downstream needs to hear about: active ones it has not accepted as they are now, and
 * those it holds as active that no longer are; with `full`, every active one and those.
 */
function pendingCondition(full: boolean): SQL {
  const sendable = or(activeHere, eq(userSyncStates.syncedActive, true)) as SQL;
  if (full) return sendable;
  const changed = sql`(${userSyncStates.keycloakId} is null
    or ${userSyncStates.syncedVersion} is distinct from ${users.updatedAt}
    or ${userSyncStates.lastError} is not null
    or ${userSyncStates.syncedActive} <> ${activeHere})`;
  return and(sendable, changed) as SQL;
}

function candidates(db: DbOrTx, integration: IntegrationRow, full: boolean, limit: number, afterId?: string) {
  const conditions: SQL[] = [
    eq(users.organizationId, integration.organizationId),
    isNotNull(users.externalId),
    pendingCondition(full),
  ];
  if (afterId) conditions.push(gt(users.id, afterId));
  return db
    .select({
      id: users.id,
      externalId: sql<string>`${users.externalId}`,
      email: users.email,
      firstName: users.firstName,
      lastName: users.lastName,
      active: sql<boolean>`${activeHere}`,
      version: sql<string>`${users.updatedAt}::text`,
    })
    .from(users)
    .leftJoin(userSyncStates, stateOf(integration))
    .where(and(...conditions))
    .orderBy(asc(users.id))
    .limit(limit) as Promise<Candidate[]>;
}

interface RetiredIdentity {
  keycloakId: string;
  userId: string;
}

function retiredIdentities(db: DbOrTx, integration: IntegrationRow, limit: number, afterKeycloakId?: string) {
  const conditions = [statesOf(integration), retired];
  if (afterKeycloakId !== undefined) conditions.push(gt(userSyncStates.keycloakId, afterKeycloakId));
  return db
    .select({ keycloakId: userSyncStates.keycloakId, userId: userSyncStates.userId })
    .from(userSyncStates)
    .where(and(...conditions))
    .orderBy(asc(userSyncStates.keycloakId))
    .limit(limit) as Promise<RetiredIdentity[]>;
}

/** How many users (and keycloak_ids no user holds any more) a sync would send now. */
export async function countPending(db: DbOrTx, integration: IntegrationRow): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)`.mapWith(Number) })
    .from(users)
    .leftJoin(userSyncStates, stateOf(integration))
    .where(
      and(eq(users.organizationId, integration.organizationId), isNotNull(users.externalId), pendingCondition(false)),
    );
  const [gone] = await db
    .select({ n: sql<number>`count(*)`.mapWith(Number) })
    .from(userSyncStates)
    .where(and(statesOf(integration), retired));
  return (row?.n ?? 0) + (gone?.n ?? 0);
}

/**
 * One sync at a time per integration, across processes and nodes: a lease row on the database
 * clock, taken when there is none or the last holder's ran out.
 */
class SyncLease {
  private readonly holder = newId();
  private renewedAt = 0;

  constructor(
    private readonly db: Db,
    private readonly integration: IntegrationRow,
  ) {}

  private get key() {
    return and(
      eq(downstreamSyncLeases.organizationId, this.integration.organizationId),
      eq(downstreamSyncLeases.integrationId, this.integration.id),
    );
  }

  private until() {
    return sql`now() + ${`${LEASE_MS} milliseconds`}::interval`;
  }

  /** Takes the lease, or answers 409 `sync_in_progress` while another run holds it. */
  async take(): Promise<void> {
    const [row] = await this.db
      .insert(downstreamSyncLeases)
      .values({
        organizationId: this.integration.organizationId,
        integrationId: this.integration.id,
        holder: this.holder,
        leaseUntil: this.until(),
      })
      .onConflictDoUpdate({
        target: [downstreamSyncLeases.organizationId, downstreamSyncLeases.integrationId],
        set: { holder: this.holder, leaseUntil: this.until() },
        setWhere: lt(downstreamSyncLeases.leaseUntil, sql`now()`),
      })
      .returning({ holder: downstreamSyncLeases.holder });
    if (row?.holder !== this.holder) {
      throw new AppError(
        409,
        'sync_in_progress',
        `A sync of users to integration ${this.integration.id} is running; this one would send them twice.`,
      );
    }
    this.renewedAt = Date.now();
  }

  /** Renews the lease when due; false when it was lost (it ran out and another run took it). */
  async keep(): Promise<boolean> {
    if (Date.now() - this.renewedAt < RENEW_AFTER_MS) return true;
    const renewed = await this.db
      .update(downstreamSyncLeases)
      .set({ leaseUntil: this.until() })
      .where(and(this.key, eq(downstreamSyncLeases.holder, this.holder)))
      .returning({ holder: downstreamSyncLeases.holder });
    this.renewedAt = Date.now();
    return renewed.length > 0;
  }

  async release(): Promise<void> {
    await this.db.delete(downstreamSyncLeases).where(and(this.key, eq(downstreamSyncLeases.holder, this.holder)));
  }
}

const LEASE_LOST = 'Another sync took over this integration (this one held it too long without an answer).';

interface Outcome {
  user: Candidate;
  error: string | null;
}

async function saveOutcomes(db: DbOrTx, integration: IntegrationRow, outcomes: Outcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  const now = new Date();
  await db
    .insert(userSyncStates)
    .values(
      outcomes.map(({ user, error }) => ({
        organizationId: integration.organizationId,
        integrationId: integration.id,
        keycloakId: user.externalId,
        userId: user.id,
        syncedVersion: error ? null : sql`${user.version}::timestamptz`,
        syncedActive: error ? false : user.active,
        syncedAt: error ? null : now,
        attemptedAt: now,
        lastError: error,
      })),
    )
    .onConflictDoUpdate({
      target: [userSyncStates.organizationId, userSyncStates.integrationId, userSyncStates.keycloakId],
      // A failure keeps what the downstream last accepted; a success replaces it.
      set: {
        userId: sql`excluded.user_id`,
        syncedVersion: sql`case when excluded.last_error is null then excluded.synced_version else ${userSyncStates.syncedVersion} end`,
        syncedActive: sql`case when excluded.last_error is null then excluded.synced_active else ${userSyncStates.syncedActive} end`,
        syncedAt: sql`case when excluded.last_error is null then excluded.synced_at else ${userSyncStates.syncedAt} end`,
        attemptedAt: sql`excluded.attempted_at`,
        lastError: sql`excluded.last_error`,
      },
    });
}

/** The downstream's answer to a call, or why it is not usable. */
function problemOf(response: IntegrationResponse): string | null {
  // Quoted inside a sentence of its own: without the message's closing period.
  if (response.status === null) return (response.error ?? 'no answer').replace(/\.$/, '');
  // A redirect is not followed: base_url no longer names the API, and no other call would get further.
  if (isRedirect(response.status)) return `HTTP ${response.status}`;
  if (response.status >= 500 || response.status === 401 || response.status === 403 || response.status === 429) {
    return `HTTP ${response.status}`;
  }
  return null;
}

const isRedirect = (status: number) => status >= 300 && status < 400;

const MALFORMED = 'the answer to the bulk upsert is malformed';

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** One of the answer's lists: absent (undefined or null), or a list; anything else says it is malformed. */
function listOf(answer: Record<string, unknown>, name: 'users' | 'errors'): unknown[] | string {
  const list = answer[name];
  if (list === undefined || list === null) return [];
  return Array.isArray(list) ? list : `${MALFORMED}: ${name} is not a list`;
}

/**
 * A successful answer's body as seed 000's bulk answer for `batch`, or why it cannot be one: an
 * answer of 200 that cannot be read must say so, not blame a status that was fine. Every item is
 * checked before any is believed: a downstream whose answer is half garbage may have taken anything.
 */
function bulkOutcomes(batch: Candidate[], body: string): Outcome[] | string {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    // The registry hands on at most MAX_RESPONSE_BYTES of an answer: a longer one arrives cut.
    return Buffer.byteLength(body) >= MAX_RESPONSE_BYTES
      ? `the answer to the bulk upsert is larger than ${MAX_RESPONSE_BYTES} bytes`
      : 'the answer to the bulk upsert is not JSON';
  }
  if (!isObject(value)) return 'the answer to the bulk upsert is not a JSON object';
  // Without either list nothing tells which users it took.
  if (!Array.isArray(value.users) && !Array.isArray(value.errors)) {
    return 'the answer to the bulk upsert lacks users and errors';
  }
  const users = listOf(value, 'users');
  if (typeof users === 'string') return users;
  const errors = listOf(value, 'errors');
  if (typeof errors === 'string') return errors;

  const taken = new Set<string>();
  for (const [i, user] of users.entries()) {
    if (!isObject(user)) return `${MALFORMED}: users[${i}] is not an object`;
    if (typeof user.keycloak_id !== 'string') return `${MALFORMED}: users[${i}] has no keycloak_id`;
    taken.add(user.keycloak_id);
  }
  const refused = new Map<number, string>();
  for (const [i, entry] of errors.entries()) {
    if (!isObject(entry)) return `${MALFORMED}: errors[${i}] is not an object`;
    let index: number;
    if (entry.index !== undefined && entry.index !== null) {
      // Seed 000 points into the body it was sent: anything else refers to no user of this call.
      if (!Number.isInteger(entry.index) || (entry.index as number) < 0 || (entry.index as number) >= batch.length) {
        return `${MALFORMED}: errors[${i}] has an index out of range`;
      }
      index = entry.index as number;
    } else if (typeof entry.keycloak_id === 'string') {
      index = batch.findIndex((u) => u.externalId === entry.keycloak_id);
    } else {
      return `${MALFORMED}: errors[${i}] names neither an index nor a keycloak_id`;
    }
    if (index >= 0) refused.set(index, typeof entry.error === 'string' ? entry.error : 'refused');
  }
  return batch.map((user, i) => ({
    user,
    error: refused.get(i) ?? (taken.has(user.externalId) ? null : 'not in the downstream answer'),
  }));
}

interface Run {
  db: Db;
  envelope: Envelope;
  rules: AddressRules;
  integration: IntegrationRow;
  options: SyncOptions;
  /** Seed 000's `engagemx_client_id`: the organization's code. */
  clientId: string;
  report: SyncReport;
  /** Absent on a dry run. */
  lease: SyncLease | undefined;
}

function fail(report: SyncReport, userId: string, keycloakId: string, error: string): void {
  report.failed++;
  if (report.failures.length < MAX_REPORTED_FAILURES) {
    report.failures.push({ user_id: userId, keycloak_id: keycloakId, error });
  }
}

/** Whether the run still holds its integration before its next call; if not, it stops. */
async function mayCall(run: Run): Promise<boolean> {
  if (!run.lease || (await run.lease.keep())) return true;
  run.report.stopped = LEASE_LOST;
  return false;
}

/**
 * Whether the downstream took a deactivation: one of a user it does not have is as done as it can
 * be. A redirect is not (the call's `success` is false for it), and neither is any other status.
 */
const deactivated = (response: IntegrationResponse) => response.success || response.status === 404;

/**
 * Deactivates the keycloak_ids the downstream holds as active that no user here holds any more,
 * before any upsert (a user's new keycloak_id goes after its old one), and forgets each once the
 * downstream took it; a refused one stays, with its error, for the next run.
 */
async function retireIdentities(run: Run): Promise<void> {
  const { db, envelope, rules, integration, options, report } = run;
  const target = { organizationId: integration.organizationId, integrationId: integration.id };
  let after: string | undefined;
  for (;;) {
    const batch = await retiredIdentities(db, integration, BATCH, after);
    if (batch.length === 0) return;
    after = batch[batch.length - 1]?.keycloakId;
    report.pending += batch.length;
    if (options.dryRun) continue;
    for (const identity of batch) {
      if (!(await mayCall(run))) return;
      // Its user is usually deleted: the log is then written erased (the keycloak_id masked in the
      // endpoint, no bodies), as the deletion would have left it.
      const response = await callIntegration(
        db,
        envelope,
        rules,
        target,
        { method: 'PUT', path: `/users/${encodeURIComponent(identity.keycloakId)}/deactivate` },
        { userIds: [identity.userId], identifiers: [identity.keycloakId] },
      );
      const problem = problemOf(response);
      const error = problem ?? (deactivated(response) ? null : `HTTP ${response.status}`);
      const state = and(statesOf(integration), eq(userSyncStates.keycloakId, identity.keycloakId));
      if (error) {
        fail(report, identity.userId, identity.keycloakId, error);
        await db.update(userSyncStates).set({ attemptedAt: new Date(), lastError: error }).where(and(state, retired));
      } else {
        report.deactivated++;
        // Only while still retired: a user given this keycloak_id meanwhile keeps it as their state.
        await db.delete(userSyncStates).where(and(state, retired));
      }
      if (problem) {
        report.stopped = `The downstream did not take a deactivation: ${problem}.`;
        return;
      }
    }
    if (batch.length < BATCH) return;
  }
}

/**
 * States no user holds and the downstream does not hold as active (a first attempt refused, then
 * the user deleted or given another keycloak_id) tell nothing more: dropped.
 */
async function dropStale(db: DbOrTx, integration: IntegrationRow): Promise<void> {
  await db
    .delete(userSyncStates)
    .where(and(statesOf(integration), eq(userSyncStates.syncedActive, false), sql`not ${heldNow}`));
}

async function sendPending(run: Run): Promise<void> {
  const { db, envelope, rules, integration, options, report } = run;
  const target = { organizationId: integration.organizationId, integrationId: integration.id };
  let afterId: string | undefined;
  for (;;) {
    const batch = await candidates(db, integration, options.full === true, BATCH, afterId);
    if (batch.length === 0) break;
    afterId = batch[batch.length - 1]?.id;
    report.pending += batch.length;
    if (options.dryRun) continue;

    const outcomes: Outcome[] = [];
    const upserts = batch.filter((u) => u.active);
    if (upserts.length > 0) {
      if (!(await mayCall(run))) break;
      // Read as the call is logged: an answer of 2xx that tells nothing is a failed call, not a success.
      let answer = 'no answer' as Outcome[] | string;
      const response = await callIntegration(
        db,
        envelope,
        rules,
        target,
        {
          method: 'POST',
          path: '/users/bulk',
          unusable: ({ body }) => {
            answer = bulkOutcomes(upserts, body);
            return typeof answer === 'string' ? answer : null;
          },
          body: upserts.map((u) => ({
            keycloak_id: u.externalId,
            email: u.email,
            first_name: u.firstName,
            last_name: u.lastName,
            engagemx_client_id: run.clientId,
            is_active: true,
          })),
        },
        { userIds: upserts.map((u) => u.id), identifiers: upserts.map((u) => u.externalId) },
      );
      const problem = problemOf(response);
      const result: Outcome[] | string =
        problem ??
        (response.status !== null && response.status < 300 ? answer : `bulk upsert answered HTTP ${response.status}`);
      if (typeof result === 'string') {
        report.stopped = `The downstream did not take the users: ${result}.`;
        for (const user of upserts) fail(report, user.id, user.externalId, result);
        await saveOutcomes(
          db,
          integration,
          upserts.map((user) => ({ user, error: result })),
        );
        break;
      }
      outcomes.push(...result);
    }
    for (const user of batch.filter((u) => !u.active)) {
      if (!(await mayCall(run))) break;
      const response = await callIntegration(
        db,
        envelope,
        rules,
        target,
        { method: 'PUT', path: `/users/${encodeURIComponent(user.externalId)}/deactivate` },
        { userIds: [user.id], identifiers: [user.externalId] },
      );
      const problem = problemOf(response);
      if (problem) {
        report.stopped = `The downstream did not take a deactivation: ${problem}.`;
        outcomes.push({ user, error: problem });
        break;
      }
      outcomes.push({ user, error: deactivated(response) ? null : `HTTP ${response.status}` });
    }
    for (const { user, error } of outcomes) {
      if (error) fail(report, user.id, user.externalId, error);
      else if (user.active) report.upserted++;
      else report.deactivated++;
    }
    await saveOutcomes(db, integration, outcomes);
    if (report.stopped || batch.length < BATCH) break;
  }
}

/**
 * Sends what the downstream needs to hear about. One run at a time per integration (409
 * `sync_in_progress` while another holds it); a dry run only counts, beside a running one. An
 * integration deleted during the run ends it with its 404.
 */
export async function syncIntegration(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  integration: IntegrationRow,
  options: SyncOptions = {},
): Promise<SyncReport> {
  assertSyncTarget(integration);
  const report: SyncReport = {
    integration_id: integration.id,
    dry_run: options.dryRun === true,
    pending: 0,
    upserted: 0,
    deactivated: 0,
    failed: 0,
    stopped: null,
    failures: [],
  };
  const [organization] = await db
    .select({ code: organizations.code })
    .from(organizations)
    .where(eq(organizations.id, integration.organizationId));
  const lease = options.dryRun ? undefined : new SyncLease(db, integration);
  await lease?.take();
  try {
    const run = { db, envelope, rules, integration, options, clientId: organization?.code as string, report, lease };
    if (!options.dryRun) await dropStale(db, integration);
    await retireIdentities(run);
    if (!report.stopped) await sendPending(run);
  } catch (err) {
    // The integration was deleted during the run (the delete does not wait for it): what failed to
    // be written about it is no fault of the server, and the answer says what happened.
    if (
      !(err instanceof AppError) &&
      !(await findOrganizationIntegration(db, integration.organizationId, integration.id))
    ) {
      throw integrationErrors.notFound(integration.id);
    }
    throw err;
  } finally {
    // A lease not given back runs out by itself; failing here would hide how the run ended.
    await lease?.release().catch(() => undefined);
  }

  if (!options.dryRun) {
    await recordAudit(db, {
      type: 'integration.synced',
      category: 'integrations',
      organizationId: integration.organizationId,
      ...(options.actor ? { actor: options.actor } : { actorUserId: null }),
      description: `Users synced to ${integration.name}`,
      details: {
        pending: report.pending,
        upserted: report.upserted,
        deactivated: report.deactivated,
        failed: report.failed,
        stopped: report.stopped,
      },
      success: report.failed === 0,
      objectType: 'integration',
      objectId: integration.id,
    });
  }
  return report;
}
