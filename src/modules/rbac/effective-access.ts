import { eq, sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';
import type { PermissionCheck, UserNeed } from '../../platform/http/auth.js';
import { ALL_TOPICS, cachesAreCurrent, onInvalidation, publishInvalidation } from '../../platform/invalidation.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import { organizations } from '../organizations/organizations.table.js';
import { type UserStatus, users } from '../users/users.table.js';

/**
 * A role as explanations name it: its code, and its organization's (null when global), since an
 * organization's role may share a global role's code.
 */
export interface GrantingRole {
  code: string;
  organization: string | null;
}

/**
 * A user's effective access: the union of what their roles grant, computed once and kept in
 * memory so a route's permission check costs a map lookup. Any change to roles, grants,
 * assignments or the catalog is announced on the invalidation bus and drops the affected entries
 * on every node.
 */
export interface EffectiveAccess {
  userId: string;
  organizationId: string;
  organizationCode: string;
  /** A deactivated organization's users are allowed nothing, whatever their roles say. */
  organizationActive: boolean;
  status: UserStatus;
  isSuperuser: boolean;
  /** Permission code → the most powerful role granting it (for explanations). */
  permissions: Map<string, GrantingRole>;
  /** Module code → the most powerful role opening it. */
  modules: Map<string, GrantingRole>;
  roleIds: Set<string>;
  /** The most powerful (lowest) level among the user's roles; null without roles. */
  level: number | null;
}

const ACCESS_TTL_MS = 5 * 60_000;
const ACCESS_MAX = 100_000;

const cache = new TtlCache<string, EffectiveAccess>(ACCESS_MAX);
const loading = new Map<string, Promise<EffectiveAccess | undefined>>();
/**
 * Bumped by every invalidation. A load that saw the counter move while it ran may have read the
 * state from before the change, so its answer is used once but not cached.
 */
let generation = 0;

function invalidate(drop: () => void): void {
  generation++;
  loading.clear();
  drop();
}

onInvalidation('user', (id) => invalidate(() => cache.delete(id)));
onInvalidation('user-roles', (id) => invalidate(() => cache.delete(id)));
onInvalidation('organization', (id) => invalidate(() => cache.deleteWhere((a) => a.organizationId === id)));
onInvalidation('role', (id) => invalidate(() => cache.deleteWhere((a) => a.roleIds.has(id))));
onInvalidation('rbac-catalog', () => invalidate(() => cache.clear()));
onInvalidation(ALL_TOPICS, (event) => {
  if (event === 'reset') invalidate(() => cache.clear());
});

/** Announces a change of one user's role assignments. */
export function userRolesChanged(db: DbOrTx, userId: string): Promise<void> {
  return publishInvalidation(db, 'user-roles', userId);
}

/** Announces a change of one role's level or grants. */
export function roleChanged(db: DbOrTx, roleId: string): Promise<void> {
  return publishInvalidation(db, 'role', roleId);
}

/** Announces a change that may touch anyone: modules, permissions, a deleted role. */
export function catalogChanged(db: DbOrTx): Promise<void> {
  return publishInvalidation(db, 'rbac-catalog', 'all');
}

interface GrantRow {
  kind: 'role' | 'permission' | 'module';
  role_id: string;
  role_code: string;
  /** The code of the role's organization; null for a global role. */
  role_organization: string | null;
  level: number;
  code: string | null;
}

/**
 * One round trip for everything the user's roles grant. A role of another organization (possible
 * only if the user moved) grants nothing; inactive modules open nothing and their permissions
 * count for nothing.
 */
function readGrants(db: DbOrTx, userId: string): Promise<GrantRow[]> {
  return queryRows<GrantRow>(
    db,
    sql`
    with held as (
      select r.id, r.code, o.code as organization, r.level
      from user_roles ur
      join roles r on r.id = ur.role_id
      join users u on u.id = ur.user_id
      left join organizations o on o.id = r.organization_id
      where ur.user_id = ${userId} and (r.organization_id is null or r.organization_id = u.organization_id)
    )
    select 'role' as kind, h.id as role_id, h.code as role_code, h.organization as role_organization, h.level,
      null as code
    from held h
    union all
    select 'permission', h.id, h.code, h.organization, h.level, p.code
    from held h
    join role_permissions rp on rp.role_id = h.id
    join permissions p on p.id = rp.permission_id
    join modules m on m.id = p.module_id and m.is_active
    union all
    select 'module', h.id, h.code, h.organization, h.level, m.code
    from held h
    join role_modules rm on rm.role_id = h.id
    join modules m on m.id = rm.module_id and m.is_active
    order by 5, 3, 4 nulls first`,
  );
}

/** Computes a user's access from the database, bypassing the cache; undefined for an unknown user. */
export async function computeAccess(db: DbOrTx, userId: string): Promise<EffectiveAccess | undefined> {
  const [[user], grants] = await Promise.all([
    db
      .select({
        organizationId: users.organizationId,
        organizationCode: organizations.code,
        organizationActive: organizations.isActive,
        status: users.status,
        isSuperuser: users.isSuperuser,
      })
      .from(users)
      .innerJoin(organizations, eq(organizations.id, users.organizationId))
      .where(eq(users.id, userId)),
    readGrants(db, userId),
  ]);
  if (!user) return undefined;
  const access: EffectiveAccess = {
    userId,
    ...user,
    permissions: new Map(),
    modules: new Map(),
    roleIds: new Set(),
    level: null,
  };
  // Rows come most powerful role first, so the first role seen for a code is the one to name.
  for (const row of grants) {
    if (row.kind === 'role') {
      access.roleIds.add(row.role_id);
      const level = Number(row.level);
      if (access.level === null || level < access.level) access.level = level;
    } else if (row.code !== null) {
      const target = row.kind === 'permission' ? access.permissions : access.modules;
      if (!target.has(row.code)) target.set(row.code, { code: row.role_code, organization: row.role_organization });
    }
  }
  return access;
}

/**
 * A user's access, from memory when known; undefined for an unknown user. Not from memory, and not
 * kept, while this node may be missing invalidations (`cachesAreCurrent`).
 */
export function accessOf(db: Db, userId: string): EffectiveAccess | Promise<EffectiveAccess | undefined> {
  const cached = cachesAreCurrent() ? cache.get(userId) : undefined;
  if (cached) return cached;
  let pending = loading.get(userId);
  if (!pending) {
    const startedAt = generation;
    pending = computeAccess(db, userId).then(
      (access) => {
        if (loading.get(userId) === pending) loading.delete(userId);
        if (access && generation === startedAt && cachesAreCurrent())
          cache.set(userId, access, Date.now() + ACCESS_TTL_MS);
        return access;
      },
      (err) => {
        if (loading.get(userId) === pending) loading.delete(userId);
        throw err;
      },
    );
    loading.set(userId, pending);
  }
  return pending;
}

export function holds(access: EffectiveAccess, need: UserNeed): boolean {
  if (access.isSuperuser) return true;
  return 'permission' in need ? access.permissions.has(need.permission) : access.modules.has(need.module);
}

/** The check every guarded route runs: superusers pass, anyone else by their cached access. */
export function createPermissionCheck(db: Db): PermissionCheck {
  return (actor, need) => {
    if (actor.isSuperuser) return true;
    const access = accessOf(db, actor.userId);
    if (access instanceof Promise) return access.then((a) => a !== undefined && holds(a, need));
    return holds(access, need);
  };
}

export interface Decision {
  allowed: boolean;
  reason: string;
}

function named(role: GrantingRole): string {
  return role.organization === null ? `"${role.code}"` : `"${role.code}" of organization "${role.organization}"`;
}

/** Whether access allows the need, and why: the role that grants it, or what is missing. */
export function explain(access: EffectiveAccess, need: UserNeed): Decision {
  if (!access.organizationActive) {
    return { allowed: false, reason: `The organization "${access.organizationCode}" is deactivated.` };
  }
  if (access.status !== 'active') return { allowed: false, reason: `The account is ${access.status}.` };
  if (access.isSuperuser) return { allowed: true, reason: 'The user is a superuser.' };
  if ('permission' in need) {
    const role = access.permissions.get(need.permission);
    return role !== undefined
      ? { allowed: true, reason: `Role ${named(role)} grants permission "${need.permission}".` }
      : { allowed: false, reason: `No role of the user grants permission "${need.permission}".` };
  }
  const role = access.modules.get(need.module);
  return role !== undefined
    ? { allowed: true, reason: `Role ${named(role)} grants access to module "${need.module}".` }
    : { allowed: false, reason: `No role of the user grants access to module "${need.module}".` };
}
