import { sql } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import {
  type Client,
  clientWithRole,
  createOrganizationRole,
  grantRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
  TEST_PASSWORD,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { applyUserTypeTemplate } from './user-types.service.js';

describe('user types and typed users', () => {
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
  });
  afterAll(() => t.close());

  async function createType(body: Record<string, unknown>) {
    return admin.post('/api/v1/user-types/', body);
  }

  it('serves a new type under /api/v1/users/<plural>/ at once, validating profiles against its schema', async () => {
    const code = unique('pupil').replace(/-/g, '');
    const plural = `${code}s`;
    const res = await createType({
      code,
      plural,
      label: 'Pupil',
      schema: {
        type: 'object',
        properties: { grade: { type: 'integer', minimum: 1, maximum: 12 }, house: { type: 'string' } },
        required: ['grade'],
      },
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ code, plural, organization: null });

    const bad = await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { grade: 'ten' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    expect(bad.json().errors).toEqual([expect.objectContaining({ field: 'profile.grade' })]);
    const missing = await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io` });
    expect(missing.json().errors).toEqual([expect.objectContaining({ field: 'profile.grade' })]);

    const created = await admin.post(`/api/v1/users/${plural}/`, {
      email: `${unique()}@x.io`,
      first_name: 'Ada',
      profile: { grade: 10, house: 'red' },
    });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    expect(created.json()).toMatchObject({ user_type: code, profile: { grade: 10, house: 'red' } });
    await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { grade: 3 } });

    const list = await admin.get(`/api/v1/users/${plural}/`);
    expect(list.statusCode).toBe(200);
    expect(list.json().results).toHaveLength(2);
    const filtered = await admin.get(`/api/v1/users/${plural}/?profile.grade=10`);
    expect(filtered.json().results.map((u: { id: string }) => u.id)).toEqual([id]);
    const byText = await admin.get(`/api/v1/users/${plural}/?profile.house=red'%20or%201=1`);
    expect(byText.json().results).toEqual([]);
    expect((await admin.get(`/api/v1/users/${plural}/?profile.grade=x`)).json().errors[0].field).toBe('profile.grade');

    expect((await admin.get(`/api/v1/users/${plural}/${id}/`)).json()).toMatchObject({ id, first_name: 'Ada' });
    // The UUID path is still the users module's.
    expect((await admin.get(`/api/v1/users/${id}/`)).json()).toMatchObject({ id, user_type: code });

    const patched = await admin.patch(`/api/v1/users/${plural}/${id}/`, { profile: { grade: 11, house: null } });
    expect(patched.statusCode).toBe(200);
    expect(patched.json().profile).toEqual({ grade: 11 });
    const badPatch = await admin.patch(`/api/v1/users/${plural}/${id}/`, { profile: { grade: 13 } });
    expect(badPatch.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.grade' }] });

    expect((await admin.delete(`/api/v1/users/${plural}/${id}/`)).statusCode).toBe(204);
    expect((await admin.get(`/api/v1/users/${plural}/${id}/`)).statusCode).toBe(404);
  });

  it('takes an address with an internationalized domain as the email and in a profile property of format email', async () => {
    const code = unique('guardian').replace(/-/g, '');
    const plural = `${code}s`;
    const type = await createType({
      code,
      plural,
      label: 'Guardian',
      schema: { type: 'object', properties: { contact: { type: 'string', format: 'email' } } },
    });
    expect(type.statusCode, type.body).toBe(201);
    const email = `${unique('jane')}@Bücher.example`;
    const contact = 'kontakt@straße.example';
    const created = await admin.post(`/api/v1/users/${plural}/`, { email, profile: { contact } });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ email, profile: { contact } });
    const id = created.json().id as string;
    const changed = `${unique('jane')}@例え.テスト`;
    const patched = await admin.patch(`/api/v1/users/${plural}/${id}/`, { email: changed });
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await admin.get(`/api/v1/users/${plural}/${id}/`)).json()).toMatchObject({
      email: changed,
      profile: { contact },
    });

    for (const bad of NOT_EMAIL_ADDRESSES) {
      const asEmail = await admin.post(`/api/v1/users/${plural}/`, { email: bad });
      expect(asEmail.json(), bad).toMatchObject({ status: 400, errors: [{ field: 'email' }] });
      const asPatch = await admin.patch(`/api/v1/users/${plural}/${id}/`, { email: bad });
      expect(asPatch.json(), bad).toMatchObject({ status: 400, errors: [{ field: 'email' }] });
      const inProfile = await admin.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { contact: bad },
      });
      expect(inProfile.json(), bad).toMatchObject({ status: 400, errors: [{ field: 'profile.contact' }] });
    }
  });

  it('shows whether two-factor authentication is on in every typed-user view, as the plain user views do', async () => {
    const code = unique('mfakind').replace(/-/g, '');
    const plural = `${code}s`;
    expect((await createType({ code, plural, label: 'Kind' })).statusCode).toBe(201);
    const org = await seedOrganization(t);
    const email = `${unique()}@x.io`;
    const created = await admin.post(`/api/v1/users/${plural}/`, {
      email,
      password: TEST_PASSWORD,
      organization: org.code,
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ mfa_enabled: false });
    const id = created.json().id as string;

    // The user turns a TOTP authenticator on, as any user does.
    const login = await t.request({ method: 'POST', url: '/api/token/', payload: { email, password: TEST_PASSWORD } });
    const headers = { authorization: `Bearer ${login.json().access}` };
    const enrol = await t.request({
      method: 'POST',
      url: '/api/v1/users/mfa/totp/',
      payload: { password: TEST_PASSWORD },
      headers,
    });
    const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(enrol.json().secret), digits: 6, period: 30 });
    const confirm = await t.request({
      method: 'POST',
      url: '/api/v1/users/mfa/totp/confirm/',
      payload: { code: totp.generate() },
      headers,
    });
    expect(confirm.statusCode, confirm.body).toBe(200);

    const list = await admin.get(`/api/v1/users/${plural}/?organization=${org.code}`);
    expect(list.json().results).toEqual([expect.objectContaining({ id, mfa_enabled: true })]);
    expect((await admin.get(`/api/v1/users/${plural}/${id}/`)).json()).toMatchObject({ mfa_enabled: true });
    const patched = await admin.patch(`/api/v1/users/${plural}/${id}/`, { first_name: 'Grace' });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({ first_name: 'Grace', mfa_enabled: true });
    expect((await admin.get(`/api/v1/users/${id}/`)).json()).toMatchObject({ mfa_enabled: true });
  });

  it('filters on a property whose type is a list by its non-null member, and on null where the type allows it', async () => {
    const code = unique('kid').replace(/-/g, '');
    const plural = `${code}s`;
    const res = await createType({
      code,
      plural,
      label: 'Kid',
      schema: {
        type: 'object',
        properties: {
          score: { type: ['number', 'null'] },
          age: { type: ['null', 'integer'] },
          enrolled: { type: ['boolean', 'null'] },
          nick: { type: ['string', 'null'] },
        },
      },
    });
    expect(res.statusCode, res.body).toBe(201);
    const ids: string[] = [];
    for (const profile of [
      { score: 1.5, age: 7, enrolled: true, nick: 'null' },
      { score: null, age: null, enrolled: null, nick: null },
      { score: 3 },
    ]) {
      const created = await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile });
      expect(created.statusCode, created.body).toBe(201);
      ids.push(created.json().id);
    }
    const [typed, nulls] = ids;
    const found = async (query: string) =>
      (await admin.get(`/api/v1/users/${plural}/?${query}`)).json().results.map((u: { id: string }) => u.id);

    expect(await found('profile.score=1.5')).toEqual([typed]);
    expect(await found('profile.age=7')).toEqual([typed]);
    expect(await found('profile.enrolled=true')).toEqual([typed]);
    expect(await found('profile.score=null')).toEqual([nulls]);
    expect(await found('profile.age=null')).toEqual([nulls]);
    expect(await found('profile.enrolled=null')).toEqual([nulls]);
    // A string is taken as written: "null" is that text.
    expect(await found('profile.nick=null')).toEqual([typed]);
    for (const [query, field] of [
      ['profile.score=x', 'profile.score'],
      ['profile.age=7.5', 'profile.age'],
      ['profile.enrolled=yes', 'profile.enrolled'],
    ]) {
      const bad = await admin.get(`/api/v1/users/${plural}/?${query}`);
      expect(bad.json(), query).toMatchObject({ status: 400, errors: [{ field }] });
    }
  });

  it('answers 400 naming a type’s code, which cannot be changed, and a body with nothing to change with the type as it is', async () => {
    const code = unique('kind').replace(/-/g, '');
    const type = (await createType({ code, plural: `${code}s`, label: 'Kind' })).json();
    const url = `/api/v1/user-types/${type.id}/`;
    const refused = await admin.patch(url, { code: 'other', label: 'Renamed' });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'code' }] });
    const unchanged = await admin.patch(url, { id: type.id, code: type.code });
    expect(unchanged.statusCode).toBe(200);
    expect(unchanged.json()).toEqual(type);
  });

  it('changes a typed user’s username and is_active, and refuses its user_type by name', async () => {
    const code = unique('clerk').replace(/-/g, '');
    const plural = `${code}s`;
    expect((await createType({ code, plural, label: 'Clerk' })).statusCode).toBe(201);
    const created = (await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io` })).json();
    const url = `/api/v1/users/${plural}/${created.id}/`;
    const username = unique('clerk');
    const patched = await admin.patch(url, { username, is_active: false });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ username, status: 'deactivated', is_active: false });
    const refused = await admin.patch(url, { user_type: 'other' });
    expect(refused.json()).toMatchObject({ status: 400, errors: [{ field: 'user_type' }] });
    // Sent back as read, the view's fields change nothing; a field the route does not take is refused by name.
    expect((await admin.patch(url, { ...(patched.json() as object), first_name: 'Clerk' })).statusCode).toBe(200);
    for (const body of [{ bogus_field: 1 }, { password: 'a long enough password' }, { is_staff: true }]) {
      const res = await admin.patch(url, body);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().errors).toEqual([{ field: Object.keys(body)[0], message: 'This field is not allowed.' }]);
    }
    expect((await admin.get(url)).json()).toMatchObject({ first_name: 'Clerk', status: 'deactivated' });
  });

  it('holds every typed write to the delegation ceiling, and applies no field the create does not declare', async () => {
    const org = await seedOrganization(t);
    const code = unique('desk').replace(/-/g, '');
    const plural = `${code}s`;
    expect((await createType({ code, plural, label: 'Desk', organization: org.code })).statusCode).toBe(201);
    const role = (prefix: string, level: number, permissions: string[]) =>
      createOrganizationRole(admin, org.code, prefix, level, permissions);
    const helpdesk = await role('helpdesk_', 5, ['users.view', 'users.update']);
    const deleter = await role('deleter_', 8, ['users.view', 'users.delete']);
    const caller = await seedUser(t, org.id);
    const target = await seedUser(t, org.id, { userType: code });
    expect((await admin.post(`/api/v1/users/${caller.id}/roles/`, { role: helpdesk })).statusCode).toBe(201);
    expect((await admin.post(`/api/v1/users/${target.id}/roles/`, { role: deleter })).statusCode).toBe(201);
    const as = await loginAs(t, caller);

    const refused = await as.patch(`/api/v1/users/${plural}/${target.id}/`, { first_name: 'Taken' });
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'delegation_ceiling' });
    const password = await as.patch(`/api/v1/users/${plural}/${target.id}/`, { password: 'a takeover password' });
    expect(password.statusCode, password.body).toBe(400);

    const created = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io` });
    expect(created.statusCode, created.body).toBe(201);
    const stored = (await admin.get(`/api/v1/users/${created.json().id}/`)).json();
    expect(stored).toMatchObject({ is_staff: false, status: 'active', user_type: code });
  });

  it('refuses on create, naming it, a field the typed PATCH refuses, rather than creating the user without it', async () => {
    const code = unique('intern').replace(/-/g, '');
    const plural = `${code}s`;
    expect((await createType({ code, plural, label: 'Intern' })).statusCode).toBe(201);
    const email = `${unique()}@x.io`;
    for (const body of [
      { is_staff: true },
      { is_superuser: true },
      { user_type: 'other' },
      { attributes: { team: 'x' } },
      { status: 'suspended' },
    ]) {
      const res = await admin.post(`/api/v1/users/${plural}/`, { email, ...body });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().errors).toEqual([{ field: Object.keys(body)[0], message: 'This field is not allowed.' }]);
    }
    // Nothing was created by the refused requests.
    expect((await admin.get(`/api/v1/users/${plural}/`)).json().results).toEqual([]);
    expect((await admin.post(`/api/v1/users/${plural}/`, { email })).statusCode).toBe(201);
  });

  it('filters on profile keys named like Object members (__proto__, constructor, prototype) as on any other key', async () => {
    const code = unique('odd').replace(/-/g, '');
    const plural = `${code}s`;
    expect((await createType({ code, plural, label: 'Odd' })).statusCode).toBe(201);
    const ids: Record<string, string> = {};
    for (const key of ['constructor', 'prototype', 'other']) {
      const created = await admin.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { [key]: 'x' },
      });
      expect(created.statusCode, created.body).toBe(201);
      ids[key] = created.json().id;
    }
    const found = async (query: string) => {
      const res = await admin.get(`/api/v1/users/${plural}/?${query}`);
      expect(res.statusCode, res.body).toBe(200);
      return res.json().results.map((u: { id: string }) => u.id);
    };
    expect(await found('profile.constructor=x')).toEqual([ids.constructor]);
    expect(await found('profile.prototype=x')).toEqual([ids.prototype]);
    // No profile holds a key "__proto__" (JSON bodies refuse it), so it matches nobody, as an unknown key does.
    expect(await found('profile.__proto__=x')).toEqual([]);
    expect(await found('profile.unknown=x')).toEqual([]);
  });

  it('answers 404 for a user of another type under a plural, and user_not_found (405 to POST) for a segment that is no plural', async () => {
    await applyUserTypeTemplate(t.database.db, 'school');
    const staff = await admin.post('/api/v1/users/staff/', {
      email: `${unique()}@x.io`,
      profile: { department: 'Maths' },
    });
    expect(staff.statusCode).toBe(201);
    expect((await admin.get(`/api/v1/users/students/${staff.json().id}/`)).statusCode).toBe(404);
    // GET /api/v1/users/<segment>/ reads a user by id or lists a type: neither, as the users module answers.
    for (const segment of ['unicorns', 'not-a-uuid', '12345']) {
      const res = await admin.get(`/api/v1/users/${segment}/`);
      expect(res.json()).toMatchObject({ status: 404, code: 'user_not_found' });
      expect(res.json().detail).toContain(`no user type the plural "${segment}"`);
    }
    // POST: /api/v1/users/{id}/ takes none, so a segment that is no plural answers 405 as a user id does.
    const post = await admin.post('/api/v1/users/unicorns/', { email: `${unique()}@x.io` });
    expect(post.json()).toMatchObject({ status: 405, code: 'method_not_allowed' });
    expect(post.headers.allow).toBe('GET, HEAD, PATCH, DELETE');
    expect((await admin.get('/api/v1/users/students/')).statusCode).toBe(200);
  });

  it('refuses reserved words and UUIDs as plurals with 400 naming plural, and duplicates with 409', async () => {
    for (const word of ['profile', 'sessions', 'login', 'validate-token', 'me']) {
      const res = await createType({ code: unique('x').replace(/-/g, ''), plural: word, label: 'X' });
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].field).toBe('plural');
    }
    const code = unique('dup').replace(/-/g, '');
    expect((await createType({ code, plural: `${code}s`, label: 'A' })).statusCode).toBe(201);
    const dup = await createType({ code, plural: `${code}z`, label: 'B' });
    expect(dup.statusCode).toBe(409);
    const badSchema = await createType({ code: `${code}q`, plural: `${code}q`, label: 'Q', schema: { type: 'nope' } });
    expect(badSchema.json().errors[0].field).toBe('schema');
  });

  it('refuses with 400 naming schema a profile schema whose root does not take an object, on create and update', async () => {
    for (const schema of [
      { type: 'string' },
      { type: 'array', items: { type: 'string' } },
      { type: ['null', 'integer'] },
    ]) {
      const code = unique('flat').replace(/-/g, '');
      const res = await createType({ code, plural: `${code}s`, label: 'Flat', schema });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'schema' }] });
      expect(res.json().errors[0].message).toMatch(/object/);
      expect((await admin.get(`/api/v1/users/${code}s/`)).statusCode).toBe(404);
    }
    const code = unique('round').replace(/-/g, '');
    const ok = await createType({ code, plural: `${code}s`, label: 'Round', schema: { type: ['object', 'null'] } });
    expect(ok.statusCode, ok.body).toBe(201);
    const url = `/api/v1/user-types/${ok.json().id}/`;
    const refused = await admin.patch(url, { schema: { type: 'string' } });
    expect(refused.json()).toMatchObject({ status: 400, errors: [{ field: 'schema' }] });
    expect((await admin.get(url)).json().schema).toEqual({ type: ['object', 'null'] });
    expect((await admin.post(`/api/v1/users/${code}s/`, { email: `${unique()}@x.io` })).statusCode).toBe(201);
  });

  it('answers 409 user_type_in_use to deleting a type users still hold', async () => {
    const org = await seedOrganization(t);
    const code = unique('held').replace(/-/g, '');
    const global = (await createType({ code, plural: `${code}s`, label: 'Held' })).json();
    const own = (await createType({ code, plural: `${code}z`, label: 'Own', organization: org.code })).json();
    const user = (
      await admin.post(`/api/v1/users/${code}z/`, { email: `${unique()}@x.io`, organization: org.code })
    ).json();
    expect(user.user_type).toBe(code);

    const refused = await admin.delete(`/api/v1/user-types/${own.id}/`);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'user_type_in_use' });
    // The organization's user is its own type's, not the global one's.
    expect((await admin.delete(`/api/v1/user-types/${global.id}/`)).statusCode).toBe(204);

    expect((await admin.patch(`/api/v1/users/${user.id}/`, { user_type: null })).statusCode).toBe(200);
    expect((await admin.delete(`/api/v1/user-types/${own.id}/`)).statusCode).toBe(204);
    expect((await admin.get(`/api/v1/user-types/${own.id}/`)).statusCode).toBe(404);
  });

  it('lets a superuser read, change and delete a user of an organization’s own type', async () => {
    const org = await seedOrganization(t);
    const other = await seedOrganization(t);
    const code = unique('intern').replace(/-/g, '');
    const plural = `${code}s`;
    const schema = { type: 'object', properties: { desk: { type: 'integer' } }, required: ['desk'] };
    expect((await createType({ code, plural, label: 'Intern', organization: org.code, schema })).statusCode).toBe(201);
    const orgAdmin = await clientWithRole(t, org.id, 'org_admin');
    const user = (
      await orgAdmin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { desk: 1 } })
    ).json();
    const url = `/api/v1/users/${plural}/${user.id}/`;

    // The superuser belongs to another organization, which has no such type.
    expect((await admin.get(url)).json()).toMatchObject({ id: user.id, profile: { desk: 1 } });
    expect((await admin.get(`${url}?organization=${org.code}`)).statusCode).toBe(200);
    expect((await admin.get(`${url}?organization=${other.code}`)).json()).toMatchObject({ code: 'user_not_found' });
    expect((await orgAdmin.get(`${url}?organization=${other.code}`)).json()).toMatchObject({ code: 'user_not_found' });
    const patched = await admin.patch(url, { profile: { desk: 2 } });
    expect(patched.json()).toMatchObject({ profile: { desk: 2 } });
    expect((await admin.patch(url, { profile: { desk: 'x' } })).json().errors[0].field).toBe('profile.desk');
    // A platform API key reaches every organization's users elsewhere, but typed users are for signed-in users.
    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: unique('key '),
      organization: null,
      scopes: ['read:users'],
    });
    for (const target of [url, `/api/v1/users/${plural}/`]) {
      const refused = await t.request({ method: 'GET', url: target, headers: { 'x-api-key': key } });
      expect(refused.statusCode, target).toBe(403);
    }
    // Deleting needs users.delete, as on /api/v1/users/{id}/: users.update is not enough.
    const updater = await seedUser(t, org.id);
    await grantRole(
      t,
      updater,
      await createOrganizationRole(orgAdmin, org.code, 'updater', 5, ['users.view', 'users.update']),
    );
    const refused = await (await loginAs(t, updater)).delete(url);
    expect(refused.json()).toMatchObject({ status: 403, code: 'permission_denied' });
    expect((await admin.delete(url)).statusCode).toBe(204);
    expect((await orgAdmin.get(url)).statusCode).toBe(404);
  });

  it('keeps the static routes under /api/v1/users/ first', async () => {
    const res = await admin.get('/api/v1/users/validate-token/');
    expect(res.statusCode).toBe(200);
    expect(res.json().valid).toBe(true);
  });

  it('lets an organization type shadow a global one only inside that organization', async () => {
    const org = await seedOrganization(t);
    const res = await createType({
      code: 'student',
      plural: 'students',
      label: 'Learner',
      organization: org.code,
      schema: { type: 'object', properties: { level: { type: 'string' } }, additionalProperties: false },
    });
    expect(res.statusCode).toBe(201);
    const other = await seedOrganization(t);
    const globalOne = await admin.post('/api/v1/users/students/', {
      email: `${unique()}@x.io`,
      organization: other.code,
      profile: { grade: 5 },
    });
    expect(globalOne.statusCode).toBe(201);
    const local = await admin.post('/api/v1/users/students/', {
      email: `${unique()}@x.io`,
      organization: org.code,
      profile: { grade: 5 },
    });
    expect(local.json().errors[0].field).toBe('profile.grade');
  });

  it('needs authentication and the users permissions', async () => {
    expect((await t.request({ method: 'GET', url: '/api/v1/users/students/' })).statusCode).toBe(401);
    const org = await seedOrganization(t);
    const plain = await seedUser(t, org.id);
    const { loginAs } = await import('../../../test/seed.js');
    const client = await loginAs(t, plain);
    expect((await client.get('/api/v1/users/students/')).statusCode).toBe(403);
    expect((await client.get('/api/v1/user-types/')).statusCode).toBe(403);
  });

  describe('schemas written by organization administrators', () => {
    async function orgAdmin() {
      const org = await seedOrganization(t);
      const as = await clientWithRole(t, org.id, 'org_admin');
      /** Creates a type of the organization with this schema (a fresh code starting with `prefix`). */
      const create = (prefix: string, schema: Record<string, unknown>) => {
        const code = unique(prefix).replace(/-/g, '');
        return as.post('/api/v1/user-types/', {
          code,
          plural: `${code}s`,
          label: prefix,
          organization: org.code,
          schema,
        });
      };
      return { org, as, create };
    }

    it('creates a type without organization in the administrator’s own, as roles are, and refuses a global one', async () => {
      const { org, as } = await orgAdmin();
      const code = unique('own').replace(/-/g, '');
      const created = await as.post('/api/v1/user-types/', { code, plural: `${code}s`, label: 'Own' });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ code, organization: org.code, organization_id: org.id });
      const global = await as.post('/api/v1/user-types/', {
        code: `${code}g`,
        plural: `${code}gs`,
        label: 'Global',
        organization: null,
      });
      expect(global.statusCode).toBe(403);
      expect(global.json()).toMatchObject({ code: 'platform_object' });
    });

    it('matches patterns in linear time, so a backtracking pattern cannot hold the server', async () => {
      const { as, create } = await orgAdmin();
      const type = await create('redos', {
        type: 'object',
        properties: { a: { type: 'string', pattern: '^(a+)+$' } },
        patternProperties: { '^(b+)+$': { type: 'string' } },
      });
      expect(type.statusCode).toBe(201);
      const { plural } = type.json();
      // A backtracking engine takes seconds on 30 characters (doubling with each one more); RE2 takes microseconds.
      const evil = `${'a'.repeat(30)}!`;
      const started = Date.now();
      const res = await as.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { a: evil, [`${'b'.repeat(30)}!`]: 1 },
      });
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(res.statusCode).toBe(400);
      expect(res.json().errors).toEqual([expect.objectContaining({ field: 'profile.a' })]);
      const ok = await as.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { a: 'aaa', bb: 'x' },
      });
      expect(ok.statusCode).toBe(201);
    });

    it('refuses patterns that have no linear-time match with 400 naming where they are', async () => {
      const { org, as } = await orgAdmin();
      const code = unique('pat').replace(/-/g, '');
      const create = (schema: Record<string, unknown>) =>
        as.post('/api/v1/user-types/', { code, plural: `${code}s`, label: 'P', organization: org.code, schema });
      const backreference = await create({ properties: { a: { type: 'string', pattern: '^(a)\\1$' } } });
      expect(backreference.statusCode).toBe(400);
      expect(backreference.json().errors).toEqual([expect.objectContaining({ field: 'schema.properties.a.pattern' })]);
      const lookahead = await create({ patternProperties: { '^(?=x)': { type: 'string' } } });
      expect(lookahead.json().errors).toEqual([expect.objectContaining({ field: 'schema.patternProperties' })]);
      // The syntax of JavaScript patterns is kept: \u escapes, named groups, Unicode classes.
      const type = await create({
        properties: { a: { type: 'string', pattern: '^(?<w>\\p{L}+)\\u00e9$' } },
      });
      expect(type.statusCode).toBe(201);
      const refused = await as.patch(`/api/v1/user-types/${type.json().id}/`, {
        schema: { properties: { a: { pattern: '(?<!x)a' } } },
      });
      expect(refused.json()).toMatchObject({ status: 400, errors: [{ field: 'schema.properties.a.pattern' }] });
      expect(
        (await as.post(`/api/v1/users/${code}s/`, { email: `${unique()}@x.io`, profile: { a: 'caf\u00e9' } }))
          .statusCode,
      ).toBe(201);
      expect(
        (await as.post(`/api/v1/users/${code}s/`, { email: `${unique()}@x.io`, profile: { a: 'cafe' } })).statusCode,
      ).toBe(400);

      // A type stored before this rule: its users' writes answer 409 naming the type, not the writer's fields.
      await t.database.db.execute(
        sql`update user_types set schema = ${JSON.stringify({ properties: { a: { type: 'string', pattern: '(?<!x)a' } } })}::jsonb, updated_at = now() where id = ${type.json().id}`,
      );
      const stale = await as.post(`/api/v1/users/${code}s/`, { email: `${unique()}@x.io`, profile: { a: 'a' } });
      expect(stale.statusCode, stale.body).toBe(409);
      expect(stale.json()).toMatchObject({ code: 'user_type_schema_unusable' });
      expect(stale.json().detail).toContain(`"${code}"`);
    });

    it('refuses a schema whose $refs form a cycle with 400 naming the cycle, never the engine’s error', async () => {
      const { create } = await orgAdmin();
      const schemas = [
        { definitions: { a: { $ref: '#/definitions/b' }, b: { $ref: '#/definitions/a' } }, $ref: '#/definitions/a' },
        {
          type: 'object',
          properties: { x: { $ref: '#/definitions/a' } },
          definitions: { a: { $ref: '#/definitions/a' } },
        },
      ];
      for (const schema of schemas) {
        const res = await create('cycle', schema);
        expect(res.statusCode, res.body).toBe(400);
        const [error] = res.json().errors as { field: string; message: string }[];
        expect(error?.field).toMatch(/^schema\.definitions\.a\.\$ref$/);
        expect(error?.message).toContain('#/definitions/a');
        expect(error?.message).toMatch(/cycle/);
        expect(res.body).not.toMatch(/call stack|RangeError/);
      }
    });

    it('refuses with 400 naming schema a recursive $ref, on create and update; definitions shared without recursion are fine', async () => {
      const { as, create: createOf } = await orgAdmin();
      const create = (schema: Record<string, unknown>) => createOf('self', schema);
      const recurse = { type: 'object', properties: { c: { $ref: '#' } } };
      for (const schema of [
        { $ref: '#' },
        { type: 'object', allOf: [{ $ref: '#' }] },
        { type: 'object', not: { anyOf: [{ type: 'null' }, { $ref: '#' }] } },
        {
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then; this object is never awaited.
          definitions: { a: { if: { required: ['x'] }, then: { $ref: '#' } } },
          allOf: [{ $ref: '#/definitions/a' }],
        },
        { type: 'object', dependencies: { x: { $ref: '#' } } },
        // Through a property validation ends with the profile's nesting, but two such paths double the
        // work at every level: 2^64 schema applications for a profile nested as deep as JSON bodies go.
        recurse,
        { type: 'object', allOf: [recurse, recurse] },
        { definitions: { node: { type: 'array', items: { $ref: '#/definitions/node' } } }, $ref: '#/definitions/node' },
      ]) {
        const res = await create(schema);
        expect(res.statusCode, JSON.stringify(schema)).toBe(400);
        expect(res.json().errors[0].field).toMatch(/^schema(\.|$)/);
        expect(res.json().errors[0].message).toMatch(/cycle/);
      }
      // One definition named from several places, without recursion, is applied once per place.
      const shared = await create({
        definitions: { phone: { type: 'string', pattern: '^[0-9+ ]{3,20}$' } },
        type: 'object',
        properties: { home: { $ref: '#/definitions/phone' }, work: { $ref: '#/definitions/phone' } },
      });
      expect(shared.statusCode, shared.body).toBe(201);
      const plural = shared.json().plural;
      const refused = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { work: 'x' } });
      expect(refused.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.work' }] });
      // Reused so often that one validation would apply more schemas than the limit: refused.
      const fanned: Record<string, unknown> = { d0: { type: 'string' } };
      for (let i = 1; i <= 11; i++)
        fanned[`d${i}`] = { allOf: [{ $ref: `#/definitions/d${i - 1}` }, { $ref: `#/definitions/d${i - 1}` }] };
      const wide = await create({ definitions: fanned, $ref: '#/definitions/d11' });
      expect(wide.statusCode).toBe(400);
      expect(wide.json().errors[0].message).toMatch(/at most 1024 schemas/);

      const patched = await as.patch(`/api/v1/user-types/${shared.json().id}/`, {
        schema: { type: 'object', anyOf: [{ $ref: '#' }] },
      });
      expect(patched.statusCode).toBe(400);
      expect(patched.json().errors[0].field).toMatch(/^schema(\.|$)/);
      const ok = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { home: '+1 555' } });
      expect(ok.statusCode, ok.body).toBe(201);
    });

    it('answers 409 naming the type, never 500, for a stored schema whose validation recurses without end', async () => {
      const { as, create } = await orgAdmin();
      const type = await create('loop', {});
      expect(type.statusCode).toBe(201);
      const { code, plural } = type.json();
      const user = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: {} });
      expect(user.statusCode).toBe(201);
      // Written by an older version, which did not refuse it.
      await t.database.db.execute(
        sql`update user_types set schema = ${JSON.stringify({ $ref: '#' })}::jsonb, updated_at = now() where id = ${type.json().id}`,
      );
      const writes = [
        await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: {} }),
        await as.patch(`/api/v1/users/${plural}/${user.json().id}/`, { profile: { a: 1 } }),
        await as.post('/api/v1/users/', { email: `${unique()}@x.io`, user_type: code, attributes: { profile: {} } }),
      ];
      for (const res of writes) {
        expect(res.statusCode, res.body).toBe(409);
        expect(res.json()).toMatchObject({ code: 'user_type_schema_unusable' });
        expect(res.json().detail).toContain(`"${code}"`);
        expect(res.body).not.toMatch(/call stack|RangeError/);
      }
    });

    it('refuses a schema beyond its size limits with 400 naming schema, deciding in milliseconds', async () => {
      const { as, create: createOf } = await orgAdmin();
      const create = (schema: Record<string, unknown>) => createOf('big', schema);
      const properties: Record<string, unknown> = {};
      for (let i = 0; i < 50_000; i++) properties[`p${i}`] = { type: 'string', pattern: `^a${i}$` };
      let nested: Record<string, unknown> = { type: 'string' };
      for (let i = 0; i < 20; i++) nested = { type: 'object', properties: { a: nested } };
      const manyPatterns: Record<string, unknown> = {};
      for (let i = 0; i < 17; i++) manyPatterns[`p${i}`] = { type: 'string', pattern: `^a${i}$` };
      const cases: [string, Record<string, unknown>][] = [
        ['50,000 patterned properties', { type: 'object', properties }],
        ['nesting 20 deep', nested],
        [
          '200 properties',
          { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, {}])) },
        ],
        ['17 patterns', { type: 'object', properties: manyPatterns }],
      ];
      for (const [what, schema] of cases) {
        const started = Date.now();
        const res = await create(schema);
        expect(Date.now() - started, what).toBeLessThan(1_500);
        expect(res.statusCode, what).toBe(400);
        expect(res.json().errors[0].field, what).toMatch(/^schema(\.|$)/);
      }
      // Distinct items are told apart in one pass: 6,000 small arrays took 0.7 s compared pairwise.
      const uniqueList = await create({ type: 'object', properties: { l: { type: 'array', uniqueItems: true } } });
      expect(uniqueList.statusCode, uniqueList.body).toBe(201);
      const plural = uniqueList.json().plural;
      const list = Array.from({ length: 6_000 }, (_, i) => [i % 97, Math.floor(i / 97)]);
      const started = Date.now();
      const res = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: { l: list } });
      expect(Date.now() - started).toBeLessThan(500);
      expect(res.statusCode, res.body).toBe(201);
      const repeated = await as.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { l: [{ a: 1, b: [2] }, [1], { b: [2], a: 1 }] },
      });
      expect(repeated.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.l' }] });
      expect(repeated.json().errors[0].message).toMatch(/duplicate/);
    });

    it('names the profile as each route takes it: profile on the typed routes, attributes.profile on the generic ones', async () => {
      const { as, create } = await orgAdmin();
      const type = await create('named', { type: 'object', properties: { grade: { type: 'integer' } } });
      expect(type.statusCode).toBe(201);
      const { code, plural } = type.json();
      const big = { note: 'x'.repeat(70_000) };
      const typedBig = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: big });
      expect(typedBig.json()).toMatchObject({ status: 400, errors: [{ field: 'profile' }] });
      expect(typedBig.json().detail).toMatch(/^profile: /);
      const typedBad = await as.post(`/api/v1/users/${plural}/`, {
        email: `${unique()}@x.io`,
        profile: { grade: 'x' },
      });
      expect(typedBad.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.grade' }] });
      const user = await as.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: {} });
      const patchedBig = await as.patch(`/api/v1/users/${plural}/${user.json().id}/`, { profile: big });
      expect(patchedBig.json()).toMatchObject({ status: 400, errors: [{ field: 'profile' }] });
      const generic = await as.post('/api/v1/users/', {
        email: `${unique()}@x.io`,
        user_type: code,
        attributes: { profile: { grade: 'x' } },
      });
      expect(generic.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes.profile.grade' }] });
      const genericBig = await as.post('/api/v1/users/', { email: `${unique()}@x.io`, attributes: { profile: big } });
      expect(genericBig.json()).toMatchObject({ status: 400, errors: [{ field: 'attributes' }] });
    });

    it('compiles each schema on its own, so an $id is usable and never collides with another type’s', async () => {
      const a = await orgAdmin();
      const b = await orgAdmin();
      const $id = 'https://schemas.example/person.json';
      const schema = { $id, type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] };
      const plurals: string[] = [];
      for (const { create } of [a, b]) {
        const created = await create('ided', schema);
        expect(created.statusCode).toBe(201);
        plurals.push(created.json().plural);
      }
      for (const [i, { as }] of [a, b].entries()) {
        for (let n = 0; n < 2; n++) {
          const res = await as.post(`/api/v1/users/${plurals[i]}/`, { email: `${unique()}@x.io`, profile: { n } });
          expect(res.statusCode, res.body).toBe(201);
        }
        const bad = await as.post(`/api/v1/users/${plurals[i]}/`, { email: `${unique()}@x.io`, profile: {} });
        expect(bad.json()).toMatchObject({ status: 400, errors: [{ field: 'profile.n' }] });
      }
      // Another type's $id is not reachable by $ref: refused when the type is written, not when a user is.
      const refusing = await b.create('refs', { $ref: $id });
      expect(refusing.json()).toMatchObject({ status: 400, errors: [{ field: 'schema' }] });
    });
  });
});
