/**
 * The provisioning core: the one place where user writes land. The seed-000 API
 * (`/api/provisioning`), SCIM and the admin API (`/api/v1/users`, the typed collections) call it,
 * so a user written by one is validated, upserted and audited exactly as by the others; a typed
 * user's profile is checked here against its type's schema, whoever writes it. The admin
 * API's own rules (password policy and hashing, delegation) run before its call;
 * its fields (status, user type, staff and superuser flags, a password hash; an import's join date) are item fields that
 * the other APIs leave undefined, so their writes keep what an administrator set.
 *
 * Scoping. The caller is an `Actor`. Platform-wide callers (platform API keys, superusers) reach
 * every organization: they name the organization of each item by code, and a code that does not
 * exist yet is created with the users (never on a dry run). Any other caller is confined to its
 * own organization: an item naming another organization is refused with 403 `organization_forbidden`,
 * and a user outside the organization is not there at all (404 `user_not_found`), for reads and
 * writes alike. Users are never moved between organizations (409 `organization_mismatch`), and
 * superusers are changed only by superusers (403 `superuser_protected`), as in the admin API.
 *
 * Keys. An item addresses an existing user by `id` (Gatehouse id), else by `externalId`
 * (seed 000's keycloak_id, unique across the installation: an upsert key), else it creates a user.
 * Fields left `undefined` keep their stored value (a new user gets the defaults); `null` clears
 * the nullable ones.
 *
 * Errors. `provisionUsers` never throws for a bad item: each item answers either its outcome or an
 * `AppError` (validation 400, 403, 404, 409 `email_taken` / `username_taken` / `external_id_taken` /
 * `scim_external_id_taken` / `duplicate_in_request` / `organization_mismatch`), and every valid item
 * is written. A single-item caller throws the item's error itself. Only failures of the database
 * throw; then nothing of the call is written (one transaction per call).
 *
 * Writes are set-based: valid items go to the database in batches of `BATCH_SIZE` rows, each one
 * `INSERT … SELECT FROM json_to_recordset(…)` for new users (a parallel upsert of the same keycloak_id
 * is a violation that undoes the attempt; the probed retry inserts with `ON CONFLICT (external_id) DO UPDATE`,
 * so exactly one user results) and one
 * `UPDATE … FROM json_to_recordset(…)` for existing ones. Users whose stored values already match are not
 * rewritten (they still answer `updated`, with no changes). The audit events of a call go in one
 * multi-row insert, in the same transaction.
 */
import type { Config } from '../../config.js';
import { type Db, type DbOrTx, deadlockDetected, uniqueViolation } from '../../platform/db/client.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import type { AppError } from '../../platform/http/errors.js';
import { endAccountTokens, PASSWORD_PURPOSES } from '../account/account.queries.js';
import { inviteUser } from '../account/account.service.js';
import { type AuditEvent, recordAudits } from '../activity/audit.js';
import { invalidateUserState, revokeUserSessions } from '../auth/auth.service.js';
import {
  findOrganizationByCode,
  findOrganizationById,
  holdActiveOrganization,
} from '../organizations/organizations.queries.js';
import type { Organization } from '../organizations/organizations.table.js';
import type { UserStatus } from '../users/users.table.js';
import { callEvent, organizationEvent, userEvent } from './provisioning.audit.js';
import { provisioningErrors } from './provisioning.errors.js';
import type { UserRow } from './provisioning.lookup.js';
import {
  forgetBatch,
  isRewrite,
  newCallState,
  type Plan,
  planItems,
  planToUser,
  type Step,
} from './provisioning.plan.js';
import { createMissingOrganizations, type Written, writeBatch } from './provisioning.write.js';

/** Rows per set-based statement. */
export const BATCH_SIZE = 1000;
/** How often a call runs when PostgreSQL undoes it to break a deadlock. */
const MAX_DEADLOCK_ATTEMPTS = 3;
/** How often a batch is re-planned when a parallel writer took a unique value between plan and write. */
const MAX_ATTEMPTS = 3;

