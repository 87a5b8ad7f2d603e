import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activities } from '../../src/modules/activity/activity.table.js';
import { createApiKey, OPERATOR } from '../../src/modules/api-keys/api-keys.service.js';
import { sessions } from '../../src/modules/auth/auth.table.js';
import { users } from '../../src/modules/users/users.table.js';
import { scimClient } from '../scim-client.js';
import { type Client, grantRole, loginAs, seedUser } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

/**
 * The admin API, the seed-000 provisioning API and SCIM write users through one provisioning core:
 * the same validation, the same upsert, the same audit events. Each test drives all three paths at
 * one organization and compares what they answer and record.
 */

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

describe('one provisioning core for the admin API, the seed-000 API and SCIM', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  /** One organization reachable by all three paths: an org admin, a provisioning key and a SCIM key. */
  async function threePaths() {
    const { org, scim } = await scimClient(t);
    // Staff, so that the admin API may set is_staff, which only the admin API writes.
    const adminUser = await seedUser(t, org.id, { isStaff: true });
    await grantRole(t, adminUser, 'org_admin');
    const admin: Client = await loginAs(t, adminUser);
    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: unique('key'),
      organization: org.code,
      scopes: ['provisioning'],
    });
    const seed000 = (method: 'POST' | 'GET', url: string, payload?: object) =>
      t.request({ method, url: `/api/provisioning${url}`, headers: { authorization: `Bearer ${key}` }, payload });
    return { org, admin, scim, seed000 };
  }

  async function userEvents(organizationId: string, userIds: string[]) {
    return t.database.db
      .select()
      .from(activities)
      .where(and(eq(activities.organizationId, organizationId), inArray(activities.userId, userIds)));
  }

  it('refuses the same invalid email with the same error on every path (SCIM naming its own attribute), writing nothing', async () => {
    const { org, admin, scim, seed000 } = await threePaths();
    // Passes SCIM's own address check (one @), so the refusal comes from the shared validation.
    const email = `${unique('ada')}@example`;
    const byAdmin = await admin.post('/api/v1/users', { email });
    const bySeed = await seed000('POST', '/users', {
      keycloak_id: unique('kc-'),
      email,
      engagemx_client_id: org.code,
    });
    const byScim = await scim('POST', '/Users', {
      schemas: [USER],
      userName: unique('ada'),
      emails: [{ value: email }],
    });

    expect(byAdmin.statusCode).toBe(400);
    expect(bySeed.statusCode).toBe(400);
    expect(byScim.statusCode).toBe(400);
    const adminError = byAdmin.json();
    expect(adminError).toMatchObject({ code: 'validation_failed', errors: [{ field: 'email' }] });
    const [fieldError] = adminError.errors as { field: string; message: string }[];
    expect(bySeed.json()).toMatchObject({ code: 'validation_failed', errors: [fieldError] });
    expect(byScim.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    // The same refusal, with the field named as SCIM names it.
    expect(byScim.json().detail).toContain(`emails: ${fieldError?.message}`);
    expect(await t.database.db.select().from(users).where(eq(users.email, email))).toEqual([]);
  });

  it('bounds the free-form attributes a user carries on every path that writes them, the own profile included', async () => {
    const { org, admin, scim } = await threePaths();
    const big = 'x'.repeat(70_000);
    const email = `${unique('big')}@example.com`;
    const byAdmin = await admin.post('/api/v1/users', { email, attributes: { note: big } });
    const byScim = await scim('POST', '/Users', {
      schemas: [USER],
      userName: unique('big'),
      emails: [{ value: email }],
      x509Certificates: [{ value: big }],
    });
    // (Seed 000's API carries no attributes.)
    expect(byAdmin.statusCode).toBe(400);
    expect(byAdmin.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'attributes' }] });
    expect(byAdmin.json().errors[0].message).toMatch(/^Must be at most 65536 bytes written out/);
    expect(byScim.json(), byScim.body).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(await t.database.db.select().from(users).where(eq(users.email, email))).toEqual([]);

    // A self-registered account may not grow its own profile past the bound either; under it, it may.
    const self = await loginAs(t, await seedUser(t, org.id));
    const own = await self.patch('/api/v1/users/profile/', { attributes: { note: big } });
    expect(own.statusCode).toBe(400);
    expect(own.json()).toMatchObject({ errors: [{ field: 'attributes' }] });
    const fits = await self.patch('/api/v1/users/profile/', { attributes: { note: 'x'.repeat(60_000) } });
    expect(fits.statusCode).toBe(200);
  });

  it('answers 409 email_taken naming the field on every path for an address another user holds', async () => {
    const { org, admin, scim, seed000 } = await threePaths();
    const holder = await seedUser(t, org.id);
    const taken = holder.email.toUpperCase();
    const byAdmin = await admin.post('/api/v1/users', { email: taken });
    const bySeed = await seed000('POST', '/users', {
      keycloak_id: unique('kc-'),
      email: taken,
      engagemx_client_id: org.code,
    });
    const byScim = await scim('POST', '/Users', { schemas: [USER], userName: unique('u'), emails: [{ value: taken }] });
    expect(byAdmin.json()).toMatchObject({ status: 409, code: 'email_taken', errors: [{ field: 'email' }] });
    expect(bySeed.json()).toMatchObject({ status: 409, code: 'email_taken', errors: [{ field: 'email' }] });
    expect(byScim.json()).toMatchObject({ status: '409', scimType: 'uniqueness' });
    expect(byScim.json().detail).toContain('email');
  });

  it('shows a user created by the admin API, updated by seed 000 by keycloak_id, the same through SCIM', async () => {
    const { org, admin, scim, seed000 } = await threePaths();
    const keycloakId = unique('kc-');
    const email = `${unique('grace')}@example.com`;
    const created = await admin.post('/api/v1/users', {
      email,
      username: unique('grace'),
      first_name: 'Grace',
      external_id: keycloakId,
      is_staff: true,
      password: 'a long admin passphrase 1',
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;

    const updated = await seed000('POST', '/users', {
      keycloak_id: keycloakId,
      email,
      engagemx_client_id: org.code,
      first_name: 'Grace B.',
      last_name: 'Hopper',
    });
    expect(updated.statusCode, updated.body).toBe(200);
    expect(updated.json()).toMatchObject({ id, action: 'updated', first_name: 'Grace B.' });

    const viaScim = (await scim('GET', `/Users/${id}`)).json();
    expect(viaScim).toMatchObject({ id, active: true, name: { givenName: 'Grace B.', familyName: 'Hopper' } });
    expect(viaScim.emails).toEqual([expect.objectContaining({ value: email })]);
    const viaSeed = (await seed000('GET', `/users/${keycloakId}`)).json();
    expect(viaSeed).toMatchObject({ id, first_name: 'Grace B.', last_name: 'Hopper', is_active: true });
    // What only the admin API sets survives the other paths' writes.
    const viaAdmin = (await admin.get(`/api/v1/users/${id}`)).json();
    expect(viaAdmin).toMatchObject({
      first_name: 'Grace B.',
      last_name: 'Hopper',
      external_id: keycloakId,
      is_staff: true,
      has_password: true,
    });

    // An admin create naming a held keycloak_id is a clash, not the upsert it is for seed 000.
    const again = await admin.post('/api/v1/users', { email: `${unique('x')}@example.com`, external_id: keycloakId });
    expect(again.json()).toMatchObject({ status: 409, code: 'external_id_taken', errors: [{ field: 'external_id' }] });
  });

  it('records the same audit event shape for a create, an update and a deactivation on every path', async () => {
    const { org, admin, scim, seed000 } = await threePaths();
    const kc = unique('kc-');
    const a = (await admin.post('/api/v1/users', { email: `${unique('a')}@example.com` })).json().id as string;
    const s = (
      await seed000('POST', '/users', { keycloak_id: kc, email: `${kc}@example.com`, engagemx_client_id: org.code })
    ).json().id as string;
    const c = (
      await scim('POST', '/Users', {
        schemas: [USER],
        userName: unique('c'),
        emails: [{ value: `${unique('c')}@x.io` }],
      })
    ).json().id as string;

    expect((await admin.patch(`/api/v1/users/${a}`, { first_name: 'Ada' })).statusCode).toBe(200);
    const seedUpdate = { keycloak_id: kc, email: `${kc}@example.com`, engagemx_client_id: org.code, first_name: 'Ada' };
    expect((await seed000('POST', '/users', seedUpdate)).statusCode).toBe(200);
    const renamed = await scim('PATCH', `/Users/${c}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.givenName', value: 'Ada' }],
    });
    expect(renamed.statusCode).toBe(200);

    expect((await admin.post(`/api/v1/users/${a}/deactivate`)).statusCode).toBe(200);
    expect((await seed000('POST', '/users', { ...seedUpdate, is_active: false })).statusCode).toBe(200);
    const off = await scim('PATCH', `/Users/${c}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: false }],
    });
    expect(off.statusCode).toBe(200);

    const events = await userEvents(org.id, [a, s, c]);
    const shape = (type: string, userId: string) => {
      const e = events.find((x) => x.activityType === type && x.userId === userId);
      expect(e, `${type} of ${userId}`).toBeDefined();
      return {
        category: e?.category,
        severity: e?.severity,
        success: e?.success,
        objectType: e?.objectType,
        objectId: e?.objectId === userId,
        firstTag: e?.tags?.[0],
        detailKeys: Object.keys(e?.details ?? {}).sort(),
        changes: (((e?.details ?? {}) as { changes?: { field: string }[] }).changes ?? [])
          .map((ch) => ch.field)
          .filter((f) => f === 'first_name' || f === 'status' || f === 'is_active')
          .sort(),
      };
    };
    for (const type of ['user.created', 'user.updated', 'user.deactivated']) {
      const fromAdmin = shape(type, a);
      expect(shape(type, s), `${type}: seed 000 vs admin`).toEqual(fromAdmin);
      expect(shape(type, c), `${type}: SCIM vs admin`).toEqual(fromAdmin);
    }
    // The description names the path the write came by.
    const described = (type: string, userId: string) =>
      events.find((x) => x.activityType === type && x.userId === userId)?.description;
    for (const [userId, path] of [
      [a, 'through the admin API'],
      [s, 'through the provisioning API'],
      [c, 'through SCIM'],
    ] as const) {
      expect(described('user.created', userId)).toBe(`Created ${path}`);
      expect(described('user.updated', userId)).toBe(`Updated ${path}`);
      expect(described('user.deactivated', userId)).toBe(`Deactivated ${path}`);
    }
    const self = await loginAs(t, await seedUser(t, org.id));
    expect((await self.patch('/api/v1/users/profile/', { first_name: 'Bo' })).statusCode).toBe(200);
    const ownChange = (await userEvents(org.id, [self.user.id])).find((e) => e.activityType === 'user.updated');
    expect(ownChange?.description).toBe('Updated by the user on their profile');
    expect(shape('user.updated', a).changes).toEqual(['first_name']);
    expect(shape('user.deactivated', a).changes).toEqual(['is_active', 'status']);
    // The admin API records its user events alone, without the provisioning call's summary.
    expect(
      events
        .filter((e) => e.userId === a)
        .map((e) => e.activityType)
        .sort(),
    ).toEqual(['user.created', 'user.deactivated', 'user.updated']);
  });

  it('ends sessions on every path when a user leaves active, and on an admin password change', async () => {
    const { org, admin, scim } = await threePaths();
    const live = async (userId: string) =>
      (await t.database.db.select().from(sessions).where(eq(sessions.userId, userId))).filter(
        (x) => x.revokedAt === null,
      ).length;
    const viaAdmin = await seedUser(t, org.id);
    const viaScim = await seedUser(t, org.id);
    const viaPassword = await seedUser(t, org.id);
    for (const u of [viaAdmin, viaScim, viaPassword]) await loginAs(t, u);
    expect(await live(viaAdmin.id)).toBe(1);

    expect((await admin.patch(`/api/v1/users/${viaAdmin.id}`, { status: 'suspended' })).json().status).toBe(
      'suspended',
    );
    await scim('PATCH', `/Users/${viaScim.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: false }],
    });
    await admin.patch(`/api/v1/users/${viaPassword.id}`, { password: 'another long passphrase 2' });
    expect(await live(viaAdmin.id)).toBe(0);
    expect(await live(viaScim.id)).toBe(0);
    expect(await live(viaPassword.id)).toBe(0);
    const [passwordEvent] = (await userEvents(org.id, [viaPassword.id])).filter(
      (e) => e.activityType === 'user.updated',
    );
    expect(passwordEvent).toMatchObject({
      severity: 'warning',
      details: expect.objectContaining({ write_only: ['password'] }),
    });
    expect(JSON.stringify(passwordEvent?.details)).not.toContain('another long passphrase');
  });
});
