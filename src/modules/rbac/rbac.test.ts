import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  clientWithRole,
  grantRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { encodeCursor } from '../../platform/http/pagination.js';
import type { Organization } from '../organizations/organizations.table.js';

let t: TestApp;
let root: Client;
let orgA: Organization;
let orgB: Organization;
let adminA: Client;
let viewerA: Client;

/** A module with two permissions, made by the superuser; returns the codes. */
async function seedCatalog() {
  const mod = unique('M').toUpperCase();
  expect((await root.post('/api/v1/modules/', { code: mod, name: `Module ${mod}`, order: 3 })).statusCode).toBe(201);
  const create = `${mod.toLowerCase()}.create`;
  const view = `${mod.toLowerCase()}.view`;
  for (const [code, action] of [
    [create, 'create'],
    [view, 'view'],
  ]) {
    const res = await root.post('/api/v1/permissions/', { code, module: mod, action, name: `${action} ${mod}` });
    expect(res.statusCode).toBe(201);
  }
  return { mod, create, view };
}

/** A role of organization A made by the superuser, with these permissions and no modules. */
async function seedOrgRole(name: string, level: number, permissions: string[]) {
  const res = await root.post('/api/v1/roles/', {
    code: unique(`${name.replace(/ /g, '_')}_`).replace(/-/g, '_'),
    name,
    level,
    organization: orgA.code,
    permissions,
    modules: [],
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as { id: string; code: string };
}

beforeAll(async () => {
  t = await startTestApp();
  root = await superuserClient(t);
  orgA = await seedOrganization(t);
  orgB = await seedOrganization(t);
  adminA = await clientWithRole(t, orgA.id, 'org_admin');
  viewerA = await clientWithRole(t, orgA.id, 'viewer');
});
afterAll(() => t.close());

describe('built-in catalog', () => {
  it('ships Gatehouse’s module, its permissions and the three built-in roles', async () => {
    const perms = await root.get('/api/v1/permissions/?module=GATEHOUSE&limit=500');
    expect(perms.statusCode).toBe(200);
    const codes = perms.json().results.map((p: { code: string }) => p.code);
    expect(codes).toEqual(expect.arrayContaining(['users.view', 'users.update', 'roles.manage', 'apikeys.manage']));
    const roles = await root.get('/api/v1/roles/?organization=global&limit=500');
    const builtin = roles.json().results.filter((r: { is_builtin: boolean }) => r.is_builtin);
    expect(builtin.map((r: { code: string; level: number }) => [r.code, r.level])).toEqual(
      expect.arrayContaining([
        ['super_admin', 0],
        ['org_admin', 1],
        ['viewer', 9],
      ]),
    );
    const orgAdmin = builtin.find((r: { code: string }) => r.code === 'org_admin');
    expect(orgAdmin.permissions).toContain('users.update');
    expect(orgAdmin.permissions).not.toContain('modules.manage');
  });

  it('keeps Gatehouse’s own module and permissions fixed', async () => {
    expect((await root.patch('/api/v1/modules/GATEHOUSE', { is_active: false })).json()).toMatchObject({
      status: 409,
      code: 'builtin_catalog',
    });
    expect((await root.delete('/api/v1/permissions/users.view')).statusCode).toBe(409);
    const res = await root.post('/api/v1/permissions/', {
      code: 'users.fly',
      module: 'GATEHOUSE',
      action: 'fly',
      name: 'x',
    });
    expect(res.statusCode).toBe(409);
  });

  it('refuses to delete a built-in role', async () => {
    const roles = (await root.get('/api/v1/roles/?organization=global&limit=500')).json().results;
    const viewer = roles.find((r: { code: string }) => r.code === 'viewer');
    expect((await root.delete(`/api/v1/roles/${viewer.id}`)).json()).toMatchObject({ code: 'builtin_role' });
  });

  it('refuses to change a built-in role’s level, and lets its name and description change', async () => {
    const roles = (await root.get('/api/v1/roles/?organization=global&limit=500')).json().results;
    const orgAdmin = roles.find((r: { code: string }) => r.code === 'org_admin');
    const res = await root.patch(`/api/v1/roles/${orgAdmin.id}`, { level: 0 });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'builtin_role', errors: [{ field: 'level' }] });
    const after = (await root.get(`/api/v1/roles/${orgAdmin.id}`)).json();
    expect(after.level).toBe(orgAdmin.level);
    // Its own level sent back is no change.
    const renamed = await root.patch(`/api/v1/roles/${orgAdmin.id}`, {
      level: orgAdmin.level,
      description: 'Runs one organization',
    });
    expect(renamed.statusCode, renamed.body).toBe(200);
    expect(renamed.json()).toMatchObject({ level: orgAdmin.level, description: 'Runs one organization' });
    await root.patch(`/api/v1/roles/${orgAdmin.id}`, { description: orgAdmin.description });
  });
});

