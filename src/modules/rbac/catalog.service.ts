import { and, asc, count, eq, type SQL, sql } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import type { Actor } from '../../platform/http/auth.js';
import { decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import { recordAudit } from '../activity/audit.js';
import { catalogChanged } from './effective-access.js';
import { fieldChanges } from './field-changes.js';
import { rbacErrors } from './rbac.errors.js';
import type {
  CreateModuleInput,
  CreatePermissionInput,
  UpdateModuleInput,
  UpdatePermissionInput,
} from './rbac.schemas.js';
import {
  type Permission,
  permissions,
  type RbacModule,
  rbacModules,
  roleModules,
  rolePermissions,
} from './rbac.table.js';

/**
 * The platform-wide catalog: modules and the permissions within them. Gatehouse's own module
 * (created by migration, guarding every admin route) is fixed: changing it would change what the
 * product's routes mean.
 */
export const GATEHOUSE_MODULE = 'GATEHOUSE';

export function toModuleView(m: RbacModule) {
  return {
    id: m.id,
    code: m.code,
    name: m.name,
    description: m.description,
    order: m.order,
    is_active: m.isActive,
    created_at: m.createdAt.toISOString(),
    updated_at: m.updatedAt.toISOString(),
  };
}

export type PermissionWithModule = Permission & { moduleCode: string };

export function toPermissionView(p: PermissionWithModule) {
  return {
    id: p.id,
    code: p.code,
    module: p.moduleCode,
    module_id: p.moduleId,
    action: p.action,
    name: p.name,
    description: p.description,
    created_at: p.createdAt.toISOString(),
    updated_at: p.updatedAt.toISOString(),
  };
}

function byRef(table: { id: PgColumn; code: PgColumn }, ref: string): SQL {
  return isUuid(ref) ? eq(table.id, ref) : eq(table.code, ref);
}

// ---------------------------------------------------------------------------------------------
// Modules

export async function findModule(db: DbOrTx, ref: string): Promise<RbacModule | undefined> {
  const [row] = await db.select().from(rbacModules).where(byRef(rbacModules, ref)).limit(1);
  return row;
}

async function requireModule(db: DbOrTx, ref: string): Promise<RbacModule> {
  const row = await findModule(db, ref);
  if (!row) throw rbacErrors.moduleNotFound(ref);
  return row;
}

// Codes compared byte by byte: the same order on every server, whatever its locale, and a cursor
// that continues exactly where the order left off.
const moduleCode = sql`${rbacModules.code} collate "C"`;
const permissionCode = sql`${permissions.code} collate "C"`;

/** The sort key of a module's place in the catalog: its `order`, then its code (unique). */
export const moduleSortKey = (m: { order: number; code: string }): unknown[] => [m.order, m.code];

/** The `[order, code]` a catalog cursor carries (the module's, then for permissions the permission's code). */
function catalogCursor(cursor: string, arity: 2 | 3): [number, string, string | undefined] {
  const values = decodeCursor(cursor, arity);
  const [order, code, third] = values;
  if (!Number.isInteger(order) || typeof code !== 'string') throw invalidCursor();
  if (arity === 3 && typeof third !== 'string') throw invalidCursor();
  return [order as number, code, third as string | undefined];
}

/** Modules as the catalog shows them: by `order`, then code. */
export function listModules(db: DbOrTx, input: { is_active?: boolean; cursor?: string; limit: number }) {
  const conditions: SQL[] = [];
  if (input.is_active !== undefined) conditions.push(eq(rbacModules.isActive, input.is_active));
  if (input.cursor) {
    const [order, code] = catalogCursor(input.cursor, 2);
    conditions.push(sql`(${rbacModules.order}, ${moduleCode}) > (${order}::int, ${code} collate "C")`);
  }
  return db
    .select()
    .from(rbacModules)
    .where(and(...conditions))
    .orderBy(asc(rbacModules.order), asc(moduleCode))
    .limit(input.limit + 1);
}

/**
 * Records the audit event of a catalog change (modules and permissions are platform objects), made
 * by `actor` (omitted: the caller of the request being served), as the API and the setup file do.
 */
export function catalogAudit(
  tx: DbOrTx,
  type: string,
  object: { id: string; code: string },
  details: Record<string, unknown> = {},
  actor?: Actor,
) {
  const [kind, act] = type.split('.') as [string, string];
  return recordAudit(tx, {
    type,
    category: 'authorization',
    organizationId: null,
    actor,
    description: `${kind === 'module' ? 'Module' : 'Permission'} ${object.code} ${act}`,
    details: { code: object.code, ...details },
    severity: act === 'created' ? 'info' : 'warning',
    objectType: kind,
    objectId: object.id,
  });
}

export async function createModule(db: Db, input: CreateModuleInput): Promise<RbacModule> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(rbacModules)
      .values({
        code: input.code,
        name: input.name,
        description: input.description ?? '',
        order: input.order ?? 0,
        isActive: input.is_active ?? true,
      })
      .returning();
    await catalogAudit(tx, 'module.created', row as RbacModule);
    return row as RbacModule;
  });
}

