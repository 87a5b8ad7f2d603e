import { and, asc, eq, getTableColumns, inArray, type SQL, sql } from 'drizzle-orm';
import type { Filter } from 'scim2-parse-filter';
import { type Db, type DbOrTx, preparedPerHandle } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { usersAboveKeyCeiling } from '../rbac/delegation.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { roles, userRoles } from '../rbac/rbac.table.js';
import { normalizeUsername } from '../users/users.schemas.js';
import { removeUser } from '../users/users.service.js';
import { type User, users } from '../users/users.table.js';
import { scimErrors } from './scim.errors.js';
import { compileFilter, normalisePath, parseFilter } from './scim.filter.js';
import type { PatchOperation } from './scim.patch.js';
import {
  fromScimUser,
  patchedUserFields,
  type ScimUserFields,
  type ScimUserRow,
  toScimUser,
  USER_FILTER_ATTRIBUTES,
  USER_SORT_KEYS,
  type UserGroupRef,
  userVersion,
} from './scim.user-mapping.js';
import { type WriteContext, writeScimUser } from './scim.user-writes.js';

/** A SCIM list request after parsing (RFC 7644 §3.4.2). */
export interface ListQuery {
  filter?: string | undefined;
  /** 1-based. */
  startIndex: number;
  count: number;
  sortBy?: string | undefined;
  sortOrder?: 'ascending' | 'descending' | undefined;
}

export interface ListResult<T> {
  total: number;
  rows: T[];
}

/** The order of a list; every order ends in the id, so pages never overlap or skip. */
export function orderOf(sortKeys: Record<string, SQL>, id: SQL, query: Pick<ListQuery, 'sortBy' | 'sortOrder'>): SQL[] {
  // RFC 7644 §3.4.2.3: resources without a value come last ascending and first descending.
  const direction =
    query.sortOrder === 'descending' ? (e: SQL) => sql`${e} desc nulls first` : (e: SQL) => sql`${e} asc nulls last`;
  if (!query.sortBy) return [direction(id)];
  const key = sortKeys[normalisePath(query.sortBy)];
  if (!key) throw scimErrors.invalidValue(`Sorting by "${query.sortBy}" is not supported.`);
  return [direction(key), direction(id)];
}

/**
 * The user's organization roles (SCIM groups) as one JSON array, read in the same statement. The user
 * is named with its table: Drizzle writes the columns of a one-table select list unqualified, and a
 * bare "id" or "organization_id" inside this subquery would be the role's own.
 */
const groupsColumn = sql<
  UserGroupRef[]
>`(select coalesce(json_agg(json_build_object('roleId', r.id, 'name', r.name) order by r.name), '[]'::json)
  from ${userRoles} ur join ${roles} r on r.id = ur.role_id
  where ur.user_id = ${users}.id and r.organization_id = ${users}.organization_id)`;

export interface ListedUser {
  user: User;
  groups: UserGroupRef[] | undefined;
}

/**
 * `userName eq "…"` (and `externalId eq "…"`), what identity providers send before every create
 * or update, as prepared statements on the unique indexes: no query building, no planning.
 */
const byUserName = preparedPerHandle((db) =>
  db
    .select({ user: getTableColumns(users), groups: groupsColumn })
    .from(users)
    .where(
      and(
        eq(users.organizationId, sql.placeholder('organizationId')),
        // A user without a username shows its email as userName: found by it too, on the email index.
        sql`(lower(${users.username}) = lower(${sql.placeholder('value')})
          or (${users.username} is null and lower(${users.email}) collate "C" = lower(${sql.placeholder('value')})))`,
      ),
    )
    // One user may hold the name and another, without one, the email: both answer.
    .limit(2)
    .prepare('scim_user_by_username'),
);
const byExternalId = preparedPerHandle((db) =>
  db
    .select({ user: getTableColumns(users), groups: groupsColumn })
    .from(users)
    .where(
      and(
        eq(users.organizationId, sql.placeholder('organizationId')),
        eq(users.scimExternalId, sql.placeholder('value')),
      ),
    )
    .limit(1)
    .prepare('scim_user_by_external_id'),
);

/** The prepared look-up a filter is, when it is one equality on a unique attribute. */
function uniqueLookup(filter: Filter) {
  if (filter.op !== 'eq' || typeof filter.compValue !== 'string') return undefined;
  const path = normalisePath(filter.attrPath);
  if (path === 'username') return { query: byUserName, value: normalizeUsername(filter.compValue) };
  if (path === 'externalid') return { query: byExternalId, value: filter.compValue };
  return undefined;
}

/**
 * A page of the organization's users matching the filter, with the total (RFC 7644 §3.4.2.4
 * `totalResults`) and, when asked, their groups. One statement computes all of it (a window count
 * and a correlated JSON aggregate); only a page past the end needs a second count.
 */
