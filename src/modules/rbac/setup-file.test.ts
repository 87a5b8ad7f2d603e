import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grantRole, seedOrganization, seedUser } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { COMMAND_LINE } from '../../cli/context.js';
import { organizations } from '../organizations/organizations.table.js';
import { computeAccess } from './effective-access.js';
import { permissions, rbacModules, roleModules, rolePermissions, roles } from './rbac.table.js';
import { applySetupFile } from './setup-file.apply.js';
import { countChanges, describePlan, planSetupFile, withReferenceProblems } from './setup-file.js';
import { parseSetupFile, SetupFileError } from './setup-file.parse.js';

const EXAMPLES = join(dirname(fileURLToPath(import.meta.url)), '../../../examples');
const exampleYaml = readFileSync(join(EXAMPLES, 'rbac.yaml'), 'utf8');

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

/** Every row the setup file can touch, with its updated_at: equal snapshots mean nothing was written. */
async function snapshot() {
  const db = t.database.db;
  const [orgs, mods, perms, rs, rp, rm] = await Promise.all([
    db.select({ id: organizations.id, at: organizations.updatedAt }).from(organizations).orderBy(organizations.id),
    db.select({ id: rbacModules.id, at: rbacModules.updatedAt }).from(rbacModules).orderBy(rbacModules.id),
    db.select({ id: permissions.id, at: permissions.updatedAt }).from(permissions).orderBy(permissions.id),
    db.select({ id: roles.id, at: roles.updatedAt }).from(roles).orderBy(roles.id),
    db.select().from(rolePermissions).orderBy(rolePermissions.roleId, rolePermissions.permissionId),
    db.select().from(roleModules).orderBy(roleModules.roleId, roleModules.moduleId),
  ]);
  return { orgs, mods, perms, rs, rp, rm };
}

async function grantsOf(roleId: string) {
  const db = t.database.db;
  const [p, m] = await Promise.all([
    db
      .select({ code: permissions.code })
      .from(rolePermissions)
      .innerJoin(permissions, eq(permissions.id, rolePermissions.permissionId))
      .where(eq(rolePermissions.roleId, roleId)),
    db
      .select({ code: rbacModules.code })
      .from(roleModules)
      .innerJoin(rbacModules, eq(rbacModules.id, roleModules.moduleId))
      .where(eq(roleModules.roleId, roleId)),
  ]);
  return { permissions: p.map((r) => r.code).sort(), modules: m.map((r) => r.code).sort() };
}

async function globalRole(code: string) {
  const [role] = await t.database.db
    .select()
    .from(roles)
    .where(and(eq(roles.code, code), isNull(roles.organizationId)));
  if (!role) throw new Error(`no global role ${code}`);
  return role;
}

/** The lines a refused file produces, as the command line reports them, or a failure when it was accepted. */
async function refusal(text: string, fileName = 'rbac.yaml'): Promise<string[]> {
  try {
    await applySetupFile(t.database.db, parseSetupFile(text, fileName), COMMAND_LINE);
  } catch (err) {
    if (err instanceof SetupFileError) return (await withReferenceProblems(t.database.db, err)).lines();
    throw err;
  }
  throw new Error('the file was accepted');
}

