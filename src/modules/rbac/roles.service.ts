import { and, asc, eq, gt, inArray, isNotNull, isNull, or, type SQL, sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';
import { anyUuid, isUuid } from '../../platform/db/columns.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { cursorId, decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import { type AuditEvent, recordAudit, recordAudits } from '../activity/audit.js';
import { organizationErrors } from '../organizations/organizations.errors.js';
import { findOrganizationByCode, holdActiveOrganization } from '../organizations/organizations.queries.js';
import { organizations } from '../organizations/organizations.table.js';
import { userErrors } from '../users/users.errors.js';
import { findUserById } from '../users/users.queries.js';
import { users } from '../users/users.table.js';
import { accessOfCaller, assertMayManageUser, assertWithinCeiling, roleHeldBeyondCeiling } from './delegation.js';
import { type EffectiveAccess, roleChanged, userRolesChanged } from './effective-access.js';
import { fieldChanges } from './field-changes.js';
import { rbacErrors } from './rbac.errors.js';
import type { AssignRoleInput, CreateRoleInput, UpdateRoleInput } from './rbac.schemas.js';
import { permissions, type Role, rbacModules, roleModules, rolePermissions, roles, userRoles } from './rbac.table.js';

/**
 * Roles with their grants, and who holds them. Every write runs the delegation ceiling
 * (delegation.ts) and the object rule: a caller who is not a superuser changes only their own
 * organization's roles and users; global roles belong to the platform.
 */

export type RoleWithGrants = Role & {
  organizationCode: string | null;
  permissionCodes: string[];
  moduleCodes: string[];
};

export function toRoleView(r: RoleWithGrants) {
  return {
    id: r.id,
    code: r.code,
    name: r.name,
    level: r.level,
    description: r.description,
    organization: r.organizationCode,
    organization_id: r.organizationId,
    is_builtin: r.isBuiltin,
    permissions: r.permissionCodes,
    modules: r.moduleCodes,
    created_at: r.createdAt.toISOString(),
    updated_at: r.updatedAt.toISOString(),
  };
}

/** Roles a caller may see: global ones and their organization's (all of them for superusers). */
function visibleTo(scope: string | undefined): SQL | undefined {
  return scope === undefined ? undefined : or(isNull(roles.organizationId), eq(roles.organizationId, scope));
}

async function withGrants(db: DbOrTx, where: SQL | undefined, page?: { limit: number }): Promise<RoleWithGrants[]> {
  const query = db
    .select({ role: roles, organizationCode: organizations.code })
    .from(roles)
    .leftJoin(organizations, eq(organizations.id, roles.organizationId))
    .where(where)
    .orderBy(asc(roles.id));
  const rows = page ? await query.limit(page.limit + 1) : await query;
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.role.id);
  const [granted, opened] = await Promise.all([
    db
      .select({ roleId: rolePermissions.roleId, code: permissions.code })
      .from(rolePermissions)
      .innerJoin(permissions, eq(permissions.id, rolePermissions.permissionId))
      .where(inArray(rolePermissions.roleId, ids))
      .orderBy(asc(permissions.code)),
    db
      .select({ roleId: roleModules.roleId, code: rbacModules.code })
      .from(roleModules)
      .innerJoin(rbacModules, eq(rbacModules.id, roleModules.moduleId))
      .where(inArray(roleModules.roleId, ids))
      .orderBy(asc(rbacModules.code)),
  ]);
  return rows.map(({ role, organizationCode }) => ({
    ...role,
    organizationCode,
    permissionCodes: granted.filter((g) => g.roleId === role.id).map((g) => g.code),
    moduleCodes: opened.filter((g) => g.roleId === role.id).map((g) => g.code),
  }));
}

export async function listRoles(
  db: DbOrTx,
  scope: string | undefined,
  input: { organization?: string; cursor?: string; limit: number },
  /** Only roles within this ceiling (those its holder may assign or hand out); undefined: all. */
  ceiling?: EffectiveAccess,
): Promise<RoleWithGrants[]> {
  const conditions: (SQL | undefined)[] = [visibleTo(scope)];
  if (ceiling && !ceiling.isSuperuser) conditions.push(withinCeiling(ceiling));
  if (input.organization === 'global') conditions.push(isNull(roles.organizationId));
  else if (input.organization !== undefined) {
    const org = await findOrganizationByCode(db, input.organization);
    // An unknown organization simply has no roles.
    if (!org) return [];
    conditions.push(eq(roles.organizationId, org.id));
  }
  if (input.cursor) conditions.push(gt(roles.id, cursorId(input.cursor)));
  return withGrants(db, and(...conditions), { limit: input.limit });
}

