import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import { type Client, grantRole, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import type { Organization } from '../organizations/organizations.table.js';
import { applyUserTypeTemplate } from '../user-types/user-types.service.js';
import { userTypes } from '../user-types/user-types.table.js';
import { users } from '../users/users.table.js';

interface ImportAnswer {
  success: boolean;
  created: number;
  skipped: number;
  failed: number;
  dry_run: boolean;
  results: {
    index: number;
    action: string;
    id?: string | null;
    email: string | null;
    code?: string;
    errors?: unknown[];
  }[];
  message: string;
}

describe('user import between systems', () => {
  let t: TestApp;
  let root: Client;
  let source: Organization;
  let target: Organization;
  let staff: Client;

  beforeAll(async () => {
    t = await startTestApp({ BULK_MAX_ITEMS: '50' });
    root = await superuserClient(t);
    source = await seedOrganization(t);
    target = await seedOrganization(t);
    // The global student type the exported user holds: an import is held to the user types it names.
    await applyUserTypeTemplate(t.database.db, 'school');
    const staffUser = await seedUser(t, target.id, { isStaff: true });
    await grantRole(t, staffUser, 'org_admin');
    staff = await loginAs(t, staffUser);
  });
  afterAll(() => t.close());

  const usersIn = (org: Organization) =>
    t.database.db.select().from(users).where(eq(users.organizationId, org.id)).orderBy(users.id);

  it("imports another organization's export, then skips the users it already has", async () => {
    await seedUser(t, source.id, {
      email: 'tv@example.com',
      username: 'tv',
      firstName: 'Tele',
      lastName: 'Vision',
      userType: 'student',
      attributes: { tv_service: true },
      isStaff: true,
    });
    await seedUser(t, source.id, { email: 'gone@example.com', status: 'deactivated' });
    const exported = await root.get(`/api/admin/export-users/?organization=${source.code}&include_inactive=true`);
    expect(exported.json().count).toBe(2);

    // The export's whole answer is a valid import body.
    const first = await root.post('/api/admin/import-users/', {
      ...(exported.json() as object),
      organization: target.code,
    });
    expect(first.statusCode).toBe(200);
    const answer = first.json() as ImportAnswer;
    expect(answer).toMatchObject({ success: true, created: 2, skipped: 0, failed: 0, dry_run: false });
    expect(answer.message).toBe('2 users created, 0 skipped, 0 failed');

    const imported = (await usersIn(target)).filter((u) => u.email !== staff.user.email);
    const tv = imported.find((u) => u.email === 'tv@example.com');
    expect(tv).toMatchObject({
      username: 'tv',
      firstName: 'Tele',
      lastName: 'Vision',
      userType: 'student',
      attributes: { tv_service: true },
      status: 'active',
      // Passwords and staff rights never travel.
      isStaff: false,
      passwordHash: null,
    });
    expect(answer.results.find((r) => r.email === 'tv@example.com')).toMatchObject({ action: 'created', id: tv?.id });
    expect(imported.find((u) => u.email === 'gone@example.com')?.status).toBe('deactivated');
    const [createdEvent] = await t.database.db
      .select({ description: activities.description })
      .from(activities)
      .where(and(eq(activities.activityType, 'user.created'), eq(activities.userId, tv?.id as string)));
    expect(createdEvent?.description).toBe('Created by import');

    const again = (
      await root.post('/api/admin/import-users/', { ...(exported.json() as object), organization: target.code })
    ).json() as ImportAnswer;
    expect(again).toMatchObject({ created: 0, skipped: 2, failed: 0 });
    expect(again.results.map((r) => r.code)).toEqual(['email_taken', 'email_taken']);
    expect(await usersIn(target)).toHaveLength(imported.length + 1);
  });

  it('keeps what an export gives through a round trip: date_joined, suspended and locked status, the SCIM externalId', async () => {
    const from = await seedOrganization(t);
    const into = await seedOrganization(t);
    const joined = new Date('2019-03-04T05:06:07.123Z');
    await seedUser(t, from.id, {
      email: 'suspended@example.com',
      status: 'suspended',
      dateJoined: joined,
      scimExternalId: 'scim-suspended',
    });
    await seedUser(t, from.id, { email: 'locked@example.com', status: 'locked', scimExternalId: 'scim-locked' });
    await seedUser(t, from.id, { email: 'plain@example.com', dateJoined: new Date('2001-01-01T00:00:00Z') });
    const exported = await root.get(`/api/admin/export-users/?organization=${from.code}&include_inactive=true`);
    const exportedUsers = exported.json().users as Record<string, unknown>[];
    expect(exportedUsers.find((u) => u.email === 'suspended@example.com')).toMatchObject({
      date_joined: joined.toISOString(),
      status: 'suspended',
      is_active: false,
      scim_external_id: 'scim-suspended',
    });
    expect(exportedUsers.find((u) => u.email === 'plain@example.com')).toMatchObject({ scim_external_id: null });

    const res = await root.post('/api/admin/import-users/', {
      ...(exported.json() as object),
      organization: into.code,
    });
    expect(res.json()).toMatchObject({ created: 3, skipped: 0, failed: 0 });
    const byEmail = new Map((await usersIn(into)).map((u) => [u.email, u]));
    expect(byEmail.get('suspended@example.com')).toMatchObject({
      status: 'suspended',
      dateJoined: joined,
      scimExternalId: 'scim-suspended',
    });
    expect(byEmail.get('locked@example.com')).toMatchObject({ status: 'locked', scimExternalId: 'scim-locked' });
    expect(byEmail.get('plain@example.com')).toMatchObject({
      status: 'active',
      dateJoined: new Date('2001-01-01T00:00:00Z'),
      scimExternalId: null,
    });
    // The imported user answers SCIM with its externalId.
    const back = await root.get(`/api/admin/export-users/?organization=${into.code}&include_inactive=true`);
    expect(
      (back.json().users as Record<string, unknown>[]).map((u) => [
        u.email,
        u.status,
        u.date_joined,
        u.scim_external_id,
      ]),
    ).toEqual(exportedUsers.map((u) => [u.email, u.status, u.date_joined, u.scim_external_id]));
  });

  it('reports a SCIM externalId the organization holds like other duplicates, one repeated in the import as failed, and a bad date_joined or status for its entry', async () => {
    const into = await seedOrganization(t);
    await seedUser(t, into.id, { email: 'holder@example.com', scimExternalId: 'taken' });
    const res = await root.post('/api/admin/import-users/', {
      organization: into.code,
      users: [
        { email: 'clash@example.com', scim_external_id: 'taken' },
        { email: 'first@example.com', scim_external_id: 'twice' },
        { email: 'second@example.com', scim_external_id: 'twice' },
        { email: 'when@example.com', date_joined: 'yesterday' },
        { email: 'year-zero@example.com', date_joined: '0000-12-31T00:00:00Z' },
        { email: 'future@example.com', date_joined: '2999-01-01T00:00:00Z' },
        // A status another system names its own way: is_active decides.
        { email: 'other-status@example.com', status: 'inactive', is_active: false },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    const answer = res.json() as ImportAnswer;
    expect(answer.results.map((r) => [r.action, r.code])).toEqual([
      ['skipped', 'scim_external_id_taken'],
      ['created', undefined],
      ['failed', 'duplicate_in_request'],
      ['failed', 'validation_failed'],
      ['failed', 'validation_failed'],
      ['failed', 'validation_failed'],
      ['created', undefined],
    ]);
    expect(answer.results[5]?.errors).toEqual([{ field: 'date_joined', message: 'Must not be in the future.' }]);
    expect(answer.results[3]?.errors).toEqual([expect.objectContaining({ field: 'date_joined' })]);
    expect(answer.results[4]?.errors).toEqual([expect.objectContaining({ field: 'date_joined' })]);
    const stored = new Map((await usersIn(into)).map((u) => [u.email, u]));
    expect(stored.get('other-status@example.com')?.status).toBe('deactivated');
    expect(stored.get('first@example.com')?.scimExternalId).toBe('twice');
    // Without date_joined, the user joins now.
    expect(Date.now() - (stored.get('first@example.com')?.dateJoined.getTime() ?? 0)).toBeLessThan(60_000);
  });

  it("reads Gatehouse's statuses in any case, leaves other systems' names to is_active, and fails any other status naming it", async () => {
    const into = await seedOrganization(t);
    const res = await root.post('/api/admin/import-users/', {
      organization: into.code,
      users: [
        { email: 'upper@example.com', status: 'SUSPENDED' },
        { email: 'mixed@example.com', status: ' Locked ' },
        { email: 'other@example.com', status: 'Inactive', is_active: false },
        { email: 'empty@example.com', status: '' },
        { email: 'unknown@example.com', status: 'PAUSED' },
        { email: 'number@example.com', status: 123 },
        { email: 'object@example.com', status: { value: 'active' } },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    const answer = res.json() as ImportAnswer;
    expect(answer.results.map((r) => [r.action, r.code])).toEqual([
      ['created', undefined],
      ['created', undefined],
      ['created', undefined],
      ['created', undefined],
      ['failed', 'validation_failed'],
      ['failed', 'validation_failed'],
      ['failed', 'validation_failed'],
    ]);
    for (const r of answer.results.slice(4)) {
      expect(r.errors).toEqual([expect.objectContaining({ field: 'status' })]);
    }
    const stored = new Map((await usersIn(into)).map((u) => [u.email, u.status]));
    expect(Object.fromEntries(stored)).toEqual({
      'upper@example.com': 'suspended',
      'mixed@example.com': 'locked',
      'other@example.com': 'deactivated',
      'empty@example.com': 'active',
    });
  });

  it('keeps date_joined in an import large enough to be copied in bulk', async () => {
    const into = await seedOrganization(t);
    const users50 = Array.from({ length: 50 }, (_, i) => ({
      email: `bulk-${i}@example.com`,
      ...(i % 2 ? { date_joined: new Date(Date.UTC(1970 + i, 0, 1, 0, 0, 0, i)).toISOString() } : {}),
      ...(i % 5 === 0 ? { status: 'suspended', scim_external_id: `s-${i}` } : {}),
    }));
    const res = await root.post('/api/admin/import-users/', { organization: into.code, users: users50 });
    expect(res.json()).toMatchObject({ created: 50, failed: 0 });
    const stored = new Map((await usersIn(into)).map((u) => [u.email, u]));
    for (const [i, entry] of users50.entries()) {
      const row = stored.get(entry.email);
      if ('date_joined' in entry) expect(row?.dateJoined.toISOString()).toBe(entry.date_joined);
      else expect(Date.now() - (row?.dateJoined.getTime() ?? 0)).toBeLessThan(60_000);
      expect(row?.status).toBe(i % 5 === 0 ? 'suspended' : 'active');
      expect(row?.scimExternalId).toBe(i % 5 === 0 ? `s-${i}` : null);
    }
  });

  it('reports each bad entry alone and creates the others', async () => {
    const res = await staff.post('/api/admin/import-users/', {
      users: [
        'not an object',
        { username: 'no-email' },
        { email: 'not-an-address' },
        { email: 'good@example.com', first_name: 'Good' },
        { email: 'bad-active@example.com', is_active: 'yes' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const answer = res.json() as ImportAnswer;
    expect(answer).toMatchObject({ created: 1, skipped: 0, failed: 4 });
    expect(answer.results.map((r) => r.action)).toEqual(['failed', 'failed', 'failed', 'created', 'failed']);
    expect(answer.results[0]).toMatchObject({ code: 'validation_failed', errors: [{ field: 'item' }] });
    expect(answer.results[1]?.errors).toEqual([expect.objectContaining({ field: 'email' })]);
    expect(answer.results[2]?.errors).toEqual([expect.objectContaining({ field: 'email' })]);
    expect(answer.results[4]?.errors).toEqual([expect.objectContaining({ field: 'is_active' })]);
    const created = await t.database.db
      .select()
      .from(users)
      .where(and(eq(users.organizationId, target.id), inArray(users.email, ['good@example.com', 'no-email'])));
    expect(created.map((u) => u.email)).toEqual(['good@example.com']);
  });

  it('imports an address whose domain is an internationalized domain name as sent, and refuses one no host name ends', async () => {
    const into = await seedOrganization(t);
    const email = `${unique('jane')}@Bücher.example`;
    const refused = NOT_EMAIL_ADDRESSES;
    const res = await root.post('/api/admin/import-users/', {
      organization: into.code,
      users: [{ email }, ...refused.map((address) => ({ email: address }))],
    });
    expect(res.statusCode, res.body).toBe(200);
    const answer = res.json() as ImportAnswer;
    expect(answer).toMatchObject({ created: 1, failed: refused.length });
    expect(answer.results[0]).toMatchObject({ action: 'created', email });
    for (const [i, address] of refused.entries()) {
      expect(answer.results[i + 1], address).toMatchObject({
        action: 'failed',
        email: address,
        code: 'validation_failed',
        errors: [{ field: 'email' }],
      });
    }
    const read = await root.get(`/api/v1/users/${answer.results[0]?.id}/`);
    expect(read.json().email).toBe(email);
  });

  it('refuses an entry holding unstorable text, deep nesting or a __proto__ key alone, and the rest of such a body whole', async () => {
    const into = await seedOrganization(t);
    let deep: unknown = 'bottom';
    for (let i = 0; i < 100; i++) deep = { level: deep };
    const body = JSON.stringify({
      organization: into.code,
      users: [
        { email: 'one@example.com' },
        { email: 'two@example.com' },
        { email: 'three@example.com', attributes: deep },
        { email: 'four@example.com' },
        { email: 'five@example.com', first_name: 'a\u0000b' },
      ],
    }).replace('"four@example.com"}', '"four@example.com","attributes":{"__proto__":{"x":1}}}');
    const res = await t.request({
      method: 'POST',
      url: '/api/admin/import-users/',
      headers: { authorization: `Bearer ${root.token}`, 'content-type': 'application/json' },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(200);
    const answer = res.json() as ImportAnswer;
    expect(answer.results.map((r) => r.action)).toEqual(['created', 'created', 'failed', 'failed', 'failed']);
    expect(answer.results[2]?.errors).toEqual([
      { field: expect.stringMatching(/^attributes(\.level)+$/), message: 'must not nest deeper than 64 levels.' },
    ]);
    expect(answer.results[3]?.errors).toEqual([
      { field: 'attributes.__proto__', message: 'Keys named "__proto__" are not accepted.' },
    ]);
    expect(answer.results[4]?.errors).toEqual([{ field: 'first_name', message: expect.stringContaining('NUL') }]);
    expect((await usersIn(into)).map((u) => u.email).sort()).toEqual(['one@example.com', 'two@example.com']);

    // Outside `users`, the body is refused whole as on any route.
    const outside = await root.post('/api/admin/import-users/', {
      organization: 'a\u0000b',
      users: [{ email: 'never@example.com' }],
    });
    expect(outside.statusCode).toBe(400);
    expect(outside.json()).toMatchObject({ success: false, errors: [{ field: 'organization' }] });
  });

  it('fails alone an entry whose user type cannot be used or whose profile does not match, naming the field as the entry does', async () => {
    const into = await seedOrganization(t);
    // Stored by an older version: validating anything against it recursed until the stack ran out.
    await t.database.db
      .insert(userTypes)
      .values({ organizationId: into.id, code: 'looping', plural: 'loopings', label: 'L', schema: { $ref: '#' } });
    for (const dry_run of [true, false]) {
      const res = await root.post('/api/admin/import-users/', {
        organization: into.code,
        dry_run,
        users: [
          { email: `${unique()}@example.com` },
          { email: `${unique()}@example.com`, user_type: 'looping' },
          { email: `${unique()}@example.com`, user_type: 'student', attributes: { profile: { grade: 'x' } } },
          { email: `${unique()}@example.com`, user_type: 'student', attributes: { profile: { grade: 3 } } },
        ],
      });
      expect(res.statusCode, res.body).toBe(200);
      const answer = res.json() as ImportAnswer;
      expect(answer.results.map((r) => r.action)).toEqual(['created', 'failed', 'failed', 'created']);
      expect(answer.results[1]).toMatchObject({ code: 'user_type_schema_unusable' });
      expect(answer.results[2]?.errors).toEqual([expect.objectContaining({ field: 'attributes.profile.grade' })]);
    }
  });

  it('reads a join date without a zone (Django with USE_TZ off) as UTC', async () => {
    const into = await seedOrganization(t);
    const res = await root.post('/api/admin/import-users/', {
      organization: into.code,
      users: [
        { email: 'naive@example.com', date_joined: '2023-03-02T03:04:05' },
        { email: 'naive-micro@example.com', date_joined: '2023-03-02 03:04:05.123456' },
      ],
    });
    expect((res.json() as ImportAnswer).results.map((r) => r.action)).toEqual(['created', 'created']);
    const stored = new Map((await usersIn(into)).map((u) => [u.email, u]));
    expect(stored.get('naive@example.com')?.dateJoined.toISOString()).toBe('2023-03-02T03:04:05.000Z');
    expect(stored.get('naive-micro@example.com')?.dateJoined.toISOString()).toBe('2023-03-02T03:04:05.123Z');
  });

  it('imports into the organization named by organization_id, which must agree with organization', async () => {
    const into = await seedOrganization(t);
    const other = await seedOrganization(t);
    const body = (extra: Record<string, unknown>) => ({
      users: [{ email: unique('byid-') + '@example.com' }],
      ...extra,
    });
    const byId = await root.post('/api/admin/import-users/', body({ organization_id: into.id }));
    expect(byId.statusCode, byId.body).toBe(200);
    expect(byId.json()).toMatchObject({ created: 1 });
    expect(await usersIn(into)).toHaveLength(1);

    const both = await root.post(
      '/api/admin/import-users/',
      body({ organization_id: into.id, organization: into.code }),
    );
    expect(both.statusCode, both.body).toBe(200);
    expect(await usersIn(into)).toHaveLength(2);

    const disagreeing = await root.post(
      '/api/admin/import-users/',
      body({ organization_id: into.id, organization: other.code }),
    );
    expect(disagreeing.statusCode).toBe(400);
    expect(disagreeing.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'organization_id' }] });
    const unknown = await root.post(
      '/api/admin/import-users/',
      body({ organization_id: '01a20568-ebe5-7959-8be2-000000000000' }),
    );
    expect(unknown.statusCode).toBe(404);
    expect(await usersIn(other)).toEqual([]);
    expect(await usersIn(into)).toHaveLength(2);

    // A staff user naming another organization by id is refused as by code, not imported into their own.
    const elsewhere = await staff.post('/api/admin/import-users/', body({ organization_id: other.id }));
    expect(elsewhere.statusCode).toBe(403);
    expect(await usersIn(other)).toEqual([]);
  });

  it('fails an external id repeated in one import, naming external_id, and keeps the first', async () => {
    const into = await seedOrganization(t);
    const res = await root.post('/api/admin/import-users/', {
      organization: into.code,
      users: [
        'not a user',
        { email: 'first@example.com', external_id: 'kc-twice' },
        { email: 'second@example.com', external_id: 'kc-twice' },
      ],
    });
    const answer = res.json() as ImportAnswer;
    expect(answer).toMatchObject({ created: 1, skipped: 0, failed: 2 });
    expect(answer.results[2]).toMatchObject({
      action: 'failed',
      code: 'duplicate_in_request',
      errors: [{ field: 'external_id', message: 'An earlier entry of this import gives the same external id.' }],
    });
    expect((await usersIn(into)).map((u) => [u.email, u.externalId])).toEqual([['first@example.com', 'kc-twice']]);
  });

  it('fails an email address or username repeated in one import, in any case, naming the field; one the organization holds is skipped', async () => {
    const into = await seedOrganization(t);
    await seedUser(t, into.id, { email: 'held@example.com' });
    const body = (dryRun: boolean) => ({
      organization: into.code,
      dry_run: dryRun,
      users: [
        { email: 'first@example.com', username: 'ada' },
        { email: 'FIRST@example.com', username: 'grace' },
        { email: 'other@example.com', username: 'ADA' },
        { email: 'held@example.com' },
        { email: 'held@example.com' },
      ],
    });
    for (const dryRun of [true, false]) {
      const res = await root.post('/api/admin/import-users/', body(dryRun));
      expect(res.statusCode, res.body).toBe(200);
      const answer = res.json() as ImportAnswer;
      expect(answer, `dry run: ${dryRun}`).toMatchObject({ created: 1, skipped: 2, failed: 2 });
      expect(answer.results.map((r) => [r.action, r.code])).toEqual([
        ['created', undefined],
        ['failed', 'duplicate_in_request'],
        ['failed', 'duplicate_in_request'],
        ['skipped', 'email_taken'],
        ['skipped', 'email_taken'],
      ]);
      expect(answer.results[1]).toMatchObject({
        errors: [{ field: 'email', message: 'An earlier entry of this import gives the same email address.' }],
      });
      expect(answer.results[2]).toMatchObject({
        errors: [{ field: 'username', message: 'An earlier entry of this import gives the same username.' }],
      });
    }
    expect((await usersIn(into)).map((u) => u.email).sort()).toEqual(['first@example.com', 'held@example.com']);
  });

  it('fails a SCIM externalId repeated in one import, naming scim_external_id, keeps the first and imports the others', async () => {
    const into = await seedOrganization(t);
    const body = (dryRun: boolean) => ({
      organization: into.code,
      dry_run: dryRun,
      users: [
        // An entry refused for another reason claims nothing: the next one with its SCIM externalId stands.
        { email: 'not-an-address', scim_external_id: 'scim-twice' },
        { email: 'first@example.com', scim_external_id: 'scim-twice' },
        { email: 'other@example.com', scim_external_id: 'scim-other' },
        { email: 'second@example.com', scim_external_id: 'scim-twice' },
        { email: 'third@example.com', scim_external_id: 'scim-twice' },
      ],
    });
    for (const dryRun of [true, false]) {
      const res = await root.post('/api/admin/import-users/', body(dryRun));
      expect(res.statusCode, res.body).toBe(200);
      const answer = res.json() as ImportAnswer;
      expect(answer, `dry run: ${dryRun}`).toMatchObject({ created: 2, skipped: 0, failed: 3 });
      expect(answer.results.map((r) => [r.action, r.code])).toEqual([
        ['failed', 'validation_failed'],
        ['created', undefined],
        ['created', undefined],
        ['failed', 'duplicate_in_request'],
        ['failed', 'duplicate_in_request'],
      ]);
      for (const index of [3, 4]) {
        expect(answer.results[index]).toMatchObject({
          email: index === 3 ? 'second@example.com' : 'third@example.com',
          errors: [
            { field: 'scim_external_id', message: 'An earlier entry of this import gives the same SCIM externalId.' },
          ],
        });
      }
    }
    expect((await usersIn(into)).map((u) => [u.email, u.scimExternalId]).sort()).toEqual([
      ['first@example.com', 'scim-twice'],
      ['other@example.com', 'scim-other'],
    ]);
    // Imported again, each user is one the organization holds: skipped, not failed.
    const again = await root.post('/api/admin/import-users/', body(false));
    expect(again.json()).toMatchObject({ created: 0, skipped: 4, failed: 1 });
  });

  it('reads what exports and spreadsheets write: a username standing in for the email, empty names, True, the service flags', async () => {
    const org = await seedOrganization(t);
    const res = await root.post('/api/admin/import-users/', {
      organization: org.code,
      users: [
        // An export stands the email in for a user without a username, whatever the email holds.
        { email: 'tom&jerry@example.com', username: 'tom&jerry@example.com', first_name: null, last_name: null },
        // …and a second user's real username may be the first one's email: both arrive.
        { email: 'p@example.com', username: 'p@example.com' },
        { email: 'q@example.com', username: 'p@example.com', is_active: 'FALSE' },
        // Seed 003's flags and a spreadsheet's booleans.
        { email: 'tv@example.com', is_active: 'True', tv_service: true, movie_service: 'false' },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 4, skipped: 0, failed: 0 });
    const byEmail = new Map((await usersIn(org)).map((u) => [u.email, u]));
    expect(byEmail.get('tom&jerry@example.com')).toMatchObject({ username: null, firstName: '', lastName: '' });
    expect(byEmail.get('p@example.com')).toMatchObject({ username: null });
    expect(byEmail.get('q@example.com')).toMatchObject({ username: 'p@example.com', status: 'deactivated' });
    expect(byEmail.get('tv@example.com')).toMatchObject({
      status: 'active',
      attributes: { tv_service: true, movie_service: false },
    });
    const exported = await root.get(`/api/admin/export-users/?organization=${org.code}&flag=tv_service`);
    expect(exported.json().users.map((u: { email: string }) => u.email)).toEqual(['tv@example.com']);
  });

  it("counts a keycloak id another organization's user holds as failed, one its own user holds as skipped", async () => {
    const here = await seedOrganization(t);
    const elsewhere = await seedOrganization(t);
    const ownId = unique('kc-own-');
    const otherId = unique('kc-other-');
    await seedUser(t, here.id, { email: `${ownId}@example.com`, externalId: ownId });
    await seedUser(t, elsewhere.id, { email: `${otherId}@example.com`, externalId: otherId });
    const res = await root.post('/api/admin/import-users/', {
      organization: here.code,
      users: [
        { email: 'new-own@example.com', external_id: ownId },
        { email: 'new-other@example.com', external_id: otherId },
      ],
    });
    expect(res.json()).toMatchObject({ created: 0, skipped: 1, failed: 1 });
    expect((res.json() as ImportAnswer).results.map((r) => [r.action, r.code])).toEqual([
      ['skipped', 'external_id_taken'],
      ['failed', 'external_id_taken'],
    ]);
  });

  it('keeps a join date of any year, below 100 too (year 1 is Go zero time), through import and export', async () => {
    const org = await seedOrganization(t);
    const dates = [
      '0001-01-01T00:00:00.000Z',
      '0049-06-01T12:00:00.000Z',
      '0050-06-01T12:00:00.000Z',
      '0999-12-31T23:59:59.000Z',
    ];
    const res = await root.post('/api/admin/import-users/', {
      organization: org.code,
      users: dates.map((date_joined, i) => ({ email: `old${i}@example.com`, date_joined })),
    });
    expect(res.json()).toMatchObject({ created: dates.length, failed: 0 });
    const exported = await root.get(`/api/admin/export-users/?organization=${org.code}`);
    const joined = new Map(
      exported.json().users.map((u: { email: string; date_joined: string }) => [u.email, u.date_joined]),
    );
    expect(dates.map((_, i) => joined.get(`old${i}@example.com`))).toEqual(dates);
  });

  it('answers what would happen on a dry run and writes nothing', async () => {
    const email = `${unique('dry')}@example.com`;
    const res = await staff.post('/api/admin/import-users/', { users: [{ email }], dry_run: true });
    expect(res.json()).toMatchObject({
      created: 1,
      dry_run: true,
      results: [{ action: 'created', id: null, email }],
      message: '1 users would be created, 0 skipped, 0 failed',
    });
    expect((await usersIn(target)).some((u) => u.email === email)).toBe(false);
  });

  it('keeps staff to their own organization and refuses others', async () => {
    const elsewhere = await staff.post('/api/admin/import-users/', {
      organization: source.code,
      users: [{ email: `${unique('x')}@example.com` }],
    });
    expect(elsewhere.statusCode).toBe(403);
    // The refusals speak of importing, not of exporting (same codes).
    expect(elsewhere.json()).toMatchObject({
      success: false,
      code: 'permission_denied',
      error: 'Staff users import into their own organization only.',
    });

    const member = await loginAs(t, await seedUser(t, target.id));
    const refused = await member.post('/api/admin/import-users/', { users: [] });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({
      success: false,
      code: 'permission_denied',
      error: 'Importing users needs a staff user.',
    });
    // Staff without the right to create users may export but not import.
    const staffOnly = await loginAs(t, await seedUser(t, target.id, { isStaff: true }));
    const notAllowed = await staffOnly.post('/api/admin/import-users/', { users: [] });
    expect(notAllowed.statusCode).toBe(403);
    expect(notAllowed.json()).toMatchObject({
      success: false,
      error: 'Importing users needs the users.update permission.',
    });

    const anonymous = await t.request({ method: 'POST', url: '/api/admin/import-users/', payload: { users: [] } });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().success).toBe(false);

    // A superuser names the organization: their own is not assumed.
    const unnamed = await root.post('/api/admin/import-users/', { users: [] });
    expect(unnamed.statusCode).toBe(400);
    expect(unnamed.json()).toMatchObject({ success: false, errors: [{ field: 'organization' }] });
  });

  it('refuses a body without users, and more users than BULK_MAX_ITEMS with 413', async () => {
    const missing = await staff.post('/api/admin/import-users/', { organization: target.code });
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toMatchObject({ success: false, errors: [{ field: 'users' }] });

    const many = Array.from({ length: 51 }, (_, i) => ({ email: `many-${i}@example.com` }));
    const tooMany = await staff.post('/api/admin/import-users/', { users: many });
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json()).toMatchObject({ success: false, code: 'too_many_items', errors: [{ field: 'users' }] });
    expect((await usersIn(target)).some((u) => u.email === 'many-0@example.com')).toBe(false);
  });

  it('records the imported users and the call as audit events', async () => {
    const email = `${unique('audited')}@example.com`;
    const res = await staff.post('/api/admin/import-users/', { users: [{ email }] });
    const id = (res.json() as ImportAnswer).results[0]?.id as string;
    const events = await t.database.db.select().from(activities).where(eq(activities.userId, id));
    expect(events).toContainEqual(
      expect.objectContaining({ activityType: 'user.created', kind: 'audit', actorId: staff.user.id }),
    );
    const calls = await t.database.db
      .select()
      .from(activities)
      .where(and(eq(activities.actorId, staff.user.id), eq(activities.category, 'provisioning')));
    expect(calls.length).toBeGreaterThan(0);
    // The organization's admins find the call among its activities.
    const listed = await staff.get('/api/v1/activities/?activity_type=provisioning.users.upsert');
    const call = (listed.json() as { results: { details: Record<string, unknown>; organization: string | null }[] })
      .results[0];
    expect(call).toMatchObject({
      organization: target.code,
      details: { source: 'import', dry_run: false, created: 1 },
    });
  });

  it('counts the entries refused before the provisioning core in the call event', async () => {
    const email = `${unique('counted')}@example.com`;
    const res = await staff.post('/api/admin/import-users/', {
      users: [{ email }, { email: `${unique('bad')}@example.com`, status: 'sleeping' }, 'no object', { email }],
    });
    expect(res.json()).toMatchObject({ created: 1, failed: 3 });
    const listed = await staff.get('/api/v1/activities/?activity_type=provisioning.users.upsert');
    expect(listed.json().results[0]).toMatchObject({
      success: true,
      details: {
        items: 4,
        created: 1,
        errors: 3,
        error_codes: expect.objectContaining({ validation_failed: 2 }),
      },
    });

    const none = await staff.post('/api/admin/import-users/', { users: ['no object'] });
    expect(none.json()).toMatchObject({ created: 0, failed: 1 });
    const failed = await staff.get('/api/v1/activities/?activity_type=provisioning.users.upsert');
    expect(failed.json().results[0]).toMatchObject({
      success: false,
      severity: 'warning',
      details: { items: 1, errors: 1, code: 'validation_failed', status: 400 },
    });
  });
});
