import { inArray } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { seedOrganization, seedUser } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import type { UserActor } from '../../platform/http/auth.js';
import { createModule, createPermission, updateModule } from './catalog.service.js';
import { accessOf, catalogChanged, type GrantingRole } from './effective-access.js';
import { rbacModules, roleModules, rolePermissions, roles, userRoles } from './rbac.table.js';
import { assignRole, createRole, removeRole, updateRole } from './roles.service.js';

/**
 * Random histories of grants, assignments, level changes and module switches, applied through the
 * services (so through the cache and its invalidations) with reads in between, must leave every
 * user with exactly what a naive recomputation from the history says.
 */

const MODULES = 2;
const PERMISSIONS = 4; // permission i belongs to module i % MODULES
const ROLES = 3;
const USERS = 3;

let t: TestApp;
let actor: UserActor;
let moduleCodes: string[];
let permissionCodes: string[];
let roleIds: string[];
let roleCodes: string[];
/** Each role as explanations name it: the organization's one with its organization's code. */
let grantingRoles: GrantingRole[];
let userIds: string[];

beforeAll(async () => {
  t = await startTestApp();
  const db = t.database.db;
  const org = await seedOrganization(t);
  const root = await seedUser(t, org.id, { isSuperuser: true });
  actor = {
    kind: 'user',
    userId: root.id,
    organizationId: org.id,
    organizationCode: org.code,
    sessionId: 'property-test',
    isSuperuser: true,
    isStaff: true,
  };
  moduleCodes = [];
  for (let m = 0; m < MODULES; m++)
    moduleCodes.push((await createModule(db, { code: unique('M'), name: `m${m}` })).code);
  permissionCodes = [];
  for (let p = 0; p < PERMISSIONS; p++) {
    const code = `${unique('p')}.do${p}`;
    await createPermission(db, { code, module: moduleCodes[p % MODULES] as string, action: `do${p}`, name: code });
    permissionCodes.push(code);
  }
  roleIds = [];
  roleCodes = [];
  grantingRoles = [];
  for (let r = 0; r < ROLES; r++) {
    // One role owned by the organization, the others global: both kinds count the same.
    const role = await createRole(db, actor, {
      code: unique('r'),
      name: `r${r}`,
      level: 5,
      ...(r === 0 ? { organization: org.code } : {}),
    });
    roleIds.push(role.id);
    roleCodes.push(role.code);
    grantingRoles.push({ code: role.code, organization: role.organizationCode });
  }
  userIds = [];
  for (let u = 0; u < USERS; u++) userIds.push((await seedUser(t, org.id)).id);
});
afterAll(() => t.close());

type Op =
  | { op: 'grants'; role: number; permissions: boolean[]; modules: boolean[] }
  | { op: 'level'; role: number; level: number }
  | { op: 'assign'; user: number; role: number }
  | { op: 'unassign'; user: number; role: number }
  | { op: 'module'; module: number; active: boolean }
  | { op: 'read'; user: number };

const index = (n: number) => fc.integer({ min: 0, max: n - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('grants' as const),
    role: index(ROLES),
    permissions: fc.array(fc.boolean(), { minLength: PERMISSIONS, maxLength: PERMISSIONS }),
    modules: fc.array(fc.boolean(), { minLength: MODULES, maxLength: MODULES }),
  }),
  fc.record({ op: fc.constant('level' as const), role: index(ROLES), level: fc.integer({ min: 0, max: 9 }) }),
  fc.record({ op: fc.constant('assign' as const), user: index(USERS), role: index(ROLES) }),
  fc.record({ op: fc.constant('unassign' as const), user: index(USERS), role: index(ROLES) }),
  fc.record({ op: fc.constant('module' as const), module: index(MODULES), active: fc.boolean() }),
  fc.record({ op: fc.constant('read' as const), user: index(USERS) }),
);

interface Model {
  grants: { permissions: Set<number>; modules: Set<number> }[];
  levels: number[];
  held: Set<number>[];
  active: boolean[];
}