export async function listScimUsers(
  db: DbOrTx,
  organizationId: string,
  query: ListQuery,
  withGroups = true,
): Promise<ListResult<ListedUser>> {
  const ast = query.filter ? parseFilter(query.filter) : undefined;
  const order = orderOf(USER_SORT_KEYS, sql`${users.id}`, query);
  const lookup = ast && query.startIndex === 1 && query.count > 0 ? uniqueLookup(ast) : undefined;
  if (lookup) {
    const rows = await lookup.query(db).execute({ organizationId, value: lookup.value });
    return {
      total: rows.length,
      rows: rows.map((r) => ({ user: r.user as User, groups: withGroups ? parseJson(r.groups) : undefined })),
    };
  }
  const where = and(
    eq(users.organizationId, organizationId),
    ast ? compileFilter(ast, USER_FILTER_ATTRIBUTES) : undefined,
  );
  const countAll = async () => {
    const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(users).where(where);
    return row?.n ?? 0;
  };
  if (query.count === 0) return { total: await countAll(), rows: [] };
  const rows = await db
    .select({
      user: getTableColumns(users),
      total: sql<number>`count(*) over ()::int`,
      groups: withGroups ? groupsColumn : sql<null>`null`,
    })
    .from(users)
    .where(where)
    .orderBy(...order)
    .limit(query.count)
    .offset(query.startIndex - 1);
  const first = rows[0];
  if (!first) return { total: query.startIndex > 1 ? await countAll() : 0, rows: [] };
  return {
    total: first.total,
    rows: rows.map((r) => ({ user: r.user as User, groups: withGroups ? parseJson(r.groups) : undefined })),
  };
}

/** node-postgres and PGlite both parse json columns; a string would mean a driver that does not. */
function parseJson<T>(value: T | string | null): T {
  return (typeof value === 'string' ? JSON.parse(value) : value) as T;
}

/** The organization roles (SCIM groups) each of these users holds. */
export async function groupsOfUsers(
  db: DbOrTx,
  organizationId: string,
  userIds: string[],
): Promise<Map<string, UserGroupRef[]>> {
  const out = new Map<string, UserGroupRef[]>();
  for (const id of userIds) out.set(id, []);
  if (userIds.length === 0) return out;
  const rows = await db
    .select({ userId: userRoles.userId, roleId: roles.id, name: roles.name })
    .from(userRoles)
    .innerJoin(roles, eq(roles.id, userRoles.roleId))
    .where(and(inArray(userRoles.userId, userIds), eq(roles.organizationId, organizationId)))
    .orderBy(asc(roles.name));
  for (const r of rows) out.get(r.userId)?.push({ roleId: r.roleId, name: r.name });
  return out;
}

/** One user of the organization, or 404 (another organization's user is as absent). */
export async function findScimUser(db: DbOrTx, organizationId: string, id: string, lock = false): Promise<User> {
  if (!isUuid(id)) throw scimErrors.notFound('User', id);
  const query = db
    .select()
    .from(users)
    .where(and(eq(users.id, id), eq(users.organizationId, organizationId)))
    .limit(1);
  const [user] = lock ? await query.for('update') : await query;
  if (!user) throw scimErrors.notFound('User', id);
  return user;
}

/** The SCIM resource of one user, with its groups and its manager's displayName. */
export async function scimUserResource(db: DbOrTx, organizationId: string, user: ScimUserRow, baseUrl: string) {
  const groups = await groupsOfUsers(db, organizationId, [user.id]);
  const [resource] = await scimUserResources(
    db,
    organizationId,
    [{ user, groups: groups.get(user.id) ?? [] }],
    baseUrl,
  );
  return resource as Record<string, unknown>;
}

/**
 * The SCIM resources of a page of users. The enterprise extension's `manager.displayName` is
 * read-only (RFC 7643 §4.3): the manager's own displayName now, read for the whole page in one query.
 */
export async function scimUserResources(
  db: DbOrTx,
  organizationId: string,
  rows: { user: ScimUserRow; groups: UserGroupRef[] | undefined }[],
  baseUrl: string,
): Promise<Record<string, unknown>[]> {
  const managerIds = [...new Set(rows.flatMap((r) => managerOf(r.user.attributes) ?? []))].filter(isUuid);
  const managers = new Map<string, string>();
  if (managerIds.length > 0) {
    const found = await db
      .select()
      .from(users)
      .where(and(eq(users.organizationId, organizationId), inArray(users.id, managerIds)));
    for (const m of found) managers.set(m.id, toScimUser(m, undefined, baseUrl).displayName as string);
  }
  return rows.map((r) => toScimUser(r.user, r.groups, baseUrl, managers));
}

/** The manager id a user's attributes hold (the enterprise extension's `manager.value`). */
function managerOf(attributes: Record<string, unknown>): string | undefined {
  const scim = attributes.scim as { enterprise?: { manager?: { value?: unknown } } } | undefined;
  const value = scim?.enterprise?.manager?.value;
  return typeof value === 'string' ? value : undefined;
}

/**
 * The manager a write sets, when it differs from the stored one: an unchanged value is left alone,
 * so a manager deleted since never blocks a later write of the user.
 */
export function newManagerOf(current: ScimUserRow | undefined, fields: ScimUserFields): string | undefined {
  const value = managerOf({ scim: fields.scim });
  return value !== undefined && value !== (current && managerOf(current.attributes)) ? value : undefined;
}