export async function updateModule(db: Db, ref: string, input: UpdateModuleInput): Promise<RbacModule> {
  return db.transaction(async (tx) => {
    const current = await requireModule(tx, ref);
    if (current.code === GATEHOUSE_MODULE) throw rbacErrors.builtinCatalog();
    const [row] = await tx
      .update(rbacModules)
      .set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.order !== undefined ? { order: input.order } : {}),
        ...(input.is_active !== undefined ? { isActive: input.is_active } : {}),
      })
      .where(eq(rbacModules.id, current.id))
      .returning();
    if (input.is_active !== undefined && input.is_active !== current.isActive) await catalogChanged(tx);
    await catalogAudit(tx, 'module.updated', current, {
      fields: Object.keys(input),
      ...(input.is_active !== undefined ? { is_active: input.is_active } : {}),
      changes: fieldChanges([
        ['name', current.name, input.name],
        ['description', current.description, input.description],
        ['order', current.order, input.order],
        ['is_active', current.isActive, input.is_active],
      ]),
    });
    return row as RbacModule;
  });
}

/** Deletes a module without permissions (its grants go with it). */
export async function deleteModule(db: Db, ref: string): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await requireModule(tx, ref);
    if (current.code === GATEHOUSE_MODULE) throw rbacErrors.builtinCatalog();
    // Locked first, as a permission is: a permission or grant being written holds a key-share lock
    // on the row, so the checks below see it once committed instead of the cascade deleting it.
    await tx.select({ id: rbacModules.id }).from(rbacModules).where(eq(rbacModules.id, current.id)).for('update');
    const [inUse] = await tx
      .select({ id: permissions.id })
      .from(permissions)
      .where(eq(permissions.moduleId, current.id))
      .limit(1);
    if (inUse) throw rbacErrors.moduleInUse(current.code);
    // Deleting it would silently close it to every holder of a role that opens it.
    const [granted] = await tx.select({ roles: count() }).from(roleModules).where(eq(roleModules.moduleId, current.id));
    if (granted && granted.roles > 0) throw rbacErrors.moduleGranted(current.code, granted.roles);
    await tx.delete(rbacModules).where(eq(rbacModules.id, current.id));
    await catalogChanged(tx);
    await catalogAudit(tx, 'module.deleted', current);
  });
}

// ---------------------------------------------------------------------------------------------
// Permissions

const permissionColumns = {
  id: permissions.id,
  code: permissions.code,
  moduleId: permissions.moduleId,
  action: permissions.action,
  name: permissions.name,
  description: permissions.description,
  createdAt: permissions.createdAt,
  updatedAt: permissions.updatedAt,
  moduleCode: rbacModules.code,
};

export async function findPermission(db: DbOrTx, ref: string): Promise<PermissionWithModule | undefined> {
  const [row] = await db
    .select(permissionColumns)
    .from(permissions)
    .innerJoin(rbacModules, eq(rbacModules.id, permissions.moduleId))
    .where(byRef(permissions, ref))
    .limit(1);
  return row;
}

async function requirePermission(db: DbOrTx, ref: string): Promise<PermissionWithModule> {
  const row = await findPermission(db, ref);
  if (!row) throw rbacErrors.permissionNotFound(ref);
  return row;
}

