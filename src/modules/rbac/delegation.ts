import { sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { accessOf, computeAccess, type EffectiveAccess } from './effective-access.js';
import { rbacErrors } from './rbac.errors.js';

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
  organizationCode: '',
  organizationActive: true,
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

/**
 * The users among `userIds` beyond `ceiling`: superusers (unless the ceiling is a superuser's), and
 * anyone holding a role more powerful than the ceiling's holder (a lower level number) or granting a
 * permission or module the holder lacks. Grants count as `computeAccess` counts them: a role of
 * another organization grants nothing, and an inactive module opens nothing and its permissions count
 * for nothing. One query for the whole list, read in `db` (which may be the caller's transaction).
 */
export async function usersBeyondCeiling(
  db: DbOrTx,
  ceiling: EffectiveAccess,
  userIds: string[],
): Promise<{ id: string; isSuperuser: boolean }[]> {
  if (ceiling.isSuperuser || userIds.length === 0) return [];
  const rows = await queryRows<{ id: string; is_superuser: boolean }>(
    db,
    sql`select u.id, u.is_superuser from users u where u.id = any(${sql.param(userIds)}::uuid[]) and ${beyond(ceiling)}`,
  );
  return rows.map((r) => ({ id: r.id, isSuperuser: r.is_superuser }));
}

/**
 * Whether anyone holding the role `roleId` is beyond `ceiling` (as `usersBeyondCeiling` judges): a
 * change to the role, or its deletion, changes what they hold, which the caller may then not do.
 * Stops at the first such holder.
 */
export async function roleHeldBeyondCeiling(db: DbOrTx, ceiling: EffectiveAccess, roleId: string): Promise<boolean> {
  if (ceiling.isSuperuser) return false;
  const rows = await queryRows<{ id: string }>(
    db,
    sql`select u.id from user_roles held join users u on u.id = held.user_id
        where held.role_id = ${roleId} and ${beyond(ceiling)} limit 1`,
  );
  return rows.length > 0;
}

/** The condition on `u` (a users row) that it is beyond `ceiling`. */
function beyond(ceiling: EffectiveAccess) {
  return sql`(u.is_superuser or exists (
        select 1
        from user_roles ur
        join roles r on r.id = ur.role_id
        where ur.user_id = u.id
          and (r.organization_id is null or r.organization_id = u.organization_id)
          and (
            ${ceiling.level}::int is null or r.level < ${ceiling.level}::int
            or exists (
              select 1
              from role_permissions rp
              join permissions p on p.id = rp.permission_id
              join modules m on m.id = p.module_id and m.is_active
              where rp.role_id = r.id and p.code <> all(${sql.param([...ceiling.permissions.keys()])}::text[])
            )
            or exists (
              select 1
              from role_modules rm
              join modules m on m.id = rm.module_id and m.is_active
              where rm.role_id = r.id and m.code <> all(${sql.param([...ceiling.modules.keys()])}::text[])
            )
          )
      ))`;
}

/**
 * The users among `userIds` an API key may not write: those holding a role more powerful than its
 * creator's or grants the creator lacks (none for a key without a ceiling, known without a query).
 * Superusers are left to the callers' own refusal (403 `superuser_protected`). Read in `db`, which
 * may be the caller's transaction.
 */
export async function usersAboveKeyCeiling(db: DbOrTx, actor: Actor, userIds: string[]): Promise<Set<string>> {
  if (userIds.length === 0) return new Set();
  const ceiling = await keyCeilingOf(db, actor);
  if (!ceiling) return new Set();
  const beyond = await usersBeyondCeiling(db, ceiling, userIds);
  return new Set(beyond.filter((u) => !u.isSuperuser).map((u) => u.id));
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
 * and never to someone holding a role more powerful than the caller's or grants the caller lacks.
 * Platform-wide API keys and superusers reach every organization.
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
  if ((await usersBeyondCeiling(db, ceiling, [target.id])).length > 0) {
    throw rbacErrors.aboveCeiling(
      'user',
      actor.kind === 'api_key'
        ? "This user holds a role or grants beyond the key's creator's."
        : 'This user holds a role or grants beyond your own.',
    );
  }
}