/**
 * The manager values among these that are not users of the organization: the manager is "another
 * User" (RFC 7643 §4.3), and a dangling id would show no one.
 */
export async function unknownManagers(db: DbOrTx, organizationId: string, values: string[]): Promise<Set<string>> {
  const unknown = new Set(values);
  const ids = [...unknown].filter(isUuid);
  if (ids.length > 0) {
    const found = await db
      .select({ id: users.id })
      .from(users)
      .where(and(eq(users.organizationId, organizationId), inArray(users.id, ids)));
    for (const { id } of found) unknown.delete(id);
  }
  return unknown;
}

/** Refuses a write whose new manager is no user of the organization (400 invalidValue). */
async function requireKnownManager(
  db: DbOrTx,
  organizationId: string,
  current: ScimUserRow | undefined,
  fields: ScimUserFields,
): Promise<ScimUserFields> {
  const manager = newManagerOf(current, fields);
  if (manager !== undefined && (await unknownManagers(db, organizationId, [manager])).size > 0) {
    throw scimErrors.unknownManager(manager);
  }
  return fields;
}

/** The conditional headers of a request (RFC 7232 §3.1, §3.2), as received. */
export interface Preconditions {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
}

/** Whether a header's list of versions names the current one; `*` names any. Weak comparison (RFC 7232 §2.3.2). */
export function namesVersion(header: string, current: string): boolean {
  const bare = (v: string) => v.trim().replace(/^W\//, '');
  return header.split(',').some((v) => v.trim() === '*' || bare(v) === bare(current));
}

/**
 * RFC 7644 §3.14 and RFC 7232 §3.1–3.2: If-Match without the current version answers 412, and so
 * does If-None-Match with it (or `*`) — on a write; a read answers 304 for that (routes).
 */
export function assertVersion(resource: { updatedAt: Date }, conditions: Preconditions): void {
  const current = userVersion(resource);
  if (conditions.ifMatch !== undefined && !namesVersion(conditions.ifMatch, current)) {
    throw scimErrors.preconditionFailed();
  }
  if (conditions.ifNoneMatch !== undefined && namesVersion(conditions.ifNoneMatch, current)) {
    throw scimErrors.preconditionFailed('If-None-Match');
  }
}

/** POST /Users: creates a user in the key's organization. */
export async function createScimUser(ctx: WriteContext, body: unknown): Promise<ScimUserRow> {
  const fields = await requireKnownManager(ctx.db, ctx.organizationId, undefined, fromScimUser(body));
  return writeScimUser(ctx, undefined, fields);
}

/** PUT /Users/{id}: replaces every SCIM-writable attribute. */
export async function replaceScimUser(
  ctx: WriteContext,
  id: string,
  body: unknown,
  conditions: Preconditions,
): Promise<ScimUserRow> {
  const fields = fromScimUser(body);
  return underLock(ctx, id, conditions, () => fields);
}

/**
 * Runs a write on the user locked in a transaction: the preconditions are checked against the locked row, so
 * no other write can slip between the check and the change (the core's own transaction nests as a
 * savepoint).
 */
function underLock(
  ctx: WriteContext,
  id: string,
  conditions: Preconditions,
  next: (current: User) => ScimUserFields,
): Promise<ScimUserRow> {
  return ctx.db.transaction(async (tx) => {
    const current = await findScimUser(tx, ctx.organizationId, id, true);
    assertVersion(current, conditions);
    const fields = await requireKnownManager(tx, ctx.organizationId, current, next(current));
    return writeScimUser({ ...ctx, db: tx as unknown as Db }, current, fields);
  });
}

/** PATCH /Users/{id}: the operations applied to the current representation, then written as a replace. */
export async function patchScimUser(
  ctx: WriteContext,
  id: string,
  operations: PatchOperation[],
  conditions: Preconditions,
  baseUrl: string,
): Promise<ScimUserRow> {
  return underLock(ctx, id, conditions, (current) => patchedUserFields(current, operations, baseUrl));
}

/**
 * DELETE /Users/{id}: the user is deleted, with their sessions and role assignments (RFC 7644 §3.6:
 * a deleted resource must answer 404 afterwards, so deactivation would not do). Superusers are
 * never deleted through SCIM.
 */
export async function deleteScimUser(ctx: WriteContext, id: string, conditions: Preconditions): Promise<void> {
  await ctx.db.transaction(async (tx) => {
    const [current] = isUuid(id)
      ? await tx
          .select()
          .from(users)
          .where(and(eq(users.id, id), eq(users.organizationId, ctx.organizationId)))
          .for('update')
      : [];
    if (!current) throw scimErrors.notFound('User', id);
    assertVersion(current, conditions);
    if (current.isSuperuser) throw rbacErrors.superuserTarget();
    if ((await usersAboveKeyCeiling(tx, ctx.actor, [current.id])).size > 0)
      throw rbacErrors.aboveKeyCeiling(current.id);
    await removeUser(tx, current, {
      actor: ctx.actor,
      category: 'provisioning',
      description: 'User deleted through SCIM',
      details: { via: 'scim' },
    });
  });
}
