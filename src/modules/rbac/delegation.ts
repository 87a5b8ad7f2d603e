import { eq, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { anyUuid } from '../../platform/db/columns.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { users } from '../users/users.table.js';
import { accessOf, computeAccess, type EffectiveAccess } from './effective-access.js';
import { rbacErrors } from './rbac.errors.js';
import { roles, userRoles } from './rbac.table.js';

/**
 * The delegation ceiling: nobody hands out more than they hold. A role someone creates, changes or
 * assigns must be at most as powerful as their own most powerful role (level number ≥ theirs)
 * and carry only permissions and modules they hold themselves. Superusers have no ceiling.
 */

/** What a role would carry: its level and the codes it grants. */
export interface RoleReach {
  level: number;
  permissions: Iterable<string>;
  modules: Iterable<string>;
}

/** The caller's own access; superusers get a synthetic one that reaches everything. */
export async function accessOfCaller(db: Db, actor: UserActor): Promise<EffectiveAccess> {
  const access = await accessOf(db, actor.userId);
  if (!access) throw commonErrors.unauthenticated();
  return access;
}

export function assertWithinCeiling(caller: EffectiveAccess, role: RoleReach): void {
  if (caller.isSuperuser) return;
  if (caller.level === null || role.level < caller.level) {
    throw rbacErrors.aboveCeiling(
      'level',
      `Level ${role.level} is more powerful than your own (${caller.level ?? 'no role'}); lower numbers are more powerful.`,
    );
  }
  const missingPermissions = [...role.permissions].filter((code) => !caller.permissions.has(code));
  if (missingPermissions.length > 0) {
    throw rbacErrors.aboveCeiling('permissions', `You do not hold: ${missingPermissions.join(', ')}.`);
  }
  const missingModules = [...role.modules].filter((code) => !caller.modules.has(code));
  if (missingModules.length > 0) {
    throw rbacErrors.aboveCeiling('modules', `You do not have access to: ${missingModules.join(', ')}.`);
  }
}

/** Someone without roles: every role is above them. */
const NO_ACCESS: Omit<EffectiveAccess, 'userId'> = {
  organizationId: '',
  status: 'active',
  isSuperuser: false,
  permissions: new Map(),
  modules: new Map(),
  roleIds: new Set(),
  level: null,
};

/**
 * The ceiling an API key writes within: that of the user who created it, as their access stands
 * (read in `db`, which may be the caller's transaction). Keys an operator made (the command line,
 * PROVISIONING_API_KEY) and a superuser's have none (undefined), known without a query. Without it
 * an organization admin could, through a key of their own, reach what the admin API refuses them.
 */
export async function keyCeilingOf(db: DbOrTx, actor: Actor): Promise<EffectiveAccess | undefined> {
  if (actor.kind !== 'api_key' || actor.ceilingUserId === null) return undefined;
  const access = await computeAccess(db, actor.ceilingUserId);
  // Made a superuser since the key's state was cached.
  if (access?.isSuperuser) return undefined;
  return access ?? { ...NO_ACCESS, userId: actor.ceilingUserId };
}

/** Each user's most powerful role level (null: none) and superuser flag, as they stand in `db`. */
export function strongestRoles(
  db: DbOrTx,
  userIds: string[],
): Promise<{ id: string; isSuperuser: boolean; level: number | null }[]> {
  return db
    .select({ id: users.id, isSuperuser: users.isSuperuser, level: sql<number | null>`min(${roles.level})` })
    .from(users)
    .leftJoin(userRoles, eq(userRoles.userId, users.id))
    .leftJoin(roles, eq(roles.id, userRoles.roleId))
    .where(anyUuid(users.id, userIds))
    .groupBy(users.id, users.isSuperuser);
}

/** Whether a user whose most powerful role is `level` is beyond the ceiling (lower numbers are more powerful). */
export function isAboveCeiling(ceiling: EffectiveAccess, level: number | null): boolean {
  if (ceiling.isSuperuser) return false;
  return level !== null && (ceiling.level === null || level < ceiling.level);
}

/**
 * The users among `userIds` an API key may not write: those holding a role more powerful than its
 * creator (none for a key without a ceiling). Read in `db`, which may be the caller's transaction.
 */
export async function usersAboveKeyCeiling(db: DbOrTx, actor: Actor, userIds: string[]): Promise<Set<string>> {
  if (userIds.length === 0) return new Set();
  const ceiling = await keyCeilingOf(db, actor);
  if (!ceiling) return new Set();
  const powers = await strongestRoles(db, userIds);
  return new Set(powers.filter((p) => isAboveCeiling(ceiling, p.level)).map((p) => p.id));
}

/** The user an admin write is aimed at. */
export interface ManagedUser {
  id: string;
  organizationId: string;
  isSuperuser: boolean;
}

/**
 * Object-level rule for writes to a user: within the caller's own organization only (another
 * organization's user answers 404, as if absent), never to a superuser unless the caller is one,
 * and never to someone more powerful than the caller. Platform-wide API keys and superusers
 * reach every organization.
 */
export async function assertMayManageUser(db: Db, actor: Actor, target: ManagedUser): Promise<void> {
  if (actor.kind === 'user' && actor.isSuperuser) return;
  if (actor.kind === 'anonymous') throw commonErrors.unauthenticated();
  if (actor.organizationId !== null && actor.organizationId !== target.organizationId) {
    throw commonErrors.notFound(`User ${target.id}`);
  }
  if (target.isSuperuser) throw rbacErrors.superuserTarget();
  const ceiling = actor.kind === 'api_key' ? await keyCeilingOf(db, actor) : await accessOfCaller(db, actor);
  if (!ceiling) return;
  const theirs = await accessOf(db, target.id);
  if (isAboveCeiling(ceiling, theirs?.level ?? null)) {
    throw rbacErrors.aboveCeiling(
      'user',
      actor.kind === 'api_key'
        ? "This user holds a role more powerful than the key's creator."
        : 'This user holds a role more powerful than yours.',
    );
  }
}
