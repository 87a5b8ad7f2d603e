import { eq, inArray } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { type FieldChange, fieldChanges } from './field-changes.js';
import {
  type Permission,
  permissions,
  type RbacModule,
  type Role,
  rbacModules,
  roleModules,
  rolePermissions,
  roles,
} from './rbac.table.js';
import {
  describeRole,
  type FieldPath,
  type ModuleEntry,
  type OrganizationEntry,
  type PermissionEntry,
  type Problem,
  type RoleEntry,
  roleKey,
  type SetupFile,
  SetupFileError,
} from './setup-file.parse.js';

/**
 * Compares a parsed setup file with the database (setup-file.apply.ts then writes the plan). Declarative and idempotent: each
 * object is matched by its code (a role by organization and code); the fields the file gives are
 * set, and a role's `permissions`/`modules` lists are its complete grant sets, except that a
 * built-in role keeps the grants it has and the file can only add to them. Objects the file does
 * not mention are left alone.
 */

export interface GrantChange {
  added: string[];
  removed: string[];
  /** Built-in roles only: current grants the file does not list, kept anyway. */
  kept: string[];
}

export interface PlannedChange {
  kind: 'organization' | 'module' | 'permission' | 'role';
  /** `DEFAULT`, `PID`, `pid.create`, `engineer (global)`, `super_admin (DEFAULT)`. */
  ref: string;
  action: 'create' | 'update' | 'unchanged';
  /** For an update: the fields that change. */
  fields: FieldChange[];
  permissions: GrantChange;
  modules: GrantChange;
  builtin: boolean;
}

export interface SetupPlan {
  fileName: string;
  changes: PlannedChange[];
}

export function countChanges(plan: SetupPlan): Record<PlannedChange['action'], number> {
  const counts = { create: 0, update: 0, unchanged: 0 };
  for (const change of plan.changes) counts[change.action]++;
  return counts;
}

/** What the database holds of the objects a file names, and the whole catalog (for "*"). */
interface Current {
  organizations: Map<string, Organization>;
  modules: Map<string, RbacModule>;
  permissions: Map<string, Permission>;
  roles: Map<string, Role>;
  rolePermissions: Map<string, Set<string>>;
  roleModules: Map<string, Set<string>>;
}

// PostgreSQL takes at most 65,535 parameters in one statement, and the query builder recurses over
// each of them: a long list of codes is looked up a batch at a time.
const LOOKUP_BATCH = 10_000;

async function inBatches<T>(values: string[], lookUp: (batch: string[]) => Promise<T[]>): Promise<T[]> {
  const rows: T[] = [];
  for (let i = 0; i < values.length; i += LOOKUP_BATCH) rows.push(...(await lookUp(values.slice(i, i + LOOKUP_BATCH))));
  return rows;
}

async function readCurrent(db: DbOrTx, file: SetupFile): Promise<Current> {
  const orgCodes = [
    ...new Set([...file.organizations.map((o) => o.code), ...file.roles.flatMap((r) => r.organization ?? [])]),
  ];
  const roleCodes = [...new Set(file.roles.map((r) => r.code))];
  // One after the other: inside a transaction they share one connection anyway.
  const orgRows = await inBatches(orgCodes, (codes) =>
    db.select().from(organizations).where(inArray(organizations.code, codes)),
  );
  const moduleRows = await db.select().from(rbacModules);
  const permissionRows = await db.select().from(permissions);
  const roleRows = await inBatches(roleCodes, (codes) => db.select().from(roles).where(inArray(roles.code, codes)));
  const orgCodeById = new Map(orgRows.map((o) => [o.id, o.code]));
  const current: Current = {
    organizations: new Map(orgRows.map((o) => [o.code, o])),
    modules: new Map(moduleRows.map((m) => [m.code, m])),
    permissions: new Map(permissionRows.map((p) => [p.code, p])),
    roles: new Map(),
    rolePermissions: new Map(),
    roleModules: new Map(),
  };
  for (const role of roleRows) {
    // A role of an organization the file does not name cannot be one of the file's roles.
    if (role.organizationId !== null && !orgCodeById.has(role.organizationId)) continue;
    current.roles.set(roleKey(role.organizationId && orgCodeById.get(role.organizationId)!, role.code), role);
  }
  const roleIds = [...current.roles.values()].map((r) => r.id);
  if (roleIds.length > 0) {
    const granted = await inBatches(roleIds, (ids) =>
      db
        .select({ roleId: rolePermissions.roleId, code: permissions.code })
        .from(rolePermissions)
        .innerJoin(permissions, eq(permissions.id, rolePermissions.permissionId))
        .where(inArray(rolePermissions.roleId, ids)),
    );
    const opened = await inBatches(roleIds, (ids) =>
      db
        .select({ roleId: roleModules.roleId, code: rbacModules.code })
        .from(roleModules)
        .innerJoin(rbacModules, eq(rbacModules.id, roleModules.moduleId))
        .where(inArray(roleModules.roleId, ids)),
    );
    for (const [rows, target] of [
      [granted, current.rolePermissions],
      [opened, current.roleModules],
    ] as const) {
      for (const row of rows) {
        const set = target.get(row.roleId) ?? new Set<string>();
        set.add(row.code);
        target.set(row.roleId, set);
      }
    }
  }
  return current;
}