/** One user to write, in Gatehouse terms. */
export interface ProvisionItem {
  /** Gatehouse user id: update this existing user (e.g. SCIM replace). */
  id?: string;
  /** The identity provider's subject (seed 000 `keycloak_id`), unique across the installation; the upsert key when `id` is absent. */
  externalId?: string | null;
  /** Organization code. Omitted: the user's current organization, or the caller's own for a new user. */
  organization?: string;
  email?: string;
  username?: string | null;
  firstName?: string;
  lastName?: string;
  /** true reactivates a deactivated user (suspended and locked users stay so); false deactivates and ends sessions. */
  active?: boolean;
  attributes?: Record<string, unknown>;
  /**
   * Keys to set in `attributes.profile` (null removes one), merged onto the profile as the write finds
   * it (the stored one, or `attributes.profile` when the item gives `attributes`): a typed user's
   * partial update, which must not undo a concurrent change of other keys.
   */
  profileChanges?: Record<string, unknown>;
  /**
   * A SCIM write: `attributes` replaces `attributes.scim` too. Any other write keeps the stored
   * `attributes.scim` (left out: kept; sent as stored: ignored; another value: 400 naming it).
   */
  writesScim?: boolean;
  /** A SCIM client's id for the user (RFC 7643 `externalId`), unique within the organization. */
  scimExternalId?: string | null;
  /** Mail an invitation to set a password, when the call creates the user, active and without one. */
  sendInvite?: boolean;
  // The admin API's own fields (the seed-000 API and SCIM never set them; undefined keeps the stored value).
  /** An explicit status, `suspended` and `locked` included; wins over `active`. */
  status?: UserStatus;
  /** A user type's code, of the user's organization or global; `attributes.profile` must match its schema. */
  userType?: string | null;
  isStaff?: boolean;
  /** Only a superuser may set it true (403 `superuser_protected`). */
  isSuperuser?: boolean;
  /** A new password's argon2 hash, computed by the caller before the call: hashing must not hold a connection. */
  passwordHash?: string;
  /** Create only: a user already holding `externalId` is a clash (409 `external_id_taken`), not an update. */
  createOnly?: boolean;
  /**
   * When a new user joined (an RFC 3339 date-time, years 0001–9999): an import keeps the source's.
   * Undefined: the time of the write. An existing user keeps the stored one.
   */
  dateJoined?: string;
}

/** A user as the provisioning APIs show it. `id` is null only in a dry run's plan for a new user. */
export interface ProvisionedUser {
  id: string | null;
  organizationId: string | null;
  organizationCode: string;
  externalId: string | null;
  scimExternalId: string | null;
  email: string;
  username: string | null;
  firstName: string;
  lastName: string;
  status: UserStatus;
  /** Active, in an active organization: a deactivated organization's users cannot sign in. */
  active: boolean;
  attributes: Record<string, unknown>;
  hasPassword: boolean;
  createdAt: Date | null;
  updatedAt: Date | null;
}

/** A field a write changes (or would change), named as in the admin API. */
export interface FieldChange {
  field: string;
  from: unknown;
  to: unknown;
}

export type ProvisionOutcome =
  | {
      index: number;
      ok: true;
      action: 'created' | 'updated';
      user: ProvisionedUser;
      /** Empty when nothing changes. */
      changes: FieldChange[];
      /** An invitation mail was (or, on a dry run, would be) queued. */
      invited: boolean;
    }
  | { index: number; ok: false; error: AppError };