/**
 * The roles assertWithinCeiling lets `ceiling`'s holder hand out, as a condition: at their level or
 * below (a number at least theirs), granting no permission or module they lack.
 */
function withinCeiling(ceiling: EffectiveAccess): SQL {
  if (ceiling.level === null) return sql`false`;
  const held = [...ceiling.permissions.keys()];
  const opened = [...ceiling.modules.keys()];
  return and(
    sql`${roles.level} >= ${ceiling.level}`,
    sql`not exists (select 1 from ${rolePermissions} rp join ${permissions} p on p.id = rp.permission_id
      where rp.role_id = ${roles.id} and p.code <> all(${sql.param(held)}::text[]))`,
    sql`not exists (select 1 from ${roleModules} rm join ${rbacModules} m on m.id = rm.module_id
      where rm.role_id = ${roles.id} and m.code <> all(${sql.param(opened)}::text[]))`,
  ) as SQL;
}

/** A role the caller may see, by id; another organization's role is simply not found. */
export async function findRole(db: DbOrTx, id: string, scope: string | undefined): Promise<RoleWithGrants> {
  const [role] = isUuid(id) ? await withGrants(db, and(eq(roles.id, id), visibleTo(scope))) : [];
  if (!role) throw rbacErrors.roleNotFound(id);
  return role;
}

/** Ids for codes of one catalog table; any unknown code refuses the request, naming its list. */
async function idsForCodes(
  tx: DbOrTx,
  table: typeof permissions | typeof rbacModules,
  codes: string[],
  field: 'permissions' | 'modules',
): Promise<string[]> {
  if (codes.length === 0) return [];
  // Key share, as the grant's foreign key will take: a deletion of one of them either waits for this
  // transaction (and then sees the grant) or has committed, and the code is unknown, not a 500.
  const found = await tx
    .select({ id: table.id, code: table.code })
    .from(table)
    .where(inArray(table.code, codes))
    .for('key share');
  const missing = codes.filter((c) => !found.some((f) => f.code === c));
  if (missing.length > 0) throw rbacErrors.unknownCodes(field, missing);
  return found.map((f) => f.id);
}

/** Ids for the grant lists a body gives (an omitted list stays undefined: left as it is). */
async function resolveGrants(
  tx: DbOrTx,
  permissionCodes: string[] | undefined,
  moduleCodes: string[] | undefined,
): Promise<{ permissionIds?: string[]; moduleIds?: string[] }> {
  return {
    ...(permissionCodes ? { permissionIds: await idsForCodes(tx, permissions, permissionCodes, 'permissions') } : {}),
    ...(moduleCodes ? { moduleIds: await idsForCodes(tx, rbacModules, moduleCodes, 'modules') } : {}),
  };
}

async function replaceGrants(tx: DbOrTx, roleId: string, grants: { permissionIds?: string[]; moduleIds?: string[] }) {
  if (grants.permissionIds) {
    await tx.delete(rolePermissions).where(eq(rolePermissions.roleId, roleId));
    if (grants.permissionIds.length > 0) {
      await tx.insert(rolePermissions).values(grants.permissionIds.map((permissionId) => ({ roleId, permissionId })));
    }
  }
  if (grants.moduleIds) {
    await tx.delete(roleModules).where(eq(roleModules.roleId, roleId));
    if (grants.moduleIds.length > 0) {
      await tx.insert(roleModules).values(grants.moduleIds.map((moduleId) => ({ roleId, moduleId })));
    }
  }
}

/** The owner a create body asks for, after the object rule. */
async function ownerOf(db: DbOrTx, actor: UserActor, requested: string | null | undefined): Promise<string | null> {
  if (actor.isSuperuser) {
    if (requested == null) return null;
    const org = await findOrganizationByCode(db, requested);
    if (!org) throw rbacErrors.unknownCodes('organization', [requested]);
    return org.id;
  }
  if (requested === undefined || requested === actor.organizationCode) return actor.organizationId;
  if (requested === null) throw rbacErrors.platformObject('A global role');
  throw rbacErrors.otherOrganization();
}

