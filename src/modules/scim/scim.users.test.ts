import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { users } from '../users/users.table.js';

const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

function newUser(overrides: Record<string, unknown> = {}) {
  const name = unique('ada');
  return {
    schemas: [USER, ENTERPRISE],
    userName: `${name}@example.com`,
    externalId: `ext-${name}`,
    name: { givenName: 'Ada', familyName: 'Lovelace' },
    displayName: 'Ada L.',
    title: 'Engineer',
    emails: [{ value: `${name}@example.com`, type: 'work', primary: true }],
    active: true,
    [ENTERPRISE]: { department: 'R&D', employeeNumber: '42' },
    ...overrides,
  };
}

describe('SCIM Users', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates a user (201, Location, ETag, scim+json) that reads back alike over SCIM and the admin API', async () => {
    const { org, scim } = await scimClient(t);
    const body = newUser();
    const res = await scim('POST', '/Users', body);
    expect(res.statusCode).toBe(201);
    expect(res.headers['content-type']).toContain('application/scim+json');
    const created = res.json();
    expect(created).toMatchObject({
      schemas: [USER, ENTERPRISE],
      userName: body.userName,
      externalId: body.externalId,
      name: { givenName: 'Ada', familyName: 'Lovelace', formatted: 'Ada Lovelace' },
      displayName: 'Ada L.',
      title: 'Engineer',
      active: true,
      emails: [{ value: body.userName, primary: true }],
      [ENTERPRISE]: { department: 'R&D', employeeNumber: '42' },
      meta: { resourceType: 'User' },
    });
    expect(res.headers.location).toBe(`http://gatehouse.test/scim/v2/Users/${created.id}`);
    expect(res.headers.etag).toBe(created.meta.version);

    const got = await scim('GET', `/Users/${created.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual({ ...created, groups: [] });

    const admin = await superuserClient(t);
    const viaAdmin = await admin.get(`/api/v1/users/${created.id}`);
    expect(viaAdmin.statusCode).toBe(200);
    expect(viaAdmin.json()).toMatchObject({ email: body.userName, first_name: 'Ada', organization: org.code });
  });

  it('answers 409 uniqueness for a userName or externalId taken within the organization, but not across organizations', async () => {
    const a = await scimClient(t);
    const b = await scimClient(t);
    const body = newUser();
    expect((await a.scim('POST', '/Users', body)).statusCode).toBe(201);
    const dupName = await a.scim('POST', '/Users', { ...body, externalId: 'other', emails: undefined });
    expect(dupName.statusCode).toBe(409);
    expect(dupName.json()).toMatchObject({ schemas: [ERROR], status: '409', scimType: 'uniqueness' });
    const dupExternal = await a.scim('POST', '/Users', newUser({ externalId: body.externalId }));
    expect(dupExternal.statusCode).toBe(409);
    expect(dupExternal.json()).toMatchObject({ scimType: 'uniqueness' });
    // Another organization may hold the same userName and externalId.
    expect((await b.scim('POST', '/Users', body)).statusCode).toBe(201);
  });

  it('refuses bad bodies with 400 and the scimType, writing nothing', async () => {
    const { org, scim } = await scimClient(t);
    const cases: [unknown, string][] = [
      [{ schemas: [USER] }, 'invalidValue'],
      [{ schemas: [USER], userName: 'no-email' }, 'invalidValue'],
      [{ schemas: [USER], userName: 'x@example.com', active: 'yes' }, 'invalidValue'],
      [{ schemas: [USER], userName: 'x@example.com', emails: [{ value: 'not an address' }] }, 'invalidValue'],
      [{ schemas: ['urn:wrong'], userName: 'x@example.com' }, 'invalidSyntax'],
      [[1, 2], 'invalidSyntax'],
      ['{"userName": ', 'invalidSyntax'],
    ];
    for (const [body, scimType] of cases) {
      const res = await scim('POST', '/Users', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.headers['content-type']).toContain('application/scim+json');
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType });
    }
    expect(await t.database.db.select().from(users).where(eq(users.organizationId, org.id))).toEqual([]);
  });

  it('answers 413 in the SCIM format for a body over the limit', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Users', newUser({ title: 'x'.repeat(t.config.bodyLimitBytes + 10) }));
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ schemas: [ERROR], status: '413' });
  });

  it('replaces a user with PUT; a stale If-Match answers 412 and changes nothing', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const replaced = await scim(
      'PUT',
      `/Users/${created.id}`,
      { ...newUser({ userName: created.userName, externalId: created.externalId }), name: { givenName: 'Augusta' } },
      { 'if-match': created.meta.version },
    );
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json()).toMatchObject({ name: { givenName: 'Augusta', familyName: '' } });
    expect(replaced.json().meta.version).not.toBe(created.meta.version);

    const stale = await scim('PUT', `/Users/${created.id}`, newUser({ userName: created.userName }), {
      'if-match': created.meta.version,
    });
    expect(stale.statusCode).toBe(412);
    expect(stale.json()).toMatchObject({ schemas: [ERROR], status: '412' });
    expect((await scim('GET', `/Users/${created.id}`)).json().name.givenName).toBe('Augusta');

    const fresh = await scim('GET', `/Users/${created.id}`, undefined, {
      'if-none-match': replaced.json().meta.version,
    });
    expect(fresh.statusCode).toBe(304);
  });

  it('lets only one of two writes carrying the same If-Match through; the other answers 412', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const patch = (title: string) =>
      scim(
        'PATCH',
        `/Users/${created.id}`,
        { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: title }] },
        { 'if-match': created.meta.version },
      );
    const answers = await Promise.all([patch('first'), patch('second')]);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 412]);
  });

  it('patches with add, replace and remove, paths with value filters and the enterprise extension', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const res = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'replace', path: 'emails[type eq "work"].value', value: 'augusta@example.com' },
        { op: 'add', path: 'nickName', value: 'Countess' },
        { op: 'replace', path: 'name.familyName', value: 'King' },
        { op: 'remove', path: 'title' },
        { op: 'replace', path: `${ENTERPRISE}:department`, value: 'Analytical Engines' },
        { op: 'add', value: { displayName: 'Augusta Ada King' } },
      ],
    });
    expect(res.statusCode).toBe(200);
    const patched = res.json();
    expect(patched).toMatchObject({
      emails: [{ value: 'augusta@example.com' }],
      nickName: 'Countess',
      name: { familyName: 'King' },
      displayName: 'Augusta Ada King',
      [ENTERPRISE]: { department: 'Analytical Engines', employeeNumber: '42' },
    });
    expect(patched.title).toBeUndefined();

    const noTarget = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'emails[type eq "home"].value', value: 'x@example.com' }],
    });
    expect(noTarget.statusCode).toBe(400);
    expect(noTarget.json()).toMatchObject({ scimType: 'noTarget' });
    const badPath = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'emails[type eq', value: 'x' }],
    });
    expect(badPath.json()).toMatchObject({ status: '400', scimType: 'invalidPath' });
    const badOp = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'move', path: 'title' }],
    });
    expect(badOp.json()).toMatchObject({ status: '400', scimType: 'invalidSyntax' });
    const noSchema = await scim('PATCH', `/Users/${created.id}`, { Operations: [{ op: 'remove', path: 'title' }] });
    expect(noSchema.json()).toMatchObject({ status: '400', scimType: 'invalidSyntax' });
    const removeAll = await scim('PATCH', `/Users/${created.id}`, { schemas: [PATCH], Operations: [{ op: 'remove' }] });
    expect(removeAll.json()).toMatchObject({ status: '400', scimType: 'noTarget' });
  });

  it("active:false deactivates like the provisioning API: the user's sessions end", async () => {
    const { org, scim } = await scimClient(t);
    const user = await seedUser(t, org.id, { username: unique('grace') });
    const { loginAs } = await import('../../../test/seed.js');
    const session = await loginAs(t, user);
    expect((await session.get('/api/v1/users/profile/')).statusCode).toBe(200);

    const res = await scim('PATCH', `/Users/${user.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: 'False' }],
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().active).toBe(false);
    expect((await session.get('/api/v1/users/profile/')).statusCode).toBe(401);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, user.id));
    expect(row?.status).toBe('deactivated');

    const back = await scim('PATCH', `/Users/${user.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { active: true } }],
    });
    expect(back.json().active).toBe(true);
  });

  it('deletes a user: 204, then 404 for every operation on it', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    expect((await scim('DELETE', `/Users/${created.id}`)).statusCode).toBe(204);
    // As through the admin API: the deletion is recorded and the user erased from the trail.
    const trail = await t.database.db.select().from(activities).where(eq(activities.objectId, created.id));
    expect(trail.map((a) => a.activityType)).toContain('user.deleted');
    expect(await t.database.db.select().from(activities).where(eq(activities.userId, created.id))).toEqual([]);
    for (const [method, body] of [
      ['GET'],
      ['DELETE'],
      ['PUT', newUser()],
      ['PATCH', { schemas: [PATCH], Operations: [{ op: 'remove', path: 'title' }] }],
    ] as const) {
      const res = await scim(method, `/Users/${created.id}`, body);
      expect(res.statusCode, method).toBe(404);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '404' });
    }
  });

  it("keeps each organization to its own users: another organization's user answers 404 for reads and writes", async () => {
    const a = await scimClient(t);
    const b = await scimClient(t);
    const theirs = (await b.scim('POST', '/Users', newUser())).json();
    for (const [method, body] of [
      ['GET'],
      ['PUT', newUser()],
      ['PATCH', { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] }],
      ['DELETE'],
    ] as const) {
      const res = await a.scim(method, `/Users/${theirs.id}`, body);
      expect(res.statusCode, method).toBe(404);
    }
    const list = await a.scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${theirs.userName}"`)}`);
    expect(list.json()).toMatchObject({ totalResults: 0, Resources: [] });
    expect((await b.scim('GET', `/Users/${theirs.id}`)).json().active).toBe(true);
  });

  it('answers 401 without or with an unknown key, and 403 for a key without the scim scope or a platform-wide key, all as SCIM errors', async () => {
    const none = await t.request({ method: 'GET', url: '/scim/v2/Users' });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ schemas: [ERROR], status: '401' });
    const unknownKey = await t.request({
      method: 'GET',
      url: '/scim/v2/Users',
      headers: { authorization: 'Bearer gh_nope' },
    });
    expect(unknownKey.statusCode).toBe(401);
    expect(unknownKey.json()).toMatchObject({ schemas: [ERROR], status: '401' });

    const { scim } = await scimClient(t, ['provisioning']);
    const wrongScope = await scim('GET', '/Users');
    expect(wrongScope.statusCode).toBe(403);
    expect(wrongScope.json()).toMatchObject({ schemas: [ERROR], status: '403' });

    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: 'platform',
      organization: null,
      scopes: ['scim'],
    });
    const platform = await t.request({
      method: 'GET',
      url: '/scim/v2/Users',
      headers: { authorization: `Bearer ${key}` },
    });
    expect(platform.statusCode).toBe(403);
    expect(platform.json()).toMatchObject({ schemas: [ERROR], status: '403' });
    expect(platform.json().detail).toMatch(/organization/);

    const unknownRoute = await scim('GET', '/Nothing');
    expect(unknownRoute.statusCode).toBe(404);
    expect(unknownRoute.json()).toMatchObject({ schemas: [ERROR] });
  });
});

describe('one provisioning core for SCIM and the provisioning API', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('shows users written by either API to the other, alike', async () => {
    const { org, scim } = await scimClient(t);
    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: 'seed-000 client',
      organization: org.code,
      scopes: ['provisioning'],
    });
    const headers = { authorization: `Bearer ${key}` };
    const keycloakId = unique('kc');
    const pushed = await t.request({
      method: 'POST',
      url: '/api/provisioning/users',
      headers,
      payload: {
        keycloak_id: keycloakId,
        email: `${keycloakId}@example.com`,
        engagemx_client_id: org.code,
        first_name: 'Kay',
      },
    });
    expect(pushed.statusCode).toBe(201);
    const found = (
      await scim('GET', `/Users?filter=${encodeURIComponent(`emails.value eq "${keycloakId}@example.com"`)}`)
    ).json();
    expect(found).toMatchObject({
      totalResults: 1,
      Resources: [{ id: pushed.json().id, name: { givenName: 'Kay' }, active: true }],
    });

    const created = (await scim('POST', '/Users', newUser())).json();
    const audited = await t.database.db.select().from(activities).where(eq(activities.userId, created.id));
    expect(audited.map((a) => a.activityType)).toContain('user.created');
    await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: false }],
    });
    const listed = await t.request({ method: 'GET', url: `/api/provisioning/users?client_id=${org.code}`, headers });
    expect(listed.statusCode).toBe(200);
    expect(listed.json().users).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: created.id, email: created.emails[0].value, is_active: false }),
      ]),
    );
  });
});
