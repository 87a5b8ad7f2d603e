import type { Db } from '../../platform/db/client.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { accessOf, type EffectiveAccess } from './effective-access.js';
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
  if (actor.kind === 'api_key') return;
  const [caller, theirs] = await Promise.all([accessOfCaller(db, actor), accessOf(db, target.id)]);
  if (theirs?.level != null && (caller.level === null || theirs.level < caller.level)) {
    throw rbacErrors.aboveCeiling('user', 'This user holds a role more powerful than yours.');
  }
}
