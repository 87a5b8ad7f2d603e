import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  clientWithRole,
  createOrganizationRole,
  grantRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from './api-keys.service.js';
import { apiKeys } from './api-keys.table.js';

const SCIM_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

/** A key lives with the user who made it: it stops with them and reaches no further than they do. */
describe('API keys and their creator', () => {
  let t: TestApp;
  let root: Client;

  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
  });
  afterAll(async () => {
    await t.close();
  });

  const withKey = (key: string, method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, body?: unknown) =>
    t.request({
      method,
      url,
      headers: {
        'x-api-key': key,
        ...(body === undefined
          ? {}
          : { 'content-type': url.startsWith('/scim') ? 'application/scim+json' : 'application/json' }),
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });

  async function adminWithKey() {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const made = await admin.post('/api/v1/api-keys/', {
      name: 'idp',
      organization: org.code,
      scopes: ['provisioning', 'scim'],
    });
    expect(made.statusCode, made.body).toBe(201);
    return { org, admin, key: made.json().key as string, keyId: made.json().id as string };
  }

  it('stops while its creator is deactivated and works again once they are back', async () => {
    const { org, admin, key } = await adminWithKey();
    const list = () => withKey(key, 'GET', `/api/provisioning/users?client_id=${org.code}`);
    expect((await list()).statusCode).toBe(200);

    const off = await root.patch(`/api/v1/users/${admin.user.id}/`, { is_active: false });
    expect(off.statusCode, off.body).toBe(200);
    const refused = await list();
    expect(refused.statusCode).toBe(401);
    expect(refused.json().detail).toMatch(/creator is no longer active/);

    const on = await root.patch(`/api/v1/users/${admin.user.id}/`, { is_active: true });
    expect(on.statusCode, on.body).toBe(200);
    expect((await list()).statusCode).toBe(200);
  });

  it("reaches past its creator's organization only while they are a superuser, at once either way", async () => {
    const home = await seedOrganization(t);
    const other = await seedOrganization(t);
    const someone = await seedUser(t, other.id, { externalId: unique('kc-other-') });
    const creator = await seedUser(t, home.id);
    await grantRole(t, creator, 'org_admin');
    const promote = (isSuperuser: boolean) => root.patch(`/api/v1/users/${creator.id}/`, { is_superuser: isSuperuser });
    expect((await promote(true)).statusCode).toBe(200);
    const superuser = await loginAs(t, creator);
    const keyFor = async (organization: string | null) => {
      const made = await superuser.post('/api/v1/api-keys/', {
        name: 'k',
        organization,
        scopes: ['provisioning', 'authorize', 'read:users'],
      });
      expect(made.statusCode, made.body).toBe(201);
      return made.json().key as string;
    };
    const platformKey = await keyFor(null);
    const otherKey = await keyFor(other.code);
    const homeKey = await keyFor(home.code);
    const uses = (key: string) => [
      () => withKey(key, 'GET', `/api/provisioning/users?client_id=${other.code}`),
      () =>
        withKey(key, 'POST', '/api/provisioning/users', {
          keycloak_id: unique('kc-new-'),
          email: `${unique('new')}@example.com`,
          engagemx_client_id: other.code,
        }),
      () => withKey(key, 'PUT', `/api/provisioning/users/${someone.externalId}/deactivate`),
      () => withKey(key, 'POST', '/api/v1/authorize/', { user_id: someone.id, permission: 'users.view' }),
    ];
    // Used once while the creator is a superuser, so the key's state is cached when they are demoted.
    expect((await uses(platformKey)[0]!()).statusCode).toBe(200);
    expect((await uses(otherKey)[0]!()).statusCode).toBe(200);

    expect((await promote(false)).statusCode).toBe(200);
    for (const key of [platformKey, otherKey]) {
      for (const use of uses(key)) {
        const refused = await use();
        expect(refused.statusCode, refused.body).toBe(401);
        expect(refused.json()).toMatchObject({ code: 'not_authenticated' });
        expect(refused.json().detail).toMatch(/creator is no longer a superuser/);
      }
    }
    const newOrganization = unique('org-');
    const creating = await withKey(platformKey, 'POST', '/api/provisioning/users', {
      keycloak_id: unique('kc-new-'),
      email: `${unique('new')}@example.com`,
      engagemx_client_id: newOrganization,
    });
    expect(creating.statusCode).toBe(401);
    expect((await root.get(`/api/v1/organizations/${newOrganization}/`)).statusCode).toBe(404);
    expect((await root.get(`/api/v1/users/${someone.id}/`)).json()).toMatchObject({ is_active: true });
    // A key of their own organization stays theirs, within what their role grants.
    expect((await withKey(homeKey, 'GET', `/api/provisioning/users?client_id=${home.code}`)).statusCode).toBe(200);

    expect((await promote(true)).statusCode).toBe(200);
    expect((await uses(platformKey)[0]!()).statusCode).toBe(200);
    expect((await uses(otherKey)[0]!()).statusCode).toBe(200);
  });

  it('stops while the organization of its creator is deactivated', async () => {
    const home = await seedOrganization(t);
    const other = await seedOrganization(t);
    const creator = await seedUser(t, home.id, { isSuperuser: true });
    const made = await (await loginAs(t, creator)).post('/api/v1/api-keys/', {
      name: 'k',
      organization: null,
      scopes: ['provisioning'],
    });
    expect(made.statusCode, made.body).toBe(201);
    const list = () => withKey(made.json().key, 'GET', `/api/provisioning/users?client_id=${other.code}`);
    expect((await list()).statusCode).toBe(200);

    expect((await root.post(`/api/v1/organizations/${home.code}/deactivate/`)).statusCode).toBe(200);
    const refused = await list();
    expect(refused.statusCode).toBe(401);
    expect(refused.json().detail).toMatch(/creator is no longer active/);

    expect((await root.patch(`/api/v1/organizations/${home.code}/`, { is_active: true })).statusCode).toBe(200);
    expect((await list()).statusCode).toBe(200);
  });

  it('is revoked, with an audit event, when its creator is deleted', async () => {
    const { org, admin, key, keyId } = await adminWithKey();
    const deleted = await root.delete(`/api/v1/users/${admin.user.id}/`);
    expect(deleted.statusCode, deleted.body).toBe(204);

    expect((await withKey(key, 'GET', `/api/provisioning/users?client_id=${org.code}`)).statusCode).toBe(401);
    const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, keyId));
    expect(row?.revokedAt).toBeInstanceOf(Date);
    expect(row?.createdBy).toBeNull();
    const events = await t.database.db
      .select({ type: activities.activityType, details: activities.details })
      .from(activities)
      .where(eq(activities.objectId, keyId));
    expect(events).toContainEqual({
      type: 'api_key.revoked',
      details: { prefix: row?.prefix, reason: 'creator_deleted' },
    });
    // An operator's key has no creator to lose.
    const { key: operatorKey } = await createApiKey(t.database.db, OPERATOR, {
      name: 'op',
      organization: org.code,
      scopes: ['provisioning'],
    });
    expect((await withKey(operatorKey, 'GET', `/api/provisioning/users?client_id=${org.code}`)).statusCode).toBe(200);
  });

  it("writes users only within its creator's reach, on every provisioning path", async () => {
    const { org, key } = await adminWithKey();
    // A role of the organization above an organization admin.
    const boss = await root.post('/api/v1/roles/', {
      code: unique('boss_').replace(/-/g, '_'),
      name: 'Boss',
      level: 0,
      organization: org.code,
      permissions: [],
      modules: [],
    });
    expect(boss.statusCode, boss.body).toBe(201);
    const owner = await seedUser(t, org.id, { externalId: unique('kc-owner-') });
    const colleague = await seedUser(t, org.id, { externalId: unique('kc-peer-') });
    const assigned = await root.post(`/api/v1/users/${owner.id}/roles/`, { role: boss.json().code });
    expect(assigned.statusCode, assigned.body).toBe(201);

    // Seed 000: upsert, bulk (the owner's item fails alone) and deactivate.
    const upsert = await withKey(key, 'POST', '/api/provisioning/users', {
      keycloak_id: owner.externalId,
      email: 'taken-over@example.com',
      engagemx_client_id: org.code,
    });
    expect(upsert.statusCode, upsert.body).toBe(403);
    expect(upsert.json()).toMatchObject({ code: 'delegation_ceiling' });
    const bulk = await withKey(key, 'POST', '/api/provisioning/users/bulk', [
      { keycloak_id: owner.externalId, email: owner.email, engagemx_client_id: org.code, first_name: 'Changed' },
      {
        keycloak_id: colleague.externalId,
        email: colleague.email,
        engagemx_client_id: org.code,
        first_name: 'Changed',
      },
    ]);
    expect(bulk.statusCode, bulk.body).toBe(200);
    expect(bulk.json()).toMatchObject({ success_count: 1, error_count: 1 });
    expect(JSON.stringify(bulk.json().errors)).toContain('delegation_ceiling');
    const deactivate = await withKey(key, 'PUT', `/api/provisioning/users/${owner.externalId}/deactivate`);
    expect(deactivate.statusCode, deactivate.body).toBe(403);

    // SCIM: PATCH and PUT of the owner are refused in SCIM's error format.
    const scimPatch = await withKey(key, 'PATCH', `/scim/v2/Users/${owner.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: false }],
    });
    expect(scimPatch.statusCode, scimPatch.body).toBe(403);
    expect(scimPatch.json()).toMatchObject({ status: '403' });
    const scimPut = await withKey(key, 'PUT', `/scim/v2/Users/${owner.id}`, {
      schemas: [SCIM_USER],
      userName: 'owner',
      emails: [{ value: 'taken-over@example.com', primary: true }],
    });
    expect(scimPut.statusCode, scimPut.body).toBe(403);
    const scimDelete = await t.request({
      method: 'DELETE',
      url: `/scim/v2/Users/${owner.id}`,
      headers: { 'x-api-key': key },
    });
    expect(scimDelete.statusCode, scimDelete.body).toBe(403);

    const ownerNow = await root.get(`/api/v1/users/${owner.id}/`);
    expect(ownerNow.json()).toMatchObject({ email: owner.email, is_active: true, first_name: owner.firstName });
    const colleagueNow = await root.get(`/api/v1/users/${colleague.id}/`);
    expect(colleagueNow.json()).toMatchObject({ first_name: 'Changed' });

    // An operator's key reaches the owner.
    const { key: operatorKey } = await createApiKey(t.database.db, OPERATOR, {
      name: 'op',
      organization: org.code,
      scopes: ['provisioning'],
    });
    const byOperator = await withKey(operatorKey, 'PUT', `/api/provisioning/users/${owner.externalId}/deactivate`);
    expect(byOperator.statusCode, byOperator.body).toBe(200);
  });

  /** A fresh user of a fresh organization holding one organization role of level 5 with these permissions. */
  async function holderOf(permissions: string[]) {
    const org = await seedOrganization(t);
    const code = unique('keys_').replace(/-/g, '_');
    const role = await root.post('/api/v1/roles/', {
      code,
      name: 'Keys',
      level: 5,
      organization: org.code,
      permissions,
    });
    expect(role.statusCode, role.body).toBe(201);
    const user = await seedUser(t, org.id);
    const assigned = await root.post(`/api/v1/users/${user.id}/roles/`, { role: code });
    expect(assigned.statusCode, assigned.body).toBe(201);
    return { org, user, client: await loginAs(t, user), roleCode: code };
  }

  it('is created only with scopes whose permissions its creator holds (403 delegation_ceiling naming scopes)', async () => {
    const { client } = await holderOf(['apikeys.manage']);
    for (const scope of ['read:users', 'provisioning', 'scim', 'authorize']) {
      const res = await client.post('/api/v1/api-keys/', { name: 'k', scopes: [scope] });
      expect(res.statusCode, `${scope}: ${res.body}`).toBe(403);
      expect(res.json()).toMatchObject({ code: 'delegation_ceiling', errors: [{ field: 'scopes' }] });
      expect(res.json().detail).toContain('users.view');
    }

    const reader = await holderOf(['apikeys.manage', 'users.view']);
    expect((await reader.client.post('/api/v1/api-keys/', { name: 'k', scopes: ['read:users'] })).statusCode).toBe(201);
    const provisioning = await reader.client.post('/api/v1/api-keys/', {
      name: 'k',
      scopes: ['read:users', 'provisioning'],
    });
    expect(provisioning.statusCode).toBe(403);
    expect(provisioning.json().detail).toMatch(/"provisioning" needs users\.update/);

    // Superusers and the operator have no bound.
    expect(
      (await root.post('/api/v1/api-keys/', { name: 'k', organization: reader.org.code, scopes: ['scim'] })).statusCode,
    ).toBe(201);
  });

  it("stops serving a scope once its creator no longer holds the scope's permissions, at once", async () => {
    const { org, admin, key } = await adminWithKey();
    const list = () => withKey(key, 'GET', `/api/provisioning/users?client_id=${org.code}`);
    expect((await list()).statusCode).toBe(200);

    const stripped = await root.delete(`/api/v1/users/${admin.user.id}/roles/org_admin`);
    expect(stripped.statusCode, stripped.body).toBe(204);
    const refused = await list();
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'delegation_ceiling', errors: [{ field: 'scopes' }] });
    expect(refused.json().detail).toContain('users.view, users.update');
    const scim = await withKey(key, 'GET', '/scim/v2/Users');
    expect(scim.statusCode, scim.body).toBe(403);

    // Read-only again: still not enough for provisioning, which writes.
    expect((await root.post(`/api/v1/users/${admin.user.id}/roles/`, { role: 'viewer' })).statusCode).toBe(201);
    const readOnly = await list();
    expect(readOnly.statusCode).toBe(403);
    expect(readOnly.json().detail).toMatch(/no longer holds users\.update,/);

    expect((await root.post(`/api/v1/users/${admin.user.id}/roles/`, { role: 'org_admin' })).statusCode).toBe(201);
    expect((await list()).statusCode).toBe(200);

    // A superuser's key has no creator to lose.
    const made = await root.post('/api/v1/api-keys/', { name: 'su', organization: org.code, scopes: ['provisioning'] });
    const superKey = made.json().key as string;
    expect((await withKey(superKey, 'GET', `/api/provisioning/users?client_id=${org.code}`)).statusCode).toBe(200);
  });
  it("is revoked or rotated by others only when its creator is within their reach, never a superuser's or the operator's", async () => {
    const org = await seedOrganization(t);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const code = unique('keys_').replace(/-/g, '_');
    const perms = ['apikeys.manage', 'users.view'];
    const role = await root.post('/api/v1/roles/', {
      code,
      name: 'Keys',
      level: 5,
      organization: org.code,
      permissions: perms,
    });
    expect(role.statusCode, role.body).toBe(201);
    const clerk = await clientWithRole(t, org.id, code);
    const peer = await clientWithRole(t, org.id, code);
    const keyOf = async (client: Client) => {
      const made = await client.post('/api/v1/api-keys/', {
        name: 'k',
        organization: org.code,
        scopes: ['read:users'],
      });
      expect(made.statusCode, made.body).toBe(201);
      return made.json().id as string;
    };
    const adminKey = await keyOf(admin);
    const superKey = await keyOf(root);
    const { apiKey: operatorKey } = await createApiKey(t.database.db, OPERATOR, {
      name: 'op',
      organization: org.code,
      scopes: ['read:users'],
    });

    for (const id of [adminKey, superKey, operatorKey.id]) {
      for (const res of [
        await clerk.delete(`/api/v1/api-keys/${id}/`),
        await clerk.post(`/api/v1/api-keys/${id}/rotate/`),
      ]) {
        expect(res.statusCode, res.body).toBe(403);
        expect(res.json()).toMatchObject({ code: 'delegation_ceiling', errors: [{ field: 'api_key' }] });
      }
      const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, id));
      expect(row?.revokedAt).toBeNull();
    }
    // An organization admin may not touch a superuser's key either.
    expect((await admin.delete(`/api/v1/api-keys/${superKey}/`)).statusCode).toBe(403);

    // Their own key, and a peer's with the same grants.
    const own = await keyOf(clerk);
    expect((await clerk.post(`/api/v1/api-keys/${own}/rotate/`)).statusCode).toBe(201);
    expect((await clerk.delete(`/api/v1/api-keys/${await keyOf(peer)}/`)).statusCode).toBe(204);
    // Downwards and for superusers, anything.
    expect((await admin.delete(`/api/v1/api-keys/${await keyOf(clerk)}/`)).statusCode).toBe(204);
    for (const id of [adminKey, superKey, operatorKey.id]) {
      expect((await root.delete(`/api/v1/api-keys/${id}/`)).statusCode).toBe(204);
    }
  });

  it('writes no user holding a permission its creator lacks, even at a weaker level', async () => {
    const org = await seedOrganization(t);
    const role = (prefix: string, level: number, permissions: string[]) =>
      createOrganizationRole(root, org.code, prefix, level, permissions);
    // Enough for a provisioning and a SCIM key, but not sessions.manage, which the owner's role grants.
    const helpdesk = await role('helpdesk_', 5, [
      'users.view',
      'users.update',
      'users.delete',
      'roles.manage',
      'apikeys.manage',
    ]);
    const deleter = await role('deleter_', 8, ['users.view', 'sessions.manage']);
    const reader = await role('reader_', 8, ['users.view']);
    const caller = await seedUser(t, org.id);
    const owner = await seedUser(t, org.id, { externalId: unique('kc-deleter-') });
    const peer = await seedUser(t, org.id, { externalId: unique('kc-reader-') });
    for (const [user, code] of [
      [caller, helpdesk],
      [owner, deleter],
      [peer, reader],
    ] as const) {
      const assigned = await root.post(`/api/v1/users/${user.id}/roles/`, { role: code });
      expect(assigned.statusCode, assigned.body).toBe(201);
    }
    const made = await (await loginAs(t, caller)).post('/api/v1/api-keys/', {
      name: 'helpdesk idp',
      scopes: ['provisioning', 'scim'],
    });
    expect(made.statusCode, made.body).toBe(201);
    const key = made.json().key as string;

    const scimPatch = await withKey(key, 'PATCH', `/scim/v2/Users/${owner.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'emails[primary eq true].value', value: 'taken-over@example.com' }],
    });
    expect(scimPatch.statusCode, scimPatch.body).toBe(403);
    expect(scimPatch.json().detail).toMatch(/role or grants beyond the key's creator's/);
    const upsert = await withKey(key, 'POST', '/api/provisioning/users', {
      keycloak_id: owner.externalId,
      email: 'taken-over@example.com',
      engagemx_client_id: org.code,
    });
    expect(upsert.statusCode, upsert.body).toBe(403);
    expect(upsert.json()).toMatchObject({ code: 'delegation_ceiling' });
    const deactivate = await withKey(key, 'PUT', `/api/provisioning/users/${owner.externalId}/deactivate`);
    expect(deactivate.statusCode, deactivate.body).toBe(403);
    expect(deactivate.json()).toMatchObject({ code: 'delegation_ceiling' });
    expect((await root.get(`/api/v1/users/${owner.id}/`)).json()).toMatchObject({
      email: owner.email,
      is_active: true,
    });

    // Fewer grants, a weaker level: within reach on every path.
    const peerPatch = await withKey(key, 'PATCH', `/scim/v2/Users/${peer.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.givenName', value: 'Changed' }],
    });
    expect(peerPatch.statusCode, peerPatch.body).toBe(200);
    const peerUpsert = await withKey(key, 'POST', '/api/provisioning/users', {
      keycloak_id: peer.externalId,
      email: peer.email,
      first_name: 'Again',
      engagemx_client_id: org.code,
    });
    expect(peerUpsert.statusCode, peerUpsert.body).toBe(200);
    const peerDeactivate = await withKey(key, 'PUT', `/api/provisioning/users/${peer.externalId}/deactivate`);
    expect(peerDeactivate.statusCode, peerDeactivate.body).toBe(200);
  });
});