export interface ProvisionOptions {
  /** Plan only: the same outcomes, nothing written. */
  dryRun?: boolean;
  /** Invite every item's user (as if each had `sendInvite: true`). */
  sendInvite?: boolean;
  /** Needed for invitation links. */
  config?: Pick<Config, 'publicUrl'>;
  /** For audit events: which API wrote (`provisioning`, `scim`, …) and from where. */
  context?: RequestContext;
  /** false: no `provisioning.users.upsert` event; a single admin write is recorded by its user's event alone. */
  recordCall?: boolean;
  /**
   * The `provisioning.users.upsert` event's organization and more details, for a call that writes
   * into one organization whatever the actor's own (an import); by default the actor's organization.
   */
  call?: { organizationId: string | null; details?: Record<string, unknown> };
  /**
   * Items of the same call the caller refused before handing the others here (a bulk item failing its
   * schema): the call's event counts them as failed items, so it tells a call that failed whole.
   */
  refused?: AppError[];
  /**
   * The organization codes those refused items named, where they named one: a platform-wide
   * caller's call event belongs to the one organization all its items concern.
   */
  refusedOrganizations?: string[];
  /**
   * Users the caller has read by id and locked (`lockUserRows`) in the transaction it passes as `db`:
   * planning takes them instead of reading them again. Rows read without the lock would be planned
   * as they stood then, undoing any write committed since.
   */
  known?: UserRow[];
}

export interface RequestContext {
  source?: string;
  ip?: string | null;
  userAgent?: string | null;
}

export interface ProvisionReport {
  results: ProvisionOutcome[];
  /** Codes of organizations created (or, on a dry run, that would be) for these items. */
  createdOrganizations: string[];
}

// ---------------------------------------------------------------------------------------------
// Upserts

/**
 * Upserts users in one transaction: validation, scoping and uniqueness per item, then set-based
 * writes in batches, session ends for users leaving the active state, invitations and audit events.
 * With `dryRun`, answers the same outcomes (with `changes`) and writes nothing. See the module
 * comment for scoping and errors.
 */
export async function provisionUsers(
  db: Db,
  actor: Actor,
  items: ProvisionItem[],
  options: ProvisionOptions = {},
): Promise<ProvisionReport> {
  const indexed = items.map((item, index) => ({ index, item }));
  if (options.dryRun) {
    const state = newCallState();
    const steps: Step[] = [];
    for (let i = 0; i < indexed.length; i += BATCH_SIZE) {
      steps.push(...(await planItems(db, actor, indexed.slice(i, i + BATCH_SIZE), options, state)));
    }
    return report(steps, [], state.orgCache, true);
  }
  // Optimistic first: the unique indexes check every value the write sets, so the call is planned
  // without probing the database for taken values and written without savepoints. A unique violation
  // (a value another user holds) undoes that attempt, and the call is planned again with the probes,
  // which answer each clashing item its own error.
  // The caller's own organization is read before the transaction, by a statement prepared once
  // for the handle rather than built again for every transaction.
  const scope = organizationScopeOf(actor);
  const scopeOrganization = scope === undefined ? undefined : await findOrganizationById(db, scope);
  for (let attempt = 1; ; attempt++) {
    try {
      try {
        return await db.transaction((tx) => upsert(tx, actor, items, indexed, options, false, scopeOrganization));
      } catch (err) {
        if (!uniqueViolation(err)) throw err;
      }
      // The retry reads every user afresh: rows a parallel writer changed are planned as they now are.
      const fresh = { ...options, known: undefined };
      return await db.transaction((tx) => upsert(tx, actor, items, indexed, fresh, true, scopeOrganization));
    } catch (err) {
      // A call of several batches locks each batch's users in id order, not the whole call's: two
      // overlapping calls can each hold a row the other waits for. PostgreSQL undoes one of them,
      // which runs again. Rows a caller locked itself (`known`) were in the transaction undone.
      if (!deadlockDetected(err) || options.known !== undefined || attempt === MAX_DEADLOCK_ATTEMPTS) throw err;
    }
  }
}