describe('the example file examples/rbac.yaml', () => {
  it('plans everything as a creation on a dry run and writes nothing', async () => {
    const before = await snapshot();
    const plan = await planSetupFile(t.database.db, parseSetupFile(exampleYaml, 'rbac.yaml'));
    expect(countChanges(plan)).toEqual({ create: 20, update: 0, unchanged: 0 });
    expect(describePlan(plan, 'dry-run').at(-1)).toBe(
      'setup rbac.yaml: would create 20, update 0, leave 0 unchanged (dry run, nothing written)',
    );
    expect(await snapshot()).toEqual(before);
  });

  it('creates the organization, modules, permissions, roles and grants it describes', async () => {
    const plan = await applySetupFile(t.database.db, parseSetupFile(exampleYaml, 'rbac.yaml'), COMMAND_LINE);
    expect(countChanges(plan)).toEqual({ create: 20, update: 0, unchanged: 0 });

    const [org] = await t.database.db.select().from(organizations).where(eq(organizations.code, 'DEFAULT'));
    expect(org).toMatchObject({
      name: 'My Company',
      settings: { theme: 'dark', features: ['analytics', 'reporting'] },
    });
    const mods = await t.database.db
      .select()
      .from(rbacModules)
      .where(inArray(rbacModules.code, ['PID', 'PFD', 'QHSE']));
    expect(mods.map((m) => [m.code, m.name, m.order, m.isActive]).sort()).toEqual([
      ['PFD', 'PFD Analysis', 2, true],
      ['PID', 'PID Analysis', 1, true],
      ['QHSE', 'QHSE', 3, true],
    ]);
    const [create] = await t.database.db.select().from(permissions).where(eq(permissions.code, 'pid.create'));
    expect(create).toMatchObject({
      action: 'create',
      name: 'Create PID Analysis',
      moduleId: mods.find((m) => m.code === 'PID')?.id,
    });

    const engineer = await globalRole('engineer');
    expect(engineer).toMatchObject({ level: 4, name: 'Engineer', isBuiltin: false });
    expect(await grantsOf(engineer.id)).toEqual({
      permissions: ['pfd.view', 'pid.create', 'pid.view'],
      modules: ['PFD', 'PID'],
    });
    expect((await grantsOf((await globalRole('auditor')).id)).permissions).toEqual([
      'pfd.view',
      'pid.view',
      'qhse.view',
    ]);

    // "*" is the whole catalog after the file: its own twelve permissions and Gatehouse's own.
    const [orgAdmin] = await t.database.db
      .select()
      .from(roles)
      .where(and(eq(roles.code, 'super_admin'), eq(roles.organizationId, org!.id)));
    expect(orgAdmin?.level).toBe(0);
    const catalog = await t.database.db.select({ code: permissions.code }).from(permissions);
    const granted = await grantsOf(orgAdmin!.id);
    expect(granted.permissions).toEqual(catalog.map((p) => p.code).sort());
    expect(granted.permissions).toContain('users.update');
    expect(granted.modules).toEqual(['GATEHOUSE', 'PFD', 'PID', 'QHSE']);
  });

  it('changes nothing the second time: every object unchanged, no updated_at moves', async () => {
    const before = await snapshot();
    const plan = await applySetupFile(t.database.db, parseSetupFile(exampleYaml, 'rbac.yaml'), COMMAND_LINE);
    expect(countChanges(plan)).toEqual({ create: 0, update: 0, unchanged: 20 });
    expect(describePlan(plan, 'applied')).toEqual([
      'setup rbac.yaml: nothing to change (20 objects already as described)',
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it('reads the JSON twin as the same description', async () => {
    const json = readFileSync(join(EXAMPLES, 'rbac.json'), 'utf8');
    const before = await snapshot();
    const plan = await applySetupFile(t.database.db, parseSetupFile(json, 'rbac.json'), COMMAND_LINE);
    expect(countChanges(plan)).toEqual({ create: 0, update: 0, unchanged: 20 });
    expect(await snapshot()).toEqual(before);
  });

  it('updates only what an edited file changes, and the plan says exactly that', async () => {
    const edited = exampleYaml
      .replace('    level: 4\n', '    level: 3\n')
      .replace('permissions: [pid.create, pid.view, pfd.view]', 'permissions: [pid.create, pid.view]');
    expect(edited).not.toBe(exampleYaml);
    const engineerBefore = await globalRole('engineer');
    const before = await snapshot();

    const file = parseSetupFile(edited, 'rbac.yaml');
    const planned = await planSetupFile(t.database.db, file);
    expect(await snapshot()).toEqual(before);
    const plan = await applySetupFile(t.database.db, file, COMMAND_LINE);
    expect(plan).toEqual(planned);
    expect(plan.changes.filter((c) => c.action !== 'unchanged')).toEqual([
      {
        kind: 'role',
        ref: 'engineer (global)',
        action: 'update',
        fields: [{ field: 'level', from: 4, to: 3 }],
        permissions: { added: [], removed: ['pfd.view'], kept: [] },
        modules: { added: [], removed: [], kept: [] },
        builtin: false,
      },
    ]);
    expect(describePlan(plan, 'applied')).toEqual([
      '  updated role engineer (global): level 4 → 3; permissions -pfd.view',
      'setup rbac.yaml: created 0, updated 1, 19 unchanged',
    ]);

    const engineer = await globalRole('engineer');
    expect(engineer.level).toBe(3);
    expect(engineer.updatedAt.getTime()).toBeGreaterThan(engineerBefore.updatedAt.getTime());
    expect((await grantsOf(engineer.id)).permissions).toEqual(['pid.create', 'pid.view']);
    const after = await snapshot();
    expect(after.orgs).toEqual(before.orgs);
    expect(after.mods).toEqual(before.mods);
    expect(after.perms).toEqual(before.perms);
    expect(after.rs.filter((r) => r.id !== engineer.id)).toEqual(before.rs.filter((r) => r.id !== engineer.id));
  });

  it('gives a holder of engineer the permission pid.create and the module PID', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    await grantRole(t, user, 'engineer');
    const access = await computeAccess(t.database.db, user.id);
    expect(access?.permissions.get('pid.create')).toEqual({ code: 'engineer', organization: null });
    expect(access?.modules.has('PID')).toBe(true);
    expect(access?.permissions.has('qhse.view')).toBe(false);
  });
});

describe('a refused file', () => {
  it('reports every problem with line, column and field, and writes nothing of the valid part', async () => {
    const org = unique('ORG');
    const text = [
      'organizations:', // 1
      `  - code: ${org}`, // 2
      '    name: Fine so far', // 3
      'modules:', // 4
      '  - {code: M1, name: One, order: 1}', // 5
      '  - {code: M1, name: Again}', // 6
      'permissions:', // 7
      '  - {code: m1.view, module: M1, name: View, colour: red}', // 8
      'roles:', // 9
      '  - code: r1', // 10
      '    name: R1', // 11
      '    level: high', // 12
      '  - {code: r2, name: R2, level: 1001, permissions: m1.view}', // 13
    ].join('\n');
    const before = await snapshot();
    expect(await refusal(text)).toEqual([
      'rbac.yaml:6:12 modules[1].code: module M1 is already defined at line 5',
      'rbac.yaml:8:45 permissions[0].colour: unknown key (expected one of: code, module, action, name, description)',
      'rbac.yaml:12:12 roles[0].level: must be an integer',
      'rbac.yaml:13:33 roles[1].level: must be between 0 and 1000',
      'rbac.yaml:13:52 roles[1].permissions: must be "*" or a list of permission codes',
    ]);
    expect(await snapshot()).toEqual(before);
    expect(await t.database.db.select().from(organizations).where(eq(organizations.code, org))).toEqual([]);
  });

  it('refuses references to unknown modules, organizations and grants, after valid objects', async () => {
    const org = unique('ORG');
    const text = `organizations:
  - {code: ${org}, name: Valid}
modules:
  - {code: ${org}-M, name: Valid module}
permissions:
  - {code: x.view, module: NO_SUCH_MODULE, name: View}
roles:
  - {code: r, name: R, level: 5, organization: NO_SUCH_ORG, permissions: [pid.view, no.such], modules: [PID, NOPE]}
`;
    const before = await snapshot();
    expect(await refusal(text, 'refs.yaml')).toEqual([
      'refs.yaml:6:28 permissions[0].module: unknown module NO_SUCH_MODULE (neither in this file nor in the database)',
      'refs.yaml:8:48 roles[0].organization: unknown organization NO_SUCH_ORG (neither in this file nor in the database)',
      'refs.yaml:8:85 roles[0].permissions[1]: unknown permission no.such (neither in this file nor in the database)',
      'refs.yaml:8:110 roles[0].modules[1]: unknown module NOPE (neither in this file nor in the database)',
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it('reports oversized settings and unknown references of valid entries beside malformed ones', async () => {
    const big = 'x'.repeat(70_000);
    const text = [
      'organizations:', // 1
      `  - {code: ROOMY2, name: Roomy, settings: {notes: ${big}}}`, // 2
      '  - {code: 7, name: Bad}', // 3
      'roles:', // 4
      '  - {code: r, name: R, level: 5, organization: ROOMY2, modules: [NOPE]}', // 5
      '  - {code: s, name: S, level: 5, organization: 7}', // 6
    ].join('\n');
    const before = await snapshot();
    const lines = await refusal(text);
    expect(lines.map((l) => l.replace(/ \(.*\)$/, ''))).toEqual([
      'rbac.yaml:2:43 organizations[0].settings: must be at most 65536 bytes as JSON',
      'rbac.yaml:3:12 organizations[1].code: must be a string',
      'rbac.yaml:5:66 roles[0].modules[0]: unknown module NOPE',
      'rbac.yaml:6:48 roles[1].organization: must be a string',
    ]);
    expect(await snapshot()).toEqual(before);
  });

  it('refuses a built-in role at another level, and takes it at its own', async () => {
    const before = await snapshot();
    expect(await refusal('roles:\n  - {code: org_admin, name: Org admin, level: 0}\n')).toEqual([
      'rbac.yaml:2:47 roles[0].level: built-in role org_admin: its level 1 is fixed',
    ]);
    expect(await snapshot()).toEqual(before);
    const orgAdmin = await globalRole('org_admin');
    await applySetupFile(
      t.database.db,
      parseSetupFile(`roles:\n  - {code: org_admin, name: ${orgAdmin.name}, level: 1}\n`, 'rbac.yaml'),
      COMMAND_LINE,
    );
    expect((await globalRole('org_admin')).level).toBe(1);
  });

  it('reports a YAML syntax error at its place', async () => {
    const unclosed = await refusal('modules:\n  - {code: PID, name: [unclosed\nroles: []\n');
    expect(unclosed[0]).toBe(
      'rbac.yaml:3:1 Flow sequence in block collection must be sufficiently indented and end with a ]',
    );
    const [line] = await refusal('roles:\n  - code: a\n    name: A\n   level: 1\n');
    expect(line).toMatch(/^rbac\.yaml:4:\d+ /);
    expect(await refusal('')).toEqual(['rbac.yaml:1:1 the file is empty']);
    expect(await refusal('- just\n- a list\n')).toEqual([
      'rbac.yaml:1:1 the file must be a mapping of organizations, modules, permissions and roles',
    ]);
    expect(await refusal('modules: []\nmodules: []\n')).toEqual(['rbac.yaml:2:1 Map keys must be unique']);
  });

  it('places problems of a JSON file by line and column too', async () => {
    const json = JSON.stringify({ roles: [{ code: 'r', name: 'R', level: '4', extra: true }] }, null, 2);
    expect(await refusal(json, 'rbac.json')).toEqual([
      'rbac.json:6:16 roles[0].level: must be an integer',
      'rbac.json:7:7 roles[0].extra: unknown key (expected one of: code, name, level, organization, description, permissions, modules)',
    ]);
  });

  it('refuses organization settings over 64 KiB as JSON, as the API does, naming the entry', async () => {
    const big = 'x'.repeat(70_000);
    const json = JSON.stringify({ organizations: [{ code: 'ROOMY', name: 'Roomy', settings: { notes: big } }] });
    const lines = await refusal(json, 'rbac.json');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^rbac\.json:1:\d+ organizations\[0\]\.settings: must be at most 65536 bytes as JSON \(these are 70012\)$/,
    );
    // Within the limit it is written as given.
    await applySetupFile(
      t.database.db,
      parseSetupFile(json.replace(big, 'x'.repeat(60_000)), 'rbac.json'),
      COMMAND_LINE,
    );
    const [roomy] = await t.database.db.select().from(organizations).where(eq(organizations.code, 'ROOMY'));
    expect(roomy?.settings).toEqual({ notes: 'x'.repeat(60_000) });
  });

  it('finds duplicate role codes within one organization but not across organizations', async () => {
    const text = `roles:
  - {code: twin, name: A, level: 5}
  - {code: twin, name: B, level: 5, organization: DEFAULT}
  - {code: twin, name: C, level: 5}
  - {code: solo, name: D, level: 5, permissions: [pid.view, pid.view]}
`;
    expect(await refusal(text)).toEqual([
      'rbac.yaml:4:12 roles[2].code: role twin (global) is already defined at line 2',
      'rbac.yaml:5:61 roles[3].permissions[1]: pid.view is listed twice',
    ]);
  });
});

describe('built-in roles', () => {
  it('only gain grants: super_admin keeps every grant the file does not list', async () => {
    const superAdmin = await globalRole('super_admin');
    const before = await grantsOf(superAdmin.id);
    expect(before.permissions).toContain('users.delete');
    const mod = unique('MOD');
    const text = `modules:
  - {code: ${mod}, name: Reports}
permissions:
  - {code: ${mod.toLowerCase()}.view, module: ${mod}, name: View reports}
roles:
  - code: super_admin
    name: Super administrator
    level: 0
    permissions: [${mod.toLowerCase()}.view]
    modules: [${mod}]
`;
    const plan = await applySetupFile(t.database.db, parseSetupFile(text, 'rbac.yaml'), COMMAND_LINE);
    const role = plan.changes.find((c) => c.kind === 'role');
    expect(role).toMatchObject({
      action: 'update',
      builtin: true,
      fields: [],
      permissions: { added: [`${mod.toLowerCase()}.view`], removed: [], kept: before.permissions },
      modules: { added: [mod], removed: [], kept: before.modules },
    });
    expect(describePlan(plan, 'applied')).toContain(
      `  updated role super_admin (global): permissions +${mod.toLowerCase()}.view; modules +${mod}; ` +
        `built in: keeps ${before.permissions.length + before.modules.length} grants the file does not list`,
    );
    const after = await grantsOf(superAdmin.id);
    expect(after.permissions).toEqual([...before.permissions, `${mod.toLowerCase()}.view`].sort());
    expect(after.modules).toEqual([...before.modules, mod].sort());

    // Again: nothing to add, so unchanged, and the dry-run plan still says what is kept.
    const again = await planSetupFile(t.database.db, parseSetupFile(text, 'rbac.yaml'));
    expect(countChanges(again)).toEqual({ create: 0, update: 0, unchanged: 3 });
    expect(describePlan(again, 'applied')).toEqual([
      'setup rbac.yaml: nothing to change (3 objects already as described)',
    ]);
  });
});

describe('applying the same file several times at once', () => {
  it('makes the change once: one run creates, the others find nothing to change', async () => {
    const mod = unique('PAR');
    const text = `modules:
  - {code: ${mod}, name: Parallel}
permissions:
  - {code: ${mod.toLowerCase()}.view, module: ${mod}, name: View}
roles:
  - {code: ${mod.toLowerCase()}_viewer, name: Viewer, level: 5, permissions: [${mod.toLowerCase()}.view]}
`;
    const plans = await Promise.all(
      Array.from({ length: 3 }, () => applySetupFile(t.database.db, parseSetupFile(text, 'r1.yaml'), COMMAND_LINE)),
    );
    expect(plans.map((p) => countChanges(p)).sort((a, b) => b.create - a.create)).toEqual([
      { create: 3, update: 0, unchanged: 0 },
      { create: 0, update: 0, unchanged: 3 },
      { create: 0, update: 0, unchanged: 3 },
    ]);
  });
});

describe('a very large file', () => {
  const organizationsYaml = (n: number, prefix: string) =>
    `organizations:\n${Array.from({ length: n }, (_, i) => `  - {code: ${prefix}${i}, name: O${i}}\n`).join('')}`;

  it('plans more organizations than one query may name', { timeout: 120_000 }, async () => {
    const plan = await planSetupFile(
      t.database.db,
      parseSetupFile(organizationsYaml(70_000, unique('BIG')), 'big.yaml'),
    );
    expect(countChanges(plan)).toEqual({ create: 70_000, update: 0, unchanged: 0 });
  });

  it('refuses more than 100,000 entries, naming the file and the limit', { timeout: 120_000 }, async () => {
    expect(await refusal(organizationsYaml(100_001, 'HUGE'), 'huge.yaml')).toEqual([
      'huge.yaml:2:3 organizations: the file holds 100001 entries; at most 100000 are taken in one file (split it)',
    ]);
  });
});
