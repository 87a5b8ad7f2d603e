import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { recordAudit } from '../activity/audit.js';
import { organizationCreated } from '../organizations/organizations.service.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { catalogAudit } from './catalog.service.js';
import { catalogChanged } from './effective-access.js';
import type { FieldChange } from './field-changes.js';
import { permissions, rbacModules, roleModules, rolePermissions, roles } from './rbac.table.js';
import { roleCreated } from './roles.service.js';
import { type PlannedChange, planSteps, type SetupPlan } from './setup-file.js';
import type { SetupFile } from './setup-file.parse.js';

/**
 * Applies the file in one transaction, planned inside it (after any other apply has committed) so
 * the plan is what gets written; every node's permission cache is told when anything changed. Each
 * object created or changed records the audit event its API route records, made by `actor`, in the
 * same transaction. Returns the plan that was applied.
 */
export async function applySetupFile(db: Db, file: SetupFile, actor: Actor): Promise<SetupPlan> {
  return db.transaction(async (tx) => {
    // One apply at a time, planned after the lock: a run waiting behind another plans against what
    // that one committed, so the same file sent several times at once is applied once.
    await tx.execute(sql`select pg_advisory_xact_lock(hashtext('setup-file.apply'))`);
    const steps = await planSteps(tx, file);
    if (steps.plan.changes.every((c) => c.action === 'unchanged')) return steps.plan;

    const orgIds = new Map<string, string>();
    for (const { entry, current, change } of steps.organizations) {
      const values = { name: entry.name, description: entry.description, settings: entry.settings };
      const row = await upsert(tx, organizations, current, change, { code: entry.code, ...values });
      orgIds.set(entry.code, row.id);
      await recordOrganizationChange(tx, actor, entry.code, row, change);
    }
    const moduleIds = new Map<string, string>();
    for (const { entry, current, change } of steps.modules) {
      const values = { name: entry.name, description: entry.description, order: entry.order, isActive: entry.active };
      const row = await upsert(tx, rbacModules, current, change, { code: entry.code, ...values });
      moduleIds.set(entry.code, row.id);
      if (change.action === 'create')
        await catalogAudit(tx, 'module.created', { id: row.id, code: entry.code }, {}, actor);
      if (change.action === 'update' && change.fields.length > 0) {
        // The file's `active` is the API's `is_active`: the event reads as the route's does.
        const changes = change.fields.map((f) => (f.field === 'active' ? { ...f, field: 'is_active' } : f));
        const active = changes.find((f) => f.field === 'is_active');
        await catalogAudit(
          tx,
          'module.updated',
          { id: row.id, code: entry.code },
          { fields: changes.map((f) => f.field), ...(active ? { is_active: active.to } : {}), changes },
          actor,
        );
      }
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
      const row = await upsert(tx, permissions, current, change, { code: entry.code, ...values });
      const permission = { id: row.id, code: entry.code };
      if (change.action === 'create')
        await catalogAudit(tx, 'permission.created', permission, { module: entry.module }, actor);
      if (change.action === 'update' && change.fields.length > 0) {
        const details = { fields: change.fields.map((f) => f.field), changes: change.fields };
        await catalogAudit(tx, 'permission.updated', permission, details, actor);
      }
    }

    for (const { entry, current, change } of steps.roles) {
      const org = entry.organization;
      const organizationId = org ? (orgIds.get(org) ?? (await idByCode(tx, organizations, org))) : null;
      const values = { name: entry.name, level: entry.level, description: entry.description };
      const granted = current && change.action === 'update' ? await grantCodes(tx, current.id) : undefined;
      const roleId = (await upsert(tx, roles, current, change, { code: entry.code, organizationId, ...values })).id;
      await regrant(tx, roleId, change);
      // A change of grants alone is still a change of the role.
      if (current && change.fields.length === 0 && change.action === 'update')
        await tx.update(roles).set({ updatedAt: new Date() }).where(eq(roles.id, roleId));
      const role = { id: roleId, code: entry.code, organizationId };
      if (change.action === 'create') await recordRoleCreated(tx, actor, role, entry.level, change);
      if (change.action === 'update' && granted) await recordRoleChanged(tx, actor, role, granted, change);
    }

    await catalogChanged(tx);
    return steps.plan;
  });
}