export async function listPermissions(
  db: DbOrTx,
  input: { module?: string; cursor?: string; limit: number },
): Promise<(PermissionWithModule & { moduleOrder: number })[]> {
  const conditions: SQL[] = [];
  if (input.module !== undefined) conditions.push(eq(rbacModules.code, input.module));
  if (input.cursor) {
    const [order, module, code] = catalogCursor(input.cursor, 3);
    conditions.push(
      sql`(${rbacModules.order}, ${moduleCode}, ${permissionCode}) > (${order}::int, ${module} collate "C", ${code} collate "C")`,
    );
  }
  // Grouped under their modules, in the modules' order, then by code within each.
  return db
    .select({ ...permissionColumns, moduleOrder: rbacModules.order })
    .from(permissions)
    .innerJoin(rbacModules, eq(rbacModules.id, permissions.moduleId))
    .where(and(...conditions))
    .orderBy(asc(rbacModules.order), asc(moduleCode), asc(permissionCode))
    .limit(input.limit + 1);
}

/** The sort key of a permission's place in the list: its module's, then its code (unique). */
export const permissionSortKey = (p: PermissionWithModule & { moduleOrder: number }): unknown[] => [
  p.moduleOrder,
  p.moduleCode,
  p.code,
];

/** The module a permission body names; Gatehouse's own module takes no new permissions. */
async function moduleForPermission(db: DbOrTx, code: string): Promise<RbacModule> {
  const [module] = await db.select().from(rbacModules).where(eq(rbacModules.code, code)).limit(1);
  if (!module) throw rbacErrors.unknownCodes('module', [code]);
  if (module.code === GATEHOUSE_MODULE) throw rbacErrors.builtinCatalog();
  return module;
}

export async function createPermission(db: Db, input: CreatePermissionInput): Promise<PermissionWithModule> {
  return db.transaction(async (tx) => {
    const module = await moduleForPermission(tx, input.module);
    const [row] = await tx
      .insert(permissions)
      .values({
        code: input.code,
        moduleId: module.id,
        action: input.action,
        name: input.name,
        description: input.description ?? '',
      })
      .returning();
    await catalogAudit(tx, 'permission.created', row as Permission, { module: module.code });
    return { ...(row as Permission), moduleCode: module.code };
  });
}

export async function updatePermission(
  db: Db,
  ref: string,
  input: UpdatePermissionInput,
): Promise<PermissionWithModule> {
  return db.transaction(async (tx) => {
    const current = await requirePermission(tx, ref);
    if (current.moduleCode === GATEHOUSE_MODULE) throw rbacErrors.builtinCatalog();
    const module = input.module !== undefined ? await moduleForPermission(tx, input.module) : undefined;
    const [row] = await tx
      .update(permissions)
      .set({
        ...(module ? { moduleId: module.id } : {}),
        ...(input.action !== undefined ? { action: input.action } : {}),
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
      })
      .where(eq(permissions.id, current.id))
      .returning();
    // Moving a permission between an active and an inactive module changes who effectively holds it.
    if (module && module.id !== current.moduleId) await catalogChanged(tx);
    await catalogAudit(tx, 'permission.updated', current, {
      fields: Object.keys(input),
      changes: fieldChanges([
        ['module', current.moduleCode, module?.code],
        ['action', current.action, input.action],
        ['name', current.name, input.name],
        ['description', current.description, input.description],
      ]),
    });
    return { ...(row as Permission), moduleCode: module?.code ?? current.moduleCode };
  });
}

/** Deletes a permission no role grants; grants are taken away explicitly first, as for a module's permissions. */
export async function deletePermission(db: Db, ref: string): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await requirePermission(tx, ref);
    if (current.moduleCode === GATEHOUSE_MODULE) throw rbacErrors.builtinCatalog();
    // Locked first: a grant being written holds a key-share lock on the row, so the count below sees
    // it once committed, instead of the cascade of role_permissions deleting it afterwards.
    await tx.select({ id: permissions.id }).from(permissions).where(eq(permissions.id, current.id)).for('update');
    const [granted] = await tx
      .select({ roles: count() })
      .from(rolePermissions)
      .where(eq(rolePermissions.permissionId, current.id));
    if (granted && granted.roles > 0) throw rbacErrors.permissionInUse(current.code, granted.roles);
    await tx.delete(permissions).where(eq(permissions.id, current.id));
    await catalogChanged(tx);
    await catalogAudit(tx, 'permission.deleted', current);
  });
}
