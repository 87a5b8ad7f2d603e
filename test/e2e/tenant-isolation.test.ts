import { eq } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sessions } from '../../src/modules/auth/auth.table.js';
import { integrations } from '../../src/modules/integrations/integrations.table.js';
import type { Organization } from '../../src/modules/organizations/organizations.table.js';
import { userTypes } from '../../src/modules/user-types/user-types.table.js';
import {
  type Client,
  clientWithRole,
  grantRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
} from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

/**
 * The object-level rule of every permission-guarded admin route: superusers reach every
 * organization; everyone else only their own, where another organization's objects answer 404 as
 * if absent and lists (also when filtered by another organization) show none of them.
 */

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
/** list: a page of objects; read: one object; write: a change to one; create: a new object in the named organization. */
type Kind = 'list' | 'read' | 'write' | 'create';

interface Target {
  url: string;
  body?: unknown;
  /** The object a list must (own organization) or must not (another organization) show. */
  id?: string;
  /** The list narrowed to that organization (or the object's owner): empty for another organization. */
  only?: string;
}

interface Case {
  method: Method;
  /** The route as registered (what `app.accessRules` records). */
  route: string;
  kind: Kind;
  /** Status of success. */
  ok: number;
  /** A fresh request aimed at an object of `org`, seeding what it needs. */
  target(org: Organization): Promise<Target>;
  /** When an organization admin may not do this even in their own organization. */
  adminOwn?: number;
}

/** What the built-in `viewer` role holds (migration 0009). */
const VIEWER_PERMISSIONS = new Set([
  'organizations.view',
  'users.view',
  'roles.view',
  'activities.view',
  'integrations.view',
]);

/**
 * Permission-guarded routes whose object-level rules are tested elsewhere, by path prefix, with the
 * file that covers them. Anything else guarded by a permission must have a row in the table below.
 */
const COVERED_ELSEWHERE: { prefix: string; file: string }[] = [
  { prefix: '/api/v1/modules', file: 'src/modules/rbac/*.test.ts' },
  { prefix: '/api/v1/permissions', file: 'src/modules/rbac/*.test.ts' },
  { prefix: '/api/v1/roles', file: 'src/modules/rbac/*.test.ts' },
  { prefix: '/api/v1/users/:id/roles', file: 'src/modules/rbac/*.test.ts' },
  { prefix: '/api/v1/authorize', file: 'src/modules/rbac/*.test.ts' },
  { prefix: '/api/v1/api-keys', file: 'src/modules/api-keys/*.test.ts' },
  { prefix: '/api/v1/activities', file: 'src/modules/activity/activity.test.ts' },
  { prefix: '/api/v1/activity-streams', file: 'src/modules/activity/activity.test.ts' },
  { prefix: '/api/v1/activity-stats', file: 'src/modules/activity/activity.test.ts' },
  { prefix: '/api/v1/integrations/:id/sync', file: 'src/modules/downstream-sync/downstream-sync.test.ts' },
];

const PUPIL = { code: 'pupil', plural: 'pupils' };