/** What the history says, computed the slow obvious way. */
function expected(model: Model, user: number) {
  const permissions = new Map<string, GrantingRole>();
  const modules = new Map<string, GrantingRole>();
  // Most powerful role first (level, then code): the first role granting a code is the one named.
  const held = [...(model.held[user] as Set<number>)].sort(
    (a, b) =>
      (model.levels[a] as number) - (model.levels[b] as number) ||
      (roleCodes[a] as string).localeCompare(roleCodes[b] as string),
  );
  for (const r of held) {
    const grant = model.grants[r] as Model['grants'][number];
    for (const p of grant.permissions) {
      const code = permissionCodes[p] as string;
      if (model.active[p % MODULES] && !permissions.has(code)) permissions.set(code, grantingRoles[r] as GrantingRole);
    }
    for (const m of grant.modules) {
      const code = moduleCodes[m] as string;
      if (model.active[m] && !modules.has(code)) modules.set(code, grantingRoles[r] as GrantingRole);
    }
  }
  const level = held.length === 0 ? null : Math.min(...held.map((r) => model.levels[r] as number));
  return { permissions: Object.fromEntries(permissions), modules: Object.fromEntries(modules), level };
}

async function observed(user: number) {
  const access = await accessOf(t.database.db, userIds[user] as string);
  if (!access) throw new Error('user vanished');
  return {
    permissions: Object.fromEntries(access.permissions),
    modules: Object.fromEntries(access.modules),
    level: access.level,
  };
}

async function reset(): Promise<Model> {
  const db = t.database.db;
  await db.delete(userRoles).where(inArray(userRoles.userId, userIds));
  await db.delete(rolePermissions).where(inArray(rolePermissions.roleId, roleIds));
  await db.delete(roleModules).where(inArray(roleModules.roleId, roleIds));
  await db.update(roles).set({ level: 5 }).where(inArray(roles.id, roleIds));
  await db.update(rbacModules).set({ isActive: true }).where(inArray(rbacModules.code, moduleCodes));
  await catalogChanged(db);
  return {
    grants: roleIds.map(() => ({ permissions: new Set(), modules: new Set() })),
    levels: roleIds.map(() => 5),
    held: userIds.map(() => new Set()),
    active: moduleCodes.map(() => true),
  };
}

async function apply(model: Model, step: Op): Promise<void> {
  const db = t.database.db;
  switch (step.op) {
    case 'grants': {
      const permissions = new Set(step.permissions.flatMap((on, i) => (on ? [i] : [])));
      const modules = new Set(step.modules.flatMap((on, i) => (on ? [i] : [])));
      await updateRole(db, actor, roleIds[step.role] as string, {
        permissions: [...permissions].map((i) => permissionCodes[i] as string),
        modules: [...modules].map((i) => moduleCodes[i] as string),
      });
      model.grants[step.role] = { permissions, modules };
      return;
    }
    case 'level':
      await updateRole(db, actor, roleIds[step.role] as string, { level: step.level });
      model.levels[step.role] = step.level;
      return;
    case 'assign':
      await assignRole(db, actor, userIds[step.user] as string, { role: roleIds[step.role] as string });
      model.held[step.user]?.add(step.role);
      return;
    case 'unassign':
      if (!model.held[step.user]?.has(step.role)) return;
      await removeRole(db, actor, userIds[step.user] as string, roleIds[step.role] as string);
      model.held[step.user]?.delete(step.role);
      return;
    case 'module':
      await updateModule(db, moduleCodes[step.module] as string, { is_active: step.active });
      model.active[step.module] = step.active;
      return;
    case 'read':
      // Fills the cache, so later changes must invalidate it.
      await observed(step.user);
      return;
  }
}

it('gives every user what a naive recomputation of the history gives', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 20 }), async (history) => {
      const model = await reset();
      for (let u = 0; u < USERS; u++) await observed(u);
      for (const step of history) {
        await apply(model, step);
        for (let u = 0; u < USERS; u++) expect(await observed(u)).toEqual(expected(model, u));
      }
    }),
    { numRuns: 40 },
  );
}, 120_000);
