import { and, asc, count, eq, gt, type SQL } from 'drizzle-orm';
import type { PgColumn } from 'drizzle-orm/pg-core';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { cursorId } from '../../platform/http/pagination.js';
import { recordAudit } from '../activity/audit.js';
import { catalogChanged } from './effective-access.js';
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

export function listModules(db: DbOrTx, input: { is_active?: boolean; cursor?: string; limit: number }) {
  const conditions: SQL[] = [];
  if (input.is_active !== undefined) conditions.push(eq(rbacModules.isActive, input.is_active));
  if (input.cursor) conditions.push(gt(rbacModules.id, cursorId(input.cursor)));
  return db
    .select()
    .from(rbacModules)
    .where(and(...conditions))
    .orderBy(asc(rbacModules.id))
    .limit(input.limit + 1);
}

/** The audit event of a catalog change (modules and permissions are platform objects). */
function catalogAudit(
  tx: DbOrTx,
  type: string,
  object: { id: string; code: string },
  details: Record<string, unknown> = {},
) {
  const [kind, act] = type.split('.') as [string, string];
  return recordAudit(tx, {
    type,
    category: 'authorization',
    organizationId: null,
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
): Promise<PermissionWithModule[]> {
  const conditions: SQL[] = [];
  if (input.module !== undefined) conditions.push(eq(rbacModules.code, input.module));
  if (input.cursor) conditions.push(gt(permissions.id, cursorId(input.cursor)));
  return db
    .select(permissionColumns)
    .from(permissions)
    .innerJoin(rbacModules, eq(rbacModules.id, permissions.moduleId))
    .where(and(...conditions))
    .orderBy(asc(permissions.id))
    .limit(input.limit + 1);
}

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
    await catalogAudit(tx, 'permission.updated', current, { fields: Object.keys(input) });
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