/** The plan and, per object, what applying it needs. */
export interface Steps {
  plan: SetupPlan;
  organizations: { entry: OrganizationEntry; current?: Organization; change: PlannedChange }[];
  modules: { entry: ModuleEntry; current?: RbacModule; change: PlannedChange }[];
  permissions: { entry: PermissionEntry; current?: Permission; change: PlannedChange }[];
  roles: { entry: RoleEntry; current?: Role; change: PlannedChange }[];
}

const noGrants = (): GrantChange => ({ added: [], removed: [], kept: [] });

function change(
  kind: PlannedChange['kind'],
  ref: string,
  current: unknown,
  fields: FieldChange[],
  grants: { permissions?: GrantChange; modules?: GrantChange; builtin?: boolean } = {},
): PlannedChange {
  const permissions = grants.permissions ?? noGrants();
  const modules = grants.modules ?? noGrants();
  const grantsChange = [permissions, modules].some((g) => g.added.length + g.removed.length > 0);
  return {
    kind,
    ref,
    action: current === undefined ? 'create' : fields.length > 0 || grantsChange ? 'update' : 'unchanged',
    fields: current === undefined ? [] : fields,
    permissions,
    modules,
    builtin: grants.builtin ?? false,
  };
}

/** Compares the file with the database; throws SetupFileError for references to nothing. */
export async function planSteps(db: DbOrTx, file: SetupFile): Promise<Steps> {
  const current = await readCurrent(db, file);
  const problems: Problem[] = [];
  const unknown = (path: FieldPath, what: string, code: string) =>
    problems.push(file.problem(path, `unknown ${what} ${code} (neither in this file nor in the database)`));

  const leftOut = file.leftOut ?? { organizations: [], modules: [], permissions: [] };
  const fileModules = new Set([...file.modules.map((m) => m.code), ...leftOut.modules]);
  const fileOrgs = new Set([...file.organizations.map((o) => o.code), ...leftOut.organizations]);
  const allPermissions = [
    ...new Set([...current.permissions.keys(), ...file.permissions.map((p) => p.code), ...leftOut.permissions]),
  ].sort();
  const allModules = [...new Set([...current.modules.keys(), ...fileModules])].sort();
  const moduleCodeById = new Map([...current.modules.values()].map((m) => [m.id, m.code]));

  const steps: Steps = {
    plan: { fileName: file.fileName, changes: [] },
    organizations: [],
    modules: [],
    permissions: [],
    roles: [],
  };

  for (const entry of file.organizations) {
    const row = current.organizations.get(entry.code);
    const fields = row
      ? fieldChanges([
          ['name', row.name, entry.name],
          ['description', row.description, entry.description],
          ['settings', row.settings, entry.settings],
        ])
      : [];
    steps.organizations.push({ entry, current: row, change: change('organization', entry.code, row, fields) });
  }
  for (const entry of file.modules) {
    const row = current.modules.get(entry.code);
    const fields = row
      ? fieldChanges([
          ['name', row.name, entry.name],
          ['description', row.description, entry.description],
          ['order', row.order, entry.order],
          ['active', row.isActive, entry.active],
        ])
      : [];
    steps.modules.push({ entry, current: row, change: change('module', entry.code, row, fields) });
  }
  file.permissions.forEach((entry, k) => {
    const i = file.indexes?.permissions[k] ?? k;
    if (!fileModules.has(entry.module) && !current.modules.has(entry.module))
      unknown(['permissions', i, 'module'], 'module', entry.module);
    const row = current.permissions.get(entry.code);
    const fields = row
      ? fieldChanges([
          ['module', moduleCodeById.get(row.moduleId), entry.module],
          ['action', row.action, entry.action],
          ['name', row.name, entry.name],
          ['description', row.description, entry.description],
        ])
      : [];
    steps.permissions.push({ entry, current: row, change: change('permission', entry.code, row, fields) });
  });
  file.roles.forEach((entry, k) => {
    const i = file.indexes?.roles[k] ?? k;
    const org = entry.organization ?? null;
    if (org !== null && !fileOrgs.has(org) && !current.organizations.has(org))
      unknown(['roles', i, 'organization'], 'organization', org);
    const key = roleKey(org, entry.code);
    const row = current.roles.get(key);
    const builtin = row?.isBuiltin ?? false;
    // As on PATCH (409 builtin_role): the built-in levels order the delegation ceiling itself.
    if (builtin && row && entry.level !== row.level)
      problems.push(
        file.problem(['roles', i, 'level'], `built-in role ${entry.code}: its level ${row.level} is fixed`),
      );
    const grants = (field: 'permissions' | 'modules', catalog: string[], held: Set<string> | undefined) => {
      const listed = entry[field];
      if (listed === undefined) return noGrants();
      if (listed !== '*') {
        const known = new Set(catalog);
        listed.forEach((code, j) => {
          if (!known.has(code))
            unknown(['roles', i, field, j], field === 'permissions' ? 'permission' : 'module', code);
        });
      }
      const want = new Set(listed === '*' ? catalog : listed);
      const have = [...(held ?? [])].sort();
      const notListed = have.filter((code) => !want.has(code));
      return {
        added: [...want].filter((code) => !held?.has(code)).sort(),
        removed: builtin ? [] : notListed,
        kept: builtin ? notListed : [],
      };
    };
    const fields = row
      ? fieldChanges([
          ['name', row.name, entry.name],
          ['level', row.level, entry.level],
          ['description', row.description, entry.description],
        ])
      : [];
    steps.roles.push({
      entry,
      current: row,
      change: change('role', describeRole(key), row, fields, {
        permissions: grants('permissions', allPermissions, row && current.rolePermissions.get(row.id)),
        modules: grants('modules', allModules, row && current.roleModules.get(row.id)),
        builtin,
      }),
    });
  });

  if (problems.length > 0) throw new SetupFileError(file.fileName, problems);
  steps.plan.changes = [...steps.organizations, ...steps.modules, ...steps.permissions, ...steps.roles].map(
    (s) => s.change,
  );
  return steps;
}