/** `organization.created`, or `organization.settings_changed` / `organization.updated`, as the API records them. */
async function recordOrganizationChange(
  tx: DbOrTx,
  actor: Actor,
  code: string,
  row: Record<string, unknown> & { id: string },
  change: PlannedChange,
): Promise<void> {
  if (change.action === 'create') {
    // The row as inserted: an organizations row.
    await recordAudit(tx, organizationCreated({ ...row, code } as Organization, actor));
    return;
  }
  if (change.action !== 'update') return;
  const settings = change.fields.find((f) => f.field === 'settings');
  await recordAudit(tx, {
    type: settings ? 'organization.settings_changed' : 'organization.updated',
    category: 'organization',
    organizationId: row.id,
    actor,
    description: `Organization ${code} updated`,
    details: {
      fields: change.fields.map((f) => f.field),
      ...(settings ? { settings: { from: settings.from, to: settings.to } } : {}),
    },
    objectType: 'organization',
    objectId: row.id,
  });
}

interface RoleRef {
  id: string;
  code: string;
  organizationId: string | null;
}

async function recordRoleCreated(
  tx: DbOrTx,
  actor: Actor,
  role: RoleRef,
  level: number | undefined,
  change: PlannedChange,
): Promise<void> {
  await recordAudit(
    tx,
    roleCreated(role, actor, { level, permissions: change.permissions.added, modules: change.modules.added }),
  );
}

/** `role.grants_changed` when a grant list changed, else `role.updated`, with what changed from what. */
async function recordRoleChanged(
  tx: DbOrTx,
  actor: Actor,
  role: RoleRef,
  granted: { permissions: string[]; modules: string[] },
  change: PlannedChange,
): Promise<void> {
  const lists = (['permissions', 'modules'] as const).flatMap((field): FieldChange[] => {
    const { added, removed } = change[field];
    if (added.length + removed.length === 0) return [];
    const from = granted[field];
    const to = [...from.filter((code) => !removed.includes(code)), ...added].sort();
    return [{ field, from, to }];
  });
  const level = change.fields.find((f) => f.field === 'level');
  await recordAudit(tx, {
    type: lists.length > 0 ? 'role.grants_changed' : 'role.updated',
    category: 'authorization',
    organizationId: role.organizationId,
    actor,
    description: `Role ${role.code} ${lists.length > 0 ? 'grants changed' : 'updated'}`,
    details: {
      fields: [...change.fields, ...lists].map((f) => f.field),
      ...(level ? { level: { from: level.from, to: level.to } } : {}),
      ...Object.fromEntries(lists.map((l) => [l.field, { from: l.from, to: l.to }])),
      changes: [...change.fields, ...lists],
    },
    severity: lists.length > 0 || level ? 'warning' : 'info',
    objectType: 'role',
    objectId: role.id,
  });
}

/** The codes a role grants as stored, before the file changes them. */
async function grantCodes(tx: DbOrTx, roleId: string): Promise<{ permissions: string[]; modules: string[] }> {
  const held = await tx
    .select({ code: permissions.code })
    .from(rolePermissions)
    .innerJoin(permissions, eq(permissions.id, rolePermissions.permissionId))
    .where(eq(rolePermissions.roleId, roleId));
  const opened = await tx
    .select({ code: rbacModules.code })
    .from(roleModules)
    .innerJoin(rbacModules, eq(rbacModules.id, roleModules.moduleId))
    .where(eq(roleModules.roleId, roleId));
  return { permissions: held.map((r) => r.code).sort(), modules: opened.map((r) => r.code).sort() };
}

type Coded = typeof organizations | typeof rbacModules | typeof permissions | typeof roles;

/** Inserts a new object or sets the changed fields of an existing one; returns its row as it now stands. */
async function upsert(
  tx: DbOrTx,
  table: Coded,
  current: { id: string } | undefined,
  change: PlannedChange,
  values: Record<string, unknown>,
): Promise<Record<string, unknown> & { id: string }> {
  const given = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  if (!current) {
    const [row] = await tx
      .insert(table)
      .values(given as never)
      .returning();
    return row as Record<string, unknown> & { id: string };
  }
  if (change.fields.length > 0) await tx.update(table).set(given).where(eq(table.id, current.id));
  return { ...current, ...given, id: current.id };
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
