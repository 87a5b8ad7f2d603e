import { and, asc, eq, getTableColumns, inArray, isNull, ne, or, type SQL, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { anyUuid, isUuid } from '../../platform/db/columns.js';
import type { Actor } from '../../platform/http/auth.js';
import { registerUniqueConstraint } from '../../platform/http/errors.js';
import { type AuditEvent, recordAudits } from '../activity/audit.js';
import { accessOfCaller, assertWithinCeiling, keyCeilingOf, usersBeyondCeiling } from '../rbac/delegation.js';
import { type EffectiveAccess, roleChanged, userRolesChanged } from '../rbac/effective-access.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { type Role, roles, userRoles } from '../rbac/rbac.table.js';
import { findRole, groupsOfUsersChanged, promotePrimaries } from '../rbac/roles.service.js';
import { users } from '../users/users.table.js';
import { requireSchema, scimErrors } from './scim.errors.js';
import { type AttributeMap, compileFilter } from './scim.filter.js';
import { applyPatch, META_ATTRIBUTE, type PatchOperation, type PatchSchema } from './scim.patch.js';
import { caseless } from './scim.user-mapping.js';
import { assertVersion, type ListQuery, type ListResult, orderOf, type Preconditions } from './scim.users.js';

/**
 * SCIM Groups are the organization's own roles (RFC 7643 §4.2 ↔ seed 002 roles). Members are the
 * role's holders (user_roles). A group created through SCIM becomes a role of level 1000 (the least
 * powerful) with no grants: it gives nothing until an administrator grants it permissions or
 * modules, so a SCIM client can never hand out power by itself, only membership of roles that
 * administrators defined. Global roles (built-in and platform ones) are not groups and cannot be
 * reached through SCIM. displayName ↔ role name (unique within the organization, case-insensitive);
 * the role code is derived from the displayName at creation and then kept. externalId ↔
 * scim_external_id (the SCIM client's own id, unique within the organization, case-exact; a PUT
 * without it clears it, as for Users).
 */

// A parallel create that took the externalId between the check and the insert still answers 409.
registerUniqueConstraint('roles_org_scim_external_id_key', 'externalId', 'scim_external_id_taken');

export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
/** The level of a role created through SCIM: the bottom of the delegation ladder. */
export const SCIM_GROUP_LEVEL = 1000;

export interface GroupMember {
  userId: string;
  display: string;
}

export type GroupWithMembers = Role & { members: GroupMember[] | undefined };

/**
 * What PATCH may name on a Group (the Schemas document's mutability). A member's value, type and
 * $ref identify it and are immutable: a member is removed and another added, never rewritten.
 */
export const GROUP_PATCH_SCHEMA: PatchSchema = {
  resourceType: 'Group',
  attributes: {
    id: { mutability: 'readOnly' },
    meta: META_ATTRIBUTE,
    schemas: { mutability: 'readOnly' },
    externalid: { mutability: 'readWrite' },
    displayname: { mutability: 'readWrite' },
    members: {
      mutability: 'readWrite',
      multiValued: true,
      sub: { value: 'readOnly', type: 'readOnly', $ref: 'readOnly', display: 'readOnly' },
    },
  },
  extensions: {},
};

/** Weak ETag of a group; membership changes move the role's updated_at too. */
export function groupVersion(role: { updatedAt: Date }): string {
  return `W/"${role.updatedAt.getTime().toString(36)}"`;
}

export function toScimGroup(group: GroupWithMembers, baseUrl: string) {
  return {
    schemas: [GROUP_SCHEMA],
    id: group.id,
    ...(group.scimExternalId !== null ? { externalId: group.scimExternalId } : {}),
    displayName: group.name,
    ...(group.members
      ? {
          members: group.members.map((m) => ({
            value: m.userId,
            display: m.display,
            type: 'User',
            $ref: `${baseUrl}/Users/${m.userId}`,
          })),
        }
      : {}),
    meta: {
      resourceType: 'Group',
      created: group.createdAt.toISOString(),
      lastModified: group.updatedAt.toISOString(),
      location: `${baseUrl}/Groups/${group.id}`,
      version: groupVersion(group),
    },
  };
}

const hasMember = (condition: SQL) =>
  sql`exists (select 1 from ${userRoles} ur where ur.role_id = ${roles.id} and ${condition})`;

export const GROUP_FILTER_ATTRIBUTES: AttributeMap = {
  id: { type: 'id', expr: sql`${roles.id}` },
  externalid: { type: 'string', expr: sql`${roles.scimExternalId}`, caseExact: true },
  displayname: { type: 'string', expr: sql`${roles.name}`, caseExact: false },
  'members.value': { type: 'id', expr: sql`ur.user_id`, within: hasMember },
  'meta.created': { type: 'dateTime', expr: sql`${roles.createdAt}` },
  'meta.lastmodified': { type: 'dateTime', expr: sql`${roles.updatedAt}` },
  'meta.resourcetype': { type: 'constant', value: 'Group' },
};

const GROUP_SORT_KEYS: Record<string, SQL> = {
  id: sql`${roles.id}`,
  externalid: sql`${roles.scimExternalId}`,
  displayname: sql`lower(${roles.name}) collate "C"`,
  'meta.created': sql`${roles.createdAt}`,
  'meta.lastmodified': sql`${roles.updatedAt}`,
};

/** Members of these roles, by role. */
async function membersOf(db: DbOrTx, roleIds: string[]): Promise<Map<string, GroupMember[]>> {
  const out = new Map<string, GroupMember[]>();
  for (const id of roleIds) out.set(id, []);
  if (roleIds.length === 0) return out;
  const rows = await db
    .select({ roleId: userRoles.roleId, userId: userRoles.userId, username: users.username, email: users.email })
    .from(userRoles)
    .innerJoin(users, eq(users.id, userRoles.userId))
    .where(inArray(userRoles.roleId, roleIds))
    .orderBy(asc(userRoles.userId));
  for (const r of rows) out.get(r.roleId)?.push({ userId: r.userId, display: r.username ?? r.email });
  return out;
}

/** A page of the organization's groups matching the filter, with the total. */
export async function listScimGroups(
  db: DbOrTx,
  organizationId: string,
  query: ListQuery,
  withMembers: boolean,
): Promise<ListResult<GroupWithMembers>> {
  const where = and(
    eq(roles.organizationId, organizationId),
    query.filter ? compileFilter(query.filter, GROUP_FILTER_ATTRIBUTES) : undefined,
  );
  const countAll = async () => {
    const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(roles).where(where);
    return row?.n ?? 0;
  };
  if (query.count === 0) return { total: await countAll(), rows: [] };
  const rows = await db
    .select({ role: getTableColumns(roles), total: sql<number>`count(*) over ()::int` })
    .from(roles)
    .where(where)
    .orderBy(...orderOf(GROUP_SORT_KEYS, sql`${roles.id}`, query))
    .limit(query.count)
    .offset(query.startIndex - 1);
  const first = rows[0];
  if (!first) return { total: query.startIndex > 1 ? await countAll() : 0, rows: [] };
  const members = withMembers
    ? await membersOf(
        db,
        rows.map((r) => r.role.id),
      )
    : undefined;
  return {
    total: first.total,
    rows: rows.map((r) => ({ ...(r.role as Role), members: members?.get(r.role.id) })),
  };
}

async function findRoleRow(db: DbOrTx, organizationId: string, id: string, lock = false): Promise<Role> {
  if (!isUuid(id)) throw scimErrors.notFound('Group', id);
  const query = db
    .select()
    .from(roles)
    .where(and(eq(roles.id, id), eq(roles.organizationId, organizationId)))
    .limit(1);
  const [row] = lock ? await query.for('update') : await query;
  if (!row) throw scimErrors.notFound('Group', id);
  return row;
}

/** One group of the organization with its members; 404 for anything else (global roles included). */
export async function findScimGroup(db: DbOrTx, organizationId: string, id: string): Promise<GroupWithMembers> {
  const role = await findRoleRow(db, organizationId, id);
  const members = await membersOf(db, [role.id]);
  return { ...role, members: members.get(role.id) ?? [] };
}

/** What a SCIM client sets on a group. */
interface GroupFields {
  displayName: string;
  /** null: none (absent from the representation). */
  externalId: string | null;
  memberIds: string[];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads a full Group (POST, PUT, or a patched representation). */
export function fromScimGroup(input: unknown): GroupFields {
  if (!isObject(input)) throw scimErrors.invalidSyntax('The body must be a SCIM Group object.');
  const body = caseless(input);
  // "schemas" is required (RFC 7643 §3); a patched representation holds it, as PATCH never changes it.
  requireSchema(body.schemas, GROUP_SCHEMA);
  const displayName = typeof body.displayname === 'string' ? body.displayname.trim() : '';
  if (!displayName) throw scimErrors.invalidValue('"displayName" is required.');
  if (displayName.length > 200) throw scimErrors.invalidValue('"displayName" is longer than 200 characters.');
  const externalId = body.externalid ?? null;
  if (externalId !== null && (typeof externalId !== 'string' || externalId === '')) {
    throw scimErrors.invalidValue('"externalId" must be a non-empty string.');
  }
  if (externalId !== null && externalId.length > 256) throw scimErrors.invalidValue('"externalId" is too long.');
  const members = body.members ?? [];
  if (!Array.isArray(members)) throw scimErrors.invalidValue('"members" must be an array.');
  const memberIds = members.map((m) => {
    const value = isObject(m) ? caseless(m).value : undefined;
    if (typeof value !== 'string') throw scimErrors.invalidValue('Each member needs a "value" (a user id).');
    const type = isObject(m) ? caseless(m).type : undefined;
    if (type !== undefined && type !== 'User') throw scimErrors.invalidValue('Only users can be members of a group.');
    return value.toLowerCase();
  });
  return { displayName, externalId, memberIds: [...new Set(memberIds)] };
}

/**
 * A role code from a display name: lower-case letters, digits and underscores, unique in the
 * organization and never a global role's code (suffixed `_2`, `_3`, … instead).
 */
async function codeFor(tx: DbOrTx, organizationId: string, displayName: string): Promise<string> {
  const base =
    displayName
      .normalize('NFKD')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 50) || 'group';
  for (let n = 1; ; n++) {
    const code = n === 1 ? base : `${base}_${n}`;
    const [taken] = await tx
      .select({ id: roles.id })
      .from(roles)
      // A global role's code too: an administrator may choose to let an organization's role stand in
      // for a global one when assigning by code, but a name an identity provider sends must not.
      .where(and(or(eq(roles.organizationId, organizationId), isNull(roles.organizationId)), eq(roles.code, code)))
      .limit(1);
    if (!taken) return code;
  }
}

/** Whether another of the organization's roles (other than `except`) matches `condition`. */
async function roleClash(tx: DbOrTx, organizationId: string, condition: SQL, except?: string): Promise<boolean> {
  const [clash] = await tx
    .select({ id: roles.id })
    .from(roles)
    .where(and(eq(roles.organizationId, organizationId), condition, except ? ne(roles.id, except) : undefined))
    .limit(1);
  return clash !== undefined;
}

async function assertNameFree(tx: DbOrTx, organizationId: string, displayName: string, except?: string) {
  if (await roleClash(tx, organizationId, sql`lower(${roles.name}) = lower(${displayName})`, except)) {
    throw scimErrors.uniqueness(`A group named "${displayName}" already exists.`);
  }
}

/** externalId is the SCIM client's key for the group: one group per value within the organization. */
async function assertExternalIdFree(tx: DbOrTx, organizationId: string, externalId: string | null, except?: string) {
  if (externalId !== null && (await roleClash(tx, organizationId, eq(roles.scimExternalId, externalId), except))) {
    throw scimErrors.uniqueness(`A group with externalId "${externalId}" already exists.`);
  }
}

/** Checks that every member is a user of the organization (400 invalidValue otherwise). */
async function assertMembers(tx: DbOrTx, organizationId: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const bad = ids.filter((id) => !isUuid(id));
  if (bad.length === 0) {
    const found = await tx
      .select({ id: users.id })
      .from(users)
      .where(and(eq(users.organizationId, organizationId), anyUuid(users.id, ids)));
    const known = new Set(found.map((f) => f.id));
    bad.push(...ids.filter((id) => !known.has(id)));
  }
  if (bad.length > 0) throw scimErrors.invalidValue(`No user ${bad.slice(0, 5).join(', ')} in this organization.`);
}

/**
 * Sets a role's members to `wanted`: adds and removes holders, keeps each user's primary role
 * rule (the first role is primary; removing the primary promotes the most powerful remaining one),
 * and drops the changed users' cached access in the same transaction.
 */
async function setMembers(tx: DbOrTx, roleId: string, wanted: string[]) {
  const current = await tx
    .select({ userId: userRoles.userId })
    .from(userRoles)
    .where(eq(userRoles.roleId, roleId))
    .for('update');
  const have = new Set(current.map((c) => c.userId));
  const want = new Set(wanted);
  const added = wanted.filter((id) => !have.has(id));
  const removed = [...have].filter((id) => !want.has(id));
  if (added.length > 0) {
    await tx
      .insert(userRoles)
      .values(added.map((userId) => ({ userId, roleId, isPrimary: false })))
      .onConflictDoNothing();
  }
  if (removed.length > 0) {
    await tx.delete(userRoles).where(and(eq(userRoles.roleId, roleId), inArray(userRoles.userId, removed)));
  }
  if (added.length + removed.length > 0) {
    await promotePrimaries(tx, [...added, ...removed]);
    await groupsOfUsersChanged(tx, [...added, ...removed]);
  }
  for (const id of [...added, ...removed]) await userRolesChanged(tx, id);
  return { added, removed };
}

export interface GroupWriteContext {
  db: Db;
  actor: Actor;
  organizationId: string;
  ip?: string | null;
  userAgent?: string | null;
}

/**
 * The delegation ceiling a SCIM client writes groups within: that of the user who created its API
 * key. A group is a role and its members are the role's holders, so without it an organization
 * admin could, through a key of their own, join roles above their own, hand them out, or delete
 * them. Keys an operator made (the command line, PROVISIONING_API_KEY) and a superuser's have none.
 * Joining a role within the ceiling gains its creator nothing, so, unlike the admin API, a key may
 * put its creator in a group (identity providers push whole groups, their admins included).
 */
async function ceilingOf(ctx: GroupWriteContext): Promise<EffectiveAccess | undefined> {
  const { actor } = ctx;
  if (actor.kind === 'user') return actor.isSuperuser ? undefined : accessOfCaller(ctx.db, actor);
  return keyCeilingOf(ctx.db, actor);
}

/**
 * Refuses (403 `delegation_ceiling`) a write to a role beyond the ceiling: its members, its name or
 * its existence, as the admin API refuses assigning, changing or deleting such a role; and adding
 * or removing a member holding a role more powerful than the ceiling's holder's or grants they lack.
 */
async function assertWithinKeyCeiling(
  tx: DbOrTx,
  ceiling: EffectiveAccess | undefined,
  roleId: string,
  changedMembers: string[],
): Promise<void> {
  if (!ceiling) return;
  const role = await findRole(tx, roleId, undefined);
  assertWithinCeiling(ceiling, { level: role.level, permissions: role.permissionCodes, modules: role.moduleCodes });
  if (changedMembers.length === 0) return;
  // In the transaction's own connection (on PGlite the only one): each member's reach as it stands.
  const beyond = await usersBeyondCeiling(tx, ceiling, changedMembers);
  if (beyond.some((member) => member.isSuperuser)) throw rbacErrors.superuserTarget();
  const [member] = beyond;
  if (member) {
    throw rbacErrors.aboveCeiling('members', `User ${member.id} holds a role or grants beyond the key's creator's.`);
  }
}

function groupEvent(
  ctx: GroupWriteContext,
  type: string,
  role: { id: string; name: string },
  details: Record<string, unknown>,
): AuditEvent {
  return {
    type,
    category: 'authorization',
    organizationId: ctx.organizationId,
    actor: ctx.actor,
    description: `SCIM ${type.split('.')[1]?.replace(/_/g, ' ')} group "${role.name}"`,
    details: { role_id: role.id, ...details },
    objectType: 'role',
    objectId: role.id,
    ip: ctx.ip ?? null,
    userAgent: ctx.userAgent ?? null,
    tags: ['scim'],
  };
}

/**
 * A member added or removed is a role assigned or taken, recorded as the admin API records it: one
 * event per user, naming the user as its subject, so that the user's history shows it and erasing
 * the user leaves no id of theirs in another event's details.
 */
function membershipEvents(ctx: GroupWriteContext, role: Role, change: { added: string[]; removed: string[] }) {
  const event = (type: 'role.assigned' | 'role.unassigned', userId: string): AuditEvent => ({
    type,
    category: 'authorization',
    organizationId: ctx.organizationId,
    userId,
    actor: ctx.actor,
    description: `Role ${role.code} ${type === 'role.assigned' ? 'assigned' : 'removed'} through SCIM (group "${role.name}")`,
    details: { role: role.code, role_id: role.id },
    severity: 'warning',
    objectType: 'role',
    objectId: role.id,
    ip: ctx.ip ?? null,
    userAgent: ctx.userAgent ?? null,
    tags: ['scim'],
  });
  return [
    ...change.added.map((id) => event('role.assigned', id)),
    ...change.removed.map((id) => event('role.unassigned', id)),
  ];
}

/** POST /Groups: a new role of the organization, level 1000, no grants, with the given members. */
export async function createScimGroup(ctx: GroupWriteContext, body: unknown): Promise<GroupWithMembers> {
  const fields = fromScimGroup(body);
  const ceiling = await ceilingOf(ctx);
  const id = await ctx.db.transaction(async (tx) => {
    await assertNameFree(tx, ctx.organizationId, fields.displayName);
    await assertExternalIdFree(tx, ctx.organizationId, fields.externalId);
    await assertMembers(tx, ctx.organizationId, fields.memberIds);
    const [role] = await tx
      .insert(roles)
      .values({
        organizationId: ctx.organizationId,
        code: await codeFor(tx, ctx.organizationId, fields.displayName),
        name: fields.displayName,
        scimExternalId: fields.externalId,
        level: SCIM_GROUP_LEVEL,
        description: 'Created through SCIM.',
      })
      .returning();
    const created = role as Role;
    await assertWithinKeyCeiling(tx, ceiling, created.id, fields.memberIds);
    const change = await setMembers(tx, created.id, fields.memberIds);
    await recordAudits(tx, [
      groupEvent(ctx, 'group.created', created, {
        code: created.code,
        ...(created.scimExternalId !== null ? { external_id: created.scimExternalId } : {}),
      }),
      ...membershipEvents(ctx, created, change),
    ]);
    return created.id;
  });
  return findScimGroup(ctx.db, ctx.organizationId, id);
}

/** PUT and PATCH: the new display name and member list of a group, written in one transaction. */
async function rewriteGroup(
  ctx: GroupWriteContext,
  id: string,
  conditions: Preconditions,
  next: (current: GroupWithMembers) => GroupFields,
): Promise<GroupWithMembers> {
  const ceiling = await ceilingOf(ctx);
  await ctx.db.transaction(async (tx) => {
    const role = await findRoleRow(tx, ctx.organizationId, id, true);
    assertVersion(role, conditions);
    const members = await membersOf(tx, [role.id]);
    const fields = next({ ...role, members: members.get(role.id) ?? [] });
    const events: AuditEvent[] = [];
    const renamed = fields.displayName !== role.name;
    const rekeyed = fields.externalId !== role.scimExternalId;
    const had = new Set((members.get(role.id) ?? []).map((m) => m.userId));
    const wanted = new Set(fields.memberIds);
    const changed = [...fields.memberIds.filter((m) => !had.has(m)), ...[...had].filter((m) => !wanted.has(m))];
    if (renamed || rekeyed || changed.length > 0) await assertWithinKeyCeiling(tx, ceiling, role.id, changed);
    if (renamed) await assertNameFree(tx, ctx.organizationId, fields.displayName, role.id);
    if (rekeyed) await assertExternalIdFree(tx, ctx.organizationId, fields.externalId, role.id);
    if (renamed || rekeyed) {
      events.push(
        groupEvent(ctx, 'group.updated', role, {
          ...(renamed ? { name: { from: role.name, to: fields.displayName } } : {}),
          ...(rekeyed ? { external_id: { from: role.scimExternalId, to: fields.externalId } } : {}),
        }),
      );
    }
    await assertMembers(tx, ctx.organizationId, fields.memberIds);
    const change = await setMembers(tx, role.id, fields.memberIds);
    events.push(...membershipEvents(ctx, role, change));
    if (events.length > 0) {
      await tx
        .update(roles)
        .set({ name: fields.displayName, scimExternalId: fields.externalId, updatedAt: new Date() })
        .where(eq(roles.id, role.id));
      await recordAudits(tx, events);
    }
  });
  return findScimGroup(ctx.db, ctx.organizationId, id);
}

/** PUT /Groups/{id}. */
export function replaceScimGroup(ctx: GroupWriteContext, id: string, body: unknown, conditions: Preconditions) {
  const fields = fromScimGroup(body);
  return rewriteGroup(ctx, id, conditions, () => fields);
}

/** PATCH /Groups/{id}: operations applied to the current representation (members included). */
export function patchScimGroup(
  ctx: GroupWriteContext,
  id: string,
  operations: PatchOperation[],
  conditions: Preconditions,
  baseUrl: string,
) {
  return rewriteGroup(ctx, id, conditions, (current) => {
    const patched = applyPatch(toScimGroup(current, baseUrl), operations, GROUP_PATCH_SCHEMA);
    return fromScimGroup(patched);
  });
}

/** DELETE /Groups/{id}: the role goes, with its assignments; former holders keep a primary role. */
export async function deleteScimGroup(ctx: GroupWriteContext, id: string, conditions: Preconditions): Promise<void> {
  const ceiling = await ceilingOf(ctx);
  await ctx.db.transaction(async (tx) => {
    const role = await findRoleRow(tx, ctx.organizationId, id, true);
    assertVersion(role, conditions);
    if (role.isBuiltin) throw scimErrors.mutability(`Group ${role.id} is a built-in role and cannot be deleted.`);
    await assertWithinKeyCeiling(tx, ceiling, role.id, []);
    const holders = await tx.select({ userId: userRoles.userId }).from(userRoles).where(eq(userRoles.roleId, role.id));
    await roleChanged(tx, role.id);
    await tx.delete(roles).where(eq(roles.id, role.id));
    const ids = holders.map((h) => h.userId);
    if (ids.length > 0) {
      await promotePrimaries(tx, ids);
      await groupsOfUsersChanged(tx, ids);
      for (const userId of ids) await userRolesChanged(tx, userId);
    }
    await recordAudits(tx, [groupEvent(ctx, 'group.deleted', role, { code: role.code, members: ids.length })]);
  });
}