/**
 * Refuses an organization role the code of a built-in global role. Any other global code may be
 * reused (the organization's role then wins when assigning by code there), but the built-in codes
 * are the names documentation, setup files and administrators rely on for fixed rights: assigning
 * `viewer` must never hand out an organization's role of other grants. Built-in roles are created by
 * migration and never renamed or deleted, so this check races with nothing.
 */
export async function assertRoleCodeFree(tx: DbOrTx, organizationId: string | null, code: string): Promise<void> {
  if (organizationId === null) return;
  const [builtin] = await tx
    .select({ id: roles.id })
    .from(roles)
    .where(and(isNull(roles.organizationId), eq(roles.isBuiltin, true), eq(roles.code, code)))
    .limit(1);
  if (builtin) {
    throw rbacErrors.roleCodeTaken(code, `"${code}" is the code of a built-in role; choose another code.`);
  }
}

/** The event of a role's creation, by the API or a setup file. */
export function roleCreated(
  role: { id: string; code: string; organizationId: string | null },
  actor: Actor,
  grants: { level: number | undefined; permissions: string[]; modules: string[] },
): AuditEvent {
  return {
    type: 'role.created',
    category: 'authorization',
    organizationId: role.organizationId,
    actor,
    description: `Role ${role.code} created`,
    details: { code: role.code, ...grants },
    objectType: 'role',
    objectId: role.id,
  };
}

export async function createRole(db: Db, actor: UserActor, input: CreateRoleInput): Promise<RoleWithGrants> {
  const caller = await accessOfCaller(db, actor);
  assertWithinCeiling(caller, {
    level: input.level,
    permissions: input.permissions ?? [],
    modules: input.modules ?? [],
  });
  const organizationId = await ownerOf(db, actor, input.organization);
  const id = await db.transaction(async (tx) => {
    const grants = await resolveGrants(tx, input.permissions ?? [], input.modules ?? []);
    await assertRoleCodeFree(tx, organizationId, input.code);
    const [row] = await tx
      .insert(roles)
      .values({
        organizationId,
        code: input.code,
        name: input.name,
        level: input.level,
        description: input.description ?? '',
      })
      .returning({ id: roles.id });
    const roleId = (row as { id: string }).id;
    await replaceGrants(tx, roleId, grants);
    await recordAudit(
      tx,
      roleCreated({ id: roleId, code: input.code, organizationId }, actor, {
        level: input.level,
        permissions: input.permissions ?? [],
        modules: input.modules ?? [],
      }),
    );
    return roleId;
  });
  return findRole(db, id, undefined);
}

/** A role the caller may change: their organization's (any for superusers), at or below their power. */
async function writableRole(tx: DbOrTx, actor: UserActor, id: string) {
  const scope = actor.isSuperuser ? undefined : actor.organizationId;
  const current = await findRole(tx, id, scope);
  if (current.organizationId === null && !actor.isSuperuser)
    throw rbacErrors.platformObject(`Global role "${current.code}"`);
  return current;
}

/** Whether two grant lists name the same codes, in whatever order. */
function sameCodes(given: string[], stored: string[]): boolean {
  const wanted = new Set(given);
  return wanted.size === new Set(stored).size && stored.every((code) => wanted.has(code));
}

/**
 * Changes a role's fields and grants (a given list replaces the stored one). A body that changes
 * nothing writes and records nothing; `role.grants_changed` is recorded only when a list changes.
 */