async function upsert(
  tx: DbOrTx,
  actor: Actor,
  items: ProvisionItem[],
  indexed: { index: number; item: ProvisionItem }[],
  options: ProvisionOptions,
  probe: boolean,
  scopeOrganization: Organization | undefined,
): Promise<ProvisionReport> {
  // The credential was checked before the transaction; its organization may have been deactivated
  // since. Checked again here, under a lock held to commit: a deactivation waits for this write or
  // refuses it, so none lands (nor mails a link) after the deactivation ended the organization's.
  const scope = organizationScopeOf(actor);
  if (scope !== undefined && !(await holdActiveOrganization(tx, scope))) {
    throw provisioningErrors.organizationInactive();
  }
  const state = newCallState();
  const orgCache = state.orgCache;
  if (scopeOrganization) orgCache.set(scopeOrganization.code, scopeOrganization);
  const results: ProvisionOutcome[] = [];
  const createdOrganizations: string[] = [];
  const events: AuditEvent[] = [];
  // Users are planned from their rows locked: a concurrent write of other fields commits first and is
  // planned upon, never undone. Bulk calls too (one statement per batch, in id order): the benchmark
  // shows no cost per user. Rows the caller passes as `known` it has locked already, in the
  // transaction this call runs in (SCIM /Bulk made its items from them).
  const lock = options.known === undefined;
  for (let i = 0; i < indexed.length; i += BATCH_SIZE) {
    const batch = indexed.slice(i, i + BATCH_SIZE);
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) forgetBatch(state, new Set(batch.map((b) => b.index)));
      const steps = await planItems(tx, actor, batch, options, state, probe, lock);
      for (const code of await createMissingOrganizations(tx, steps, orgCache)) {
        createdOrganizations.push(code);
        events.push(organizationEvent(actor, options.context, orgCache.get(code) as Organization));
      }
      const plans = steps.filter((s): s is Plan => !('error' in s));
      let written: Map<string, Written>;
      if (!probe) {
        // Unprobed: a violation ends the whole attempt (see provisionUsers).
        written = await writeBatch(tx, plans, false);
      } else {
        try {
          // A savepoint: a unique value taken by a parallel writer since the plan undoes this batch only.
          written = await tx.transaction((sp) => writeBatch(sp, plans));
        } catch (err) {
          if (uniqueViolation(err) && attempt < MAX_ATTEMPTS) continue;
          throw err;
        }
      }
      results.push(...(await finishBatch(tx, actor, steps, written, options, events)));
      break;
    }
  }
  const outcome = report(results, createdOrganizations, orgCache, false);
  if (options.recordCall !== false) {
    const organizationId = await callOrganization(tx, actor, items, results, orgCache, options);
    events.push(upsertCallEvent(actor, organizationId, items.length, results, createdOrganizations, options));
  }
  await recordAudits(tx, events);
  return outcome;
}

/**
 * The call's own event. Refused items change nothing, so their transaction commits and the event
 * goes in it: a call none of whose items was written failed (a warning), with its refusals counted
 * by code, and for a single item its code and status, as the caller was answered.
 */
function upsertCallEvent(
  actor: Actor,
  organizationId: string | null,
  written: number,
  results: ProvisionOutcome[],
  createdOrganizations: string[],
  options: ProvisionOptions,
): AuditEvent {
  let created = 0;
  let updated = 0;
  let unchanged = 0;
  const refusals: AppError[] = [...(options.refused ?? [])];
  for (const r of results) {
    if (!r.ok) refusals.push(r.error);
    else if (r.action === 'created') created++;
    else {
      updated++;
      if (r.changes.length === 0) unchanged++;
    }
  }
  const items = written + (options.refused?.length ?? 0);
  const errorCodes: Record<string, number> = {};
  for (const e of refusals) errorCodes[e.code] = (errorCodes[e.code] ?? 0) + 1;
  const failed = items > 0 && refusals.length === items;
  const [only] = refusals;
  const event = callEvent(actor, options.context, 'provisioning.users.upsert', organizationId, {
    ...options.call?.details,
    items,
    created,
    updated,
    unchanged,
    errors: refusals.length,
    ...(refusals.length > 0 ? { error_codes: errorCodes } : {}),
    ...(items === 1 && only ? { code: only.code, status: only.status } : {}),
    created_organizations: createdOrganizations,
  });
  return failed ? { ...event, success: false, severity: 'warning' } : event;
}

