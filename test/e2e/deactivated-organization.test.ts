import { and, eq, isNull } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountTokens } from '../../src/modules/account/account.table.js';
import type { Organization } from '../../src/modules/organizations/organizations.table.js';
import { users } from '../../src/modules/users/users.table.js';
import { lastMailTo } from '../mail.js';
import { type Client, seedOrganization, seedUser, superuserClient } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

/**
 * A deactivated organization: no user of it is created, changed, invited or mailed a link, on any
 * API and by any caller (superusers and platform keys included), until it is reactivated. Its users
 * may still be deactivated and deleted.
 */

const PLATFORM_KEY = 'platform-provisioning-key-0123456789';

describe('users of a deactivated organization', () => {
  let t: TestApp;
  let root: Client;

  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY });
    root = await superuserClient(t);
  });
  afterAll(() => t.close());

  const seed000 = (method: 'POST' | 'PUT', url: string, payload?: unknown) =>
    t.request({
      method,
      url: `/api/provisioning${url}`,
      headers: { authorization: `Bearer ${PLATFORM_KEY}` },
      ...(payload === undefined ? {} : { payload: payload as object }),
    });

  function expectInactive(res: LightMyRequestResponse, code: string, field = 'organization') {
    expect(res.statusCode, res.body).toBe(409);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 409, code: 'organization_inactive', errors: [{ field }] });
    expect(res.json().detail).toContain(`"${code}"`);
  }

  async function deactivated(): Promise<Organization> {
    const org = await seedOrganization(t);
    const res = await root.post(`/api/v1/organizations/${org.code}/deactivate/`);
    expect(res.statusCode, res.body).toBe(200);
    return org;
  }

  const person = (code: string, overrides: Record<string, unknown> = {}) => {
    const id = unique('kc-');
    return { keycloak_id: id, email: `${id}@example.com`, engagemx_client_id: code, ...overrides };
  };

  const usersIn = (org: Organization) => t.database.db.select().from(users).where(eq(users.organizationId, org.id));

  it('answers a platform key 409 organization_inactive on the seed-000 API, per item in bulk, and invites nobody', async () => {
    const org = await deactivated();
    const body = person(org.code, { send_invite: true });
    expectInactive(await seed000('POST', '/users', body), org.code, 'engagemx_client_id');
    expectInactive(await seed000('POST', '/users?dry_run=true', body), org.code, 'engagemx_client_id');
    expect((await lastMailTo(t, body.email)).mail).toBeUndefined();

    const open = await seedOrganization(t);
    const bulk = await seed000('POST', '/users/bulk', [body, person(open.code)]);
    expect(bulk.json()).toMatchObject({
      success_count: 1,
      error_count: 1,
      errors: [{ index: 0, keycloak_id: body.keycloak_id, code: 'organization_inactive', status: 409 }],
    });
    expect(await usersIn(org)).toEqual([]);

    // An existing user is not changed, nor reactivated; taking them out of use still works.
    const kept = await seedUser(t, org.id, { externalId: unique('kc-'), passwordHash: null });
    const again = { keycloak_id: kept.externalId, email: kept.email, engagemx_client_id: org.code };
    expectInactive(await seed000('POST', '/users', { ...again, first_name: 'New' }), org.code, 'engagemx_client_id');
    expectInactive(await seed000('POST', '/users', { ...again, send_invite: true }), org.code, 'engagemx_client_id');
    const off = await seed000('POST', '/users', { ...again, is_active: false });
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json()).toMatchObject({ is_active: false });
    expectInactive(await seed000('POST', '/users', { ...again, is_active: true }), org.code, 'engagemx_client_id');
    expect((await seed000('PUT', `/users/${kept.externalId}/deactivate`)).statusCode).toBe(200);
    expect((await lastMailTo(t, kept.email)).mail).toBeUndefined();
  });

  it('answers a superuser 409 on the admin API and typed users for creates, changes and invitations, but deactivates and deletes', async () => {
    const org = await deactivated();
    expectInactive(
      await root.post('/api/v1/users/', { email: `${unique()}@g.test`, organization: org.code }),
      org.code,
    );
    const code = unique('pupil').replace(/-/g, '');
    const type = await root.post('/api/v1/user-types/', { code, plural: `${code}s`, label: 'Pupil', schema: {} });
    expect(type.statusCode, type.body).toBe(201);
    const typed = await root.post(`/api/v1/users/${code}s/`, { email: `${unique()}@g.test`, organization: org.code });
    expectInactive(typed, org.code);
    expect(await usersIn(org)).toEqual([]);

    const user = await seedUser(t, org.id, { passwordHash: null });
    expectInactive(await root.patch(`/api/v1/users/${user.id}/`, { first_name: 'Changed' }), org.code);
    expectInactive(await root.patch(`/api/v1/users/${user.id}/`, { password: 'a fresh long passphrase 42' }), org.code);
    expectInactive(await root.post(`/api/v1/users/${user.id}/invite/`), org.code);
    expect((await lastMailTo(t, user.email)).mail).toBeUndefined();

    const off = await root.post(`/api/v1/users/${user.id}/deactivate/`);
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json()).toMatchObject({ is_active: false });
    expectInactive(await root.patch(`/api/v1/users/${user.id}/`, { is_active: true }), org.code);
    expect((await root.patch(`/api/v1/users/${user.id}/`, { status: 'suspended' })).statusCode).toBe(200);
    expect((await root.delete(`/api/v1/users/${user.id}/`)).statusCode).toBe(204);
    expect(await usersIn(org)).toEqual([]);

    // Reactivated, the organization takes users again.
    expect((await root.patch(`/api/v1/organizations/${org.code}/`, { is_active: true })).statusCode).toBe(200);
    const created = await root.post('/api/v1/users/', { email: `${unique()}@g.test`, organization: org.code });
    expect(created.statusCode, created.body).toBe(201);
    expect((await root.post(`/api/v1/users/${created.json().id}/invite/`)).statusCode).toBe(202);
  });

  it('imports nobody into a deactivated organization, reporting each entry as failed', async () => {
    const org = await deactivated();
    const res = await root.post('/api/admin/import-users/', {
      organization: org.code,
      users: [{ email: `${unique()}@g.test` }, { email: `${unique()}@g.test` }],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      created: 0,
      skipped: 0,
      failed: 2,
      results: [
        { action: 'failed', code: 'organization_inactive' },
        { action: 'failed', code: 'organization_inactive' },
      ],
    });
    expect(await usersIn(org)).toEqual([]);
  });

  it('mails no reset or verification link to its users', async () => {
    const org = await deactivated();
    const user = await seedUser(t, org.id, { emailVerified: false });
    for (const url of ['/api/v1/users/password-reset/', '/api/v1/users/verify-email/resend/']) {
      const res = await t.request({ method: 'POST', url, payload: { email: user.email, organization: org.code } });
      expect(res.statusCode, res.body).toBe(202);
    }
    expect((await lastMailTo(t, user.email)).mail).toBeUndefined();
  });

  // Needs PostgreSQL (TEST_DATABASE_URL) to overlap; PGlite runs the requests one after the other.
  it('refuses a platform key’s and a superuser’s writes racing the deactivation, leaving no open link', async () => {
    for (let round = 0; round < 4; round++) {
      const org = await seedOrganization(t);
      const invitees = await Promise.all(Array.from({ length: 3 }, () => seedUser(t, org.id, { passwordHash: null })));
      const [deactivation, ...answers] = await Promise.all([
        root.post(`/api/v1/organizations/${org.code}/deactivate/`),
        ...Array.from({ length: 6 }, () => seed000('POST', '/users', person(org.code, { send_invite: true }))),
        ...invitees.map((u) => root.post(`/api/v1/users/${u.id}/invite/`)),
        ...Array.from({ length: 3 }, () =>
          root.post('/api/v1/users/', { email: `${unique()}@g.test`, organization: org.code }),
        ),
      ]);
      expect(deactivation?.statusCode, deactivation?.body).toBe(200);
      for (const res of answers) {
        if (res.statusCode === 201 || res.statusCode === 202) continue;
        expect(res.json(), res.body).toMatchObject({ status: 409, code: 'organization_inactive' });
      }
      // The deactivation ended the links mailed before it; none was mailed after it.
      const open = await t.database.db
        .select()
        .from(accountTokens)
        .where(and(eq(accountTokens.organizationId, org.id), isNull(accountTokens.usedAt)));
      expect(open).toEqual([]);
    }
  });
});