export async function updateRole(
  db: Db,
  actor: UserActor,
  id: string,
  input: UpdateRoleInput,
): Promise<RoleWithGrants> {
  const caller = await accessOfCaller(db, actor);
  await db.transaction(async (tx) => {
    // Locked before the read, in the strength the update takes (assignments' key share still pass):
    // concurrent changes of the role each read it as the one before left it, so a repeat finds
    // nothing to change and records nothing.
    if (isUuid(id)) await tx.select({ id: roles.id }).from(roles).where(eq(roles.id, id)).for('no key update');
    const current = await writableRole(tx, actor, id);
    // The built-in levels order the delegation ceiling itself (org_admin below super_admin).
    if (current.isBuiltin && input.level !== undefined && input.level !== current.level)
      throw rbacErrors.builtinRoleLevel(current.code);
    assertWithinCeiling(caller, { level: current.level, permissions: [], modules: [] });
    assertWithinCeiling(caller, {
      level: input.level ?? current.level,
      permissions: input.permissions ?? current.permissionCodes,
      modules: input.modules ?? current.moduleCodes,
    });
    const permissionsChanged =
      input.permissions !== undefined && !sameCodes(input.permissions, current.permissionCodes);
    const modulesChanged = input.modules !== undefined && !sameCodes(input.modules, current.moduleCodes);
    // Resolved even when unchanged: an unknown code is refused all the same.
    const grants = await resolveGrants(tx, input.permissions, input.modules);
    const grantsChanged = permissionsChanged || modulesChanged;
    const othersChanged =
      (input.name !== undefined && input.name !== current.name) ||
      (input.level !== undefined && input.level !== current.level) ||
      (input.description !== undefined && input.description !== current.description);
    if (!grantsChanged && !othersChanged) return;
    await assertHoldersWithinCeiling(tx, caller, current.id);
    await tx
      .update(roles)
      .set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.level !== undefined ? { level: input.level } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        // Grant changes alone must still move updated_at.
        updatedAt: new Date(),
      })
      .where(eq(roles.id, current.id));
    await replaceGrants(tx, current.id, {
      ...(permissionsChanged ? { permissionIds: grants.permissionIds } : {}),
      ...(modulesChanged ? { moduleIds: grants.moduleIds } : {}),
    });
    await roleChanged(tx, current.id);
    await recordAudit(tx, {
      type: grantsChanged ? 'role.grants_changed' : 'role.updated',
      category: 'authorization',
      organizationId: current.organizationId,
      actor,
      description: `Role ${current.code} ${grantsChanged ? 'grants changed' : 'updated'}`,
      details: {
        fields: Object.keys(input),
        ...(input.level !== undefined ? { level: { from: current.level, to: input.level } } : {}),
        ...(permissionsChanged ? { permissions: { from: current.permissionCodes, to: input.permissions } } : {}),
        ...(modulesChanged ? { modules: { from: current.moduleCodes, to: input.modules } } : {}),
        changes: [
          ...fieldChanges([
            ['name', current.name, input.name],
            ['description', current.description, input.description],
            ['level', current.level, input.level],
          ]),
          ...(permissionsChanged
            ? [{ field: 'permissions', from: current.permissionCodes, to: input.permissions }]
            : []),
          ...(modulesChanged ? [{ field: 'modules', from: current.moduleCodes, to: input.modules }] : []),
        ],
      },
      severity: grantsChanged || input.level !== undefined ? 'warning' : 'info',
      objectType: 'role',
      objectId: current.id,
    });
  });
  return findRole(db, id, undefined);
}

/**
 * A role's change or deletion is a change to what its holders hold: refused, as removing the role
 * from them would be, when one of them is more powerful than the caller.
 */
async function assertHoldersWithinCeiling(tx: DbOrTx, caller: EffectiveAccess, roleId: string): Promise<void> {
  if (await roleHeldBeyondCeiling(tx, caller, roleId)) {
    throw rbacErrors.aboveCeiling('role', 'Someone holding this role holds a role or grants beyond your own.');
  }
}