/**
 * The organization a call event belongs to: the one named by the caller (an import), else the
 * caller's own; for a platform-wide caller the one organization every item concerns (a written
 * user's, or the existing one an item named), so that organization's administrators see the calls
 * into it. A call into several organizations, or into none that exists, stays the platform's.
 */
async function callOrganization(
  tx: DbOrTx,
  actor: Actor,
  items: ProvisionItem[],
  results: ProvisionOutcome[],
  orgCache: Map<string, Organization | null>,
  options: ProvisionOptions,
): Promise<string | null> {
  if (options.call) return options.call.organizationId;
  const scope = organizationScopeOf(actor);
  if (scope !== undefined) return scope;
  const ids = new Set<string>();
  const codes = new Set<string>(options.refusedOrganizations ?? []);
  for (const r of results) {
    if (r.ok) {
      if (r.user.organizationId !== null) ids.add(r.user.organizationId);
      continue;
    }
    const code = items[r.index]?.organization;
    if (code !== undefined) codes.add(code);
  }
  for (const code of codes) {
    if (!orgCache.has(code)) orgCache.set(code, (await findOrganizationByCode(tx, code)) ?? null);
    const org = orgCache.get(code);
    if (org) ids.add(org.id);
    if (ids.size > 1) return null;
  }
  const [only] = ids;
  return ids.size === 1 && only !== undefined ? only : null;
}

/**
 * Records the call event of a call refused whole before the core (a single upsert failing its
 * schema), in a transaction of its own: nothing else of the call is written.
 */
export async function recordRefusedCall(
  db: Db,
  actor: Actor,
  refused: AppError,
  options: Pick<ProvisionOptions, 'context' | 'refusedOrganizations' | 'call'>,
): Promise<void> {
  const call = { ...options, refused: [refused] };
  await db.transaction(async (tx) => {
    const organizationId = await callOrganization(tx, actor, [], [], new Map(), call);
    await recordAudits(tx, [upsertCallEvent(actor, organizationId, 0, [], [], call)]);
  });
}

function report(
  steps: (Step | ProvisionOutcome)[],
  createdOrganizations: string[],
  orgCache: Map<string, Organization | null>,
  dryRun: boolean,
): ProvisionReport {
  const results: ProvisionOutcome[] = steps.map((s) => {
    if ('ok' in s) return s;
    if ('error' in s) return { index: s.index, ok: false, error: s.error };
    return {
      index: s.index,
      ok: true,
      action: s.existing ? 'updated' : 'created',
      user: planToUser(s),
      changes: s.changes,
      invited: s.invite,
    };
  });
  const planned = dryRun
    ? [...orgCache]
        .filter(([code, org]) => org === null && results.some((r) => r.ok && r.user.organizationCode === code))
        .map(([code]) => code)
    : createdOrganizations;
  return { results, createdOrganizations: planned };
}

/**
 * Ends the mailed tokens this batch makes stale, per organization: every one (verification, reset,
 * invitation) of a user whose email changed (the link went to an address that is no longer theirs,
 * and would verify the new one or set the password for whoever holds the old one) or who left
 * `active` (as their sessions end, so do the links that would sign them in again); the password
 * links of a user an administrator set a password for (an older reset link would undo it). A change
 * of letter case is the same mailbox.
 */
async function endStaleTokens(tx: DbOrTx, steps: Step[], written: Map<string, Written>): Promise<void> {
  const stale = new Map<string, { organizationId: string; userIds: string[]; passwordOnly: boolean }>();
  for (const s of steps) {
    if ('error' in s || !s.existing) continue;
    const w = written.get(s.target.id);
    if (!w || w.inserted || w.unchanged) continue;
    const previous = w.previousStatus ?? s.existing.status;
    const leftActive = previous !== s.target.status && s.target.status !== 'active';
    const emailChanged = s.existing.email.toLowerCase() !== s.target.email.toLowerCase();
    const passwordOnly = !leftActive && !emailChanged;
    if (passwordOnly && s.target.passwordHash === null) continue;
    const organizationId = s.existing.organizationId;
    const key = `${organizationId} ${passwordOnly}`;
    const group = stale.get(key) ?? { organizationId, userIds: [], passwordOnly };
    group.userIds.push(w.id);
    stale.set(key, group);
  }
  for (const { organizationId, userIds, passwordOnly } of stale.values()) {
    await endAccountTokens(tx, { organizationId, userIds, ...(passwordOnly ? { purposes: PASSWORD_PURPOSES } : {}) });
  }
}

