import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import { scimClient } from '../../../test/scim-client.js';
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
import { queryRows } from '../../platform/db/client.js';
import { newId } from '../../platform/db/ids.js';
import { userRoles } from '../rbac/rbac.table.js';
import { applyUserTypeTemplate } from '../user-types/user-types.service.js';
import { userTypes } from '../user-types/user-types.table.js';
import { users } from './users.table.js';

const SCIM_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const SCIM_ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

describe('users admin API', () => {
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
    // The global student, staff and admin types the tests name.
    await applyUserTypeTemplate(t.database.db, 'school');
  });
  afterAll(() => t.close());

  it("holds passwords set by an administrator to the organization's password_min_length, also below the default", async () => {
    const lenient = await seedOrganization(t);
    const settings = await admin.patch(`/api/v1/organizations/${lenient.code}/`, {
      settings: { password_min_length: 8 },
    });
    expect(settings.statusCode, settings.body).toBe(200);
    const strict = await seedOrganization(t);
    const nine = 'Zq7#kLm2w';
    const created = await admin.post('/api/v1/users/', {
      email: `${unique()}@example.com`,
      password: nine,
      organization: lenient.code,
    });
    expect(created.statusCode, created.body).toBe(201);
    expect((await admin.patch(`/api/v1/users/${created.json().id}/`, { password: `${nine}!` })).statusCode).toBe(200);
    const refused = await admin.post('/api/v1/users/', {
      email: `${unique()}@example.com`,
      password: nine,
      organization: strict.code,
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'password_too_weak', errors: [{ field: 'password' }] });
    // Seven characters are below what any organization may allow: refused by the schema.
    const seven = await admin.post('/api/v1/users/', {
      email: `${unique()}@example.com`,
      password: 'Zq7#kLm',
      organization: lenient.code,
    });
    expect(seven.json()).toMatchObject({ status: 400, errors: [{ field: 'password' }] });

    const code = unique('coach').replace(/-/g, '');
    const type = await admin.post('/api/v1/user-types/', {
      code,
      plural: `${code}s`,
      label: 'Coach',
      schema: { type: 'object' },
    });
    expect(type.statusCode, type.body).toBe(201);
    const typed = await admin.post(`/api/v1/users/${code}s/`, {
      email: `${unique()}@example.com`,
      password: nine,
      organization: lenient.code,
      profile: {},
    });
    expect(typed.statusCode, typed.body).toBe(201);
    const typedStrict = await admin.post(`/api/v1/users/${code}s/`, {
      email: `${unique()}@example.com`,
      password: nine,
      organization: strict.code,
      profile: {},
    });
    expect(typedStrict.json()).toMatchObject({ code: 'password_too_weak', errors: [{ field: 'password' }] });
  });

  it('refuses an administrator taking their own account out of use (403 own_account); another may', async () => {
    const org = await seedOrganization(t);
    const orgAdmin = await clientWithRole(t, org.id, 'org_admin');
    const self = orgAdmin.user.id;
    for (const res of [
      await orgAdmin.post(`/api/v1/users/${self}/deactivate/`),
      await orgAdmin.patch(`/api/v1/users/${self}/`, { status: 'suspended' }),
      await orgAdmin.patch(`/api/v1/users/${self}/`, { is_active: false }),
      await orgAdmin.delete(`/api/v1/users/${self}/`),
    ]) {
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json()).toMatchObject({ code: 'own_account' });
    }
    expect((await orgAdmin.get('/api/v1/users/profile/')).json()).toMatchObject({ id: self, status: 'active' });
    // Their own other fields stay theirs to change, and another administrator may deactivate them.
    expect((await orgAdmin.patch(`/api/v1/users/${self}/`, { first_name: 'Still' })).statusCode).toBe(200);
    expect((await admin.post(`/api/v1/users/${self}/deactivate/`)).json()).toMatchObject({ status: 'deactivated' });
  });

  it('creates a user in the named organization without ever returning the password', async () => {
    const org = await seedOrganization(t);
    const res = await admin.post('/api/v1/users/', {
      email: 'Ada@Example.com',
      username: 'ada',
      first_name: 'Ada',
      organization: org.code,
      user_type: 'staff',
      attributes: { tv_service: true },
      password: 'a sufficiently long one',
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body).toMatchObject({
      email: 'Ada@Example.com',
      username: 'ada',
      organization: org.code,
      organization_id: org.id,
      user_type: 'staff',
      attributes: { tv_service: true },
      status: 'active',
      is_active: true,
      has_password: true,
    });
    expect(JSON.stringify(body)).not.toMatch(/argon2|password_hash|a sufficiently long one/);
  });

  it('creates a deactivated user with is_active false, and refuses unknown fields and a contradicting status by name', async () => {
    const org = await seedOrganization(t);
    const off = await admin.post('/api/v1/users/', {
      email: `${unique()}@example.com`,
      organization: org.code,
      is_active: false,
    });
    expect(off.statusCode, off.body).toBe(201);
    expect(off.json()).toMatchObject({ status: 'deactivated', is_active: false });
    const email = `${unique()}@example.com`;
    for (const [body, field] of [
      [{ email, organization: org.code, is_actve: false }, 'is_actve'],
      [{ email, organization: org.code, id: crypto.randomUUID() }, 'id'],
      [{ email, organization: org.code, status: 'active', is_active: false }, 'is_active'],
    ] as const) {
      const res = await admin.post('/api/v1/users/', body);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json()).toMatchObject({ errors: [{ field }] });
    }
    const written = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from users where lower(email) = lower(${email})`,
    );
    expect(written[0]?.n).toBe(0);
  });

  it('answers 409 email_taken for a duplicate within the organization, compared case-insensitively', async () => {
    const org = await seedOrganization(t);
    await admin.post('/api/v1/users', { email: 'dup@x.io', organization: org.code });
    const res = await admin.post('/api/v1/users', { email: 'DUP@x.io', organization: org.code });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 409, code: 'email_taken', errors: [{ field: 'email' }] });
  });

  it('lets two organizations hold the same address as two accounts', async () => {
    const a = await seedOrganization(t);
    const b = await seedOrganization(t);
    const one = await admin.post('/api/v1/users', { email: 'same@x.io', organization: a.code });
    const two = await admin.post('/api/v1/users', { email: 'same@x.io', organization: b.code });
    expect([one.statusCode, two.statusCode]).toEqual([201, 201]);
    expect(one.json().id).not.toBe(two.json().id);
  });

  it("takes usernames as Django does (letters and digits of any script, and _ . @ + -), and ' and # as identity providers send them", async () => {
    const org = await seedOrganization(t);
    for (const username of [
      'jörg.müller',
      'Ólafur+1',
      '山田_太郎',
      'ana-maría@corp',
      "o'brien@example.com",
      'jo_example.com#EXT#@tenant.onmicrosoft.com',
      'मनीष',
      'தமிழ்',
      'Jose\u0301',
    ]) {
      const res = await admin.post('/api/v1/users', { email: `${unique('u')}@x.io`, username, organization: org.code });
      expect(res.statusCode, `${username}: ${res.body}`).toBe(201);
      // Stored composed (NFC): "José" typed either way is one name.
      expect(res.json().username).toBe(username.normalize('NFC'));
    }
    const twice = await admin.post('/api/v1/users', {
      email: `${unique('u')}@x.io`,
      username: 'José',
      organization: org.code,
    });
    expect(twice.json()).toMatchObject({ status: 409, code: 'username_taken' });
    // A combining mark belongs after a letter, not on its own.
    const bare = await admin.post('/api/v1/users', {
      email: `${unique('u')}@x.io`,
      username: '\u0301a',
      organization: org.code,
    });
    expect(bare.statusCode).toBe(400);
    for (const username of ['bad name', 'CORP\\jdoe', 'a"b', 'a,b']) {
      const res = await admin.post('/api/v1/users', { email: `${unique('u')}@x.io`, username, organization: org.code });
      expect(res.statusCode, username).toBe(400);
      expect(res.json().errors[0]).toEqual({
        field: 'username',
        message: "Use letters, digits and _ . @ + - ' # only.",
      });
    }
  });

  it('refuses a blank external_id or one with a space at either end, naming it', async () => {
    const org = await seedOrganization(t);
    for (const externalId of ['  ', ' kc-1', 'kc-1 ']) {
      const res = await admin.post('/api/v1/users', {
        email: `${unique('u')}@x.io`,
        external_id: externalId,
        organization: org.code,
      });
      expect(res.statusCode, JSON.stringify(externalId)).toBe(400);
      expect(res.json().errors[0]).toMatchObject({ field: 'external_id' });
    }
  });

  it('answers 409 naming username and external_id for those duplicates', async () => {
    const org = await seedOrganization(t);
    const ext = unique('kc-');
    await admin.post('/api/v1/users', { email: 'u1@x.io', username: 'Sam', external_id: ext, organization: org.code });
    const byName = await admin.post('/api/v1/users', { email: 'u2@x.io', username: 'sam', organization: org.code });
    expect(byName.json()).toMatchObject({ status: 409, code: 'username_taken', errors: [{ field: 'username' }] });
    const other = await seedOrganization(t);
    const byExternal = await admin.post('/api/v1/users', {
      email: 'u3@x.io',
      external_id: ext,
      organization: other.code,
    });
    expect(byExternal.json()).toMatchObject({
      status: 409,
      code: 'external_id_taken',
      errors: [{ field: 'external_id' }],
    });
  });

  it('takes an address whose domain is an internationalized domain name, kept as sent and found in any case', async () => {
    const org = await seedOrganization(t);
    const email = `${unique('jane')}@Bücher.example`;
    const created = await admin.post('/api/v1/users/', { email, organization: org.code });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json().email).toBe(email);
    expect((await admin.get(`/api/v1/users/${created.json().id}/`)).json().email).toBe(email);
    const found = await admin.get(
      `/api/v1/users/?organization=${org.code}&email=${encodeURIComponent(email.toUpperCase())}`,
    );
    expect(found.json().results.map((u: { id: string }) => u.id)).toEqual([created.json().id]);
    const again = await admin.post('/api/v1/users/', { email: email.toLowerCase(), organization: org.code });
    expect(again.json()).toMatchObject({ status: 409, code: 'email_taken', errors: [{ field: 'email' }] });
    // The punycode spelling is another address, as Django compares them.
    const punycode = email.replace('Bücher', 'xn--bcher-kva');
    expect((await admin.post('/api/v1/users/', { email: punycode, organization: org.code })).statusCode).toBe(201);
  });

  it('refuses an address whose domain is no host name, or whose local part is not ASCII, naming email', async () => {
    const org = await seedOrganization(t);
    for (const email of NOT_EMAIL_ADDRESSES) {
      const res = await admin.post('/api/v1/users/', { email, organization: org.code });
      expect(res.statusCode, email).toBe(400);
      expect(res.json().errors, email).toEqual([
        { field: 'email', message: 'Must be an email address such as name@example.com.' },
      ]);
    }
  });

  it('refuses malformed bodies with 400 naming each field, and writes nothing', async () => {
    const org = await seedOrganization(t);
    const res = await admin.post('/api/v1/users', {
      email: 'not-an-email',
      first_name: 123,
      status: 'sleeping',
      organization: org.code,
    });
    expect(res.statusCode).toBe(400);
    const fields = (res.json().errors as { field: string }[]).map((e) => e.field).sort();
    expect(fields).toEqual(expect.arrayContaining(['email', 'first_name', 'status']));
    // In words a person reads, not the validator's "must match format".
    expect(res.json().errors).toContainEqual({
      field: 'email',
      message: 'Must be an email address such as name@example.com.',
    });
    const list = await admin.get(`/api/v1/users?organization=${org.code}`);
    expect(list.json().results).toEqual([]);

    const missing = await admin.post('/api/v1/users', { organization: org.code });
    expect(missing.json()).toMatchObject({
      status: 400,
      errors: [{ field: 'email', message: 'This field is required.' }],
    });
    const notJson = await t.request({
      method: 'POST',
      url: '/api/v1/users',
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      payload: '{"email":',
    });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'body' }] });
  });

  it('holds passwords an admin sets to the password policy', async () => {
    const org = await seedOrganization(t);
    const weak = await admin.post('/api/v1/users', {
      email: 'pat@x.io',
      organization: org.code,
      password: 'password123',
    });
    expect(weak.json()).toMatchObject({ status: 400, code: 'password_too_weak', errors: [{ field: 'password' }] });
    const created = (await admin.post('/api/v1/users', { email: 'pat@x.io', organization: org.code })).json();
    const personal = await admin.patch(`/api/v1/users/${created.id}`, { password: 'pat-is-my-name-2026' });
    expect(personal.json()).toMatchObject({ status: 400, code: 'password_too_weak' });
    expect((await admin.get(`/api/v1/users/${created.id}`)).json().has_password).toBe(false);
  });

  it("checks a typed user's profile against its type's schema on the generic routes too", async () => {
    const org = await seedOrganization(t);
    await t.database.db.insert(userTypes).values({
      organizationId: org.id,
      code: 'pupil',
      plural: 'pupils',
      label: 'Pupil',
      schema: { type: 'object', properties: { grade: { type: 'integer' } }, required: ['grade'] },
    });
    const bad = await admin.post('/api/v1/users', {
      email: 'kid@x.io',
      organization: org.code,
      user_type: 'pupil',
      attributes: { profile: { grade: 'seventh' } },
    });
    expect(bad.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile.grade' }] });
    const good = await admin.post('/api/v1/users', {
      email: 'kid@x.io',
      organization: org.code,
      user_type: 'pupil',
      attributes: { profile: { grade: 7 } },
    });
    expect(good.statusCode).toBe(201);
    const patched = await admin.patch(`/api/v1/users/${good.json().id}`, { attributes: { profile: {} } });
    expect(patched.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile.grade' }] });
  });

  it('holds the generic routes to the typed routes’ rules: the type must be the organization’s, the profile match it', async () => {
    const org = await seedOrganization(t);
    const other = await seedOrganization(t);
    const schema = { type: 'object', properties: { level: { type: 'integer' } }, required: ['level'] };
    for (const o of [org, other]) {
      await t.database.db
        .insert(userTypes)
        .values({ organizationId: o.id, code: 'learner', plural: 'learners', label: 'Learner', schema });
    }
    await t.database.db
      .insert(userTypes)
      .values({ organizationId: other.id, code: 'theirs', plural: 'theirs', label: 'Theirs', schema: {} });
    const orgAdmin = await clientWithRole(t, org.id, 'org_admin');
    const create = (body: Record<string, unknown>) =>
      orgAdmin.post('/api/v1/users/', { email: `${unique()}@x.io`, ...body });

    const noProfile = await create({ user_type: 'learner', attributes: {} });
    expect(noProfile.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile.level' }] });
    for (const user_type of ['nonexistent', 'theirs']) {
      const res = await create({ user_type, attributes: { profile: { level: 1 } } });
      expect(res.json(), user_type).toMatchObject({ status: 400, errors: [{ field: 'user_type' }] });
    }
    const notAnObject = await create({ user_type: 'learner', attributes: { profile: [1] } });
    expect(notAnObject.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile' }] });

    const created = await create({ user_type: 'learner', attributes: { profile: { level: 2 } } });
    expect(created.statusCode).toBe(201);
    const url = `/api/v1/users/${created.json().id}/`;
    const wiped = await orgAdmin.patch(url, { attributes: {} });
    expect(wiped.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile.level' }] });
    const moved = await orgAdmin.patch(url, { user_type: 'theirs' });
    expect(moved.json()).toMatchObject({ status: 400, errors: [{ field: 'user_type' }] });
    // A write leaving type and profile as they are needs no look at them; clearing the type is always allowed.
    expect((await orgAdmin.patch(url, { first_name: 'Lee', attributes: { profile: { level: 2 } } })).statusCode).toBe(
      200,
    );
    expect((await orgAdmin.patch(url, { user_type: null, attributes: {} })).statusCode).toBe(200);

    // An import writes through the same core, and is held to the same rules per entry.
    const imported = await admin.post('/api/admin/import-users', {
      organization: org.code,
      users: [
        { email: `${unique()}@x.io`, user_type: 'learner', attributes: { profile: { level: 3 } } },
        { email: `${unique()}@x.io`, user_type: 'learner' },
        { email: `${unique()}@x.io`, user_type: 'theirs' },
      ],
    });
    expect(imported.json()).toMatchObject({ created: 1, failed: 2 });
    expect(imported.json().results.map((r: { errors?: { field: string }[] }) => r.errors?.[0]?.field)).toEqual([
      undefined,
      'attributes.profile.level',
      'user_type',
    ]);
  });

  it('answers 400 naming organization for an unknown organization code', async () => {
    const res = await admin.post('/api/v1/users', { email: 'x@x.io', organization: 'no-such-org' });
    expect(res.json()).toMatchObject({
      status: 400,
      code: 'organization_not_found',
      errors: [{ field: 'organization' }],
    });
  });

  it('gets, updates, deactivates and deletes a user', async () => {
    const org = await seedOrganization(t);
    const created = (await admin.post('/api/v1/users', { email: 'life@x.io', organization: org.code })).json();
    const got = await admin.get(`/api/v1/users/${created.id}/`);
    expect(got.json()).toMatchObject({ id: created.id, email: 'life@x.io' });

    const patched = await admin.patch(`/api/v1/users/${created.id}`, { last_name: 'Lovelace', is_staff: true });
    expect(patched.json()).toMatchObject({ last_name: 'Lovelace', is_staff: true });

    const deactivated = await admin.post(`/api/v1/users/${created.id}/deactivate`);
    expect(deactivated.json()).toMatchObject({ status: 'deactivated', is_active: false });
    const again = await admin.post(`/api/v1/users/${created.id}/deactivate`);
    expect(again.statusCode).toBe(200);

    expect((await admin.delete(`/api/v1/users/${created.id}`)).statusCode).toBe(204);
    expect((await admin.get(`/api/v1/users/${created.id}`)).json()).toMatchObject({
      status: 404,
      code: 'user_not_found',
    });
    expect((await admin.get('/api/v1/users/not-a-uuid')).statusCode).toBe(404);
  });

  // Races need PostgreSQL (TEST_DATABASE_URL) to overlap; PGlite runs the requests one after the other.
  it('answers 404 user_not_found to a change of a user deleted meanwhile, never 500', async () => {
    const org = await seedOrganization(t);
    for (let i = 0; i < 10; i++) {
      const user = await seedUser(t, org.id, i % 2 === 0 ? { status: 'deactivated' } : {});
      const changes = () => [
        admin.post(`/api/v1/users/${user.id}/deactivate/`),
        admin.patch(`/api/v1/users/${user.id}/`, { first_name: 'Gone' }),
      ];
      const [deleted, ...changed] = await Promise.all([
        admin.delete(`/api/v1/users/${user.id}/`),
        ...changes(),
        ...changes(),
        ...changes(),
      ]);
      expect(deleted?.statusCode, deleted?.body).toBe(204);
      for (const res of changed) {
        expect([200, 404], res.body).toContain(res.statusCode);
        if (res.statusCode === 404) expect(res.json().code).toBe('user_not_found');
        else expect(res.json()).toMatchObject({ id: user.id });
      }
    }
  });

  it('ends the sessions of a user an admin suspends or gives a new password', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    expect((await client.get('/api/v1/users/validate-token/')).statusCode).toBe(200);
    await admin.patch(`/api/v1/users/${user.id}`, { status: 'suspended' });
    expect((await client.get('/api/v1/users/validate-token/')).statusCode).toBe(401);

    const other = await seedUser(t, org.id);
    const otherClient = await loginAs(t, other);
    await admin.patch(`/api/v1/users/${other.id}`, { password: 'a brand new password' });
    expect((await otherClient.get('/api/v1/users/validate-token/')).statusCode).toBe(401);
    await loginAs(t, other, 'a brand new password');
  });

  it('deactivates with is_active false, ending the sessions as a deactivation does, and reactivates with true', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    const off = await admin.patch(`/api/v1/users/${user.id}/`, { is_active: false });
    expect(off.statusCode).toBe(200);
    expect(off.json()).toMatchObject({ status: 'deactivated', is_active: false });
    expect((await client.get('/api/v1/users/validate-token/')).statusCode).toBe(401);
    await expect(loginAs(t, user)).rejects.toThrow(/login failed: 401/);
    const events = await queryRows<{ activity_type: string }>(
      t.database.db,
      sql`select activity_type from activities where object_id = ${user.id} and kind = 'audit'`,
    );
    expect(events.map((e) => e.activity_type)).toEqual(['user.deactivated']);

    const on = await admin.patch(`/api/v1/users/${user.id}/`, { is_active: true });
    expect(on.json()).toMatchObject({ status: 'active', is_active: true });
    await loginAs(t, user);
  });

  it('leaves a suspended or locked user as it is on is_active true, and refuses is_active contradicting status', async () => {
    const org = await seedOrganization(t);
    for (const status of ['suspended', 'locked'] as const) {
      const user = await seedUser(t, org.id, { status });
      const res = await admin.patch(`/api/v1/users/${user.id}`, { is_active: true });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ status, is_active: false });
    }
    const user = await seedUser(t, org.id);
    for (const body of [
      { status: 'suspended', is_active: true },
      { status: 'active', is_active: false },
    ]) {
      const res = await admin.patch(`/api/v1/users/${user.id}`, body);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'is_active' }] });
    }
    expect((await admin.get(`/api/v1/users/${user.id}`)).json()).toMatchObject({ status: 'active' });
    const agreed = await admin.patch(`/api/v1/users/${user.id}`, { status: 'suspended', is_active: false });
    expect(agreed.json()).toMatchObject({ status: 'suspended', is_active: false });
  });

  it('refuses 403 delegation_ceiling a password or email change of a user holding a permission the caller lacks', async () => {
    const org = await seedOrganization(t);
    const role = (prefix: string, level: number, permissions: string[]) =>
      createOrganizationRole(admin, org.code, prefix, level, permissions);
    const helpdesk = await role('helpdesk_', 5, ['users.view', 'users.update']);
    const deleter = await role('deleter_', 8, ['users.view', 'users.delete']);
    const reader = await role('reader_', 8, ['users.view']);
    const caller = await seedUser(t, org.id);
    const target = await seedUser(t, org.id);
    const peer = await seedUser(t, org.id);
    for (const [user, code] of [
      [caller, helpdesk],
      [target, deleter],
      [peer, reader],
      [peer, helpdesk],
    ] as const) {
      const assigned = await admin.post(`/api/v1/users/${user.id}/roles/`, { role: code });
      expect(assigned.statusCode, assigned.body).toBe(201);
    }
    const as = await loginAs(t, caller);

    for (const body of [{ password: 'a takeover password' }, { email: `${unique('taken')}@x.io` }]) {
      const res = await as.patch(`/api/v1/users/${target.id}/`, body);
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json()).toMatchObject({ code: 'delegation_ceiling', detail: expect.stringMatching(/grants beyond/) });
    }
    expect((await admin.get(`/api/v1/users/${target.id}/`)).json()).toMatchObject({ email: target.email });

    // The same grants at the same level: within reach.
    const res = await as.patch(`/api/v1/users/${peer.id}/`, { password: 'a fresh long password', first_name: 'Peer' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ first_name: 'Peer' });
  });

  it("counts no grant of an inactive module, nor a role of another organization, toward a user's reach", async () => {
    const org = await seedOrganization(t);
    const elsewhere = await seedOrganization(t);
    const moduleCode = unique('PAY').replace(/-/g, '_');
    const permission = `${moduleCode}.refund`;
    expect((await admin.post('/api/v1/modules/', { code: moduleCode, name: 'Payments' })).statusCode).toBe(201);
    const made = await admin.post('/api/v1/permissions/', {
      code: permission,
      module: moduleCode,
      action: 'refund',
      name: 'Refund',
    });
    expect(made.statusCode, made.body).toBe(201);
    const role = async (organization: string, level: number, permissions: string[], modules: string[]) => {
      const res = await admin.post('/api/v1/roles/', {
        code: unique('r_').replace(/-/g, '_'),
        name: 'Role',
        level,
        organization,
        permissions,
        modules,
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json() as { id: string; code: string };
    };
    const helpdesk = await role(org.code, 5, ['users.view', 'users.update'], ['GATEHOUSE']);
    const refunds = await role(org.code, 8, [permission], [moduleCode]);
    const foreign = await role(elsewhere.code, 0, ['users.delete'], ['GATEHOUSE']);
    const caller = await seedUser(t, org.id);
    const refunder = await seedUser(t, org.id);
    const moved = await seedUser(t, org.id);
    expect((await admin.post(`/api/v1/users/${caller.id}/roles/`, { role: helpdesk.code })).statusCode).toBe(201);
    expect((await admin.post(`/api/v1/users/${refunder.id}/roles/`, { role: refunds.code })).statusCode).toBe(201);
    // As a user who moved organizations would still hold it.
    await t.database.db.insert(userRoles).values({ userId: moved.id, roleId: foreign.id });
    const as = await loginAs(t, caller);

    expect((await as.patch(`/api/v1/users/${refunder.id}/`, { first_name: 'R' })).statusCode).toBe(403);
    expect((await as.patch(`/api/v1/users/${moved.id}/`, { first_name: 'M' })).statusCode).toBe(200);
    const off = await admin.patch(`/api/v1/modules/${moduleCode}/`, { is_active: false });
    expect(off.statusCode, off.body).toBe(200);
    expect((await as.patch(`/api/v1/users/${refunder.id}/`, { first_name: 'R' })).statusCode).toBe(200);
  });

  it('lets only staff members and superusers change is_staff, never their own (403 staff_protected, own_flags)', async () => {
    const org = await seedOrganization(t);
    const orgAdmin = await clientWithRole(t, org.id, 'org_admin');
    const staffUser = await seedUser(t, org.id, { isStaff: true });
    await grantRole(t, staffUser, 'org_admin');
    const staff = await loginAs(t, staffUser);
    const target = await seedUser(t, org.id);

    for (const body of [{ is_staff: true }, { is_staff: true, first_name: 'Staff' }]) {
      const res = await orgAdmin.patch(`/api/v1/users/${target.id}/`, body);
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json()).toMatchObject({ code: 'staff_protected', errors: [{ field: 'is_staff' }] });
    }
    const ownByAdmin = await orgAdmin.patch(`/api/v1/users/${orgAdmin.user.id}/`, { is_staff: true });
    expect(ownByAdmin.json()).toMatchObject({ status: 403, code: 'staff_protected' });
    const created = await orgAdmin.post('/api/v1/users/', { email: `${unique('staff')}@x.io`, is_staff: true });
    expect(created.json()).toMatchObject({ status: 403, code: 'staff_protected' });
    expect((await admin.get(`/api/v1/users/${target.id}/`)).json()).toMatchObject({ is_staff: false });

    // The stored value sent back changes nothing and is let through; so is a new user who is not staff.
    const unchanged = await orgAdmin.patch(`/api/v1/users/${target.id}/`, { is_staff: false, first_name: 'Same' });
    expect(unchanged.statusCode, unchanged.body).toBe(200);
    const plain = await orgAdmin.post('/api/v1/users/', { email: `${unique('plain')}@x.io`, is_staff: false });
    expect(plain.statusCode, plain.body).toBe(201);

    const own = await staff.patch(`/api/v1/users/${staffUser.id}/`, { is_staff: false });
    expect(own.json()).toMatchObject({ status: 403, code: 'own_flags' });
    const granted = await staff.patch(`/api/v1/users/${target.id}/`, { is_staff: true });
    expect(granted.statusCode, granted.body).toBe(200);
    expect(granted.json()).toMatchObject({ is_staff: true });
    const revoked = await admin.patch(`/api/v1/users/${target.id}/`, { is_staff: false });
    expect(revoked.json()).toMatchObject({ is_staff: false });
    const byStaff = await staff.post('/api/v1/users/', { email: `${unique('new-staff')}@x.io`, is_staff: true });
    expect(byStaff.statusCode, byStaff.body).toBe(201);
  });

  it('answers 400 naming the read-only fields a PATCH changes and the unknown ones it names', async () => {
    const org = await seedOrganization(t);
    const other = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const url = `/api/v1/users/${user.id}`;
    const before = (await admin.get(url)).json();
    const res = await admin.patch(url, {
      first_name: 'Eve',
      id: crypto.randomUUID(),
      organization: other.code,
      email_verified: true,
      date_joined: '2000-01-01T00:00:00Z',
    });
    expect(res.statusCode).toBe(400);
    const fields = (res.json().errors as { field: string; message: string }[]).map((e) => e.field).sort();
    // date_joined is a timestamp the server keeps: ignored, not refused.
    expect(fields).toEqual(['email_verified', 'id', 'organization']);
    expect(res.json().errors[0].message).toMatch(/cannot be changed/);
    expect((await admin.get(url)).json()).toEqual(before);

    // A misspelt field is refused by name rather than dropped: the change the client meant did not happen.
    const unknown = await admin.patch(url, { fist_name: 'Eve' });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ errors: [{ field: 'fist_name' }] });
    expect((await admin.get(url)).json()).toEqual(before);

    // The object sent back as read, with a changed name: the name is written, the rest ignored.
    const roundTrip = await admin.patch(url, { ...before, first_name: 'Eve' });
    expect(roundTrip.statusCode, roundTrip.body).toBe(200);
    expect(roundTrip.json()).toMatchObject({ id: user.id, first_name: 'Eve' });
  });

  it('keeps admin-only fields a PATCH leaves out, clears user_type with null, and records only real changes', async () => {
    const org = await seedOrganization(t);
    const created = (
      await admin.post('/api/v1/users', {
        email: `${unique('keep')}@x.io`,
        organization: org.code,
        user_type: 'staff',
        is_staff: true,
        status: 'locked',
        password: 'a sufficiently long one',
      })
    ).json();
    expect(created).toMatchObject({ user_type: 'staff', is_staff: true, status: 'locked', has_password: true });

    const renamed = await admin.patch(`/api/v1/users/${created.id}`, { first_name: 'Kept' });
    expect(renamed.json()).toMatchObject({
      first_name: 'Kept',
      user_type: 'staff',
      is_staff: true,
      status: 'locked',
      has_password: true,
    });
    const cleared = await admin.patch(`/api/v1/users/${created.id}`, { user_type: null, is_staff: false });
    expect(cleared.json()).toMatchObject({ first_name: 'Kept', user_type: null, is_staff: false, status: 'locked' });

    // A PATCH that changes nothing writes nothing: the row keeps its updated_at.
    const same = await admin.patch(`/api/v1/users/${created.id}`, { first_name: 'Kept' });
    expect(same.statusCode).toBe(200);
    expect(same.json().updated_at).toBe(cleared.json().updated_at);
  });

  it('filters by organization, status, is_active, user_type and is_staff, and searches by prefix', async () => {
    const org = await seedOrganization(t);
    await seedUser(t, org.id, { email: 'alice@corp.io', firstName: 'Alice', userType: 'student' });
    await seedUser(t, org.id, { email: 'bob@corp.io', username: 'bobby', userType: 'staff', isStaff: true });
    await seedUser(t, org.id, { email: 'carol@corp.io', lastName: 'Albright', status: 'suspended' });
    const emails = async (query: string) =>
      ((await admin.get(`/api/v1/users?organization=${org.code}&${query}`)).json().results as { email: string }[])
        .map((u) => u.email)
        .sort();

    expect(await emails('')).toEqual(['alice@corp.io', 'bob@corp.io', 'carol@corp.io']);
    expect(await emails('status=suspended')).toEqual(['carol@corp.io']);
    expect(await emails('user_type=staff')).toEqual(['bob@corp.io']);
    expect(await emails('is_staff=true')).toEqual(['bob@corp.io']);
    expect(await emails('is_active=false')).toEqual(['carol@corp.io']);
    expect(await emails('is_active=true')).toEqual(['alice@corp.io', 'bob@corp.io']);
    expect((await admin.get(`/api/v1/users?is_active=maybe`)).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'is_active' }],
    });
    expect(await emails('search=AL')).toEqual(['alice@corp.io', 'carol@corp.io']);
    expect(await emails('search=bobb')).toEqual(['bob@corp.io']);
    expect(await emails('email=ca&sort=email')).toEqual(['carol@corp.io']);
    expect(await emails('search=100%25')).toEqual([]);
    expect((await admin.get(`/api/v1/users?organization=${org.id}`)).json().results).toHaveLength(3);
    // A search lists by email unless a sort is given.
    const bySearch = (await admin.get(`/api/v1/users?organization=${org.code}&search=AL`)).json().results;
    expect(bySearch.map((u: { email: string }) => u.email)).toEqual(['alice@corp.io', 'carol@corp.io']);
    const newest = (await admin.get(`/api/v1/users?organization=${org.code}&search=AL&sort=-date_joined`)).json();
    expect(newest.results.map((u: { email: string }) => u.email)).toEqual(['carol@corp.io', 'alice@corp.io']);
  });

  it('lists the users named by id, leaving out unknown ones and those beyond the caller, and refuses more than 100', async () => {
    const org = await seedOrganization(t);
    const alice = await seedUser(t, org.id, { email: `${org.code}.alice@example.com` });
    const bob = await seedUser(t, org.id, { email: `${org.code}.bob@example.com` });
    await seedUser(t, org.id, { email: `${org.code}.carol@example.com` });
    const elsewhere = await seedUser(t, (await seedOrganization(t)).id);
    const orgAdmin = await clientWithRole(t, org.id, 'org_admin');
    const ids = (res: { json(): { results: { id: string }[] } }) =>
      res
        .json()
        .results.map((u) => u.id)
        .sort();
    const wanted = [alice.id, bob.id, elsewhere.id, newId()];
    const query = wanted.map((id) => `id=${id}`).join('&');
    expect(ids(await orgAdmin.get(`/api/v1/users?${query}`))).toEqual([alice.id, bob.id].sort());
    expect(ids(await admin.get(`/api/v1/users?${query}`))).toEqual([alice.id, bob.id, elsewhere.id].sort());
    expect(ids(await admin.get(`/api/v1/users?id=${bob.id}`))).toEqual([bob.id]);
    const tooMany = Array.from({ length: 101 }, () => `id=${newId()}`).join('&');
    expect((await admin.get(`/api/v1/users?${tooMany}`)).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'id' }],
    });
    expect((await admin.get('/api/v1/users?id=42')).json()).toMatchObject({ status: 400, errors: [{ field: 'id.0' }] });
  });

  it('lists and finds users an older version stored with attributes nested deeper than writes now take, as stored', async () => {
    const org = await seedOrganization(t);
    const nested = await seedUser(t, org.id, { email: 'deep-alice@corp.io', firstName: 'Alice' });
    await seedUser(t, org.id, { email: 'deep-bob@corp.io' });
    // Written as SQL, as no route takes it any more: 3000 levels, as the command line once stored, far beyond today's 64.
    // Compared as text: a deep equality (and its diff) recurses further than the stack allows.
    const stored = `{"kept":${'{"a":'.repeat(3000)}"bottom"${'}'.repeat(3000)}}`;
    await t.database.db.execute(sql`update users set attributes = ${stored}::jsonb where id = ${nested.id}::uuid`);
    for (const query of ['search=deep-al', 'search=Alice', 'search=deep', '']) {
      const res = await admin.get(`/api/v1/users/?organization=${org.code}&${query}`);
      expect(res.statusCode, `${query}: ${res.body.slice(0, 300)}`).toBe(200);
      const results = res.json().results as { id: string; attributes: unknown }[];
      expect(results.map((u) => u.id).includes(nested.id), query).toBe(true);
      const found = results.find((u) => u.id === nested.id);
      expect(JSON.stringify(found?.attributes) === stored, query).toBe(true);
    }
    const one = await admin.get(`/api/v1/users/${nested.id}/`);
    expect(one.statusCode).toBe(200);
    expect(JSON.stringify(one.json().attributes) === stored).toBe(true);
  });

  it('pages a search through thousands of users in each order, its matches early, late or in any column', async () => {
    // More users than a search page reads in the list's order before it turns to each column's own
    // index: matches found either way, on both sides of that bound, in every order and page.
    const org = await seedOrganization(t);
    const made: { id: string; email: string }[] = [];
    const add = async (rows: { email: string; username: string; firstName?: string; lastName?: string }[]) => {
      for (let i = 0; i < rows.length; i += 1000) {
        const values = rows.slice(i, i + 1000).map((row) => ({ ...row, id: newId(), organizationId: org.id }));
        await t.database.db.insert(users).values(values);
        for (const v of values) made.push({ id: v.id, email: v.email });
      }
    };
    const range = (n: number, row: (i: number) => Parameters<typeof add>[0][number]) =>
      Array.from({ length: n }, (_, i) => row(i));
    // Oldest: matches by first name, early in email order.
    await add(range(10, (i) => ({ email: `a${i}@m.test`, username: `sa${i}`, firstName: 'Qzara' })));
    await add(range(4100, (i) => ({ email: `f${String(i).padStart(4, '0')}@m.test`, username: `sf${i}` })));
    // Newest: matches by email (after the fillers in email order), username and last name (at the end).
    await add([
      ...range(12, (i) => ({ email: `qz${i}@m.test`, username: `sq${i}` })),
      ...range(12, (i) => ({ email: `zz${i}@m.test`, username: `QZ-user${i}` })),
      ...range(8, (i) => ({ email: `y${i}@m.test`, username: `sy${i}`, lastName: 'Qzor' })),
    ]);
    const fillerIds = new Set(made.filter((u) => u.email.startsWith('f')).map((u) => u.id));
    const matches = made.filter((u) => !fillerIds.has(u.id));
    expect(matches).toHaveLength(42);
    const byEmail = [...matches].sort((a, b) => (a.email < b.email ? -1 : a.email > b.email ? 1 : 0));
    const byId = [...matches].sort((a, b) => (a.id < b.id ? -1 : 1));
    const expected: Record<string, string[]> = {
      email: byEmail.map((u) => u.id),
      '-email': byEmail.map((u) => u.id).reverse(),
      date_joined: byId.map((u) => u.id),
      '-date_joined': byId.map((u) => u.id).reverse(),
    };
    for (const [sort, ids] of Object.entries(expected)) {
      const seen: string[] = [];
      let next: string | null = null;
      for (let page = 0; page === 0 || (next && page < 10); page++) {
        const cursor = next ? `&cursor=${next}` : '';
        const res = await admin.get(`/api/v1/users?organization=${org.code}&search=qz&sort=${sort}&limit=9${cursor}`);
        expect(res.statusCode, sort).toBe(200);
        const body = res.json() as { results: { id: string }[]; next: string | null };
        seen.push(...body.results.map((u) => u.id));
        next = body.next;
      }
      expect(seen, sort).toEqual(ids);
    }
  });

  it('pages with a keyset cursor that stays correct while users are inserted', async () => {
    for (const sort of ['-date_joined', 'date_joined', 'email', '-email']) {
      const org = await seedOrganization(t);
      const original: string[] = [];
      for (let i = 0; i < 7; i++) original.push((await seedUser(t, org.id, { email: `p${i}@x.io` })).id);
      const seen: string[] = [];
      let next: string | null = null;
      let pages = 0;
      do {
        const url = `/api/v1/users?organization=${org.code}&sort=${sort}&limit=3${next ? `&cursor=${next}` : ''}`;
        const res = await admin.get(url);
        expect(res.statusCode).toBe(200);
        const body = res.json() as { results: { id: string }[]; next: string | null };
        seen.push(...body.results.map((u) => u.id));
        next = body.next;
        // Rows arriving between pages must not shift or repeat the ones already listed.
        await seedUser(t, org.id, { email: `new${pages}-${sort}@x.io` });
        pages++;
      } while (next && pages < 20);
      const seenOriginal = seen.filter((id) => original.includes(id));
      expect(new Set(seen).size).toBe(seen.length);
      expect(seenOriginal.sort()).toEqual([...original].sort());
    }
  });

  it('refuses a cursor it did not produce', async () => {
    const res = await admin.get('/api/v1/users?cursor=garbage');
    expect(res.json()).toMatchObject({ status: 400, code: 'invalid_cursor', errors: [{ field: 'cursor' }] });
    const wrongShape = Buffer.from(JSON.stringify(['x', 'y'])).toString('base64url');
    expect((await admin.get(`/api/v1/users?cursor=${wrongShape}`)).statusCode).toBe(400);
    // Hand-made with text the database cannot compare: refused, not a 500.
    for (const text of ['x\u0000', 'x\ud800']) {
      const cursor = Buffer.from(JSON.stringify([text, '01a20af0-739a-7fa6-a145-71d179ff4dc1'])).toString('base64url');
      const res = await admin.get(`/api/v1/users?sort=email&limit=2&cursor=${cursor}`);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().code).toBe('invalid_cursor');
    }
    expect((await admin.get('/api/v1/users?limit=0')).json()).toMatchObject({ errors: [{ field: 'limit' }] });
  });

  it("keeps the identity provider's attributes.scim when a PATCH of attributes leaves it out, and refuses another value", async () => {
    const { scim } = await scimClient(t);
    const created = await scim('POST', '/Users', {
      schemas: [SCIM_USER, SCIM_ENTERPRISE],
      userName: unique('scim'),
      emails: [{ value: `${unique('scim')}@example.com`, primary: true }],
      title: 'Teacher',
      [SCIM_ENTERPRISE]: { department: 'Maths' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;
    const stored = (await admin.get(`/api/v1/users/${id}/`)).json().attributes.scim;
    expect(stored).toMatchObject({ title: 'Teacher' });

    const patched = await admin.patch(`/api/v1/users/${id}/`, { attributes: { dept: 'x' } });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().attributes).toEqual({ dept: 'x', scim: stored });
    expect((await scim('GET', `/Users/${id}`)).json()).toMatchObject({
      title: 'Teacher',
      [SCIM_ENTERPRISE]: { department: 'Maths' },
    });

    // Sent back as read it is ignored; another value is refused naming it, and nothing changes.
    const echoed = await admin.patch(`/api/v1/users/${id}/`, {
      attributes: { ...patched.json().attributes, dept: 'y' },
    });
    expect(echoed.statusCode, echoed.body).toBe(200);
    const changed = await admin.patch(`/api/v1/users/${id}/`, { attributes: { dept: 'z', scim: { title: 'Head' } } });
    expect(changed.statusCode).toBe(400);
    expect(changed.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'attributes.scim' }] });
    expect((await admin.get(`/api/v1/users/${id}/`)).json().attributes).toEqual({ dept: 'y', scim: stored });
  });

  it('answers 401 without a token and 403 for a user who is not a superuser', async () => {
    expect((await t.request({ method: 'GET', url: '/api/v1/users' })).statusCode).toBe(401);
    const org = await seedOrganization(t);
    const plain = await loginAs(t, await seedUser(t, org.id));
    const res = await plain.get('/api/v1/users');
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ code: 'permission_denied' });
    expect((await plain.post('/api/v1/users', { email: 'x@y.io' })).statusCode).toBe(403);
  });

  describe('GET /api/v1/users/user/{id}/ (for other services)', () => {
    it('answers the user view to a superuser and to the user themself, never the password hash', async () => {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id, { firstName: 'Grace' });
      const self = await loginAs(t, user);
      for (const client of [admin, self]) {
        const res = await client.get(`/api/v1/users/user/${user.id}/`);
        expect(res.statusCode).toBe(200);
        expect(res.json()).toMatchObject({
          id: user.id,
          email: user.email,
          first_name: 'Grace',
          organization: org.code,
        });
        expect(res.body).not.toContain('password_hash');
        expect(res.body).not.toContain('argon2');
      }
    });

    it('answers 404 for another user, for an unknown id and 401 without a token', async () => {
      const org = await seedOrganization(t);
      const other = await seedUser(t, org.id);
      const plain = await loginAs(t, await seedUser(t, org.id));
      expect((await plain.get(`/api/v1/users/user/${other.id}/`)).json()).toMatchObject({
        status: 404,
        code: 'user_not_found',
      });
      expect((await admin.get('/api/v1/users/user/0190a000-0000-7000-8000-000000000000/')).statusCode).toBe(404);
      expect((await admin.get('/api/v1/users/user/not-a-uuid/')).statusCode).toBe(404);
      expect((await t.request({ method: 'GET', url: `/api/v1/users/user/${other.id}/` })).statusCode).toBe(401);
    });
  });
});