export async function deleteRole(db: Db, actor: UserActor, id: string): Promise<void> {
  const caller = await accessOfCaller(db, actor);
  await db.transaction(async (tx) => {
    const current = await writableRole(tx, actor, id);
    if (current.isBuiltin) throw rbacErrors.builtinRole(current.code);
    assertWithinCeiling(caller, {
      level: current.level,
      permissions: current.permissionCodes,
      modules: current.moduleCodes,
    });
    await assertHoldersWithinCeiling(tx, caller, current.id);
    // Before the delete takes the assignments: the holders lose a SCIM group.
    if (current.organizationId !== null) await groupsOfUsersChanged(tx, holdersOf(tx, current.id));
    // The role's row first, as its deletion would lock it (after the users, as an assignment does):
    // assignments of it in flight commit before the read below, or wait and find it gone.
    const [held] = await tx.select({ id: roles.id }).from(roles).where(eq(roles.id, current.id)).for('update');
    // Deleted by a concurrent request meanwhile: answered as a repeat is, nothing recorded twice.
    if (!held) throw rbacErrors.roleNotFound(id);
    // Taken here rather than by the cascade, to know who held it and whose primary role goes with it.
    const removed = await tx
      .delete(userRoles)
      .where(eq(userRoles.roleId, current.id))
      .returning({ userId: userRoles.userId, isPrimary: userRoles.isPrimary });
    await tx.delete(roles).where(eq(roles.id, current.id));
    await promotePrimaries(
      tx,
      removed.filter((r) => r.isPrimary).map((r) => r.userId),
    );
    await roleChanged(tx, current.id);
    const recorded = removed.slice(0, HOLDERS_RECORDED);
    await recordAudits(tx, [
      {
        type: 'role.deleted',
        category: 'authorization',
        organizationId: current.organizationId,
        actor,
        description: `Role ${current.code} deleted`,
        details: {
          code: current.code,
          level: current.level,
          assignments_removed: removed.length,
          holders_recorded: recorded.length,
        },
        severity: 'warning',
        objectType: 'role',
        objectId: current.id,
      },
      // Each holder as the subject of an event of their own, as removing the role from them would be
      // recorded, and not by id in this event's details: erasing a user (eraseUserActivity) empties
      // the events naming them as subject, and would leave their id in another event's details.
      ...recorded.map(
        (r): AuditEvent => ({
          type: 'role.unassigned',
          category: 'authorization',
          organizationId: current.organizationId,
          userId: r.userId,
          actor,
          description: `Role ${current.code} removed: the role was deleted`,
          details: { role: current.code, role_id: current.id, was_primary: r.isPrimary, reason: 'role_deleted' },
          severity: 'warning',
          objectType: 'role',
          objectId: current.id,
        }),
      ),
    ]);
  });
}

/**
 * How many of a deleted role's holders get an event of their own (`role.unassigned`); the
 * `role.deleted` event counts them all. Bounded, so deleting a role held by a whole organization
 * stays one short transaction.
 */
const HOLDERS_RECORDED = 100;

// ---------------------------------------------------------------------------------------------
// Assignments

export interface Assignment {
  roleId: string;
  code: string;
  name: string;
  level: number;
  organizationId: string | null;
  organizationCode: string | null;
  isPrimary: boolean;
  assignedBy: string | null;
  createdAt: Date;
}

export function toAssignmentView(a: Assignment) {
  return {
    role: a.code,
    role_id: a.roleId,
    name: a.name,
    level: a.level,
    organization: a.organizationCode,
    organization_id: a.organizationId,
    is_primary: a.isPrimary,
    assigned_by: a.assignedBy,
    created_at: a.createdAt.toISOString(),
  };
}

/** Where a page of a user's roles continues: the sort key of the last row of the previous page. */
export interface AssignmentKey {
  level: number;
  code: string;
  roleId: string;
}

/** The key a cursor of `/users/{id}/roles/` carries; 400 invalid_cursor for one no page gave. */
export function assignmentKeyOf(cursor: string): AssignmentKey {
  const [level, code, roleId] = decodeCursor(cursor, 3);
  if (!Number.isSafeInteger(level) || typeof code !== 'string' || typeof roleId !== 'string' || !isUuid(roleId)) {
    throw invalidCursor();
  }
  return { level: level as number, code, roleId };
}

/**
 * A user's roles, most powerful first: (level, code, role id) ascending. With `page`, the `limit + 1`
 * that follow `page.after`; without, all of them.
 */
export function listAssignments(
  db: DbOrTx,
  userId: string,
  page?: { limit: number; after?: AssignmentKey | undefined },
): Promise<Assignment[]> {
  const after = page?.after;
  const query = db
    .select({
      roleId: roles.id,
      code: roles.code,
      name: roles.name,
      level: roles.level,
      organizationId: roles.organizationId,
      organizationCode: organizations.code,
      isPrimary: userRoles.isPrimary,
      assignedBy: userRoles.assignedBy,
      createdAt: userRoles.createdAt,
    })
    .from(userRoles)
    .innerJoin(roles, eq(roles.id, userRoles.roleId))
    .leftJoin(organizations, eq(organizations.id, roles.organizationId))
    .where(
      and(
        eq(userRoles.userId, userId),
        after
          ? sql`(${roles.level}, ${roles.code}, ${roles.id}) > (${after.level}::int, ${after.code}, ${after.roleId}::uuid)`
          : undefined,
      ),
    )
    .orderBy(asc(roles.level), asc(roles.code), asc(roles.id));
  return page ? query.limit(page.limit + 1) : query;
}

