import { Type } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
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
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import type { Organization } from '../organizations/organizations.table.js';

/**
 * What other services reach with API keys (authorize, one user by id), and routes guarded by a
 * module rather than a permission (two probe routes added beside the product's).
 */

let t: TestApp;
let root: Client;
let orgA: Organization;
let orgB: Organization;

const Ok = Type.Object({ ok: Type.Boolean() });

const probes: FastifyPluginAsync = async (app) => {
  app.get(
    '/probe/module',
    { config: { auth: { module: 'GATEHOUSE' } }, schema: { response: { 200: Ok } } },
    async () => ({
      ok: true,
    }),
  );
  app.get(
    '/probe/either',
    { config: { auth: { permission: 'users.view', scope: 'read:users' } }, schema: { response: { 200: Ok } } },
    async () => ({ ok: true }),
  );
};

beforeAll(async () => {
  t = await startTestApp({}, { plugins: [probes] });
  root = await superuserClient(t);
  orgA = await seedOrganization(t);
  orgB = await seedOrganization(t);
});
afterAll(() => t.close());

async function keyFor(organization: Organization | null, scopes: ('authorize' | 'read:users' | 'scim')[]) {
  const created = await createApiKey(t.database.db, OPERATOR, {
    name: 'svc',
    organization: organization?.code ?? null,
    scopes,
  });
  return { 'x-api-key': created.key };
}

describe('route rules', () => {
  it('lets a module rule through only holders of the module', async () => {
    const viewer = await clientWithRole(t, orgA.id, 'viewer');
    const plain = await loginAs(t, await seedUser(t, orgA.id));
    expect((await viewer.get('/probe/module')).statusCode).toBe(200);
    expect((await plain.get('/probe/module')).statusCode).toBe(403);
    expect((await root.get('/probe/module')).statusCode).toBe(200);
    expect(
      (await t.request({ method: 'GET', url: '/probe/module', headers: await keyFor(orgA, ['read:users']) }))
        .statusCode,
    ).toBe(403);
  });

  it('lets a permission-or-scope rule through a user with the permission or a key with the scope', async () => {
    const viewer = await clientWithRole(t, orgA.id, 'viewer');
    const plain = await loginAs(t, await seedUser(t, orgA.id));
    expect((await viewer.get('/probe/either')).statusCode).toBe(200);
    expect((await plain.get('/probe/either')).statusCode).toBe(403);
    const call = async (headers: Record<string, string>) =>
      (await t.request({ method: 'GET', url: '/probe/either', headers })).statusCode;
    expect(await call(await keyFor(orgA, ['read:users']))).toBe(200);
    expect(await call(await keyFor(orgA, ['scim']))).toBe(403);
  });
});

describe('POST /api/v1/authorize/ with an API key', () => {
  it('answers for users of the key’s organization only', async () => {
    const inA = await seedUser(t, orgA.id);
    const inB = await seedUser(t, orgB.id);
    await grantRole(t, inA, 'viewer');
    const headers = await keyFor(orgA, ['authorize']);
    const ask = (userId: string, body: object = { permission: 'users.view' }) =>
      t.request({ method: 'POST', url: '/api/v1/authorize/', headers, payload: { user_id: userId, ...body } });
    expect((await ask(inA.id)).json()).toEqual({
      allowed: true,
      reason: 'Role "viewer" grants permission "users.view".',
    });
    expect((await ask(inA.id, { permission: 'users.delete' })).json().allowed).toBe(false);
    expect((await ask(inA.id, { module: 'GATEHOUSE' })).json().allowed).toBe(true);
    expect((await ask(inB.id)).statusCode).toBe(404);

    const platform = await keyFor(null, ['authorize']);
    const viaPlatform = await t.request({
      method: 'POST',
      url: '/api/v1/authorize/',
      headers: platform,
      payload: { user_id: inB.id, permission: 'users.view' },
    });
    expect(viaPlatform.json()).toEqual({
      allowed: false,
      reason: 'No role of the user grants permission "users.view".',
    });

    const wrongScope = await keyFor(orgA, ['read:users']);
    expect(
      (
        await t.request({
          method: 'POST',
          url: '/api/v1/authorize/',
          headers: wrongScope,
          payload: { user_id: inA.id, permission: 'x.y' },
        })
      ).statusCode,
    ).toBe(403);
  });

  it('follows a grant change at once', async () => {
    const user = await seedUser(t, orgA.id);
    const headers = await keyFor(orgA, ['authorize']);
    const ask = async () =>
      (
        await t.request({
          method: 'POST',
          url: '/api/v1/authorize/',
          headers,
          payload: { user_id: user.id, permission: 'users.view' },
        })
      ).json().allowed;
    expect(await ask()).toBe(false);
    await root.post(`/api/v1/users/${user.id}/roles/`, { role: 'viewer' });
    expect(await ask()).toBe(true);
    await root.delete(`/api/v1/users/${user.id}/roles/viewer`);
    expect(await ask()).toBe(false);
  });
});

describe('GET /api/v1/users/user/{id}/ for other services', () => {
  it('shows an API key with read:users its organization’s users, and nothing else', async () => {
    const inA = await seedUser(t, orgA.id);
    const inB = await seedUser(t, orgB.id);
    const get = async (id: string, headers: Record<string, string>) =>
      t.request({ method: 'GET', url: `/api/v1/users/user/${id}/`, headers });
    const keyA = await keyFor(orgA, ['read:users']);
    const found = await get(inA.id, keyA);
    expect(found.statusCode).toBe(200);
    expect(found.json()).toMatchObject({ id: inA.id, email: inA.email, organization_id: orgA.id });
    expect(found.json()).not.toHaveProperty('password_hash');
    expect((await get(inB.id, keyA)).statusCode).toBe(404);
    expect((await get(inA.id, await keyFor(orgA, ['authorize']))).statusCode).toBe(403);
    expect((await get(inB.id, await keyFor(null, ['read:users']))).statusCode).toBe(200);
  });

  it('shows a signed-in user themself, and others of their organization only with users.view', async () => {
    const me = await seedUser(t, orgA.id);
    const colleague = await seedUser(t, orgA.id);
    const stranger = await seedUser(t, orgB.id);
    const client = await loginAs(t, me);
    expect((await client.get(`/api/v1/users/user/${me.id}/`)).statusCode).toBe(200);
    expect((await client.get(`/api/v1/users/user/${colleague.id}/`)).statusCode).toBe(404);
    await grantRole(t, me, 'viewer');
    expect((await client.get(`/api/v1/users/user/${colleague.id}/`)).statusCode).toBe(200);
    expect((await client.get(`/api/v1/users/user/${stranger.id}/`)).statusCode).toBe(404);
    expect((await root.get(`/api/v1/users/user/${stranger.id}/`)).statusCode).toBe(200);
  });
});

describe('an organization deleted', () => {
  it('takes its API keys out of service at once', async () => {
    const doomed = await seedOrganization(t);
    const headers = await keyFor(doomed, ['read:users']);
    const probe = async () =>
      (await t.request({ method: 'GET', url: `/api/v1/users/user/${crypto.randomUUID()}/`, headers })).statusCode;
    expect(await probe()).toBe(404);
    expect((await root.delete(`/api/v1/organizations/${doomed.code}`)).statusCode).toBe(204);
    expect(await probe()).toBe(401);
  });
});
