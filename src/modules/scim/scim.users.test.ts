import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import { type Scim, scimClient } from '../../../test/scim-client.js';
import { seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { apiKeys } from '../api-keys/api-keys.table.js';
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

/** Creates a user named `name` with these addresses and answers the created resource. */
async function userWithEmails(scim: Scim, name: string, emails: Record<string, unknown>[]) {
  return (await scim('POST', '/Users', newUser({ userName: name, emails }))).json();
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

  it("takes the userNames identity providers send: an address with an apostrophe, an Entra ID guest's UPN", async () => {
    const { scim } = await scimClient(t);
    const suffix = Date.now().toString(36);
    for (const userName of [`o'brien.${suffix}@example.com`, `jo_example.com#EXT#${suffix}@tenant.onmicrosoft.com`]) {
      const created = await scim(
        'POST',
        '/Users',
        newUser({ userName, emails: [{ value: `${suffix}.${userName.length}@example.com`, primary: true }] }),
      );
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json().userName).toBe(userName);
      const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`);
      expect(found.json()).toMatchObject({ totalResults: 1, Resources: [{ id: created.json().id }] });
    }
  });

  it('takes a userName of letters of any script, but an email address only in ASCII, as the User schema says', async () => {
    const { scim } = await scimClient(t);
    const suffix = Date.now().toString(36);
    const letters = await scim(
      'POST',
      '/Users',
      newUser({ userName: `müller.${suffix}`, emails: [{ value: `m.${suffix}@a.example` }] }),
    );
    expect(letters.statusCode, letters.body).toBe(201);
    // Without "emails", a userName with "@" is the user's email, and must be an email address.
    const international = await scim(
      'POST',
      '/Users',
      newUser({ userName: `müller.${suffix}@a.example`, emails: undefined }),
    );
    expect(international.statusCode, international.body).toBe(400);
    expect(international.json()).toMatchObject({ scimType: 'invalidValue' });
    const spaced = await scim('POST', '/Users', newUser({ userName: 'Jane Doe' }));
    expect(spaced.json().detail).toContain("Use letters, digits and _ . @ + - ' # only.");
  });

  it('takes an address whose domain is an internationalized domain name, in emails or as the userName, as sent', async () => {
    const { scim } = await scimClient(t);
    const name = unique('ada');
    const work = `${name}@Bücher.example`;
    const home = `${name}@例え.テスト`;
    const created = await scim(
      'POST',
      '/Users',
      newUser({
        emails: [
          { value: work, type: 'work', primary: true },
          { value: home, type: 'home' },
        ],
      }),
    );
    expect(created.statusCode, created.body).toBe(201);
    const read = (await scim('GET', `/Users/${created.json().id}`)).json();
    expect(read.emails).toEqual([
      { value: work, type: 'work', primary: true },
      { value: home, type: 'home' },
    ]);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.json().id));
    expect(row?.email).toBe(work);
    const filter = encodeURIComponent(`emails.value eq "${work.toUpperCase()}"`);
    expect((await scim('GET', `/Users?filter=${filter}`)).json()).toMatchObject({ totalResults: 1 });

    const userName = `${unique('bob')}@bücher.example`;
    const byName = await scim('POST', '/Users', newUser({ userName, emails: undefined }));
    expect(byName.statusCode, byName.body).toBe(201);
    expect((await scim('GET', `/Users/${byName.json().id}`)).json().emails).toEqual([
      { value: userName, type: 'work', primary: true },
    ]);
  });

  it('refuses an address whose domain is no host name, or whose local part is not ASCII, naming emails', async () => {
    const { scim } = await scimClient(t);
    for (const value of NOT_EMAIL_ADDRESSES) {
      const primary = await scim('POST', '/Users', newUser({ emails: [{ value, primary: true }] }));
      expect(primary.statusCode, value).toBe(400);
      expect(primary.json(), value).toMatchObject({
        scimType: 'invalidValue',
        detail: expect.stringContaining('emails'),
      });
      // Every address is kept and given back, so a second one is held to the same rule.
      const second = await scim(
        'POST',
        '/Users',
        newUser({ emails: [{ value: `${unique('ada')}@example.com`, primary: true }, { value }] }),
      );
      expect(second.statusCode, value).toBe(400);
      expect(second.json(), value).toMatchObject({
        scimType: 'invalidValue',
        detail: expect.stringContaining('emails'),
      });
      const asUserName = await scim('POST', '/Users', newUser({ userName: value, emails: undefined }));
      expect(asUserName.statusCode, value).toBe(400);
      expect(asUserName.json(), value).toMatchObject({
        scimType: 'invalidValue',
        detail: expect.stringContaining('email'),
      });
    }
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

  it('names SCIM attributes, never columns or constraints, in 409 and 400 details', async () => {
    const { scim } = await scimClient(t);
    const body = newUser({ userName: unique('plain') });
    await scim('POST', '/Users', body);
    const details: string[] = [];
    const refused = async (res: Awaited<ReturnType<typeof scim>>, status: number, mentions: RegExp) => {
      expect(res.statusCode).toBe(status);
      const { detail } = res.json();
      expect(detail).toMatch(mentions);
      details.push(detail);
    };
    await refused(await scim('POST', '/Users', newUser({ externalId: body.externalId })), 409, /externalId/);
    await refused(await scim('POST', '/Users', { ...newUser(), userName: body.userName }), 409, /userName/);
    await refused(await scim('POST', '/Users', { ...newUser(), emails: body.emails }), 409, /email/);
    const other = (await scim('POST', '/Users', newUser())).json();
    await refused(
      await scim('PATCH', `/Users/${other.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'externalId', value: body.externalId }],
      }),
      409,
      /externalId/,
    );
    await refused(
      await scim('POST', '/Users', newUser({ name: { givenName: 'x'.repeat(5000), familyName: 'y' } })),
      400,
      /name\.givenName/,
    );
    const bulk = await scim('POST', '/Bulk', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [{ method: 'POST', path: '/Users', bulkId: 'x', data: newUser({ externalId: body.externalId }) }],
    });
    expect(bulk.json().Operations[0]).toMatchObject({ status: '409', response: { scimType: 'uniqueness' } });
    details.push(bulk.json().Operations[0].response.detail);
    for (const detail of details) {
      expect(detail).not.toMatch(/scim_external_id|external_id|first_name|last_name|_key\b|\busername\b|\bemail\b:/);
    }
  });

  it("says only what is wrong with a nullable field's value, without the null alternative's refusal", async () => {
    const { scim } = await scimClient(t);
    const cases: [Record<string, unknown>, string][] = [
      [{ userName: 'Jane Doe' }, 'userName: Use letters'],
      [{ externalId: '' }, 'externalId: '],
    ];
    for (const [fields, says] of cases) {
      const res = await scim('POST', '/Users', newUser(fields));
      expect(res.statusCode, res.body).toBe(400);
      const { detail, scimType } = res.json();
      expect(scimType).toBe('invalidValue');
      expect(detail).toContain(says);
      expect(detail).not.toMatch(/must be null|anyOf|must match a schema/);
      // One message per field.
      const field = says.split(':')[0] as string;
      expect(detail.split(`${field}:`).length, detail).toBe(2);
    }
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

  it('bounds multi-valued and string attributes with 400 invalidValue naming them, and keeps one of an address sent twice', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const put = (overrides: Record<string, unknown>) =>
      scim('PUT', `/Users/${created.id}`, newUser({ userName: created.userName, ...overrides }));
    const refused: [string, Record<string, unknown>][] = [
      ['emails', { emails: Array.from({ length: 101 }, (_, i) => ({ value: `a${i}@example.com` })) }],
      ['phoneNumbers', { phoneNumbers: Array.from({ length: 101 }, (_, i) => ({ value: `+1 555 ${i}` })) }],
      ['title', { title: 'x'.repeat(100_000) }],
      ['department', { [ENTERPRISE]: { department: 'd'.repeat(2000) } }],
    ];
    for (const [name, overrides] of refused) {
      const res = await put(overrides);
      expect(res.statusCode, name).toBe(400);
      expect(res.json()).toMatchObject({ scimType: 'invalidValue', detail: expect.stringContaining(`"${name}"`) });
    }
    const res = await put({
      emails: [
        { value: 'a1@example.com', type: 'work' },
        { value: 'A1@example.com', type: 'home', primary: true },
        { value: 'b1@example.com', type: 'home' },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().emails).toEqual([
      { value: 'a1@example.com', type: 'work', primary: true },
      { value: 'b1@example.com', type: 'home' },
    ]);
  });

  it('answers 400 invalidSyntax to a POST or PUT without "schemas" (RFC 7643 §3: it is required), writing nothing', async () => {
    const { org, scim } = await scimClient(t);
    const { schemas: _schemas, ...body } = newUser();
    const created = await scim('POST', '/Users', body);
    expect(created.statusCode).toBe(400);
    expect(created.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' });
    expect(created.json().detail).toMatch(/schemas/);
    expect(await t.database.db.select().from(users).where(eq(users.organizationId, org.id))).toEqual([]);

    const existing = (await scim('POST', '/Users', newUser())).json();
    const { schemas: _s, ...replacement } = newUser({ userName: existing.userName, title: 'Replaced' });
    const replaced = await scim('PUT', `/Users/${existing.id}`, replacement);
    expect(replaced.statusCode).toBe(400);
    expect(replaced.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' });
    expect((await scim('GET', `/Users/${existing.id}`)).json().title).toBe('Engineer');
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
    // The family name the PUT left out is unassigned: not shown at all (RFC 7643 §2.5), not as "".
    expect(replaced.json().name).toEqual({ givenName: 'Augusta', formatted: 'Augusta' });
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
    // RFC 7232 §4.1: a 304 names the ETag a 200 would.
    expect(fresh.headers.etag).toBe(replaced.json().meta.version);
  });

  it('keeps a status no write asked to change: suspended or locked stay so, a deactivated user stays deactivated', async () => {
    const { scim } = await scimClient(t);
    const admin = await superuserClient(t);
    const status = async (id: string) => (await admin.get(`/api/v1/users/${id}/`)).json().status;
    for (const held of ['suspended', 'locked'] as const) {
      const created = (await scim('POST', '/Users', newUser())).json();
      expect((await admin.patch(`/api/v1/users/${created.id}/`, { status: held })).statusCode).toBe(200);
      const patched = await scim('PATCH', `/Users/${created.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'title', value: 'Analyst' }],
      });
      expect(patched.statusCode, patched.body).toBe(200);
      expect(patched.json()).toMatchObject({ title: 'Analyst', active: false });
      expect(await status(created.id)).toBe(held);
      // Deactivating one who cannot sign in already keeps the state an administrator chose.
      const off = await scim('PATCH', `/Users/${created.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'active', value: false }],
      });
      expect(off.statusCode, off.body).toBe(200);
      expect(await status(created.id)).toBe(held);
    }

    const off = (await scim('POST', '/Users', newUser({ active: false }))).json();
    expect(await status(off.id)).toBe('deactivated');
    const { active: _active, ...withoutActive } = newUser({ userName: off.userName, externalId: off.externalId });
    const put = await scim('PUT', `/Users/${off.id}`, withoutActive);
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json().active).toBe(false);
    const removed = await scim('PATCH', `/Users/${off.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: 'active' }],
    });
    expect(removed.statusCode, removed.body).toBe(200);
    expect(await status(off.id)).toBe('deactivated');
    // Asked for, it comes back.
    const on = await scim('PATCH', `/Users/${off.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: true }],
    });
    expect(on.json().active).toBe(true);
    expect(await status(off.id)).toBe('active');
  });

  it('holds a manager sent as a bare id to the length of any other value, so later writes never trip on it', async () => {
    const { scim } = await scimClient(t);
    const long = 'a'.repeat(1025);
    const created = await scim('POST', '/Users', newUser({ [ENTERPRISE]: { manager: long } }));
    expect(created.statusCode).toBe(400);
    expect(created.json()).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('manager.value'),
    });
    const boss = (await scim('POST', '/Users', newUser())).json();
    const user = (await scim('POST', '/Users', newUser({ [ENTERPRISE]: { manager: boss.id } }))).json();
    expect(user[ENTERPRISE].manager).toMatchObject({ value: boss.id });
    const patched = await scim('PATCH', `/Users/${user.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: `${ENTERPRISE}:manager`, value: long }],
    });
    expect(patched.statusCode).toBe(400);
    const off = await scim('PATCH', `/Users/${user.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'active', value: false }],
    });
    expect(off.statusCode, off.body).toBe(200);
  });

  it("refuses a manager.value that is no user of the organization, and shows the manager's displayName when read", async () => {
    const { scim } = await scimClient(t);
    const other = await scimClient(t);
    const stranger = (await other.scim('POST', '/Users', newUser())).json();
    for (const value of ['nobody', stranger.id, '01a20f8d-e38e-7a26-8340-995eb8b3817e']) {
      for (const manager of [{ value }, value]) {
        const res = await scim('POST', '/Users', newUser({ [ENTERPRISE]: { manager } }));
        expect(res.statusCode, `${JSON.stringify(manager)}: ${res.body}`).toBe(400);
        expect(res.json()).toMatchObject({
          scimType: 'invalidValue',
          detail: expect.stringContaining('"manager.value"'),
        });
      }
    }

    const boss = (await scim('POST', '/Users', newUser({ displayName: 'The Boss' }))).json();
    const created = await scim('POST', '/Users', newUser({ [ENTERPRISE]: { manager: { value: boss.id } } }));
    expect(created.statusCode, created.body).toBe(201);
    const user = created.json();
    expect(user[ENTERPRISE].manager).toEqual({ value: boss.id, displayName: 'The Boss' });
    expect((await scim('GET', `/Users/${user.id}`)).json()[ENTERPRISE].manager).toEqual({
      value: boss.id,
      displayName: 'The Boss',
    });
    const listed = (await scim('GET', `/Users?filter=${encodeURIComponent(`id eq "${user.id}"`)}`)).json();
    expect(listed.Resources[0][ENTERPRISE].manager).toEqual({ value: boss.id, displayName: 'The Boss' });
    // displayName is read-only: what a client sends is not kept, the manager's own is shown.
    const put = await scim('PUT', `/Users/${user.id}`, {
      ...newUser({ userName: user.userName, emails: user.emails, externalId: user.externalId }),
      [ENTERPRISE]: { manager: { value: boss.id, displayName: 'Someone else' } },
    });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()[ENTERPRISE].manager).toEqual({ value: boss.id, displayName: 'The Boss' });

    const patched = await scim('PATCH', `/Users/${user.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: `${ENTERPRISE}:manager.value`, value: stranger.id }],
    });
    expect(patched.statusCode).toBe(400);
    expect(patched.json()).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('"manager.value"'),
    });

    const bulk = await scim('POST', '/Bulk', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'a',
          data: newUser({ [ENTERPRISE]: { manager: { value: 'nobody' } } }),
        },
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'b',
          data: newUser({ [ENTERPRISE]: { manager: { value: boss.id } } }),
        },
      ],
    });
    expect(bulk.json().Operations.map((o: { status: string }) => o.status)).toEqual(['400', '201']);
    expect(bulk.json().Operations[0].response).toMatchObject({ scimType: 'invalidValue' });

    // A manager deleted later stays as its id, without a displayName.
    expect((await scim('DELETE', `/Users/${boss.id}`)).statusCode).toBe(204);
    expect((await scim('GET', `/Users/${user.id}`)).json()[ENTERPRISE].manager).toEqual({ value: boss.id });
  });

  it('names a field called like an Object built-in as itself in an error, not as the built-in', async () => {
    const { scim } = await scimClient(t);
    for (const key of ['toString', 'hasOwnProperty', 'constructor']) {
      const res = await scim('POST', '/Users', { ...newUser(), [key]: 'a\u0000b' });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().detail).toContain(key);
      expect(res.json().detail).not.toContain('native code');
    }
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

  it('replaces the sub-attributes of a complex attribute that a PATCH names and leaves the others unchanged (RFC 7644 §3.5.2.3)', async () => {
    const { scim } = await scimClient(t);
    const manager = (await scim('POST', '/Users', newUser())).json();
    const created = (
      await scim(
        'POST',
        '/Users',
        newUser({
          name: { givenName: 'Sammy', familyName: 'Jensen' },
          [ENTERPRISE]: { department: 'R&D', employeeNumber: '42', manager: { value: manager.id } },
        }),
      )
    ).json();
    const patch = (...operations: unknown[]) =>
      scim('PATCH', `/Users/${created.id}`, { schemas: [PATCH], Operations: operations });

    const byPath = await patch({ op: 'replace', path: 'name', value: { familyName: 'Smith' } });
    expect(byPath.statusCode, byPath.body).toBe(200);
    expect(byPath.json().name).toMatchObject({ givenName: 'Sammy', familyName: 'Smith' });
    const withoutPath = await patch({ op: 'replace', value: { name: { FamilyName: 'Smythe' } } });
    expect(withoutPath.json().name).toMatchObject({ givenName: 'Sammy', familyName: 'Smythe' });

    const extension = await patch({ op: 'replace', path: ENTERPRISE, value: { department: 'Analytical Engines' } });
    expect(extension.statusCode, extension.body).toBe(200);
    expect(extension.json()[ENTERPRISE]).toEqual({
      department: 'Analytical Engines',
      employeeNumber: '42',
      manager: { value: manager.id, displayName: manager.displayName },
    });
    const extensionWithoutPath = await patch({ op: 'replace', value: { [ENTERPRISE]: { employeeNumber: '43' } } });
    expect(extensionWithoutPath.json()[ENTERPRISE]).toEqual({
      department: 'Analytical Engines',
      employeeNumber: '43',
      manager: { value: manager.id, displayName: manager.displayName },
    });

    // A multi-valued attribute is replaced whole: the addresses not sent are gone.
    const emails = await patch({
      op: 'replace',
      path: 'emails',
      value: [{ value: `only-${created.userName}`, type: 'home', primary: true }],
    });
    expect(emails.json().emails).toEqual([{ value: `only-${created.userName}`, type: 'home', primary: true }]);
  });

  it('answers 400 invalidPath for a PATCH to an attribute a User does not have, changing nothing', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    for (const operation of [
      { op: 'replace', path: 'favouriteColour', value: 'green' },
      { op: 'add', path: `${ENTERPRISE}:shoeSize`, value: '42' },
      { op: 'replace', value: { favouriteColour: 'green' } },
      { op: 'replace', path: 'name.nickName', value: 'Byron' },
    ]) {
      const res = await scim('PATCH', `/Users/${created.id}`, {
        schemas: [PATCH],
        // The valid first operation must not be written either: a PATCH is all or nothing.
        Operations: [{ op: 'replace', path: 'title', value: 'Changed' }, operation],
      });
      expect(res.statusCode, JSON.stringify(operation)).toBe(400);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidPath' });
    }
    const after = (await scim('GET', `/Users/${created.id}`)).json();
    expect(after.title).toBe('Engineer');
    expect(after.meta.version).toBe(created.meta.version);
  });

  it('keeps roles, and the name parts a PATCH sets', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const res = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'add', path: 'roles', value: [{ value: 'Teacher', primary: true }] },
        { op: 'replace', path: 'name.middleName', value: 'Byron' },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().roles).toEqual([{ value: 'Teacher', primary: true }]);
    expect(res.json().name).toEqual({
      givenName: 'Ada',
      middleName: 'Byron',
      familyName: 'Lovelace',
      formatted: 'Ada Byron Lovelace',
    });
    const replaced = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'roles[primary eq true].value', value: 'Principal' }],
    });
    expect((await scim('GET', `/Users/${created.id}`)).json().roles, replaced.body).toEqual([
      { value: 'Principal', primary: true },
    ]);
  });

  it('keeps a derived displayName derived through a PATCH of the name: it follows the new name, nothing is stored', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser({ displayName: undefined }))).json();
    expect(created.displayName).toBe('Ada Lovelace');
    const single = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.familyName', value: 'Byron' }],
    });
    expect(single.statusCode, single.body).toBe(200);
    expect(single.json().displayName).toBe('Ada Byron');
    const bulk = await scim('POST', '/Bulk', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [
        {
          method: 'PATCH',
          path: `/Users/${created.id}`,
          data: { schemas: [PATCH], Operations: [{ op: 'replace', path: 'name.givenName', value: 'Augusta' }] },
        },
      ],
    });
    expect(bulk.json().Operations[0].status, bulk.body).toBe('200');
    expect((await scim('GET', `/Users/${created.id}`)).json().displayName).toBe('Augusta Byron');
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.id));
    expect(row?.attributes.scim).not.toHaveProperty('displayName');
    // One the client sets is kept, and then no longer follows the name.
    await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'displayName', value: 'Ada' }],
    });
    const renamed = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.familyName', value: 'King' }],
    });
    expect(renamed.json()).toMatchObject({ displayName: 'Ada', name: { familyName: 'King' } });
  });

  it('answers 400 mutability for a PATCH path to id, meta or groups', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    for (const operation of [
      { op: 'replace', path: 'id', value: '00000000-0000-4000-8000-000000000000' },
      { op: 'replace', path: 'ID', value: created.id },
      { op: 'remove', path: 'meta.lastModified' },
      { op: 'add', path: 'groups', value: [{ value: created.id }] },
    ]) {
      const res = await scim('PATCH', `/Users/${created.id}`, { schemas: [PATCH], Operations: [operation] });
      expect(res.statusCode, JSON.stringify(operation)).toBe(400);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'mutability' });
    }
    expect((await scim('GET', `/Users/${created.id}`)).json().meta.version).toBe(created.meta.version);
  });

  it('applies a PATCH value without a path as Entra ID and Okta send it, skipping the read-only attributes in it', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const entra = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Replace', value: { active: 'False' } },
        { op: 'Add', path: 'name.formatted', value: 'Ada King' },
        { op: 'Replace', value: { 'name.givenName': 'Augusta', [`${ENTERPRISE}:department`]: 'Engines' } },
      ],
    });
    expect(entra.statusCode).toBe(200);
    expect(entra.json()).toMatchObject({
      active: false,
      name: { givenName: 'Augusta', formatted: 'Augusta Lovelace' },
      [ENTERPRISE]: { department: 'Engines' },
    });
    const { meta: _meta, ...whole } = entra.json();
    const okta = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [
        {
          op: 'replace',
          value: { ...whole, id: 'not-this-one', meta: { version: 'W/"x"' }, active: true, title: 'Countess' },
        },
      ],
    });
    expect(okta.statusCode).toBe(200);
    expect(okta.json()).toMatchObject({ id: created.id, active: true, title: 'Countess' });

    // Entra ID's path forms: the manager as a bare id, active as a string.
    const manager = (await scim('POST', '/Users', newUser())).json();
    const byPath = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'Add', path: `${ENTERPRISE}:manager`, value: manager.id },
        { op: 'Replace', path: 'active', value: 'False' },
      ],
    });
    expect(byPath.statusCode).toBe(200);
    expect(byPath.json()).toMatchObject({ active: false, [ENTERPRISE]: { manager: { value: manager.id } } });
    const removed = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Remove', path: `${ENTERPRISE}:manager` }],
    });
    expect(removed.json()[ENTERPRISE]?.manager).toBeUndefined();
    const wrong = await scim('PATCH', `/Users/${created.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Replace', path: 'active', value: 'no' }],
    });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json()).toMatchObject({ scimType: 'invalidValue' });
  });

  it('ignores id, meta and groups in a PUT body (RFC 7644 §3.5.1), replacing the user named by the URL', async () => {
    const { org, scim } = await scimClient(t);
    const first = (await scim('POST', '/Users', newUser())).json();
    const second = (await scim('POST', '/Users', newUser())).json();
    const { id: _id, meta: _meta, ...body } = first;
    const res = await scim('PUT', `/Users/${first.id}`, {
      ...body,
      id: second.id,
      meta: { created: '2000-01-01T00:00:00Z', version: 'W/"x"' },
      groups: [{ value: second.id }],
      title: 'Replaced',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ id: first.id, title: 'Replaced', groups: [] });
    expect(res.json().meta.created).toBe(first.meta.created);
    expect((await scim('GET', `/Users/${second.id}`)).json().title).toBe('Engineer');
    const rows = await t.database.db.select().from(users).where(eq(users.organizationId, org.id));
    expect(rows).toHaveLength(2);
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
    // As through the admin API: the deletion is recorded and the user erased from the trail, named
    // as the object by pseudonym only.
    expect(await t.database.db.select().from(activities).where(eq(activities.objectId, created.id))).toEqual([]);
    const pseudonym = createHash('sha256').update(`gatehouse-audit-subject:${created.id}`).digest('hex');
    const trail = await t.database.db.select().from(activities).where(eq(activities.objectRef, pseudonym));
    expect(trail.map((a) => a.activityType)).toContain('user.deleted');
    // The deletion itself is the client's act, not the user's: it is not erased with them.
    expect(trail.find((a) => a.activityType === 'user.deleted')).toMatchObject({
      userId: null,
      description: 'User deleted through SCIM',
      details: { via: 'scim' },
    });
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

  it('takes an empty body sent as application/scim+json as no body: DELETE answers 204, a collection 405', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    // Generic HTTP clients set the content type for a whole session, bodiless requests included.
    const json = { 'content-type': 'application/scim+json' };
    const deleted = await scim('DELETE', `/Users/${created.id}`, '', json);
    expect(deleted.statusCode, deleted.body).toBe(204);
    expect((await scim('GET', `/Users/${created.id}`)).statusCode).toBe(404);
    const other = (await scim('POST', '/Users', newUser())).json();
    const declared = await scim('DELETE', `/Users/${other.id}`, '', { ...json, 'content-length': '0' });
    expect(declared.statusCode, declared.body).toBe(204);
    const collection = await scim('DELETE', '/Groups', '', json);
    expect(collection.statusCode, collection.body).toBe(405);
    expect(collection.headers.allow).toBe('GET, POST, HEAD');
    // A write that needs a body still refuses an empty one, as a SCIM error.
    const put = await scim('PUT', `/Users/${(await scim('POST', '/Users', newUser())).json().id}`, '', json);
    expect(put.statusCode, put.body).toBe(400);
    expect(put.json()).toMatchObject({ schemas: [ERROR], status: '400' });
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

    // Such a key can no longer be created; one stored before that rule is refused.
    const { key, apiKey } = await createApiKey(t.database.db, OPERATOR, {
      name: 'platform',
      organization: null,
      scopes: ['provisioning'],
    });
    await t.database.db
      .update(apiKeys)
      .set({ scopes: ['scim'] })
      .where(eq(apiKeys.id, apiKey.id));
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

  it('sorts users without a username by the email that stands in as their userName', async () => {
    const { org, scim } = await scimClient(t);
    await scim('POST', '/Users', newUser({ userName: 'zed', emails: [{ value: 'zed@example.com', primary: true }] }));
    await scim('POST', '/Users', newUser({ userName: 'bob', emails: [{ value: 'bob@example.com', primary: true }] }));
    await seedUser(t, org.id, { email: 'carol@example.com', username: null });
    const names = async (order: string) =>
      (await scim('GET', `/Users?sortBy=userName&sortOrder=${order}`))
        .json()
        .Resources.map((r: { userName: string }) => r.userName);
    expect(await names('ascending')).toEqual(['bob', 'carol@example.com', 'zed']);
    expect(await names('descending')).toEqual(['zed', 'carol@example.com', 'bob']);
  });

  it('answers a startIndex past any list, however large, with an empty page', async () => {
    const { scim } = await scimClient(t);
    for (const url of ['/Users?startIndex=99999999999999999999', '/Groups?startIndex=99999999999999999999']) {
      const res = await scim('GET', url);
      expect(res.statusCode, url).toBe(200);
      expect(res.json(), url).toMatchObject({ Resources: [], itemsPerPage: 0 });
    }
    const search = await scim('POST', '/Users/.search', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'],
      startIndex: 1e20,
    });
    expect(search.statusCode).toBe(200);
    expect(search.json()).toMatchObject({ Resources: [] });
  });

  it('answers 501 in the SCIM error schema for /Me with every method, once the key is accepted (RFC 7644 §3.11)', async () => {
    const { scim } = await scimClient(t);
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const) {
      const res = await scim(method, '/Me', method === 'GET' || method === 'DELETE' ? undefined : newUser());
      expect(res.statusCode, method).toBe(501);
      expect(res.headers['content-type']).toContain('application/scim+json');
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '501', detail: expect.stringContaining('/Me') });
    }
    const anonymous = await t.request({ method: 'GET', url: '/scim/v2/Me' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toMatchObject({ schemas: [ERROR], status: '401' });
    const wrongScope = await (await scimClient(t, ['provisioning'])).scim('GET', '/Me');
    expect(wrongScope.statusCode).toBe(403);
  });

  it('answers 405 with Allow, in the SCIM error schema, for a method a SCIM URL does not take', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const cases: [Parameters<typeof scim>[0], string, string][] = [
      ['PATCH', '/Users', 'GET, POST, HEAD'],
      ['DELETE', '/Users', 'GET, POST, HEAD'],
      ['POST', `/Users/${created.id}`, 'GET, PUT, PATCH, DELETE, HEAD'],
      ['PUT', '/Groups', 'GET, POST, HEAD'],
      ['GET', '/Bulk', 'POST'],
      ['DELETE', '/ServiceProviderConfig', 'GET, HEAD'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await scim(method, url, method === 'GET' || method === 'DELETE' ? undefined : { schemas: [PATCH] });
      expect(res.statusCode, `${method} ${url}`).toBe(405);
      expect(res.headers.allow).toBe(allow);
      expect(res.headers['content-type']).toContain('application/scim+json');
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '405', detail: expect.stringContaining(method) });
    }
    expect((await scim('GET', `/Users/${created.id}`)).json().userName).toBe(created.userName);
    // Without the key, the credentials are refused first, as on every SCIM URL.
    const anonymous = await t.request({ method: 'PATCH', url: '/scim/v2/Users' });
    expect(anonymous.statusCode).toBe(401);
    // An unknown SCIM URL still answers 404.
    expect((await scim('GET', '/Nothing')).statusCode).toBe(404);
  });
});