async function finishBatch(
  tx: DbOrTx,
  actor: Actor,
  steps: Step[],
  written: Map<string, Written>,
  options: ProvisionOptions,
  events: AuditEvent[],
): Promise<ProvisionOutcome[]> {
  // Before any invitation below: the new link is for the row as it now stands.
  await endStaleTokens(tx, steps, written);
  const out: ProvisionOutcome[] = [];
  for (const s of steps) {
    if ('error' in s) {
      out.push({ index: s.index, ok: false, error: s.error });
      continue;
    }
    const w = written.get(s.target.id);
    if (w?.unchanged) {
      // A concurrent writer stored these values first and recorded the change: as a repeat, nothing changes.
      out.push({ index: s.index, ok: true, action: 'updated', user: planToUser(s, w), changes: [], invited: false });
      continue;
    }
    const rewritten = isRewrite(s);
    if (!w && (!s.existing || rewritten)) {
      // The row went to another organization or away between plan and write.
      out.push({
        index: s.index,
        ok: false,
        error: provisioningErrors.userNotFound(s.item.externalId ?? s.item.id ?? ''),
      });
      continue;
    }
    const created = w?.inserted ?? false;
    const previous = w?.previousStatus ?? s.existing?.status ?? null;
    const passwordSet = s.target.passwordHash !== null;
    const statusChanged = previous !== null && previous !== s.target.status;
    if (w && !created) {
      // Leaving `active` (or being deactivated) or getting a new password ends the user's sessions,
      // in this transaction, so old tokens stop working with the change.
      if (statusChanged && s.target.status !== 'active') {
        await revokeUserSessions(tx, w.id, `status_${s.target.status}`);
      } else if (passwordSet) {
        await revokeUserSessions(tx, w.id, 'password_set_by_admin');
      } else if (
        statusChanged ||
        s.target.isStaff !== s.existing?.isStaff ||
        s.target.isSuperuser !== s.existing?.isSuperuser
      ) {
        // Flags travel in cached session state; a change must be seen at once, not after the cache TTL.
        await invalidateUserState(tx, w.id);
      }
    }
    let invited = false;
    // A user planned as new that a parallel call created first was updated here, not created.
    if (s.invite && created && options.config) {
      await inviteUser(tx as Db, options.config as Config, s.target.id, undefined);
      invited = true;
    }
    if (created || rewritten) {
      const type = created
        ? 'user.created'
        : statusChanged && s.target.status === 'deactivated'
          ? 'user.deactivated'
          : 'user.updated';
      events.push(
        // A new user's values are its row; an update records what changed, from and to (never a password).
        userEvent(
          actor,
          options.context,
          type,
          s.organization.id,
          s.target.id,
          {
            external_id: s.target.externalId,
            ...(created ? {} : { changes: s.changes }),
            ...(invited ? { invited: true } : {}),
            // Write-only fields that changed, named as values: the activity trail redacts every key naming a password.
            ...(passwordSet ? { write_only: ['password'] } : {}),
          },
          // Powers and credentials are what an auditor looks for first.
          passwordSet || s.changes.some((c) => c.field === 'is_superuser') ? 'warning' : 'info',
        ),
      );
    }
    out.push({
      index: s.index,
      ok: true,
      action: created ? 'created' : 'updated',
      user: planToUser(s, w),
      changes: s.changes,
      invited,
    });
  }
  return out;
}