/**
 * Moves the updated_at of the organization roles whose holders changed, in the caller's
 * transaction. Such a role is a SCIM Group whose members are part of its version (RFC 7644 §3.14):
 * a SCIM client holding the old ETag must not overwrite the change. Always forward, by at least a
 * millisecond (the ETag's resolution), so two changes within one still give two versions. Global
 * roles are not groups and keep theirs.
 */
async function holdersChangedWhere(tx: DbOrTx, which: SQL): Promise<void> {
  await tx
    .update(roles)
    .set({
      updatedAt: sql`greatest(${new Date().toISOString()}::timestamptz, ${roles.updatedAt} + interval '1 millisecond')`,
    })
    .where(and(which, isNotNull(roles.organizationId)));
}

/** Records that these roles gained or lost holders (see holdersChangedWhere). */
function holdersChanged(tx: DbOrTx, roleIds: string[]): Promise<void> {
  return roleIds.length === 0 ? Promise.resolve() : holdersChangedWhere(tx, inArray(roles.id, roleIds));
}

/**
 * Moves the updated_at of users who joined or left an organization role, in the caller's
 * transaction, as one statement. Such roles are the user's SCIM groups, part of the User's version
 * (RFC 7644 §3.14, RFC 7232 §2.3): If-None-Match must not answer 304 with the old groups, nor
 * If-Match take a version from before. Forward by at least a millisecond, as holdersChangedWhere.
 */
export async function groupsOfUsersChanged(tx: DbOrTx, which: string[] | SQL): Promise<void> {
  if (Array.isArray(which) && which.length === 0) return;
  await tx
    .update(users)
    .set({
      updatedAt: sql`greatest(${new Date().toISOString()}::timestamptz, ${users.updatedAt} + interval '1 millisecond')`,
    })
    .where(Array.isArray(which) ? anyUuid(users.id, which) : which);
}

/** The holders of one role, as a condition on users for groupsOfUsersChanged. */
const holdersOf = (tx: DbOrTx, roleId: string) =>
  inArray(users.id, tx.select({ id: userRoles.userId }).from(userRoles).where(eq(userRoles.roleId, roleId)));

/**
 * Records that these users now show another name (username, else email) in the members[].display
 * of the organization roles they hold: those Groups' versions move, in one statement.
 */
export function holdersRenamed(tx: DbOrTx, userIds: string[]): Promise<void> {
  if (userIds.length === 0) return Promise.resolve();
  return holdersChangedWhere(
    tx,
    inArray(roles.id, tx.select({ id: userRoles.roleId }).from(userRoles).where(anyUuid(userRoles.userId, userIds))),
  );
}

/** Records that every role the user holds is about to lose them (the user is deleted). */
export function holderLeaving(tx: DbOrTx, userId: string): Promise<void> {
  return holdersChangedWhere(
    tx,
    inArray(roles.id, tx.select({ id: userRoles.roleId }).from(userRoles).where(eq(userRoles.userId, userId))),
  );
}

/** The user an assignment route names, within the caller's reach (404 otherwise). */
export async function userInScope(db: DbOrTx, userId: string, scope: string | undefined) {
  const user = isUuid(userId) ? await findUserById(db, userId) : undefined;
  if (!user || (scope !== undefined && user.organizationId !== scope)) throw userErrors.notFound(userId);
  return user;
}

/**
 * Resolves a role for a user: by id, or by code as the user's organization's role first, then the
 * global one. Taking a role away (`held`), a code names the role of that code the user holds, the
 * organization's first: the global role of a code their organization reuses stays removable by code.
 */
async function roleForUser(
  db: DbOrTx,
  user: { id: string; organizationId: string },
  ref: string,
  held = false,
): Promise<RoleWithGrants> {
  const byRef = isUuid(ref) ? eq(roles.id, ref) : eq(roles.code, ref);
  const candidates = await withGrants(
    db,
    and(
      byRef,
      or(isNull(roles.organizationId), eq(roles.organizationId, user.organizationId)),
      held
        ? inArray(roles.id, db.select({ id: userRoles.roleId }).from(userRoles).where(eq(userRoles.userId, user.id)))
        : undefined,
    ),
  );
  const role = candidates.find((r) => r.organizationId !== null) ?? candidates[0];
  if (role) return role;
  // Held by nobody: the role the code names all the same, so the answer tells a missing role from
  // one the user does not hold.
  if (held) return roleForUser(db, user, ref);
  throw rbacErrors.unknownCodes('role', [ref]);
}

