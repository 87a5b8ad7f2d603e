import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/platform/db/client.js';
import { type Client, seedOrganization, seedUser, superuserClient } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

// A field a write body does not take (a misspelling, or something the route has no notion of, such
// as an assignment's expiry) is refused by name: dropped in silence, the write answered success for
// a change not made.
describe('unknown fields in organization and access-control write bodies', () => {
  let t: TestApp;
  let root: Client;
  const seeded = { org: '', module: '', permission: '', roleId: '', userTypeId: '', userId: '' };

  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
    const org = await seedOrganization(t);
    seeded.org = org.code;
    seeded.module = unique('UF').toUpperCase();
    expect((await root.post('/api/v1/modules/', { code: seeded.module, name: 'Unknown fields' })).statusCode).toBe(201);
    seeded.permission = `${seeded.module.toLowerCase()}.view`;
    const permission = await root.post('/api/v1/permissions/', {
      code: seeded.permission,
      module: seeded.module,
      action: 'view',
      name: 'View',
    });
    expect(permission.statusCode, permission.body).toBe(201);
    const role = await root.post('/api/v1/roles/', {
      code: unique('uf_').replace(/-/g, '_'),
      name: 'Unknown fields',
      level: 5,
      organization: org.code,
    });
    expect(role.statusCode, role.body).toBe(201);
    seeded.roleId = role.json().id;
    const typeCode = unique('uf').replace(/-/g, '');
    const type = await root.post('/api/v1/user-types/', { code: typeCode, plural: `${typeCode}s`, label: 'UF' });
    expect(type.statusCode, type.body).toBe(201);
    seeded.userTypeId = type.json().id;
    seeded.userId = (await seedUser(t, org.id)).id;
  });
  afterAll(() => t.close());

  /** Rows of the tables these writes touch, and the audit trail: equal before and after a refused write. */
  async function snapshot() {
    const [counts] = await queryRows<Record<string, number>>(
      t.database.db,
      sql`select (select count(*) from organizations)::int as organizations,
        (select count(*) from modules)::int as modules,
        (select count(*) from permissions)::int as permissions,
        (select count(*) from roles)::int as roles,
        (select count(*) from role_permissions)::int as role_permissions,
        (select count(*) from user_roles)::int as user_roles,
        (select count(*) from user_types)::int as user_types,
        (select count(*) from api_keys)::int as api_keys,
        (select count(*) from activities where kind = 'event')::int as events`,
    );
    const reads = await Promise.all(
      [
        `/api/v1/organizations/${seeded.org}/`,
        `/api/v1/modules/${seeded.module}/`,
        `/api/v1/permissions/${seeded.permission}/`,
        `/api/v1/roles/${seeded.roleId}/`,
        `/api/v1/user-types/${seeded.userTypeId}/`,
        `/api/v1/users/${seeded.userId}/roles/`,
      ].map(async (url) => (await root.get(url)).json()),
    );
    return { counts, reads };
  }

  const writes = (): { method: 'POST' | 'PATCH'; url: string; body: Record<string, unknown>; field: string }[] => [
    { method: 'PATCH', url: `/api/v1/organizations/${seeded.org}/`, body: { is_actve: false }, field: 'is_actve' },
    {
      method: 'POST',
      url: '/api/v1/organizations/',
      body: { code: unique('uf-org'), name: 'Org', extra: 1 },
      field: 'extra',
    },
    { method: 'PATCH', url: `/api/v1/modules/${seeded.module}/`, body: { is_actve: false }, field: 'is_actve' },
    {
      method: 'POST',
      url: '/api/v1/modules/',
      body: { code: unique('UFM').toUpperCase(), name: 'M', ordr: 2 },
      field: 'ordr',
    },
    {
      method: 'PATCH',
      url: `/api/v1/permissions/${seeded.permission}/`,
      body: { name: 'Renamed', descripton: 'x' },
      field: 'descripton',
    },
    {
      method: 'POST',
      url: '/api/v1/permissions/',
      body: {
        code: `${seeded.module.toLowerCase()}.edit`,
        module: seeded.module,
        action: 'edit',
        name: 'E',
        scope: 'x',
      },
      field: 'scope',
    },
    {
      method: 'PATCH',
      url: `/api/v1/roles/${seeded.roleId}/`,
      body: { permisions: [seeded.permission] },
      field: 'permisions',
    },
    {
      method: 'POST',
      url: '/api/v1/roles/',
      body: { code: unique('uf_').replace(/-/g, '_'), name: 'R', level: 5, permisions: [seeded.permission] },
      field: 'permisions',
    },
    { method: 'PATCH', url: `/api/v1/user-types/${seeded.userTypeId}/`, body: { name: 'x' }, field: 'name' },
    {
      method: 'POST',
      url: '/api/v1/user-types/',
      body: { code: unique('uft').replace(/-/g, ''), plural: unique('ufts').replace(/-/g, ''), label: 'T', name: 'x' },
      field: 'name',
    },
    {
      method: 'POST',
      url: `/api/v1/users/${seeded.userId}/roles/`,
      body: { role: 'viewer', expires_at: '2030-01-01T00:00:00Z' },
      field: 'expires_at',
    },
    {
      method: 'POST',
      url: '/api/v1/api-keys/',
      body: { name: 'uf', organization: seeded.org, scopes: ['provisioning'], expires_in: 3600 },
      field: 'expires_in',
    },
  ];

  it('answers 400 naming the field and changes nothing', async () => {
    for (const { method, url, body, field } of writes()) {
      const before = await snapshot();
      const res = await t.request({
        method,
        url,
        headers: { authorization: `Bearer ${root.token}` },
        payload: body,
      });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(400);
      expect(res.json(), `${method} ${url}`).toMatchObject({
        code: 'validation_failed',
        errors: [{ field, message: 'This field is not allowed.' }],
      });
      expect(await snapshot(), `${method} ${url}`).toEqual(before);
    }
  });
});