/**
 * A refused file's problems together with the references its valid part makes to nothing, so that one
 * run reports them all (the file is refused either way, and nothing is written).
 */
export async function withReferenceProblems(db: DbOrTx, refused: SetupFileError): Promise<SetupFileError> {
  if (!refused.validPart) return refused;
  try {
    await planSteps(db, refused.validPart);
    return refused;
  } catch (err) {
    if (!(err instanceof SetupFileError)) throw err;
    return new SetupFileError(refused.fileName, [...refused.problems, ...err.problems]);
  }
}

/** What applying the file would change, without writing anything. */
export async function planSetupFile(db: DbOrTx, file: SetupFile): Promise<SetupPlan> {
  return (await planSteps(db, file)).plan;
}

const LONG_FIELDS = new Set(['description', 'settings']);

function describeChange(c: PlannedChange, tense: 'plan' | 'done'): string {
  const verb = { create: ['create', 'created'], update: ['update', 'updated'], unchanged: ['unchanged', 'unchanged'] }[
    c.action
  ][tense === 'plan' ? 0 : 1];
  const parts = c.fields.map((f) =>
    LONG_FIELDS.has(f.field) ? f.field : `${f.field} ${JSON.stringify(f.from)} → ${JSON.stringify(f.to)}`,
  );
  for (const [name, g] of [
    ['permissions', c.permissions],
    ['modules', c.modules],
  ] as const) {
    const codes = [...g.added.map((code) => `+${code}`), ...g.removed.map((code) => `-${code}`)];
    if (codes.length > 0) parts.push(`${name} ${codes.join(' ')}`);
  }
  const kept = c.permissions.kept.length + c.modules.kept.length;
  if (kept > 0) parts.push(`built in: keeps ${kept} grant${kept === 1 ? '' : 's'} the file does not list`);
  return `  ${verb} ${c.kind} ${c.ref}${parts.length > 0 ? `: ${parts.join('; ')}` : ''}`;
}

/** The lines the CLI prints: each object (a dry run lists unchanged ones too), then a summary. */
export function describePlan(plan: SetupPlan, mode: 'dry-run' | 'applied'): string[] {
  const counts = countChanges(plan);
  const head = `setup ${plan.fileName}:`;
  if (counts.create + counts.update === 0) {
    const suffix = mode === 'dry-run' ? '; dry run' : '';
    return [`${head} nothing to change (${counts.unchanged} objects already as described${suffix})`];
  }
  const shown = plan.changes.filter((c) => mode === 'dry-run' || c.action !== 'unchanged');
  const lines = shown.map((c) => describeChange(c, mode === 'dry-run' ? 'plan' : 'done'));
  lines.push(
    mode === 'dry-run'
      ? `${head} would create ${counts.create}, update ${counts.update}, leave ${counts.unchanged} unchanged (dry run, nothing written)`
      : `${head} created ${counts.create}, updated ${counts.update}, ${counts.unchanged} unchanged`,
  );
  return lines;
}
