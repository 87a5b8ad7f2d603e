import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/platform/db/client.js';
import { type Client, clientWithRole, seedOrganization, superuserClient } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

// Every answer shows `organization_id` beside `organization`, so clients send it back. A create
// body names its organization by code only; an `organization_id` there is refused, never ignored
// (ignored, it put the object in the caller's organization or made it global).
describe('organization_id in a write body', () => {
  let t: TestApp;
  let root: Client;
  let plural: string;

  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
    plural = unique('pupils').replace(/-/g, '');
    const type = await root.post('/api/v1/user-types/', { code: plural, plural, label: 'Pupils' });
    expect(type.statusCode, type.body).toBe(201);
  });
  afterAll(() => t.close());

  const creates = () => [
    {
      what: 'users',
      url: '/api/v1/users/',
      body: { email: `${unique('oid')}@example.com`, password: 'a long enough password' },
    },
    { what: 'typed users', url: `/api/v1/users/${plural}/`, body: { email: `${unique('oid')}@example.com` } },
    {
      what: 'roles',
      url: '/api/v1/roles/',
      body: { code: unique('oidrole_').replace(/-/g, '_'), name: 'r', level: 5, permissions: [], modules: [] },
    },
    {
      what: 'user types',
      url: '/api/v1/user-types/',
      body: { code: unique('oidtype').replace(/-/g, ''), plural: unique('oidtypes').replace(/-/g, ''), label: 't' },
    },
    { what: 'API keys', url: '/api/v1/api-keys/', body: { name: 'oid', scopes: ['provisioning'] } },
    {
      what: 'integrations',
      url: '/api/v1/integrations/',
      body: { name: unique('oid '), service_type: 'crm', auth_type: 'none', base_url: 'https://crm.example/api' },
    },
  ];

  async function countIn(organizationId: string) {
    const id = organizationId;
    const [row] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select ((select count(*) from users where organization_id = ${id})
        + (select count(*) from roles where organization_id = ${id})
        + (select count(*) from user_types where organization_id = ${id})
        + (select count(*) from api_keys where organization_id = ${id})
        + (select count(*) from integrations where organization_id = ${id}))::int as n`,
    );
    return row?.n;
  }

  for (const { what } of creates()) {
    it(`refuses it on creating ${what}, naming organization_id, and creates nothing`, async () => {
      const create = creates().find((c) => c.what === what);
      if (!create) throw new Error(what);
      const url = create.url;
      const other = await seedOrganization(t);
      const before = await countIn(root.user.organizationId);
      const res = await root.post(url, { ...create.body, organization_id: other.id });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'organization_id' }] });
      expect(res.json().errors[0].message).toMatch(/`organization`/);
      expect(await countIn(other.id)).toBe(0);
      expect(await countIn(root.user.organizationId)).toBe(before);

      // Beside an `organization` that agrees it is refused the same: one way to name it, no precedence.
      const both = await root.post(url, { ...create.body, organization: other.code, organization_id: other.id });
      expect(both.statusCode, both.body).toBe(400);
      expect(both.json()).toMatchObject({ errors: [{ field: 'organization_id' }] });
      // null (a global role or type, a platform-wide key) is no exception.
      const nil = await root.post(url, { ...create.body, organization_id: null });
      expect(nil.json()).toMatchObject({ status: 400, errors: [{ field: 'organization_id' }] });
      expect(await countIn(other.id)).toBe(0);

      // Named by code, the same body lands in that organization.
      const byCode = await root.post(url, { ...create.body, organization: other.code });
      expect(byCode.statusCode, byCode.body).toBe(201);
      expect(byCode.json()).toMatchObject({ organization: other.code, organization_id: other.id });
    });
  }

  it('refuses it from an organization administrator too, before anything else is looked at', async () => {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    for (const { url, body } of creates()) {
      const res = await admin.post(url, { ...body, organization_id: org.id });
      expect(res.json(), url).toMatchObject({ status: 400, errors: [{ field: 'organization_id' }] });
    }
    expect(await countIn(org.id)).toBe(1); // the administrator
  });

  it('refuses another organization_id on partial updates and ignores the same one sent back', async () => {
    const other = await seedOrganization(t);
    const made = {
      role: await root.post('/api/v1/roles/', {
        ...creates()[2]?.body,
        organization: other.code,
      }),
      type: await root.post('/api/v1/user-types/', { ...creates()[3]?.body, organization: other.code }),
      integration: await root.post('/api/v1/integrations/', { ...creates()[5]?.body, organization: other.code }),
      user: await root.post('/api/v1/users/', { ...creates()[0]?.body, organization: other.code }),
      typed: await root.post(`/api/v1/users/${plural}/`, { ...creates()[1]?.body, organization: other.code }),
    };
    const urls = {
      role: '/api/v1/roles/',
      type: '/api/v1/user-types/',
      integration: '/api/v1/integrations/',
      user: '/api/v1/users/',
      typed: `/api/v1/users/${plural}/`,
    };
    for (const [name, res] of Object.entries(made)) {
      expect(res.statusCode, res.body).toBe(201);
      const url = `${urls[name as keyof typeof urls]}${res.json().id}/`;
      const moved = await root.patch(url, { organization_id: root.user.organizationId });
      expect(moved.json(), url).toMatchObject({ status: 400, errors: [{ field: 'organization_id' }] });
      const kept = await root.patch(url, { organization_id: other.id });
      expect(kept.statusCode, url).toBe(200);
      expect(kept.json()).toMatchObject({ organization_id: other.id });
    }
  });
});