describe('modules and permissions', () => {
  it('creates, reads, updates and deletes modules and permissions', async () => {
    const { mod, create } = await seedCatalog();
    const got = await root.get(`/api/v1/modules/${mod}/`);
    expect(got.json()).toMatchObject({ code: mod, order: 3, is_active: true });
    expect((await root.get(`/api/v1/modules/${got.json().id}`)).json().code).toBe(mod);
    expect((await root.patch(`/api/v1/modules/${mod}`, { name: 'Renamed' })).json().name).toBe('Renamed');
    const perm = await root.get(`/api/v1/permissions/${create}`);
    expect(perm.json()).toMatchObject({ code: create, module: mod, action: 'create' });
    expect((await root.patch(`/api/v1/permissions/${create}`, { description: 'd' })).json().description).toBe('d');
    // A module with permissions is not deleted from under them.
    expect((await root.delete(`/api/v1/modules/${mod}`)).json()).toMatchObject({ code: 'module_in_use' });
    const listed = await root.get(`/api/v1/permissions/?module=${mod}`);
    for (const p of listed.json().results)
      expect((await root.delete(`/api/v1/permissions/${p.code}`)).statusCode).toBe(204);
    expect((await root.delete(`/api/v1/modules/${mod}`)).statusCode).toBe(204);
    expect((await root.get(`/api/v1/modules/${mod}`)).statusCode).toBe(404);
  });

  it('answers 409 permission_in_use while a role grants the permission, and keeps the grant', async () => {
    const { create, view } = await seedCatalog();
    for (const code of [unique('granter_'), unique('granter_')]) {
      const role = await root.post('/api/v1/roles/', { code, name: code, level: 5, permissions: [create] });
      expect(role.statusCode, role.body).toBe(201);
    }
    const res = await root.delete(`/api/v1/permissions/${create}`);
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'permission_in_use', detail: expect.stringContaining('2 roles') });
    expect((await root.get(`/api/v1/permissions/${create}`)).statusCode).toBe(200);
    const grants = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from role_permissions rp join permissions p on p.id = rp.permission_id
          where p.code = ${create}`,
    );
    expect(grants[0]?.n).toBe(2);
    // One no role grants goes at once.
    expect((await root.delete(`/api/v1/permissions/${view}`)).statusCode).toBe(204);
  });

  it('answers 409 module_in_use while a role grants the module, and keeps the grant', async () => {
    const mod = unique('Q').toUpperCase();
    expect((await root.post('/api/v1/modules/', { code: mod, name: `Module ${mod}` })).statusCode).toBe(201);
    const role = await root.post('/api/v1/roles/', {
      code: unique('opener_'),
      name: 'Opener',
      level: 5,
      modules: [mod],
    });
    expect(role.statusCode, role.body).toBe(201);
    const user = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: role.json().code });
    const client = await loginAs(t, user);

    const res = await root.delete(`/api/v1/modules/${mod}/`);
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'module_in_use', detail: expect.stringContaining('1 role') });
    expect((await root.get(`/api/v1/roles/${role.json().id}`)).json().modules).toEqual([mod]);
    expect((await client.get('/api/v1/users/profile/permissions/')).json().modules).toEqual([mod]);

    // Once no role grants it, it goes.
    await root.patch(`/api/v1/roles/${role.json().id}`, { modules: [] });
    expect((await root.delete(`/api/v1/modules/${mod}/`)).statusCode).toBe(204);
  });

  // Races need PostgreSQL (TEST_DATABASE_URL) to overlap; PGlite runs the requests one after the other.
  it('never deletes a module from under a role granting it at the same time', async () => {
    for (let i = 0; i < 8; i++) {
      const mod = unique('R').toUpperCase();
      await root.post('/api/v1/modules/', { code: mod, name: `Module ${mod}` });
      const [deleted, created] = await Promise.all([
        root.delete(`/api/v1/modules/${mod}/`),
        root.post('/api/v1/roles/', { code: unique('racer_'), name: 'Racer', level: 5, modules: [mod] }),
      ]);
      if (created.statusCode === 201) {
        expect(deleted.json(), deleted.body).toMatchObject({ status: 409, code: 'module_in_use' });
        expect((await root.get(`/api/v1/roles/${created.json().id}`)).json().modules).toEqual([mod]);
      } else {
        expect(deleted.statusCode, deleted.body).toBe(204);
        expect(created.json(), created.body).toMatchObject({ status: 400, errors: [{ field: 'modules' }] });
      }
    }
  });

  it('pages lists with cursors', async () => {
    for (let i = 0; i < 3; i++) await seedCatalog();
    const first = await root.get('/api/v1/modules/?limit=2');
    expect(first.json().results).toHaveLength(2);
    const second = await root.get(`/api/v1/modules/?limit=2&cursor=${first.json().next}`);
    const seen = first.json().results.map((m: { id: string }) => m.id);
    expect(second.json().results.some((m: { id: string }) => seen.includes(m.id))).toBe(false);
    expect((await root.get('/api/v1/modules/?cursor=nonsense')).json()).toMatchObject({ code: 'invalid_cursor' });
  });

  it('lists modules by order, then code, page after page, and permissions by their module’s order, then code', async () => {
    const tag = unique('ORD').toUpperCase().replace(/-/g, '_');
    // Created out of order: the list follows `order`, then the code, never the creation.
    for (const [suffix, order] of [
      ['C', -5],
      ['A', 7],
      ['B', -5],
      ['D', -1000],
    ] as const) {
      const res = await root.post('/api/v1/modules/', { code: `${tag}_${suffix}`, name: `Mod ${suffix}`, order });
      expect(res.statusCode, res.body).toBe(201);
      const perm = await root.post('/api/v1/permissions/', {
        code: `${tag.toLowerCase()}_${suffix.toLowerCase()}.view`,
        module: `${tag}_${suffix}`,
        action: 'view',
        name: `View ${suffix}`,
      });
      expect(perm.statusCode, perm.body).toBe(201);
    }
    async function all(path: string) {
      const out: { code: string; order?: number; module?: string }[] = [];
      let next: string | null = null;
      do {
        const res = await root.get(`${path}?limit=2${next ? `&cursor=${next}` : ''}`);
        expect(res.statusCode, res.body).toBe(200);
        out.push(...res.json().results);
        next = res.json().next;
      } while (next);
      return out;
    }
    const modules = await all('/api/v1/modules/');
    const orders = modules.map((m) => m.order as number);
    expect(orders).toEqual([...orders].sort((a, b) => a - b));
    expect(modules.filter((m) => m.code.startsWith(tag)).map((m) => m.code)).toEqual(
      ['D', 'B', 'C', 'A'].map((s) => `${tag}_${s}`),
    );
    expect(new Set(modules.map((m) => m.code)).size).toBe(modules.length);
    const permissions = await all('/api/v1/permissions/');
    expect(permissions.filter((p) => p.module?.startsWith(tag)).map((p) => p.module)).toEqual(
      ['D', 'B', 'C', 'A'].map((s) => `${tag}_${s}`),
    );
    expect(new Set(permissions.map((p) => p.code)).size).toBe(permissions.length);
  });

  it('answers bad input with a 4xx naming the field', async () => {
    const dup = await seedCatalog();
    expect((await root.post('/api/v1/modules/', { code: dup.mod, name: 'x' })).json()).toMatchObject({
      status: 409,
      errors: [{ field: 'code' }],
    });
    expect((await root.post('/api/v1/modules/', { code: 'bad code', name: 'x' })).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'code' }],
    });
    expect(
      (await root.post('/api/v1/permissions/', { code: 'x.y', module: 'NOPE', action: 'y', name: 'x' })).json(),
    ).toMatchObject({ status: 400, code: 'unknown_reference', errors: [{ field: 'module' }] });
    expect((await root.patch(`/api/v1/modules/${dup.mod}`, {})).statusCode).toBe(400);
  });

  it('lets viewers read the catalog and only superusers (or super_admin) change it', async () => {
    expect((await viewerA.get('/api/v1/modules/')).statusCode).toBe(200);
    expect((await viewerA.get('/api/v1/permissions/')).statusCode).toBe(200);
    expect((await adminA.post('/api/v1/modules/', { code: unique('X'), name: 'x' })).statusCode).toBe(403);
    expect(
      (await adminA.post('/api/v1/permissions/', { code: 'a.b', module: 'X', action: 'b', name: 'x' })).statusCode,
    ).toBe(403);
    const plain = await loginAs(t, await seedUser(t, orgA.id));
    expect((await plain.get('/api/v1/modules/')).statusCode).toBe(403);
  });
});

describe('roles, grants and the delegation ceiling', () => {
  it('lets a superuser create global roles and organization roles with grants', async () => {
    const { mod, create, view } = await seedCatalog();
    const code = unique('r');
    const res = await root.post('/api/v1/roles/', {
      code,
      name: 'Engineer',
      level: 4,
      permissions: [create, view],
      modules: [mod],
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({
      code,
      level: 4,
      organization: null,
      permissions: [create, view].sort(),
      modules: [mod],
    });
    const owned = await root.post('/api/v1/roles/', {
      code: unique('r'),
      name: 'Engineer',
      level: 4,
      organization: orgA.code,
    });
    expect(owned.json()).toMatchObject({ organization: orgA.code, organization_id: orgA.id });
    // Same code twice within one scope is a conflict on the code.
    expect((await root.post('/api/v1/roles/', { code, name: 'x', level: 5 })).json()).toMatchObject({
      status: 409,
      errors: [{ field: 'code' }],
    });
  });

  it("lets an organization role take a global role's code, and a global role one an organization role has", async () => {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    // Global first, then the organization's, by the superuser and by the organization's admin.
    const global = unique('g');
    expect((await root.post('/api/v1/roles/', { code: global, name: 'Global', level: 6 })).statusCode).toBe(201);
    const byRoot = await root.post('/api/v1/roles/', {
      code: global,
      name: 'E',
      level: 40,
      organization: org.code,
      permissions: [],
      modules: [],
    });
    expect(byRoot.statusCode, byRoot.body).toBe(201);
    expect(byRoot.json()).toMatchObject({ code: global, organization: org.code });
    const other = unique('g');
    expect((await root.post('/api/v1/roles/', { code: other, name: 'Global', level: 6 })).statusCode).toBe(201);
    const byAdmin = await admin.post('/api/v1/roles/', { code: other, name: 'Mine', level: 5, permissions: [] });
    expect(byAdmin.statusCode, byAdmin.body).toBe(201);
    // The organization's first, then a global one.
    const code = unique('r');
    const owned = await root.post('/api/v1/roles/', { code, name: 'Local', level: 5, organization: orgB.code });
    expect(owned.statusCode, owned.body).toBe(201);
    const res = await root.post('/api/v1/roles/', { code, name: 'Global', level: 5, organization: null });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ code, organization: null });
  });

  it('answers 409 role_code_taken for a second role of one code within an organization or among global roles', async () => {
    const code = unique('dup');
    expect((await root.post('/api/v1/roles/', { code, name: 'G', level: 5 })).statusCode).toBe(201);
    const again = await root.post('/api/v1/roles/', { code, name: 'G2', level: 5, organization: null });
    expect(again.json()).toMatchObject({ status: 409, code: 'role_code_taken', errors: [{ field: 'code' }] });
    expect((await adminA.post('/api/v1/roles/', { code, name: 'A', level: 5 })).statusCode).toBe(201);
    const twice = await adminA.post('/api/v1/roles/', { code, name: 'A2', level: 5 });
    expect(twice.json()).toMatchObject({ status: 409, code: 'role_code_taken', errors: [{ field: 'code' }] });
    const byRoot = await root.post('/api/v1/roles/', { code, name: 'A3', level: 5, organization: orgA.code });
    expect(byRoot.json()).toMatchObject({ status: 409, code: 'role_code_taken', errors: [{ field: 'code' }] });
  });

  it('keeps the built-in roles’ codes (super_admin, org_admin, viewer) for them alone, even for a superuser', async () => {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    for (const code of ['viewer', 'org_admin', 'super_admin']) {
      const res = await admin.post('/api/v1/roles/', { code, name: 'Mine', level: 5, permissions: ['users.view'] });
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json()).toMatchObject({ code: 'role_code_taken', errors: [{ field: 'code' }] });
      expect(res.json().detail).toMatch(/built-in/);
      const byRoot = await root.post('/api/v1/roles/', { code, name: 'x', level: 6, organization: org.code });
      expect(byRoot.json()).toMatchObject({ status: 409, code: 'role_code_taken' });
    }
    // So assigning "viewer" in the organization still hands out the global viewer.
    const someone = await seedUser(t, org.id);
    const assigned = await admin.post(`/api/v1/users/${someone.id}/roles/`, { role: 'viewer' });
    expect(assigned.statusCode, assigned.body).toBe(201);
    expect(assigned.json()).toMatchObject({ role: 'viewer', organization: null, level: 9 });
  });

  it('lets a global and an organization role of one code both through when created at once', async () => {
    for (let round = 0; round < 3; round++) {
      const code = unique('race');
      const answers = await Promise.all([
        root.post('/api/v1/roles/', { code, name: 'Global', level: 5, organization: null }),
        root.post('/api/v1/roles/', { code, name: 'Local', level: 5, organization: orgB.code }),
      ]);
      expect(
        answers.map((a) => a.statusCode),
        answers.map((a) => a.body).join('\n'),
      ).toEqual([201, 201]);
    }
  });

  it('addresses a role on /api/v1/roles/{id}/ by id only: a code, which may name several roles, is not found', async () => {
    const code = unique('byid');
    const role = (await root.post('/api/v1/roles/', { code, name: 'G', level: 5 })).json();
    expect((await root.get(`/api/v1/roles/${role.id}/`)).statusCode).toBe(200);
    for (const res of [
      await root.get(`/api/v1/roles/${code}/`),
      await root.patch(`/api/v1/roles/${code}/`, { name: 'x' }),
      await root.delete(`/api/v1/roles/${code}/`),
      await root.get('/api/v1/roles/viewer/'),
    ]) {
      expect(res.statusCode, res.body).toBe(404);
    }
    expect((await root.get(`/api/v1/roles/${role.id}/`)).json().name).toBe('G');
  });

  it('confines an organization admin to their organization and below their own power', async () => {
    const mine = await adminA.post('/api/v1/roles/', {
      code: unique('r'),
      name: 'Clerk',
      level: 5,
      permissions: ['users.view'],
    });
    expect(mine.statusCode).toBe(201);
    expect(mine.json().organization).toBe(orgA.code);

    const cases: [unknown, number, string][] = [
      [{ level: 0 }, 403, 'level'],
      [{ level: 5, permissions: ['modules.manage'] }, 403, 'permissions'],
      [{ level: 5, modules: ['NOPE'] }, 403, 'modules'],
      [{ level: 5, organization: null }, 403, 'platform_object'],
      [{ level: 5, organization: orgB.code }, 403, 'organization'],
      [{ level: 5, permissions: ['no.such'] }, 403, 'permissions'],
    ];
    for (const [body, status, what] of cases) {
      const res = await adminA.post('/api/v1/roles/', { code: unique('r'), name: 'x', ...(body as object) });
      expect(res.statusCode, JSON.stringify(body)).toBe(status);
      const json = res.json();
      expect(json.code === what || json.errors?.[0]?.field === what, JSON.stringify(json)).toBe(true);
    }
    // A superuser's unknown codes are refused as unknown rather than above the ceiling.
    expect(
      (await root.post('/api/v1/roles/', { code: unique('r'), name: 'x', level: 5, permissions: ['no.such'] })).json(),
    ).toMatchObject({ status: 400, errors: [{ field: 'permissions' }] });

    // Editing: not above their level, not with grants they lack, not global roles.
    const id = mine.json().id;
    expect((await adminA.patch(`/api/v1/roles/${id}`, { level: 0 })).statusCode).toBe(403);
    expect((await adminA.patch(`/api/v1/roles/${id}`, { permissions: ['permissions.manage'] })).statusCode).toBe(403);
    const updated = await adminA.patch(`/api/v1/roles/${id}`, { level: 6, permissions: ['users.view', 'roles.view'] });
    expect(updated.json()).toMatchObject({ level: 6, permissions: ['roles.view', 'users.view'] });
    const global = (await adminA.get('/api/v1/roles/?organization=global&limit=500')).json().results[0];
    expect((await adminA.patch(`/api/v1/roles/${global.id}`, { name: 'mine now' })).json().code).toBe(
      'platform_object',
    );
    expect((await adminA.delete(`/api/v1/roles/${id}`)).statusCode).toBe(204);
  });

  it('keeps organizations’ roles apart', async () => {
    const theirs = await root.post('/api/v1/roles/', {
      code: unique('r'),
      name: 'B only',
      level: 5,
      organization: orgB.code,
    });
    const id = theirs.json().id;
    const listed = (await adminA.get('/api/v1/roles/?limit=500')).json().results;
    expect(listed.some((r: { organization_id: string | null }) => r.organization_id === orgB.id)).toBe(false);
    expect(listed.some((r: { code: string }) => r.code === 'viewer')).toBe(true);
    expect((await adminA.get(`/api/v1/roles/?organization=${orgB.code}`)).json().results).toEqual([]);
    expect((await adminA.get(`/api/v1/roles/${id}`)).statusCode).toBe(404);
    expect((await adminA.patch(`/api/v1/roles/${id}`, { name: 'x' })).statusCode).toBe(404);
    expect((await adminA.delete(`/api/v1/roles/${id}`)).statusCode).toBe(404);
    expect((await root.get(`/api/v1/roles/${id}`)).statusCode).toBe(200);
  });
});

describe('assignments and effective permissions', () => {
  it('applies an assignment, a grant change and a removal at once', async () => {
    const { mod, create, view } = await seedCatalog();
    const role = await root.post('/api/v1/roles/', {
      code: unique('eng'),
      name: 'Eng',
      level: 4,
      permissions: [view],
      modules: [mod],
    });
    const user = await seedUser(t, orgA.id);
    const client = await loginAs(t, user);
    expect((await client.get('/api/v1/users/profile/permissions/')).json()).toMatchObject({
      permissions: [],
      modules: [],
      level: null,
    });

    const assigned = await root.post(`/api/v1/users/${user.id}/roles/`, { role: role.json().code });
    expect(assigned.statusCode).toBe(201);
    expect(assigned.json()).toMatchObject({
      role: role.json().code,
      is_primary: true,
      level: 4,
      organization: role.json().organization,
      organization_id: role.json().organization_id,
    });
    expect(assigned.json()).toHaveProperty('organization_id');
    // A duplicate answers 409 and writes nothing; changing only is_primary is an update (200).
    const again = await root.post(`/api/v1/users/${user.id}/roles/`, { role: role.json().code });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'role_already_assigned', errors: [{ field: 'role' }] });
    // A user's only role stays their primary one.
    const demoted = await root.post(`/api/v1/users/${user.id}/roles/`, { role: role.json().code, is_primary: false });
    expect(demoted.json()).toMatchObject({ status: 400, errors: [{ field: 'is_primary' }] });
    const mine = (await client.get('/api/v1/users/profile/permissions/')).json();
    expect(mine).toMatchObject({
      permissions: [view],
      modules: [mod],
      level: 4,
      roles: [{ code: role.json().code, is_primary: true }],
    });

    await root.patch(`/api/v1/roles/${role.json().id}`, { permissions: [view, create] });
    expect((await client.get('/api/v1/users/profile/permissions/')).json().permissions).toEqual([create, view].sort());

    // An inactive module opens nothing, and its permissions count for nothing.
    await root.patch(`/api/v1/modules/${mod}`, { is_active: false });
    expect((await client.get('/api/v1/users/profile/permissions/')).json()).toMatchObject({
      permissions: [],
      modules: [],
    });
    await root.patch(`/api/v1/modules/${mod}`, { is_active: true });

    expect((await root.delete(`/api/v1/users/${user.id}/roles/${role.json().code}`)).statusCode).toBe(204);
    expect((await client.get('/api/v1/users/profile/permissions/')).json().permissions).toEqual([]);
    expect((await root.delete(`/api/v1/users/${user.id}/roles/${role.json().code}`)).statusCode).toBe(404);
  });

  it('guards admin routes by the permissions roles grant, effective at once', async () => {
    const user = await seedUser(t, orgA.id);
    const client = await loginAs(t, user);
    expect((await client.get('/api/v1/users/')).statusCode).toBe(403);
    await grantRole(t, user, 'viewer');
    expect((await client.get('/api/v1/users/')).statusCode).toBe(200);
    expect((await client.post('/api/v1/users/', { email: `${unique()}@example.com` })).statusCode).toBe(403);
    const roles = (await root.get(`/api/v1/users/${user.id}/roles/`)).json().results;
    expect(roles.map((r: { role: string }) => r.role)).toEqual(['viewer']);
    await root.delete(`/api/v1/users/${user.id}/roles/viewer`);
    expect((await client.get('/api/v1/users/')).statusCode).toBe(403);
  });

  /** A global role and an organization A role of one code, both created through the API. */
  async function codePair(code: string, global: object, own: object) {
    const g = await root.post('/api/v1/roles/', { code, ...global });
    expect(g.statusCode, g.body).toBe(201);
    const o = await root.post('/api/v1/roles/', { code, organization: orgA.code, ...own });
    expect(o.statusCode, o.body).toBe(201);
    return { global: g.json(), own: o.json() };
  }

  it('resolves a role code to the organization’s own role before the global one', async () => {
    const code = unique('dup');
    const { own, global } = await codePair(code, { name: 'global', level: 7 }, { name: 'own', level: 8 });
    const inA = await seedUser(t, orgA.id);
    const alsoInA = await seedUser(t, orgA.id);
    const inB = await seedUser(t, orgB.id);
    expect((await root.post(`/api/v1/users/${inA.id}/roles/`, { role: code })).json()).toMatchObject({
      role_id: own.id,
      organization: orgA.code,
      level: 8,
    });
    expect((await adminA.post(`/api/v1/users/${alsoInA.id}/roles/`, { role: code })).json()).toMatchObject({
      role_id: own.id,
    });
    expect((await root.post(`/api/v1/users/${inB.id}/roles/`, { role: code })).json()).toMatchObject({
      role_id: global.id,
      organization: null,
      level: 7,
    });
    // The global one stays reachable by its id in the organization that shadows its code.
    const byId = await adminA.post(`/api/v1/users/${inA.id}/roles/`, { role: global.id });
    expect(byId.statusCode, byId.body).toBe(201);
    expect(byId.json()).toMatchObject({ role_id: global.id, organization: null });
    // Holding both, the user's own view tells them apart.
    const mine = (await (await loginAs(t, inA)).get('/api/v1/users/profile/permissions/')).json();
    expect(mine.roles).toEqual(
      expect.arrayContaining([
        { code, role_id: own.id, organization: orgA.code, level: 8, is_primary: true },
        { code, role_id: global.id, organization: null, level: 7, is_primary: false },
      ]),
    );
  });

  it('removes by code the role of that code the user holds, the organization’s first', async () => {
    const code = unique('rm');
    const { own, global } = await codePair(code, { name: 'global', level: 7 }, { name: 'own', level: 8 });
    const onlyGlobal = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${onlyGlobal.id}/roles/`, { role: 'viewer' });
    await root.post(`/api/v1/users/${onlyGlobal.id}/roles/`, { role: global.id });
    expect((await adminA.delete(`/api/v1/users/${onlyGlobal.id}/roles/${code}/`)).statusCode).toBe(204);
    const left = (await root.get(`/api/v1/users/${onlyGlobal.id}/roles/`)).json().results;
    expect(left.map((r: { role: string }) => r.role)).toEqual(['viewer']);

    const both = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${both.id}/roles/`, { role: global.id });
    await root.post(`/api/v1/users/${both.id}/roles/`, { role: code });
    expect((await adminA.delete(`/api/v1/users/${both.id}/roles/${code}/`)).statusCode).toBe(204);
    const held = (await root.get(`/api/v1/users/${both.id}/roles/`)).json().results;
    expect(held.map((r: { role_id: string }) => r.role_id)).toEqual([global.id]);
    expect((await adminA.delete(`/api/v1/users/${both.id}/roles/${code}/`)).statusCode).toBe(204);
    expect((await adminA.delete(`/api/v1/users/${both.id}/roles/${code}/`)).statusCode).toBe(404);
    expect(own.id).not.toBe(global.id);
  });

  it('gives the holder of an organization role coded like a built-in role only that role’s own level and grants', async () => {
    const org = await seedOrganization(t);
    // The API keeps these codes for the built-in roles; an operator's setup file may still store them.
    const stored: Record<string, string> = {};
    for (const code of ['super_admin', 'org_admin']) {
      const made = await root.post('/api/v1/roles/', {
        code: unique('tmp'),
        name: code,
        level: 50,
        organization: org.code,
        permissions: ['users.view'],
      });
      expect(made.statusCode, made.body).toBe(201);
      await t.database.db.execute(sql`update roles set code = ${code} where id = ${made.json().id}`);
      stored[code] = made.json().id;
    }
    const holder = await seedUser(t, org.id);
    const target = await seedUser(t, org.id);
    await root.post(`/api/v1/users/${holder.id}/roles/`, { role: 'super_admin' });
    await root.post(`/api/v1/users/${holder.id}/roles/`, { role: 'org_admin' });
    const client = await loginAs(t, holder);
    const mine = (await client.get('/api/v1/users/profile/permissions/')).json();
    expect(mine).toMatchObject({ permissions: ['users.view'], modules: [], level: 50, is_superuser: false });
    expect(mine.roles.map((r: { role_id: string }) => r.role_id).sort()).toEqual(Object.values(stored).sort());
    expect((await client.get('/api/v1/users/')).statusCode).toBe(200);
    expect((await client.post('/api/v1/users/', { email: `${unique()}@example.com` })).statusCode).toBe(403);
    expect((await client.get('/api/v1/roles/')).statusCode).toBe(403);
    expect((await client.get('/api/v1/modules/')).statusCode).toBe(403);
    const decision = (await root.post('/api/v1/authorize/', { user_id: holder.id, permission: 'users.update' })).json();
    expect(decision).toEqual({ allowed: false, reason: 'No role of the user grants permission "users.update".' });
    const granted = (await root.post('/api/v1/authorize/', { user_id: holder.id, permission: 'users.view' })).json();
    expect(granted.allowed).toBe(true);
    expect(granted.reason).toMatch(new RegExp(`of organization "${org.code}"`));
    // Neither stands in for the built-in role: not protected as one, and no key to the global ones.
    expect((await root.get(`/api/v1/roles/${stored.org_admin}/`)).json()).toMatchObject({ is_builtin: false });
    const assignGlobal = await client.post(`/api/v1/users/${target.id}/roles/`, { role: 'viewer' });
    expect(assignGlobal.statusCode).toBe(403);
    expect((await root.delete(`/api/v1/roles/${stored.super_admin}/`)).statusCode).toBe(204);
  });

  it('pages a user’s roles with a cursor, most powerful first, and refuses a bad limit or cursor', async () => {
    const code = unique('same');
    // A global role and an organization's role with one code and level: the role id orders them.
    const { global, own } = await codePair(code, { name: 'global', level: 1000 }, { name: 'own', level: 1000 });
    const user = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' });
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'org_admin' });
    await t.database.db.execute(
      sql`insert into user_roles (user_id, role_id) values (${user.id}, ${global.id}), (${user.id}, ${own.id})`,
    );
    const url = `/api/v1/users/${user.id}/roles/`;
    type Held = { role: string; role_id: string };
    const all = (await root.get(url)).json() as { results: Held[]; next: string | null };
    const sameOrder = [global.id, own.id].sort();
    expect(all.results.map((r) => r.role)).toEqual(['org_admin', 'viewer', code, code]);
    expect(all.results.slice(2).map((r) => r.role_id)).toEqual(sameOrder);
    expect(all.next).toBeNull();

    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 6; pages++) {
      const res = await root.get(`${url}?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.statusCode).toBe(200);
      const page = res.json() as { results: Held[]; next: string | null };
      expect(page.results).toHaveLength(1);
      seen.push(...page.results.map((r) => r.role_id));
      cursor = page.next;
      if (!cursor) break;
    }
    expect(seen).toEqual(all.results.map((r) => r.role_id));
    expect((await root.get(`${url}?limit=1000`)).json().results).toHaveLength(4);

    expect((await root.get(`${url}?limit=0`)).json()).toMatchObject({ status: 400, errors: [{ field: 'limit' }] });
    for (const bad of [
      'garbage',
      encodeCursor([1, 'viewer']),
      encodeCursor(['1', 'viewer', global.id]),
      encodeCursor([1, 'viewer', 'x']),
    ]) {
      const res = await root.get(`${url}?cursor=${bad}`);
      expect(res.statusCode, bad).toBe(400);
      expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ field: 'cursor' }] });
    }
  });

  it('keeps one primary role per user', async () => {
    const user = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' });
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'org_admin', is_primary: true });
    const held = (await root.get(`/api/v1/users/${user.id}/roles/`)).json().results;
    expect(held.map((r: { role: string; is_primary: boolean }) => [r.role, r.is_primary])).toEqual([
      ['org_admin', true],
      ['viewer', false],
    ]);
    await root.delete(`/api/v1/users/${user.id}/roles/org_admin`);
    expect((await root.get(`/api/v1/users/${user.id}/roles/`)).json().results).toMatchObject([
      { role: 'viewer', is_primary: true },
    ]);
  });

  /** The user's roles as [code, is_primary], most powerful first. */
  async function primaries(userId: string): Promise<[string, boolean][]> {
    const held = (await root.get(`/api/v1/users/${userId}/roles/`)).json().results;
    return held.map((r: { role: string; is_primary: boolean }) => [r.role, r.is_primary]);
  }

  it('unmarking the primary role makes the most powerful other role primary', async () => {
    const eng = (await root.post('/api/v1/roles/', { code: unique('eng'), name: 'Eng', level: 4 })).json();
    const user = await seedUser(t, orgA.id);
    for (const role of [eng.code, 'viewer', 'org_admin']) {
      await root.post(`/api/v1/users/${user.id}/roles/`, { role, is_primary: role === eng.code });
    }
    const unmarked = await root.post(`/api/v1/users/${user.id}/roles/`, { role: eng.code, is_primary: false });
    expect(unmarked.statusCode, unmarked.body).toBe(200);
    expect(unmarked.json()).toMatchObject({ role: eng.code, is_primary: false });
    expect(await primaries(user.id)).toEqual([
      ['org_admin', true],
      [eng.code, false],
      ['viewer', false],
    ]);
    // Unmarking one that is not primary changes nothing.
    const again = await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer', is_primary: false });
    expect(again.json()).toMatchObject({ status: 409, code: 'role_already_assigned' });
    expect((await primaries(user.id)).filter(([, primary]) => primary)).toEqual([['org_admin', true]]);
  });

  it('refuses is_primary false when the user would hold no other role to be primary', async () => {
    const user = await seedUser(t, orgA.id);
    const first = await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer', is_primary: false });
    expect(first.statusCode).toBe(400);
    expect(first.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'is_primary' }] });
    expect(await primaries(user.id)).toEqual([]);

    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' });
    const only = await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer', is_primary: false });
    expect(only.json()).toMatchObject({ status: 400, errors: [{ field: 'is_primary' }] });
    expect(await primaries(user.id)).toEqual([['viewer', true]]);
  });

  it('deleting a role makes the most powerful remaining role primary for each user who had it as primary', async () => {
    const tmp = (
      await root.post('/api/v1/roles/', { code: unique('tmp'), name: 'Tmp', level: 4, organization: orgA.code })
    ).json();
    const primaryHolder = await seedUser(t, orgA.id);
    const otherHolder = await seedUser(t, orgA.id);
    const onlyHolder = await seedUser(t, orgA.id);
    for (const role of [tmp.code, 'viewer', 'org_admin']) {
      await root.post(`/api/v1/users/${primaryHolder.id}/roles/`, { role, is_primary: role === tmp.code });
    }
    await root.post(`/api/v1/users/${otherHolder.id}/roles/`, { role: 'viewer' });
    await root.post(`/api/v1/users/${otherHolder.id}/roles/`, { role: tmp.code });
    await root.post(`/api/v1/users/${onlyHolder.id}/roles/`, { role: tmp.code });

    expect((await root.delete(`/api/v1/roles/${tmp.id}/`)).statusCode).toBe(204);
    expect(await primaries(primaryHolder.id)).toEqual([
      ['org_admin', true],
      ['viewer', false],
    ]);
    expect(await primaries(otherHolder.id)).toEqual([['viewer', true]]);
    expect(await primaries(onlyHolder.id)).toEqual([]);
  });

  it('records with role.deleted how many assignments went, and each holder who lost the role as role.unassigned', async () => {
    const tmp = (
      await root.post('/api/v1/roles/', { code: unique('gone'), name: 'Gone', level: 4, organization: orgA.code })
    ).json();
    const holders = [await seedUser(t, orgA.id), await seedUser(t, orgA.id)];
    for (const holder of holders) {
      expect((await root.post(`/api/v1/users/${holder.id}/roles/`, { role: tmp.code })).statusCode).toBe(201);
    }
    expect((await root.delete(`/api/v1/roles/${tmp.id}/`)).statusCode).toBe(204);
    const stream = await root.get(`/api/v1/activity-streams/?object_type=role&object_id=${tmp.id}&limit=50`);
    expect(stream.statusCode, stream.body).toBe(200);
    const events = stream.json().results as { activity_type: string; user_id: string | null; details: object }[];
    expect(events.find((e) => e.activity_type === 'role.deleted')?.details).toMatchObject({
      code: tmp.code,
      assignments_removed: 2,
      holders_recorded: 2,
    });
    const lost = events.filter((e) => e.activity_type === 'role.unassigned' && 'reason' in e.details);
    expect(lost.map((e) => e.user_id).sort()).toEqual(holders.map((h) => h.id).sort());
    expect(lost[0]?.details).toMatchObject({ role: tmp.code, role_id: tmp.id, reason: 'role_deleted' });
  });

  // Races need PostgreSQL (TEST_DATABASE_URL) to overlap; PGlite runs the requests one after the other.
  it('answers 404 user_not_found to an assignment whose user is deleted meanwhile, never 500', async () => {
    for (let i = 0; i < 12; i++) {
      const user = await seedUser(t, orgA.id);
      const [assigned, deleted] = await Promise.all([
        root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer', is_primary: true }),
        root.delete(`/api/v1/users/${user.id}/`),
      ]);
      expect(deleted.statusCode, deleted.body).toBe(204);
      expect([201, 404], assigned.body).toContain(assigned.statusCode);
      if (assigned.statusCode === 404) expect(assigned.json().code).toBe('user_not_found');
    }
  });

  it('answers 400 naming role to an assignment whose role is deleted meanwhile, never 500', async () => {
    for (let i = 0; i < 8; i++) {
      const role = (
        await root.post('/api/v1/roles/', {
          code: unique('brief_').replace(/-/g, '_'),
          name: 'Brief',
          level: 5,
          organization: orgA.code,
        })
      ).json();
      const users = await Promise.all([1, 2, 3].map(() => seedUser(t, orgA.id)));
      const [deleted, ...assigned] = await Promise.all([
        root.delete(`/api/v1/roles/${role.id}/`),
        ...users.map((u) => root.post(`/api/v1/users/${u.id}/roles/`, { role: role.code })),
      ]);
      expect(deleted?.statusCode, deleted?.body).toBe(204);
      for (const res of assigned) {
        if (res.statusCode === 201) continue;
        expect(res.json(), res.body).toMatchObject({ status: 400, errors: [{ field: 'role' }] });
      }
    }
  });

  it('leaves exactly one primary role per user when a role is deleted while its holders’ roles change', async () => {
    for (let i = 0; i < 6; i++) {
      const tmp = (await root.post('/api/v1/roles/', { code: unique('tmp'), name: 'Tmp', level: 4 })).json();
      const first = await seedUser(t, orgA.id);
      const second = await seedUser(t, orgA.id);
      const holders = [first, second];
      for (const u of holders) {
        await root.post(`/api/v1/users/${u.id}/roles/`, { role: tmp.code });
        await root.post(`/api/v1/users/${u.id}/roles/`, { role: 'viewer' });
      }
      const answers = await Promise.all([
        root.delete(`/api/v1/roles/${tmp.id}/`),
        root.post(`/api/v1/users/${first.id}/roles/`, { role: 'org_admin' }),
        root.post(`/api/v1/users/${first.id}/roles/`, { role: tmp.code, is_primary: true }),
        root.post(`/api/v1/users/${second.id}/roles/`, { role: tmp.code, is_primary: false }),
        root.post(`/api/v1/users/${second.id}/roles/`, { role: 'org_admin', is_primary: false }),
      ]);
      for (const res of answers) expect(res.statusCode, res.body).toBeLessThan(500);
      expect(answers[0]?.statusCode).toBe(204);
      for (const u of holders) {
        const held = await primaries(u.id);
        expect(
          held.filter(([, primary]) => primary),
          JSON.stringify(held),
        ).toHaveLength(1);
        expect(held.map(([code]) => code)).toEqual(['org_admin', 'viewer']);
      }
    }
  });

  it('answers an assignment and a removal of the same role at once with what each committed', async () => {
    const user = await seedUser(t, orgA.id);
    let created = 0;
    for (let i = 0; i < 12; i++) {
      const answers = await Promise.all(
        Array.from({ length: 8 }).flatMap(() => [
          root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' }),
          root.delete(`/api/v1/users/${user.id}/roles/viewer/`),
        ]),
      );
      for (const [n, res] of answers.entries()) {
        if (n % 2 === 1) {
          expect([204, 404], res.body).toContain(res.statusCode);
          continue;
        }
        expect(res.json()).toMatchObject(
          res.statusCode === 201
            ? { role: 'viewer', is_primary: true }
            : { status: 409, code: 'role_already_assigned' },
        );
        if (res.statusCode === 201) created++;
      }
    }
    // Every assignment answered 201 is one recorded, and no other was.
    const events = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities where activity_type = 'role.assigned' and user_id = ${user.id}`,
    );
    expect(events[0]?.n).toBe(created);
  });

  it('lets an organization admin assign within the ceiling, in their organization, to others only', async () => {
    const inA = await seedUser(t, orgA.id);
    const inB = await seedUser(t, orgB.id);
    const superInA = await seedUser(t, orgA.id, { isSuperuser: true });
    expect((await adminA.post(`/api/v1/users/${inA.id}/roles/`, { role: 'viewer' })).statusCode).toBe(201);
    expect((await adminA.post(`/api/v1/users/${inA.id}/roles/`, { role: 'org_admin' })).statusCode).toBe(201);
    expect((await adminA.post(`/api/v1/users/${inA.id}/roles/`, { role: 'super_admin' })).json().code).toBe(
      'delegation_ceiling',
    );
    expect((await adminA.post(`/api/v1/users/${inB.id}/roles/`, { role: 'viewer' })).statusCode).toBe(404);
    expect((await adminA.get(`/api/v1/users/${inB.id}/roles/`)).statusCode).toBe(404);
    expect((await adminA.delete(`/api/v1/users/${inB.id}/roles/viewer`)).statusCode).toBe(404);
    expect((await adminA.post(`/api/v1/users/${adminA.user.id}/roles/`, { role: 'viewer' })).json().code).toBe(
      'own_roles',
    );
    expect((await adminA.post(`/api/v1/users/${superInA.id}/roles/`, { role: 'viewer' })).json().code).toBe(
      'superuser_protected',
    );
    expect((await viewerA.post(`/api/v1/users/${inA.id}/roles/`, { role: 'viewer' })).statusCode).toBe(403);
    expect((await adminA.post(`/api/v1/users/${inA.id}/roles/`, { role: 'nope' })).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'role' }],
    });
    expect((await adminA.post('/api/v1/users/not-a-uuid/roles/', { role: 'viewer' })).statusCode).toBe(404);
  });

  it('lists with ?assignable=true only the roles the caller may assign, as the assignment itself decides', async () => {
    const { create } = await seedCatalog();
    const make = async (name: string, level: number, permissions: string[]) =>
      (await seedOrgRole(name, level, permissions)).code;
    const above = await make('Above', 0, []);
    const lacking = await make('Lacking', 500, [create]);
    const within = await make('Within', 500, []);
    const codes = async (client: Client, query: string) => {
      const res = await client.get(`/api/v1/roles/?organization=${orgA.code}&limit=500${query}`);
      expect(res.statusCode, res.body).toBe(200);
      return (res.json().results as { code: string }[]).map((r) => r.code);
    };
    const assignable = await codes(adminA, '&assignable=true');
    expect(assignable).toContain(within);
    expect(assignable).not.toContain(above);
    expect(assignable).not.toContain(lacking);
    expect(await codes(adminA, '')).toEqual(expect.arrayContaining([above, lacking, within]));
    expect(await codes(root, '&assignable=true')).toEqual(expect.arrayContaining([above, lacking, within]));
    // What the list offers is what an assignment accepts, and what it leaves out is refused.
    const target = await seedUser(t, orgA.id);
    expect((await adminA.post(`/api/v1/users/${target.id}/roles/`, { role: within })).statusCode).toBe(201);
    for (const role of [above, lacking]) {
      expect((await adminA.post(`/api/v1/users/${target.id}/roles/`, { role })).json().code).toBe('delegation_ceiling');
    }
  });

  it('refuses a change or deletion of a role one of whose holders is more powerful than the caller', async () => {
    const managerRole = await seedOrgRole('Role manager', 5, ['roles.manage', 'roles.view', 'users.view']);
    const manager = await seedUser(t, orgA.id);
    await grantRole(t, manager, managerRole.code);
    const asManager = await loginAs(t, manager);
    const { id: ops, code: opsCode } = await seedOrgRole('Ops', 5, ['users.view']);
    // Held by an organization admin (level 1): the manager may not take it from them, nor change it.
    const admin = await seedUser(t, orgA.id);
    await grantRole(t, admin, 'org_admin');
    await grantRole(t, admin, opsCode);
    expect((await asManager.delete(`/api/v1/users/${admin.id}/roles/${opsCode}/`)).json().code).toBe(
      'delegation_ceiling',
    );
    for (const change of [{ permissions: [] }, { level: 9 }]) {
      const res = await asManager.patch(`/api/v1/roles/${ops}/`, change);
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json()).toMatchObject({ code: 'delegation_ceiling', errors: [{ field: 'role' }] });
    }
    expect((await asManager.delete(`/api/v1/roles/${ops}/`)).json().code).toBe('delegation_ceiling');
    const kept = (await root.get(`/api/v1/roles/${ops}/`)).json();
    expect(kept).toMatchObject({ level: 5, permissions: ['users.view'] });
    // Held by no one more powerful, the same role is the manager's to change and delete.
    const { id: other, code: otherCode } = await seedOrgRole('Other', 5, ['users.view']);
    await grantRole(t, await seedUser(t, orgA.id), otherCode);
    expect((await asManager.patch(`/api/v1/roles/${other}/`, { permissions: [] })).statusCode).toBe(200);
    expect((await asManager.delete(`/api/v1/roles/${other}/`)).statusCode).toBe(204);
  });

  it('assigns no role to a user of a deactivated organization (409), and removes one all the same', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    expect((await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' })).statusCode).toBe(201);
    expect((await root.post(`/api/v1/organizations/${org.code}/deactivate/`, {})).statusCode).toBe(200);
    const refused = await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'org_admin' });
    expect(refused.statusCode, refused.body).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'organization_inactive', errors: [{ field: 'organization' }] });
    const held = (await root.get(`/api/v1/users/${user.id}/roles/`)).json();
    expect(JSON.stringify(held)).not.toContain('org_admin');
    expect((await root.delete(`/api/v1/users/${user.id}/roles/viewer/`)).statusCode).toBe(204);
  });

  it('shows a superuser every active permission', async () => {
    const { create } = await seedCatalog();
    const mine = (await root.get('/api/v1/users/profile/permissions/')).json();
    expect(mine.is_superuser).toBe(true);
    expect(mine.permissions).toEqual(expect.arrayContaining(['users.view', create]));
  });
});

describe('POST /api/v1/authorize/', () => {
  it('answers allowed with the granting role, or what is missing', async () => {
    const { mod, create, view } = await seedCatalog();
    const roleCode = unique('eng');
    await root.post('/api/v1/roles/', { code: roleCode, name: 'Eng', level: 4, permissions: [view], modules: [mod] });
    const user = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: roleCode });

    const allowed = await root.post('/api/v1/authorize/', { user_id: user.id, permission: view });
    expect(allowed.json()).toEqual({ allowed: true, reason: `Role "${roleCode}" grants permission "${view}".` });
    expect((await root.post('/api/v1/authorize/', { user_id: user.id, module: mod })).json().allowed).toBe(true);
    const refused = (await root.post('/api/v1/authorize/', { user_id: user.id, permission: create })).json();
    expect(refused).toEqual({ allowed: false, reason: `No role of the user grants permission "${create}".` });
    expect(
      (await root.post('/api/v1/authorize/', { user_id: user.id, permission: create, module: mod })).json().allowed,
    ).toBe(false);
    expect(
      (await root.post('/api/v1/authorize/', { user_id: user.id, permission: view, module: mod })).json().allowed,
    ).toBe(true);
  });

  it('says when the permission or module does not exist, or its module is inactive', async () => {
    const { mod, view } = await seedCatalog();
    const roleCode = unique('eng');
    await root.post('/api/v1/roles/', { code: roleCode, name: 'Eng', level: 4, permissions: [view], modules: [mod] });
    const user = await seedUser(t, orgA.id);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: roleCode });
    const ask = async (need: Record<string, string>) =>
      (await root.post('/api/v1/authorize/', { user_id: user.id, ...need })).json();
    expect(await ask({ permission: 'no.such_permission' })).toEqual({
      allowed: false,
      reason: 'There is no permission "no.such_permission".',
    });
    expect(await ask({ module: 'NO_SUCH_MODULE' })).toEqual({
      allowed: false,
      reason: 'There is no module "NO_SUCH_MODULE".',
    });
    expect((await root.patch(`/api/v1/modules/${mod}/`, { is_active: false })).statusCode).toBe(200);
    expect(await ask({ permission: view })).toEqual({
      allowed: false,
      reason: `The module "${mod}" of permission "${view}" is inactive: it grants nothing.`,
    });
    expect(await ask({ module: mod })).toEqual({
      allowed: false,
      reason: `The module "${mod}" is inactive: it grants nothing.`,
    });
  });

  it('says no for an account that is not active', async () => {
    const user = await seedUser(t, orgA.id, { status: 'suspended' });
    await grantRole(t, user, 'viewer');
    expect((await root.post('/api/v1/authorize/', { user_id: user.id, permission: 'users.view' })).json()).toEqual({
      allowed: false,
      reason: 'The account is suspended.',
    });
  });

  it("says no, naming the organization, while the user's organization is deactivated", async () => {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const superuser = await seedUser(t, org.id, { isSuperuser: true });
    const platformKey = await root.post('/api/v1/api-keys/', { name: 'k', organization: null, scopes: ['authorize'] });
    expect(platformKey.statusCode, platformKey.body).toBe(201);
    const byKey = (userId: string) =>
      t.request({
        method: 'POST',
        url: '/api/v1/authorize/',
        headers: { 'x-api-key': platformKey.json().key },
        payload: { user_id: userId, permission: 'users.view' },
      });
    // Answered once before, so the user's access is cached when the organization is switched off.
    expect((await byKey(admin.user.id)).json().allowed).toBe(true);
    expect((await admin.get('/api/v1/users/profile/permissions/')).statusCode).toBe(200);

    expect((await root.post(`/api/v1/organizations/${org.code}/deactivate/`)).statusCode).toBe(200);
    const refused = { allowed: false, reason: `The organization "${org.code}" is deactivated.` };
    for (const userId of [admin.user.id, superuser.id]) {
      expect((await byKey(userId)).json()).toEqual(refused);
      const byRoot = await root.post('/api/v1/authorize/', { user_id: userId, permission: 'users.view' });
      expect(byRoot.json()).toEqual(refused);
    }
    // Their own listing is out of reach with their sessions.
    expect((await admin.get('/api/v1/users/profile/permissions/')).statusCode).toBe(401);

    expect((await root.patch(`/api/v1/organizations/${org.code}/`, { is_active: true })).statusCode).toBe(200);
    expect((await byKey(admin.user.id)).json()).toEqual({
      allowed: true,
      reason: 'Role "org_admin" grants permission "users.view".',
    });
    expect((await byKey(superuser.id)).json()).toEqual({ allowed: true, reason: 'The user is a superuser.' });
  });

  it('refuses bad requests and callers without the right', async () => {
    const user = await seedUser(t, orgA.id);
    expect((await root.post('/api/v1/authorize/', { user_id: user.id })).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'permission' }],
    });
    expect((await root.post('/api/v1/authorize/', { user_id: 'x', permission: 'a.b' })).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'user_id' }],
    });
    expect(
      (await root.post('/api/v1/authorize/', { user_id: crypto.randomUUID(), permission: 'a.b' })).statusCode,
    ).toBe(404);
    expect((await adminA.post('/api/v1/authorize/', { user_id: user.id, permission: 'a.b' })).statusCode).toBe(403);
    expect(
      (await t.request({ method: 'POST', url: '/api/v1/authorize/', payload: { user_id: user.id } })).statusCode,
    ).toBe(401);
  });
});

describe('PATCH of modules, permissions and roles', () => {
  /** The audit events recorded about one object, oldest first. */
  async function auditOf(objectId: string) {
    return queryRows<{ activity_type: string; details: Record<string, unknown> }>(
      t.database.db,
      sql`select activity_type, details from activities where object_id = ${objectId} order by id`,
    );
  }

  async function seedObjects() {
    const { mod, view } = await seedCatalog();
    const role = await root.post('/api/v1/roles/', { code: unique('r'), name: 'R', level: 5, permissions: [view] });
    expect(role.statusCode).toBe(201);
    return [`/api/v1/modules/${mod}`, `/api/v1/permissions/${view}`, `/api/v1/roles/${role.json().id}`];
  }

  it('answers 400 naming code, which cannot be changed, and changes nothing', async () => {
    for (const url of await seedObjects()) {
      const before = (await root.get(url)).json();
      const res = await root.patch(url, { code: 'PFD', name: 'Renamed' });
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'code' }] });
      expect(res.json().errors[0].message).toMatch(/cannot be changed/);
      expect((await root.get(url)).json()).toEqual(before);
    }
  });

  it('answers a body with nothing it can change with the object as it is: no write, no audit event', async () => {
    for (const url of await seedObjects()) {
      const before = (await root.get(url)).json();
      const events = await auditOf(before.id);
      const res = await root.patch(url, { id: before.id, created_at: before.created_at });
      expect(res.statusCode, url).toBe(200);
      expect(res.json()).toEqual(before);
      expect((await root.get(url)).json().updated_at).toBe(before.updated_at);
      expect(await auditOf(before.id)).toEqual(events);
    }
  });

  it('records each changed field with its value before and after, as user updates do', async () => {
    const [moduleUrl, permissionUrl, roleUrl] = await seedObjects();
    const cases: [string | undefined, string, Record<string, unknown>][] = [
      [moduleUrl, 'module', { name: 'Module renamed', description: 'about', order: 9 }],
      [permissionUrl, 'permission', { action: 'list', name: 'Permission renamed' }],
      [roleUrl, 'role', { name: 'Role renamed', description: 'about', level: 6 }],
    ];
    for (const [url, objectType, body] of cases) {
      const before = (await root.get(url as string)).json();
      const res = await root.patch(url as string, body);
      expect(res.statusCode, res.body).toBe(200);
      // Newest first: the event of this change.
      const stream = await root.get(`/api/v1/activity-streams/?object_type=${objectType}&object_id=${before.id}`);
      const [event] = stream.json().results as { details: Record<string, unknown> }[];
      expect(event?.details.changes, url).toEqual(
        Object.entries(body).map(([field, to]) => ({ field, from: before[field], to })),
      );
    }
  });

  it('answers 400 naming an unknown field beside a change, and changes nothing', async () => {
    for (const url of await seedObjects()) {
      const before = (await root.get(url)).json();
      const events = await auditOf(before.id);
      const res = await root.patch(url, { name: 'Renamed', bogus_field: 1 });
      expect(res.statusCode, url).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'bogus_field' }] });
      expect((await root.get(url)).json()).toEqual(before);
      expect(await auditOf(before.id)).toEqual(events);
    }
  });
});