/** Checks shared by assigning and removing: who may touch whose roles, and which roles. */
async function authorizeAssignmentChange(
  db: Db,
  actor: UserActor,
  userId: string,
  roleRef: string,
  change: 'assign' | 'remove',
) {
  const target = await userInScope(db, userId, actor.isSuperuser ? undefined : actor.organizationId);
  if (!actor.isSuperuser && target.id === actor.userId) throw rbacErrors.ownRoles();
  await assertMayManageUser(db, actor, target);
  const role = await roleForUser(db, target, roleRef, change === 'remove');
  assertWithinCeiling(await accessOfCaller(db, actor), {
    level: role.level,
    permissions: role.permissionCodes,
    modules: role.moduleCodes,
  });
  return { target, role };
}

/**
 * Holds, until the transaction ends, the rows an assignment change stands on, as they were when
 * authorized outside it. The user's row (no key update: the lock a change of their roles takes
 * anyway, see groupsOfUsersChanged): changes of one user's roles run one after the other, so only one
 * of two first roles becomes primary, and a parallel deletion waits instead of breaking the foreign
 * key of the insert; a user deleted meanwhile is not found. The role's row (key share, as that
 * foreign key would): a deletion waits, or it has taken the role.
 */
async function lockAssignment(tx: DbOrTx, userId: string, role: Role, roleRef: string): Promise<void> {
  const [user] = await tx.select({ id: users.id }).from(users).where(eq(users.id, userId)).for('no key update');
  if (!user) throw userErrors.notFound(userId);
  const [held] = await tx.select({ id: roles.id }).from(roles).where(eq(roles.id, role.id)).for('key share');
  if (!held) throw rbacErrors.unknownCodes('role', [roleRef]);
}

/** The user's assignment of one role, read in the caller's transaction. */
async function findAssignment(tx: DbOrTx, userId: string, roleId: string): Promise<Assignment> {
  const assignment = (await listAssignments(tx, userId)).find((a) => a.roleId === roleId);
  // The transaction wrote it or holds it locked; its absence is a bug, not a race.
  if (!assignment) throw new Error(`assignment of role ${roleId} to user ${userId} not found after the write`);
  return assignment;
}

/**
 * Gives each of these users who holds roles but none primary their most powerful role (level, then
 * code) as primary, skipping `exceptRoleId` (a role just unmarked). One rule for every path that
 * can take a user's primary role away: unmarking it, removing it, deleting the role, SCIM members.
 */
export async function promotePrimaries(
  tx: DbOrTx,
  userIds: string[],
  exceptRoleId?: string,
): Promise<{ user_id: string; role_id: string; code: string }[]> {
  if (userIds.length === 0) return [];
  return queryRows(
    tx,
    sql`
    update user_roles set is_primary = true
    from (
      select distinct on (ur.user_id) ur.user_id, ur.role_id, r.code
      from user_roles ur join roles r on r.id = ur.role_id
      where ${anyUuid(sql`ur.user_id`, userIds)}
        ${exceptRoleId === undefined ? sql`` : sql`and ur.role_id <> ${exceptRoleId}`}
        and not exists (select 1 from user_roles p where p.user_id = ur.user_id and p.is_primary)
      order by ur.user_id, r.level, r.code, r.id
    ) pick
    where user_roles.user_id = pick.user_id and user_roles.role_id = pick.role_id
    returning pick.user_id, pick.role_id, pick.code`,
  );
}

/**
 * Gives a user a role, or changes whether an assignment they hold is primary. `unchanged` (they
 * already hold it as asked) writes nothing: the route answers it as a duplicate. The assignment
 * answered is the one this transaction committed, whatever changed since.
 */
