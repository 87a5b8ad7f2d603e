import { and, eq, inArray } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { organizations } from '../organizations/organizations.table.js';
import { catalogChanged } from './effective-access.js';
import { permissions, rbacModules, roleModules, rolePermissions, roles } from './rbac.table.js';
import { type PlannedChange, planSteps, type SetupPlan } from './setup-file.js';
import type { SetupFile } from './setup-file.parse.js';

/**
 * Applies the file in one transaction, planned inside it so the plan is what gets written; every
 * node's permission cache is told when anything changed. Returns the plan that was applied.
 */
export async function applySetupFile(db: Db, file: SetupFile): Promise<SetupPlan> {
  return db.transaction(async (tx) => {
    const steps = await planSteps(tx, file);
    if (steps.plan.changes.every((c) => c.action === 'unchanged')) return steps.plan;

    const orgIds = new Map<string, string>();
    for (const { entry, current, change } of steps.organizations) {
      const values = { name: entry.name, description: entry.description, settings: entry.settings };
      orgIds.set(entry.code, await upsert(tx, organizations, current, change, { code: entry.code, ...values }));
    }
    const moduleIds = new Map<string, string>();
    for (const { entry, current, change } of steps.modules) {
      const values = { name: entry.name, description: entry.description, order: entry.order, isActive: entry.active };
      moduleIds.set(entry.code, await upsert(tx, rbacModules, current, change, { code: entry.code, ...values }));
    }
    const moduleId = async (code: string) => moduleIds.get(code) ?? (await idByCode(tx, rbacModules, code));
    for (const { entry, current, change } of steps.permissions) {
      const action = entry.action ?? (current ? undefined : entry.code.slice(entry.code.lastIndexOf('.') + 1));
      const values = {
        moduleId: await moduleId(entry.module),
        action,
        name: entry.name,
        description: entry.description,
      };
      await upsert(tx, permissions, current, change, { code: entry.code, ...values });
    }

    for (const { entry, current, change } of steps.roles) {
      const org = entry.organization;
      const organizationId = org ? (orgIds.get(org) ?? (await idByCode(tx, organizations, org))) : null;
      const values = { name: entry.name, level: entry.level, description: entry.description };
      const roleId = await upsert(tx, roles, current, change, { code: entry.code, organizationId, ...values });
      await regrant(tx, roleId, change);
      // A change of grants alone is still a change of the role.
      if (current && change.fields.length === 0 && change.action === 'update')
        await tx.update(roles).set({ updatedAt: new Date() }).where(eq(roles.id, roleId));
    }

    await catalogChanged(tx);
    return steps.plan;
  });
}

type Coded = typeof organizations | typeof rbacModules | typeof permissions | typeof roles;

/** Inserts a new object or sets the changed fields of an existing one; returns its id. */
async function upsert(
  tx: DbOrTx,
  table: Coded,
  current: { id: string } | undefined,
  change: PlannedChange,
  values: Record<string, unknown>,
): Promise<string> {
  const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  if (!current) {
    const [row] = await tx
      .insert(table)
      .values(given as never)
      .returning({ id: table.id });
    return row!.id;
  }
  if (change.fields.length > 0) await tx.update(table).set(given).where(eq(table.id, current.id));
  return current.id;
}

async function idByCode(tx: DbOrTx, table: typeof organizations | typeof rbacModules, code: string): Promise<string> {
  const [row] = await tx.select({ id: table.id }).from(table).where(eq(table.code, code));
  if (!row) throw new Error(`${code} vanished while the setup file was applied`);
  return row.id;
}

async function regrant(tx: DbOrTx, roleId: string, change: PlannedChange): Promise<void> {
  const { permissions: p, modules: m } = change;
  if (p.removed.length > 0) {
    const ids = tx.select({ id: permissions.id }).from(permissions).where(inArray(permissions.code, p.removed));
    await tx
      .delete(rolePermissions)
      .where(and(eq(rolePermissions.roleId, roleId), inArray(rolePermissions.permissionId, ids)));
  }
  if (p.added.length > 0) {
    const rows = await tx.select({ id: permissions.id }).from(permissions).where(inArray(permissions.code, p.added));
    await tx.insert(rolePermissions).values(rows.map((r) => ({ roleId, permissionId: r.id })));
  }
  if (m.removed.length > 0) {
    const ids = tx.select({ id: rbacModules.id }).from(rbacModules).where(inArray(rbacModules.code, m.removed));
    await tx.delete(roleModules).where(and(eq(roleModules.roleId, roleId), inArray(roleModules.moduleId, ids)));
  }
  if (m.added.length > 0) {
    const rows = await tx.select({ id: rbacModules.id }).from(rbacModules).where(inArray(rbacModules.code, m.added));
    await tx.insert(roleModules).values(rows.map((r) => ({ roleId, moduleId: r.id })));
  }
}
