/**
 * Users by reference: finding and listing the users a caller reaches, and deactivating one. The
 * scoping rules are those of the provisioning core (see provisioning.service.ts).
 */
import { and, eq, getTableColumns, or, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { anyUuid, isUuid } from '../../platform/db/columns.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import { AppError } from '../../platform/http/errors.js';
import { endAccountTokens } from '../account/account.queries.js';
import { recordAudits } from '../activity/audit.js';
import { revokeUserSessions } from '../auth/auth.service.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { organizations } from '../organizations/organizations.table.js';
import { usersAboveKeyCeiling } from '../rbac/delegation.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { type User, users } from '../users/users.table.js';
import { callEvent, userEvent } from './provisioning.audit.js';
import { provisioningErrors } from './provisioning.errors.js';
import type { ProvisionedUser, RequestContext } from './provisioning.service.js';

export type UserRow = User & { organizationCode: string };

export const withOrganization = { ...getTableColumns(users), organizationCode: organizations.code };

/**
 * A user's row with whether their organization is active: a deactivated organization's users can no
 * longer sign in, so they are not active, as downstream sync tells the downstream.
 */
const withOrganizationState = { ...withOrganization, organizationActive: organizations.isActive };

/** The view of a stored user; `active` only while their organization is active too. */
export function toProvisionedUser(row: UserRow, organizationActive = true): ProvisionedUser {
  return {
    id: row.id,
    organizationId: row.organizationId,
    organizationCode: row.organizationCode,
    externalId: row.externalId,
    scimExternalId: row.scimExternalId,
    email: row.email,
    username: row.username,
    firstName: row.firstName,
    lastName: row.lastName,
    status: row.status,
    active: row.status === 'active' && organizationActive,
    attributes: row.attributes,
    hasPassword: row.passwordHash !== null,
    createdAt: row.dateJoined,
    updatedAt: row.updatedAt,
  };
}

// ---------------------------------------------------------------------------------------------
// Reads

/** How a caller names one user: by Gatehouse id or by external id (keycloak_id). */
export type UserRef = { id: string } | { externalId: string };

/** Superusers are changed only by superusers, never by API keys (as in the admin API). */
export function isSuperuserActor(actor: Actor): boolean {
  return actor.kind === 'user' && actor.isSuperuser;
}

function refText(ref: UserRef): string {
  return 'id' in ref ? ref.id : ref.externalId;
}

/**
 * Users by id, with their organization's code; only those of `organizationId` when it is given.
 * By primary key first, then the organization: given both at once, the planner may read the
 * organization's whole index range. Without statistics (a table just filled by a first sync) it
 * did, and 500 ids of a 100,000-user organization cost 33 ms instead of 4. The LIMIT (never fewer
 * than the ids) keeps the subquery from being merged into the outer query.
 */
export async function readUserRows(db: DbOrTx, ids: string[], organizationId?: string): Promise<UserRow[]> {
  if (ids.length === 0) return [];
  const byId = db.select().from(users).where(anyUuid(users.id, ids)).limit(ids.length).as('by_id');
  return db
    .select({ ...byId._.selectedFields, organizationCode: organizations.code })
    .from(byId)
    .innerJoin(organizations, eq(organizations.id, byId.organizationId))
    .where(organizationId ? eq(byId.organizationId, organizationId) : undefined) as Promise<UserRow[]>;
}

/**
 * The users these ids and external ids name, locked until the caller's transaction ends, so the plan
 * is made from the row as the last writer left it and no other write lands between plan and write
 * (without it, two writes changing different fields each write the row back whole, and one is lost).
 * FOR UPDATE rather than FOR NO KEY UPDATE: a write may change external_id or scim_external_id (keys
 * a foreign key could use), which takes FOR UPDATE; upgrading to it while a login's session insert
 * holds the row in key share, and that login then waits for this one's lock, would deadlock. One
 * statement in id order, so writers locking several rows take them in the same order.
 */
export async function lockUserRows(db: DbOrTx, ids: string[], externalIds: string[]): Promise<UserRow[]> {
  if (ids.length === 0 && externalIds.length === 0) return [];
  return db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(
      or(
        ids.length > 0 ? anyUuid(users.id, ids) : undefined,
        externalIds.length > 0 ? sql`${users.externalId} = any(${sql.param(externalIds)}::text[])` : undefined,
      ),
    )
    .orderBy(users.id)
    .for('update', { of: users });
}

/**
 * The users of one organization these ids name, locked as lockUserRows locks them. Their ids are
 * found first, by primary key before the organization (readUserRows' reason: given both at once the
 * planner may walk the organization's whole index range, seconds at 100,000 users), so rows of
 * another organization are never locked; then the lock reads the rows by primary key alone.
 */
export async function lockOrganizationUserRows(db: DbOrTx, ids: string[], organizationId: string): Promise<UserRow[]> {
  if (ids.length === 0) return [];
  const byId = db
    .select({ id: users.id, organizationId: users.organizationId })
    .from(users)
    .where(anyUuid(users.id, ids))
    .limit(ids.length)
    .as('by_id');
  const ours = await db.select({ id: byId.id }).from(byId).where(eq(byId.organizationId, organizationId));
  // Users never change organization; one deleted between the two statements is simply missing.
  return lockUserRows(
    db,
    ours.map((row) => row.id),
    [],
  );
}

async function findUserByRef(db: DbOrTx, ref: UserRef, organizationId: string | undefined, lock = false) {
  if ('id' in ref && !isUuid(ref.id)) return undefined;
  const match = 'id' in ref ? eq(users.id, ref.id) : eq(users.externalId, ref.externalId);
  const query = db
    .select(withOrganizationState)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(organizationId ? and(match, eq(users.organizationId, organizationId)) : match)
    .limit(1);
  const [row] = lock ? await query.for('update', { of: users }) : await query;
  return row;
}

/** One user within the caller's reach; undefined when absent or in another organization. */
export async function findProvisionedUser(
  db: DbOrTx,
  actor: Actor,
  ref: UserRef,
): Promise<ProvisionedUser | undefined> {
  const row = await findUserByRef(db, ref, organizationScopeOf(actor));
  return row ? toProvisionedUser(row, row.organizationActive) : undefined;
}

/**
 * Every user of an organization (by code), oldest first. A confined caller naming another
 * organization gets the same 404 as for a code that does not exist.
 */
export async function listProvisionedUsers(
  db: DbOrTx,
  actor: Actor,
  organizationCode: string,
): Promise<ProvisionedUser[]> {
  const scope = organizationScopeOf(actor);
  const org = await findOrganizationByCode(db, organizationCode);
  // A scoped key reads its own organization only: any other code, existing or not, is a 404 (as a
  // user outside it is). For a platform key, seed 000's filter by client: an unknown code has none.
  if (scope !== undefined && org?.id !== scope) throw provisioningErrors.clientNotFound(organizationCode);
  if (!org) return [];
  const rows = await db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(eq(users.organizationId, org.id))
    .orderBy(users.id);
  return rows.map((row) => toProvisionedUser(row, org.isActive));
}

// ---------------------------------------------------------------------------------------------
// Deactivation

export interface DeactivationResult {
  user: ProvisionedUser;
  /** false when the user was already deactivated (the call is idempotent). */
  changed: boolean;
  at: Date;
}

/** The call's own event names the user as its object, so erasing the user names them by pseudonym there too. */
function deactivateCall(
  actor: Actor,
  context: RequestContext | undefined,
  user: { id: string; organizationId: string },
  changed: boolean,
) {
  return {
    ...callEvent(actor, context, 'provisioning.user.deactivate', user.organizationId, { changed }),
    objectType: 'user',
    objectId: user.id,
  };
}

/**
 * A refused deactivation's event, written after its transaction rolled back (with it, the event
 * would be undone too): in the user's organization when the user was found, else the caller's.
 */
async function recordRefusedDeactivation(
  db: Db,
  actor: Actor,
  context: RequestContext | undefined,
  user: { id: string; organizationId: string } | undefined,
  error: AppError,
): Promise<void> {
  const details = { changed: false, code: error.code, status: error.status };
  const event = user
    ? { ...deactivateCall(actor, context, user, false), details }
    : callEvent(actor, context, 'provisioning.user.deactivate', organizationScopeOf(actor) ?? null, details);
  await db.transaction((tx) => recordAudits(tx, [{ ...event, success: false, severity: 'warning' }]));
}

/**
 * Deactivates a user within the caller's reach and ends their sessions, in one transaction with
 * its audit event. Idempotent: an already deactivated user answers the same, unchanged.
 * Throws 404 `user_not_found` for a user outside the caller's organization; every refusal is
 * recorded as a failed call.
 */
export async function deactivateUser(
  db: Db,
  actor: Actor,
  ref: UserRef,
  options: { context?: RequestContext } = {},
): Promise<DeactivationResult> {
  let found: UserRow | undefined;
  try {
    return await deactivateInTransaction(db, actor, ref, options, (row) => {
      found = row;
    });
  } catch (err) {
    if (err instanceof AppError) await recordRefusedDeactivation(db, actor, options.context, found, err);
    throw err;
  }
}

async function deactivateInTransaction(
  db: Db,
  actor: Actor,
  ref: UserRef,
  options: { context?: RequestContext },
  onFound: (row: UserRow) => void,
): Promise<DeactivationResult> {
  const scope = organizationScopeOf(actor);
  return db.transaction(async (tx) => {
    const row = await findUserByRef(tx, ref, scope, true);
    if (!row) throw provisioningErrors.userNotFound(refText(ref));
    // The refusal's event, written after the rollback, names the user found.
    onFound(row);
    if (row.isSuperuser && !isSuperuserActor(actor)) throw rbacErrors.superuserTarget();
    if ((await usersAboveKeyCeiling(tx, actor, [row.id])).size > 0) throw rbacErrors.aboveKeyCeiling(row.id);
    const at = new Date();
    if (row.status === 'deactivated') {
      await recordAudits(tx, [deactivateCall(actor, options.context, row, false)]);
      return { user: toProvisionedUser(row), changed: false, at };
    }
    const [updated] = await tx
      .update(users)
      .set({ status: 'deactivated', updatedAt: at })
      .where(eq(users.id, row.id))
      .returning();
    await revokeUserSessions(tx, row.id, 'deactivated_by_provisioning');
    // Mailed links too: a reset or invitation must not set a password on a deactivated account.
    await endAccountTokens(tx, { organizationId: row.organizationId, userIds: [row.id] });
    await recordAudits(tx, [
      userEvent(actor, options.context, 'user.deactivated', row.organizationId, row.id, {
        changes: [{ field: 'is_active', from: row.status === 'active', to: false }],
        previous_status: row.status,
      }),
      deactivateCall(actor, options.context, row, true),
    ]);
    return {
      user: toProvisionedUser({ ...(updated as User), organizationCode: row.organizationCode }),
      changed: true,
      at,
    };
  });
}