describe('tenant isolation of the admin API', () => {
  let t: TestApp;
  let orgA: Organization;
  let orgB: Organization;
  let superuser: Client;
  let adminA: Client;
  let viewerA: Client;
  let nobodyA: Client;

  beforeAll(async () => {
    t = await startTestApp();
    orgA = await seedOrganization(t);
    orgB = await seedOrganization(t);
    superuser = await superuserClient(t);
    adminA = await clientWithRole(t, orgA.id, 'org_admin');
    viewerA = await clientWithRole(t, orgA.id, 'viewer');
    nobodyA = await loginAs(t, await seedUser(t, orgA.id));
    // A global type, so typed users exist in every organization.
    await t.database.db
      .insert(userTypes)
      .values({ organizationId: null, code: PUPIL.code, plural: PUPIL.plural, label: 'Pupil' });
  });
  afterAll(() => t.close());

  const user = (org: Organization, overrides: Parameters<typeof seedUser>[2] = {}) => seedUser(t, org.id, overrides);
  const pupil = (org: Organization) => user(org, { userType: PUPIL.code });
  async function userType(org: Organization) {
    const code = unique('ut');
    const [row] = await t.database.db
      .insert(userTypes)
      .values({ organizationId: org.id, code, plural: `${code}s`, label: code })
      .returning();
    return row as typeof userTypes.$inferSelect;
  }
  /** An OAuth2 integration with explicit endpoints; its base URL is a closed local port, so checks fail fast. */
  async function integration(org: Organization) {
    const [row] = await t.database.db
      .insert(integrations)
      .values({
        organizationId: org.id,
        name: unique('integration '),
        serviceType: 'other',
        authType: 'oauth2',
        baseUrl: 'http://127.0.0.1:9/',
        timeoutMs: 1000,
        oauth2: {
          authorization_url: 'https://auth.example/authorize',
          token_url: 'https://auth.example/token',
          client_id: 'gatehouse',
        },
      })
      .returning();
    return row as typeof integrations.$inferSelect;
  }
  async function session(org: Organization) {
    const owner = await user(org);
    await loginAs(t, owner);
    const [row] = await t.database.db.select().from(sessions).where(eq(sessions.userId, owner.id));
    return row as typeof sessions.$inferSelect;
  }

  const cases: Case[] = [
    // --- users
    {
      method: 'GET',
      route: '/api/v1/users',
      kind: 'list',
      ok: 200,
      target: async (org) => ({
        url: '/api/v1/users',
        id: (await user(org)).id,
        only: `/api/v1/users?organization=${org.code}`,
      }),
    },
    {
      method: 'POST',
      route: '/api/v1/users',
      kind: 'create',
      ok: 201,
      target: async (org) => ({
        url: '/api/v1/users',
        body: { email: `${unique('new')}@example.com`, organization: org.code },
      }),
    },
    {
      method: 'GET',
      route: '/api/v1/users/:id',
      kind: 'read',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}` }),
    },
    {
      method: 'PATCH',
      route: '/api/v1/users/:id',
      kind: 'write',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}`, body: { first_name: 'Changed' } }),
    },
    {
      method: 'POST',
      route: '/api/v1/users/:id/deactivate',
      kind: 'write',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}/deactivate` }),
    },
    {
      method: 'DELETE',
      route: '/api/v1/users/:id',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}` }),
    },
    // --- lockout, MFA, invitations
    {
      method: 'GET',
      route: '/api/v1/users/:id/lockout',
      kind: 'read',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}/lockout` }),
    },
    {
      method: 'POST',
      route: '/api/v1/users/:id/unlock',
      kind: 'write',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org, { status: 'locked' })).id}/unlock` }),
    },
    {
      method: 'POST',
      route: '/api/v1/users/:id/mfa/reset',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org)).id}/mfa/reset` }),
    },
    {
      method: 'POST',
      route: '/api/v1/users/:id/invite',
      kind: 'write',
      ok: 202,
      target: async (org) => ({ url: `/api/v1/users/${(await user(org, { passwordHash: null })).id}/invite` }),
    },
    // --- sessions
    {
      method: 'GET',
      route: '/api/v1/user-sessions',
      kind: 'list',
      ok: 200,
      target: async (org) => {
        const row = await session(org);
        return { url: '/api/v1/user-sessions', id: row.id, only: `/api/v1/user-sessions?user=${row.userId}` };
      },
    },
    {
      method: 'DELETE',
      route: '/api/v1/user-sessions/:id',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/user-sessions/${(await session(org)).id}` }),
    },
    // --- organizations
    {
      method: 'GET',
      route: '/api/v1/organizations',
      kind: 'list',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/organizations?search=${org.code}`, id: org.id }),
    },
    {
      method: 'POST',
      route: '/api/v1/organizations',
      kind: 'create',
      ok: 201,
      adminOwn: 403,
      target: async () => ({ url: '/api/v1/organizations', body: { code: unique('org-'), name: 'New' } }),
    },
    {
      method: 'GET',
      route: '/api/v1/organizations/:ref',
      kind: 'read',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/organizations/${org.code}` }),
    },
    {
      method: 'PATCH',
      route: '/api/v1/organizations/:ref',
      kind: 'write',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/organizations/${org.id}`, body: { description: 'Changed' } }),
    },
    {
      method: 'POST',
      route: '/api/v1/organizations/:ref/deactivate',
      kind: 'write',
      ok: 200,
      adminOwn: 403,
      target: async (org) => ({ url: `/api/v1/organizations/${org.code}/deactivate` }),
    },
    {
      method: 'DELETE',
      route: '/api/v1/organizations/:ref',
      kind: 'write',
      ok: 204,
      adminOwn: 403,
      target: async (org) => ({ url: `/api/v1/organizations/${org.code}` }),
    },
    // --- user types
    {
      method: 'GET',
      route: '/api/v1/user-types',
      kind: 'list',
      ok: 200,
      target: async (org) => ({
        url: '/api/v1/user-types',
        id: (await userType(org)).id,
        only: `/api/v1/user-types?organization=${org.code}`,
      }),
    },
    {
      method: 'POST',
      route: '/api/v1/user-types',
      kind: 'create',
      ok: 201,
      target: async (org) => {
        const code = unique('ut');
        return { url: '/api/v1/user-types', body: { code, plural: `${code}s`, label: code, organization: org.code } };
      },
    },
    {
      method: 'GET',
      route: '/api/v1/user-types/:id',
      kind: 'read',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/user-types/${(await userType(org)).id}` }),
    },
    {
      method: 'PATCH',
      route: '/api/v1/user-types/:id',
      kind: 'write',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/user-types/${(await userType(org)).id}`, body: { label: 'Changed' } }),
    },
    {
      method: 'DELETE',
      route: '/api/v1/user-types/:id',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/user-types/${(await userType(org)).id}` }),
    },
    // --- users of a type
    {
      method: 'GET',
      route: '/api/v1/users/:plural',
      kind: 'list',
      ok: 200,
      target: async (org) => ({
        url: `/api/v1/users/${PUPIL.plural}`,
        id: (await pupil(org)).id,
        only: `/api/v1/users/${PUPIL.plural}?organization=${org.code}`,
      }),
    },
    {
      method: 'POST',
      route: '/api/v1/users/:plural',
      kind: 'create',
      ok: 201,
      target: async (org) => ({
        url: `/api/v1/users/${PUPIL.plural}`,
        body: { email: `${unique('pupil')}@example.com`, organization: org.code },
      }),
    },
    {
      method: 'GET',
      route: '/api/v1/users/:plural/:id',
      kind: 'read',
      ok: 200,
      target: async (org) => ({ url: `/api/v1/users/${PUPIL.plural}/${(await pupil(org)).id}` }),
    },
    {
      method: 'PATCH',
      route: '/api/v1/users/:plural/:id',
      kind: 'write',
      ok: 200,
      target: async (org) => ({
        url: `/api/v1/users/${PUPIL.plural}/${(await pupil(org)).id}`,
        body: { first_name: 'Changed' },
      }),
    },
    {
      method: 'DELETE',
      route: '/api/v1/users/:plural/:id',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/users/${PUPIL.plural}/${(await pupil(org)).id}` }),
    },
    // --- integrations
    {
      method: 'GET',
      route: '/api/v1/integrations',
      kind: 'list',
      ok: 200,
      target: async (org) => ({
        url: '/api/v1/integrations',
        id: (await integration(org)).id,
        only: `/api/v1/integrations?organization=${org.code}`,
      }),
    },
    {
      method: 'POST',
      route: '/api/v1/integrations',
      kind: 'create',
      ok: 201,
      target: async (org) => ({
        url: '/api/v1/integrations',
        body: {
          name: unique('new '),
          service_type: 'other',
          auth_type: 'none',
          base_url: 'https://service.example',
          organization: org.code,
        },
      }),
    },
    ...(['', '/health-checks', '/logs'] as const).map(
      (suffix): Case => ({
        method: 'GET',
        route: `/api/v1/integrations/:id${suffix}`,
        kind: 'read',
        ok: 200,
        target: async (org) => ({ url: `/api/v1/integrations/${(await integration(org)).id}${suffix}` }),
      }),
    ),
    {
      method: 'PATCH',
      route: '/api/v1/integrations/:id',
      kind: 'write',
      ok: 200,
      target: async (org) => ({
        url: `/api/v1/integrations/${(await integration(org)).id}`,
        body: { description: 'Changed', credentials: { client_secret: 'changed' } },
      }),
    },
    ...(['activate', 'deactivate', 'health-check', 'oauth2/authorize'] as const).map(
      (action): Case => ({
        method: 'POST',
        route: `/api/v1/integrations/:id/${action}`,
        kind: 'write',
        ok: 200,
        target: async (org) => ({ url: `/api/v1/integrations/${(await integration(org)).id}/${action}`, body: {} }),
      }),
    ),
    {
      method: 'DELETE',
      route: '/api/v1/integrations/:id',
      kind: 'write',
      ok: 204,
      target: async (org) => ({ url: `/api/v1/integrations/${(await integration(org)).id}` }),
    },
  ];

  function permissionOf(c: Case): string {
    const rule = t.app.accessRules.find((r) => r.method === c.method && r.url === c.route)?.rule;
    if (typeof rule !== 'object' || !('permission' in rule)) throw new Error(`${c.method} ${c.route} is not guarded`);
    return rule.permission;
  }

  function send(client: Client, c: Case, target: Target): Promise<LightMyRequestResponse> {
    switch (c.method) {
      case 'GET':
        return client.get(target.url);
      case 'DELETE':
        return client.delete(target.url);
      case 'POST':
        return client.post(target.url, target.body);
      case 'PATCH':
        return client.patch(target.url, target.body);
    }
  }

  /** A path with its parameters unnamed, so `/users/:userId/roles` matches `/users/:id/roles`. */
  function shapeOf(path: string): string {
    return path.replace(/:\w+/g, ':');
  }

  function ids(res: LightMyRequestResponse): string[] {
    return (res.json() as { results: { id: string }[] }).results.map((r) => r.id);
  }

  async function expectReaches(client: Client, c: Case, org: Organization, status: number) {
    const target = await c.target(org);
    const res = await send(client, c, target);
    expect(res.statusCode, `${c.method} ${target.url}: ${res.body}`).toBe(status);
    if (c.kind === 'list' && status === 200) {
      expect(ids(res)).toContain(target.id);
      if (target.only) expect(ids(await client.get(target.only))).toContain(target.id);
    }
  }

  /** Another organization's objects: 404 for one, absent from every list; creates there answer 403. */
  async function expectBlind(client: Client, c: Case, org: Organization) {
    const target = await c.target(org);
    const res = await send(client, c, target);
    if (c.kind === 'list') {
      expect(res.statusCode, res.body).toBe(200);
      expect(ids(res)).not.toContain(target.id);
      if (target.only) {
        const narrowed = await client.get(target.only);
        expect(narrowed.statusCode).toBe(200);
        expect(ids(narrowed)).toEqual([]);
      }
    } else if (c.kind === 'create') {
      expect(res.statusCode, res.body).toBe(403);
    } else {
      expect(res.statusCode, `${c.method} ${target.url}: ${res.body}`).toBe(404);
    }
  }

  it('every permission-guarded route is in the table below or covered by a named test file', () => {
    const tabled = new Set(cases.map((c) => `${c.method} ${c.route}`));
    const guarded = t.app.accessRules.filter((r) => typeof r.rule === 'object' && 'permission' in r.rule);
    const uncovered = guarded
      .map((r) => `${r.method} ${r.url}`)
      .filter((key) => !tabled.has(key))
      .filter(
        (key) => !COVERED_ELSEWHERE.some(({ prefix }) => shapeOf(key.split(' ')[1] ?? '').startsWith(shapeOf(prefix))),
      );
    expect(uncovered).toEqual([]);
    // And the table names only routes that exist, each once.
    const stale = [...tabled].filter((key) => !guarded.some((r) => `${r.method} ${r.url}` === key));
    expect(stale).toEqual([]);
    expect(tabled.size).toBe(cases.length);
  });

  describe.each(cases.map((c) => [`${c.method} ${c.route}`, c] as const))('%s', (_name, c) => {
    it("lets the organization admin reach their own organization's objects and nothing of another's", async () => {
      await expectReaches(adminA, c, orgA, c.adminOwn ?? c.ok);
      await expectBlind(adminA, c, orgB);
      await expectBlind(adminA, c, await seedOrganization(t));
    });

    it('lets the viewer read within their organization only, and write nothing', async () => {
      const held = VIEWER_PERMISSIONS.has(permissionOf(c));
      const reads = c.kind === 'list' || c.kind === 'read';
      if (held && reads) {
        await expectReaches(viewerA, c, orgA, c.ok);
        await expectBlind(viewerA, c, orgB);
      } else {
        expect((await send(viewerA, c, await c.target(orgA))).statusCode).toBe(403);
        expect((await send(viewerA, c, await c.target(orgB))).statusCode).toBe(403);
      }
    });

    it('lets a superuser reach every organization', async () => {
      // Fresh organizations: a superuser's deactivation or deletion must not disturb the others.
      await expectReaches(superuser, c, await seedOrganization(t), c.ok);
      await expectReaches(superuser, c, await seedOrganization(t), c.ok);
    });

    it('refuses a user without a role', async () => {
      const res = await send(nobodyA, c, await c.target(orgA));
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'permission_denied' });
    });
  });

  describe('organization admins and the delegation rule', () => {
    it('lists only their own organization', async () => {
      const res = await adminA.get('/api/v1/organizations');
      expect(ids(res)).toEqual([orgA.id]);
    });

    it('may not grant superuser status, on create or update', async () => {
      const created = await adminA.post('/api/v1/users', { email: `${unique('su')}@example.com`, is_superuser: true });
      expect(created.statusCode).toBe(403);
      expect(created.json()).toMatchObject({ code: 'superuser_protected' });
      const target = await user(orgA);
      const updated = await adminA.patch(`/api/v1/users/${target.id}`, { is_superuser: true });
      expect(updated.statusCode).toBe(403);
      expect(updated.json()).toMatchObject({ code: 'superuser_protected' });
      const current = await superuser.get(`/api/v1/users/${target.id}`);
      expect(current.json()).toMatchObject({ is_superuser: false });
    });

    it('may not create a user in another organization, whether it exists or not', async () => {
      for (const organization of [orgB.code, unique('nowhere-')]) {
        const res = await adminA.post('/api/v1/users', { email: `${unique('x')}@example.com`, organization });
        expect(res.statusCode).toBe(403);
        expect(res.json()).toMatchObject({ errors: [{ field: 'organization' }] });
      }
    });

    it('may not change a superuser of their own organization', async () => {
      const target = await user(orgA, { isSuperuser: true });
      const writes = [
        () => adminA.patch(`/api/v1/users/${target.id}`, { first_name: 'Changed' }),
        () => adminA.post(`/api/v1/users/${target.id}/deactivate`),
        () => adminA.post(`/api/v1/users/${target.id}/unlock`),
        () => adminA.post(`/api/v1/users/${target.id}/mfa/reset`),
        () => adminA.delete(`/api/v1/users/${target.id}`),
      ];
      for (const write of writes) {
        const res = await write();
        expect(res.statusCode).toBe(403);
        expect(res.json()).toMatchObject({ code: 'superuser_protected' });
      }
      // A read is not a change.
      expect((await adminA.get(`/api/v1/users/${target.id}`)).statusCode).toBe(200);
    });

    it("may not end a superuser's session", async () => {
      const target = await user(orgA, { isSuperuser: true });
      await loginAs(t, target);
      const [row] = await t.database.db.select().from(sessions).where(eq(sessions.userId, target.id));
      const res = await adminA.delete(`/api/v1/user-sessions/${row?.id}`);
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'superuser_protected' });
    });

    it('may not change someone holding a more powerful role', async () => {
      const target = await user(orgA);
      await grantRole(t, target, 'super_admin');
      const res = await adminA.patch(`/api/v1/users/${target.id}`, { first_name: 'Changed' });
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'delegation_ceiling' });
      const typed = await user(orgA, { userType: PUPIL.code });
      await grantRole(t, typed, 'super_admin');
      const typedRes = await adminA.delete(`/api/v1/users/${PUPIL.plural}/${typed.id}`);
      expect(typedRes.json()).toMatchObject({ code: 'delegation_ceiling' });
    });

    it('may change another organization admin of their organization (same level)', async () => {
      const peer = await user(orgA);
      await grantRole(t, peer, 'org_admin');
      const res = await adminA.patch(`/api/v1/users/${peer.id}`, { first_name: 'Peer' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ first_name: 'Peer' });
    });

    it('may rename their organization but not create one nor switch their own off', async () => {
      expect((await adminA.patch(`/api/v1/organizations/${orgA.code}`, { name: 'Renamed' })).json()).toMatchObject({
        name: 'Renamed',
      });
      for (const res of [
        await adminA.post('/api/v1/organizations', { code: unique('org-'), name: 'Mine' }),
        await adminA.post(`/api/v1/organizations/${orgA.code}/deactivate`),
        await adminA.patch(`/api/v1/organizations/${orgA.code}`, { is_active: false }),
        await adminA.delete(`/api/v1/organizations/${orgA.code}`),
      ]) {
        expect(res.statusCode).toBe(403);
        expect(res.json()).toMatchObject({ code: 'platform_object' });
      }
      expect((await adminA.get(`/api/v1/organizations/${orgA.code}`)).json()).toMatchObject({ is_active: true });
    });

    it('reads global user types but changes only their own organization’s', async () => {
      const [global] = await t.database.db.select().from(userTypes).where(eq(userTypes.code, PUPIL.code));
      expect((await adminA.get(`/api/v1/user-types/${global?.id}`)).statusCode).toBe(200);
      for (const res of [
        await adminA.patch(`/api/v1/user-types/${global?.id}`, { label: 'Mine' }),
        await adminA.delete(`/api/v1/user-types/${global?.id}`),
        await adminA.post('/api/v1/user-types', {
          code: 'globalish',
          plural: 'globalish',
          label: 'Global',
          organization: null,
        }),
      ]) {
        expect(res.statusCode).toBe(403);
        expect(res.json()).toMatchObject({ code: 'platform_object' });
      }
      const listed = await adminA.get('/api/v1/user-types');
      expect(ids(listed)).toContain(global?.id);
    });
  });
});