export async function assignRole(
  db: Db,
  actor: UserActor,
  userId: string,
  input: AssignRoleInput,
): Promise<{ assignment: Assignment; outcome: 'created' | 'updated' | 'unchanged' }> {
  const { target, role } = await authorizeAssignmentChange(db, actor, userId, input.role, 'assign');
  return db.transaction(async (tx) => {
    // A role is a write to its user: none lands in a deactivated organization (held to commit, as a
    // login holds it, so a deactivation waits for this or refuses it). Removing one still goes on.
    if (!(await holdActiveOrganization(tx, target.organizationId))) {
      throw organizationErrors.inactive(target.organizationCode);
    }
    await lockAssignment(tx, target.id, role, input.role);
    const held = await tx
      .select({ roleId: userRoles.roleId, isPrimary: userRoles.isPrimary })
      .from(userRoles)
      .where(eq(userRoles.userId, target.id))
      .for('update');
    const existing = held.find((h) => h.roleId === role.id);
    // The first role a user receives is their primary one.
    const isPrimary = input.is_primary ?? (existing?.isPrimary || !held.some((h) => h.isPrimary));
    if (existing && existing.isPrimary === isPrimary) {
      return { assignment: await findAssignment(tx, target.id, role.id), outcome: 'unchanged' as const };
    }
    // While a user holds roles, exactly one is primary: a role left unmarked hands the mark to the
    // most powerful other one, as removing it would; a user's only role cannot give it away.
    const others = held.filter((h) => h.roleId !== role.id);
    if (!isPrimary && others.length === 0) throw rbacErrors.onlyRoleIsPrimary();
    if (isPrimary) {
      await tx
        .update(userRoles)
        .set({ isPrimary: false })
        .where(
          and(eq(userRoles.userId, target.id), eq(userRoles.isPrimary, true), sql`${userRoles.roleId} <> ${role.id}`),
        );
    }
    await tx
      .insert(userRoles)
      .values({ userId: target.id, roleId: role.id, isPrimary, assignedBy: actor.userId })
      .onConflictDoUpdate({ target: [userRoles.userId, userRoles.roleId], set: { isPrimary } });
    const [promoted] = isPrimary ? [] : await promotePrimaries(tx, [target.id], role.id);
    // Whether it is primary is no part of the Group; only a new holder changes it.
    if (!existing) {
      await holdersChanged(tx, [role.id]);
      if (role.organizationId !== null) await groupsOfUsersChanged(tx, [target.id]);
    }
    await userRolesChanged(tx, target.id);
    await recordAudit(tx, {
      type: existing ? 'role.assignment_updated' : 'role.assigned',
      category: 'authorization',
      organizationId: target.organizationId,
      userId: target.id,
      actor,
      description: `Role ${role.code} ${existing ? 'assignment updated' : 'assigned'}`,
      details: {
        role: role.code,
        role_id: role.id,
        is_primary: isPrimary,
        ...(promoted ? { primary_role: promoted.code, primary_role_id: promoted.role_id } : {}),
      },
      severity: 'warning',
      objectType: 'role',
      objectId: role.id,
    });
    return {
      assignment: await findAssignment(tx, target.id, role.id),
      outcome: existing ? ('updated' as const) : ('created' as const),
    };
  });
}

/** Takes a role from a user; when it was primary, their most powerful remaining role becomes primary. */
export async function removeRole(db: Db, actor: UserActor, userId: string, roleRef: string): Promise<void> {
  const { target, role } = await authorizeAssignmentChange(db, actor, userId, roleRef, 'remove');
  await db.transaction(async (tx) => {
    await lockAssignment(tx, target.id, role, roleRef);
    const [removed] = await tx
      .delete(userRoles)
      .where(and(eq(userRoles.userId, target.id), eq(userRoles.roleId, role.id)))
      .returning({ isPrimary: userRoles.isPrimary });
    if (!removed) throw rbacErrors.assignmentNotFound();
    await holdersChanged(tx, [role.id]);
    if (role.organizationId !== null) await groupsOfUsersChanged(tx, [target.id]);
    const [promoted] = removed.isPrimary ? await promotePrimaries(tx, [target.id]) : [];
    await userRolesChanged(tx, target.id);
    await recordAudit(tx, {
      type: 'role.unassigned',
      category: 'authorization',
      organizationId: target.organizationId,
      userId: target.id,
      actor,
      description: `Role ${role.code} removed`,
      details: {
        role: role.code,
        role_id: role.id,
        was_primary: removed.isPrimary,
        ...(promoted ? { primary_role: promoted.code, primary_role_id: promoted.role_id } : {}),
      },
      severity: 'warning',
      objectType: 'role',
      objectId: role.id,
    });
  });
}