describe('SCIM User attributes (RFC 7643 §4.1) and requests (RFC 7644)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('keeps middleName and the honorifics on POST, PUT and PATCH, shows them in name.formatted, and finds users by them', async () => {
    const { scim } = await scimClient(t);
    const name = {
      givenName: 'Barbara',
      middleName: 'Jane',
      familyName: 'Jensen',
      honorificPrefix: 'Ms.',
      honorificSuffix: 'III',
    };
    const created = await scim('POST', '/Users', newUser({ name, displayName: undefined }));
    expect(created.statusCode, created.body).toBe(201);
    const full = { ...name, formatted: 'Ms. Barbara Jane Jensen III' };
    expect(created.json().name).toEqual(full);
    // A displayName never sent is the formatted name.
    expect(created.json().displayName).toBe(full.formatted);
    const id = created.json().id;
    expect((await scim('GET', `/Users/${id}`)).json().name).toEqual(full);

    const found = async (filter: string) =>
      (await scim('GET', `/Users?filter=${encodeURIComponent(filter)}`))
        .json()
        .Resources.map((r: { id: string }) => r.id);
    expect(await found('name.middleName eq "jane"')).toEqual([id]);
    expect(await found('name.honorificPrefix eq "Ms." and name.honorificSuffix eq "III"')).toEqual([id]);
    expect(await found('name.formatted eq "Ms. Barbara Jane Jensen III"')).toEqual([id]);
    expect(await found('displayName eq "Ms. Barbara Jane Jensen III"')).toEqual([id]);

    const patched = await scim('PATCH', `/Users/${id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'remove', path: 'name.honorificPrefix' },
        { op: 'replace', path: 'name.honorificSuffix', value: 'PhD' },
      ],
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json().name).toEqual({
      givenName: 'Barbara',
      middleName: 'Jane',
      familyName: 'Jensen',
      honorificSuffix: 'PhD',
      formatted: 'Barbara Jane Jensen PhD',
    });
    expect(patched.json().displayName).toBe('Barbara Jane Jensen PhD');

    const replaced = await scim(
      'PUT',
      `/Users/${id}`,
      newUser({ userName: created.json().userName, name: { givenName: 'Barbara', familyName: 'Jensen' } }),
    );
    expect(replaced.statusCode, replaced.body).toBe(200);
    expect(replaced.json().name).toEqual({ givenName: 'Barbara', familyName: 'Jensen', formatted: 'Barbara Jensen' });
    expect(await found('name.middleName pr')).toEqual([]);

    const long = await scim('POST', '/Users', newUser({ name: { givenName: 'A', middleName: 'm'.repeat(2000) } }));
    expect(long.statusCode).toBe(400);
    expect(long.json()).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('"name.middleName"'),
    });
  });

  it('checks the values of phoneNumbers, ims, photos, addresses, entitlements, roles and x509Certificates (RFC 7643 §2.4, §4.1.2)', async () => {
    const { org, scim } = await scimClient(t);
    const refused: [string, Record<string, unknown>][] = [
      ['phoneNumbers', { phoneNumbers: ['+1 555 0100'] }],
      ['phoneNumbers.value', { phoneNumbers: [{ value: 15550100 }] }],
      ['ims.type', { ims: [{ value: 'ada', type: 7 }] }],
      ['photos.primary', { photos: [{ value: 'https://example.com/a.png', primary: 'yes' }] }],
      ['entitlements.display', { entitlements: [{ value: 'e', display: { text: 'E' } }] }],
      ['addresses.locality', { addresses: [{ locality: ['London'] }] }],
      ['roles.value', { roles: [{ value: 'r'.repeat(2000) }] }],
      [
        'roles',
        {
          roles: [
            { value: 'a', primary: true },
            { value: 'b', primary: true },
          ],
        },
      ],
      [
        'addresses',
        {
          addresses: [
            { locality: 'London', primary: true },
            { locality: 'Paris', primary: 'True' },
          ],
        },
      ],
      ['x509Certificates', { x509Certificates: { value: 'MIIB' } }],
    ];
    for (const [label, overrides] of refused) {
      const res = await scim('POST', '/Users', newUser(overrides));
      expect(res.statusCode, label).toBe(400);
      expect(res.json(), label).toMatchObject({
        schemas: [ERROR],
        scimType: 'invalidValue',
        detail: expect.stringContaining(`"${label}"`),
      });
    }
    expect(await t.database.db.select().from(users).where(eq(users.organizationId, org.id))).toEqual([]);

    const res = await scim(
      'POST',
      '/Users',
      newUser({
        // Sub-attributes a value does not have are dropped, as unknown attributes are.
        phoneNumbers: [{ value: '+1 555 0100', type: 'work', primary: 'True', display: '0100', extension: '12' }],
        ims: [{ value: 'ada', type: 'xmpp', primary: false }],
        photos: [{ value: 'https://example.com/a.png', type: 'photo' }],
        addresses: [
          {
            type: 'work',
            streetAddress: '1 Main St',
            locality: 'London',
            region: 'LDN',
            postalCode: 'N1',
            country: 'GB',
            formatted: '1 Main St, London',
            primary: true,
            planet: 'Earth',
          },
        ],
        entitlements: [{ value: 'pro', display: 'Pro' }],
        roles: [{ value: 'Teacher', primary: true }, { value: 'Mentor' }],
        x509Certificates: [{ value: 'MIIDQDCCA...', type: 'signing' }],
      }),
    );
    expect(res.statusCode, res.body).toBe(201);
    const got = (await scim('GET', `/Users/${res.json().id}`)).json();
    expect(got).toMatchObject({
      phoneNumbers: [{ value: '+1 555 0100', type: 'work', primary: true, display: '0100' }],
      ims: [{ value: 'ada', type: 'xmpp', primary: false }],
      photos: [{ value: 'https://example.com/a.png', type: 'photo' }],
      addresses: [
        {
          type: 'work',
          streetAddress: '1 Main St',
          locality: 'London',
          region: 'LDN',
          postalCode: 'N1',
          country: 'GB',
          formatted: '1 Main St, London',
          primary: true,
        },
      ],
      entitlements: [{ value: 'pro', display: 'Pro' }],
      roles: [{ value: 'Teacher', primary: true }, { value: 'Mentor' }],
      x509Certificates: [{ value: 'MIIDQDCCA...', type: 'signing' }],
    });
    expect(got.phoneNumbers[0].extension).toBeUndefined();
    expect(got.addresses[0].planet).toBeUndefined();

    // A PATCH is held to the same rules: a sub-attribute a value does not have is not a path.
    const unknown = await scim('PATCH', `/Users/${got.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'phoneNumbers[type eq "work"].extension', value: '12' }],
    });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ scimType: 'invalidPath' });
    const typed = await scim('PATCH', `/Users/${got.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'phoneNumbers[type eq "mobile"].value', value: 555 }],
    });
    expect(typed.statusCode).toBe(400);
    expect(typed.json()).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('"phoneNumbers.value"'),
    });
    expect((await scim('GET', `/Users/${got.id}`)).json().meta.version).toBe(got.meta.version);
  });

  it('shows values kept before they were checked with one boolean primary, so a PATCH of the user still goes through', async () => {
    const { org, scim } = await scimClient(t);
    const roles = [
      { value: 'a', primary: 'True' },
      { value: 'b', primary: true },
    ];
    const seeded = await seedUser(t, org.id, { attributes: { scim: { roles } } });
    expect((await scim('GET', `/Users/${seeded.id}`)).json().roles).toEqual([
      { value: 'a', primary: true },
      { value: 'b', primary: false },
    ]);
    const res = await scim('PATCH', `/Users/${seeded.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'title', value: 'Lead' }],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      title: 'Lead',
      roles: [
        { value: 'a', primary: true },
        { value: 'b', primary: false },
      ],
    });
  });

  it('answers 400 invalidPath for a PATCH path under an attribute that has no sub-attributes (RFC 7644 §3.5.2)', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    for (const path of ['title.x', 'userName.foo', 'active.value', `${ENTERPRISE}:department.name`]) {
      for (const op of ['replace', 'add', 'remove']) {
        const res = await scim('PATCH', `/Users/${created.id}`, {
          schemas: [PATCH],
          Operations: [{ op, path, value: 'x' }],
        });
        expect(res.statusCode, `${op} ${path}`).toBe(400);
        expect(res.json(), `${op} ${path}`).toMatchObject({ schemas: [ERROR], scimType: 'invalidPath' });
      }
    }
    expect((await scim('GET', `/Users/${created.id}`)).json().meta.version).toBe(created.meta.version);
  });

  it('answers 412 to a GET whose If-Match is not the current version, and to writes whose If-None-Match is (RFC 7232)', async () => {
    const { scim } = await scimClient(t);
    const created = (await scim('POST', '/Users', newUser())).json();
    const url = `/Users/${created.id}`;
    const stale = 'W/"stale"';

    const mismatch = await scim('GET', url, undefined, { 'if-match': stale });
    expect(mismatch.statusCode).toBe(412);
    expect(mismatch.json()).toMatchObject({ schemas: [ERROR], status: '412' });
    expect((await scim('GET', url, undefined, { 'if-match': created.meta.version })).statusCode).toBe(200);
    expect((await scim('GET', url, undefined, { 'if-match': '*' })).statusCode).toBe(200);
    // If-None-Match on a GET still answers 304.
    expect((await scim('GET', url, undefined, { 'if-none-match': created.meta.version })).statusCode).toBe(304);

    const patch = { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: 'Changed' }] };
    const put = newUser({ userName: created.userName, title: 'Changed' });
    for (const ifNoneMatch of [created.meta.version, '*', `${stale}, ${created.meta.version}`]) {
      const headers = { 'if-none-match': ifNoneMatch };
      for (const [method, body] of [
        ['PUT', put],
        ['PATCH', patch],
        ['DELETE', undefined],
      ] as const) {
        const res = await scim(method, url, body, headers);
        expect(res.statusCode, `${method} If-None-Match: ${ifNoneMatch}`).toBe(412);
        expect(res.json()).toMatchObject({ schemas: [ERROR], status: '412' });
      }
    }
    const after = (await scim('GET', url)).json();
    expect(after.title).toBe('Engineer');
    expect(after.meta.version).toBe(created.meta.version);

    // Another version in If-None-Match lets the write through.
    const patched = await scim('PATCH', url, patch, { 'if-none-match': stale });
    expect(patched.statusCode, patched.body).toBe(200);
    expect((await scim('DELETE', url, undefined, { 'if-none-match': created.meta.version })).statusCode).toBe(204);
  });

  it('shapes the user that POST, PUT and PATCH answer by attributes and excludedAttributes (RFC 7644 §3.9)', async () => {
    const { scim } = await scimClient(t);
    const created = await scim('POST', '/Users?attributes=userName,name.givenName', newUser());
    expect(created.statusCode, created.body).toBe(201);
    const { id, userName } = created.json();
    expect(created.json()).toEqual({ schemas: [USER, ENTERPRISE], id, userName, name: { givenName: 'Ada' } });
    // The headers still name the resource, whatever the body leaves out.
    expect(created.headers.location).toBe(`http://gatehouse.test/scim/v2/Users/${id}`);
    expect(created.headers.etag).toMatch(/^W\//);

    const put = await scim(
      'PUT',
      `/Users/${id}?excludedAttributes=emails,meta,groups,${ENTERPRISE}`,
      newUser({ userName }),
    );
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json()).toMatchObject({ id, userName, title: 'Engineer' });
    for (const key of ['emails', 'meta', 'groups', ENTERPRISE]) expect(put.json()[key], key).toBeUndefined();
    expect(put.headers.etag).toMatch(/^W\//);

    const patched = await scim(`PATCH`, `/Users/${id}?attributes=title`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'title', value: 'Lead' }],
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toEqual({ schemas: [USER, ENTERPRISE], id, title: 'Lead' });
    expect(patched.headers.etag).toBe((await scim('GET', `/Users/${id}`)).json().meta.version);
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
    // A user without a username shows its email as userName; a PATCH of something else gives it none.
    const patched = await scim('PATCH', `/Users/${pushed.json().id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.familyName', value: 'Kaur' }],
    });
    expect(patched.json()).toMatchObject({ userName: `${keycloakId}@example.com`, name: { familyName: 'Kaur' } });
    const [pushedRow] = await t.database.db.select().from(users).where(eq(users.id, pushed.json().id));
    expect(pushedRow).toMatchObject({ username: null, lastName: 'Kaur' });

    const listed = await t.request({ method: 'GET', url: `/api/provisioning/users?client_id=${org.code}`, headers });
    expect(listed.statusCode).toBe(200);
    expect(listed.json().users).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: created.id, email: created.emails[0].value, is_active: false }),
      ]),
    );
  });
});

describe('SCIM Users with several email addresses', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const patchOf = (...operations: unknown[]) => ({ schemas: [PATCH], Operations: operations });

  it('keeps every address sent, the primary one in the email column, and gives all of them back', async () => {
    const { scim } = await scimClient(t);
    const name = unique('multi');
    const body = newUser({
      userName: `${name}@example.com`,
      emails: [
        { value: `${name}@home.example`, type: 'home', display: 'Home' },
        { value: `${name}@example.com`, type: 'work', primary: true },
        { value: `${name}@other.example`, type: 'other', primary: false },
      ],
    });
    const created = await scim('POST', '/Users', body);
    expect(created.statusCode).toBe(201);
    expect(created.json().emails).toEqual(body.emails);
    const got = (await scim('GET', `/Users/${created.json().id}`)).json();
    expect(got.emails).toEqual(body.emails);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.json().id));
    expect(row?.email).toBe(`${name}@example.com`);
  });

  it('puts the work address in the column when none is primary, and shows it as the one primary', async () => {
    const { scim } = await scimClient(t);
    const name = unique('noprimary');
    const created = await userWithEmails(scim, name, [
      { value: `${name}@home.example`, type: 'home' },
      { value: `${name}@work.example`, type: 'work' },
    ]);
    expect(created.emails).toEqual([
      { value: `${name}@home.example`, type: 'home' },
      { value: `${name}@work.example`, type: 'work', primary: true },
    ]);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.id));
    expect(row?.email).toBe(`${name}@work.example`);
  });

  it('answers 400 invalidValue for two primary addresses, writing nothing', async () => {
    const { org, scim } = await scimClient(t);
    const res = await scim(
      'POST',
      '/Users',
      newUser({
        emails: [
          { value: 'a@example.com', primary: true },
          { value: 'b@example.com', primary: true },
        ],
      }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidValue' });
    expect(res.json().detail).toMatch(/primary/);
    expect(await t.database.db.select().from(users).where(eq(users.organizationId, org.id))).toEqual([]);
  });

  it('adds, changes and removes addresses by PATCH, with filters on type', async () => {
    const { scim } = await scimClient(t);
    const name = unique('patchmail');
    const created = (
      await scim('POST', '/Users', newUser({ userName: `${name}@example.com`, emails: undefined }))
    ).json();
    const url = `/Users/${created.id}`;

    const added = await scim(
      'PATCH',
      url,
      patchOf({ op: 'add', path: 'emails', value: [{ value: `${name}@home.example`, type: 'home' }] }),
    );
    expect(added.statusCode).toBe(200);
    expect(added.json().emails).toEqual([
      { value: `${name}@example.com`, type: 'work', primary: true },
      { value: `${name}@home.example`, type: 'home' },
    ]);

    const changed = await scim(
      'PATCH',
      url,
      patchOf({ op: 'replace', path: 'emails[type eq "home"].value', value: `${name}@house.example` }),
    );
    expect(changed.json().emails).toEqual([
      { value: `${name}@example.com`, type: 'work', primary: true },
      { value: `${name}@house.example`, type: 'home' },
    ]);

    // Marking another address primary moves the mark (RFC 7644 §3.5.2) and the column with it.
    const moved = await scim(
      'PATCH',
      url,
      patchOf({ op: 'replace', path: 'emails[type eq "home"].primary', value: true }),
    );
    expect(moved.statusCode).toBe(200);
    expect(moved.json().emails).toEqual([
      { value: `${name}@example.com`, type: 'work', primary: false },
      { value: `${name}@house.example`, type: 'home', primary: true },
    ]);
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.id));
    expect(row?.email).toBe(`${name}@house.example`);

    const removed = await scim('PATCH', url, patchOf({ op: 'remove', path: 'emails[type eq "home"]' }));
    expect(removed.json().emails).toEqual([{ value: `${name}@example.com`, type: 'work', primary: true }]);
    const [after] = await t.database.db.select().from(users).where(eq(users.id, created.id));
    expect(after?.email).toBe(`${name}@example.com`);
  });

  it('refuses a PATCH that leaves a user without an address, changing nothing', async () => {
    const { scim } = await scimClient(t);
    const name = unique('lastmail');
    const created = (
      await scim(
        'POST',
        '/Users',
        newUser({ userName: `${name}@example.com`, emails: [{ value: `${name}@work.example` }] }),
      )
    ).json();
    for (const operation of [
      { op: 'remove', path: 'emails' },
      { op: 'remove', path: 'emails[value eq "' + name + '@work.example"]' },
      { op: 'replace', path: 'emails', value: [] },
    ]) {
      const res = await scim('PATCH', `/Users/${created.id}`, patchOf(operation));
      expect(res.statusCode, `${JSON.stringify(operation)}: ${res.body}`).toBe(400);
      expect(res.json()).toMatchObject({
        scimType: 'invalidValue',
        detail: expect.stringContaining('a user needs an email'),
      });
    }
    const [row] = await t.database.db.select().from(users).where(eq(users.id, created.id));
    expect(row?.email).toBe(`${name}@work.example`);
  });

  it('adds an address marked primary without a path, leaving one primary', async () => {
    const { scim } = await scimClient(t);
    const name = unique('nopath');
    const created = (
      await scim('POST', '/Users', newUser({ userName: `${name}@example.com`, emails: undefined }))
    ).json();
    const res = await scim(
      'PATCH',
      `/Users/${created.id}`,
      patchOf({ op: 'add', value: { emails: [{ value: `${name}@new.example`, type: 'work', primary: true }] } }),
    );
    expect(res.statusCode).toBe(200);
    expect(res.json().emails.filter((e: { primary?: boolean }) => e.primary)).toEqual([
      { value: `${name}@new.example`, type: 'work', primary: true },
    ]);
    expect(res.json().emails).toHaveLength(2);
  });

  it('shows the address another API gave the user as the primary one, keeping the others', async () => {
    const { scim } = await scimClient(t);
    const name = unique('elsewhere');
    const created = await userWithEmails(scim, name, [
      { value: `${name}@example.com`, type: 'work', primary: true },
      { value: `${name}@home.example`, type: 'home' },
    ]);
    const admin = await superuserClient(t);
    const updated = await admin.patch(`/api/v1/users/${created.id}`, { email: `${name}@changed.example` });
    expect(updated.statusCode).toBe(200);
    const got = (await scim('GET', `/Users/${created.id}`)).json();
    expect(got.emails).toEqual([
      { value: `${name}@changed.example`, type: 'work', primary: true },
      { value: `${name}@home.example`, type: 'home' },
    ]);

    // The admin API picking the home address makes it the primary one.
    await admin.patch(`/api/v1/users/${created.id}`, { email: `${name}@home.example` });
    const again = (await scim('GET', `/Users/${created.id}`)).json();
    expect(again.emails).toEqual([
      { value: `${name}@example.com`, type: 'work', primary: false },
      { value: `${name}@home.example`, type: 'home', primary: true },
    ]);
    const typed = (
      await scim('GET', `/Users?filter=${encodeURIComponent('emails[type eq "home" and primary eq true]')}`)
    ).json();
    expect(typed.Resources.map((r: { id: string }) => r.id)).toEqual([created.id]);
  });

  it('finds users by their primary address and its type, not by the other addresses', async () => {
    const { scim } = await scimClient(t);
    const name = unique('filtermail');
    const created = await userWithEmails(scim, name, [
      { value: `${name}@home.example`, type: 'home', primary: true },
      { value: `${name}@work.example`, type: 'work' },
    ]);
    const ids = async (filter: string) =>
      (await scim('GET', `/Users?filter=${encodeURIComponent(filter)}`))
        .json()
        .Resources.map((r: { id: string }) => r.id);
    expect(await ids(`emails.value eq "${name}@home.example"`)).toEqual([created.id]);
    expect(await ids(`emails[type eq "home" and value eq "${name}@home.example"]`)).toEqual([created.id]);
    expect(await ids(`emails[type eq "work" and value eq "${name}@home.example"]`)).toEqual([]);
    expect(await ids(`emails.value eq "${name}@work.example"`)).toEqual([]);
  });
});
