import { PassThrough } from 'node:stream';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type Client,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
  TEST_PASSWORD,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { SESSION_COOKIE } from '../cookie-auth/cookie-auth.service.js';
import type { Organization } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';

interface ExportedUser {
  id: string;
  username: string;
  email: string;
  is_active: boolean;
  organization: string;
  user_type: string | null;
  attributes: Record<string, unknown>;
}

describe('seed-003 user export', () => {
  let t: TestApp;
  let org: Organization;
  let other: Organization;
  let staff: Client;
  let root: Client;
  let active: string[];
  let inactive: string;

  beforeAll(async () => {
    t = await startTestApp();
    org = await seedOrganization(t);
    other = await seedOrganization(t);
    root = await superuserClient(t);
    const staffUser = await seedUser(t, org.id, { isStaff: true, username: unique('staff') });
    staff = await loginAs(t, staffUser);
    const tv = await seedUser(t, org.id, {
      username: 'tv-viewer',
      firstName: 'Tele',
      lastName: '=HYPERLINK("x")',
      userType: 'student',
      attributes: { tv_service: true },
    });
    const plain = await seedUser(t, org.id, { userType: 'staff', attributes: { tv_service: false } });
    const gone = await seedUser(t, org.id, { status: 'deactivated', userType: 'student' });
    await seedUser(t, other.id, { username: 'elsewhere' });
    active = [staffUser.id, tv.id, plain.id];
    inactive = gone.id;
  });
  afterAll(() => t.close());

  const usersOf = (body: { users: ExportedUser[] }) => body.users.map((u) => u.id);

  it("answers seed 003's shape with the staff user's active users, in the order they were created", async () => {
    const res = await staff.get('/api/admin/export-users/');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body).toMatchObject({ success: true, count: 3, message: 'Successfully exported 3 users' });
    expect(usersOf(body)).toEqual(active);
    const tv = body.users.find((u: ExportedUser) => u.username === 'tv-viewer');
    expect(tv).toMatchObject({
      first_name: 'Tele',
      is_active: true,
      user_type: 'student',
      organization: org.code,
      organization_id: org.id,
      attributes: { tv_service: true },
    });
    expect(Date.parse(tv.date_joined)).not.toBeNaN();
    // A user without a username is exported under the email, as seed 003's importers key by username.
    const unnamed = body.users.find((u: ExportedUser) => u.id === active[2]);
    expect(unnamed.username).toBe(unnamed.email);
    expect(res.body).not.toMatch(/password|argon2/);
  });

  it('works with the cookie session of a browser login, as seed 003 signs in', async () => {
    const login = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: staff.user.email, password: TEST_PASSWORD },
    });
    expect(login.statusCode).toBe(200);
    const session = login.cookies.find((c) => c.name === SESSION_COOKIE)?.value;
    expect(session).toBeTruthy();
    const res = await t.request({
      method: 'GET',
      url: '/api/admin/export-users/',
      cookies: { [SESSION_COOKIE]: session as string },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().count).toBe(3);
  });

  it('refuses anonymous callers with 401 and non-staff with 403, in the success:false shape', async () => {
    for (const url of ['/api/admin/export-users/', '/api/admin/export-stats/']) {
      const anonymous = await t.request({ method: 'GET', url });
      expect(anonymous.statusCode).toBe(401);
      expect(anonymous.json()).toMatchObject({ success: false, code: 'not_authenticated' });
      expect(typeof anonymous.json().error).toBe('string');

      const member = await loginAs(t, await seedUser(t, (await seedOrganization(t)).id));
      const refused = await member.get(url);
      expect(refused.statusCode).toBe(403);
      expect(refused.json()).toMatchObject({ success: false, code: 'permission_denied' });

      const key = await createApiKey(t.database.db, OPERATOR, {
        name: unique('key'),
        organization: org.code,
        scopes: ['provisioning', 'scim', 'authorize', 'read:users'],
      });
      const byKey = await t.request({ method: 'GET', url, headers: { authorization: `Bearer ${key.key}` } });
      expect(byKey.statusCode).toBe(403);
      expect(byKey.json().success).toBe(false);
    }
  });

  it('keeps staff to their own organization and lets superusers choose any', async () => {
    const elsewhere = await staff.get(`/api/admin/export-users/?organization=${other.code}`);
    expect(elsewhere.statusCode).toBe(403);
    expect(elsewhere.json().success).toBe(false);

    const own = await staff.get(`/api/admin/export-users/?organization=${org.code}`);
    expect(usersOf(own.json())).toEqual(active);

    const theirs = await root.get(`/api/admin/export-users/?organization=${other.code}`);
    expect(theirs.json().users.map((u: ExportedUser) => u.username)).toEqual(['elsewhere']);

    const all = await root.get('/api/admin/export-users/');
    const organizations = new Set(all.json().users.map((u: ExportedUser) => u.organization));
    expect(organizations).toContain(org.code);
    expect(organizations).toContain(other.code);

    const unknown = await root.get('/api/admin/export-users/?organization=no-such-org');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ success: false, code: 'not_found' });
  });

  it('narrows by status, user type, a true attribute and a SCIM filter', async () => {
    const withInactive = await staff.get('/api/admin/export-users/?include_inactive=true');
    expect(usersOf(withInactive.json())).toEqual([...active, inactive].sort());
    expect(withInactive.json().users.find((u: ExportedUser) => u.id === inactive).is_active).toBe(false);

    const students = await staff.get('/api/admin/export-users/?user_type=student&include_inactive=true');
    expect(usersOf(students.json()).sort()).toEqual([active[1], inactive].sort());

    const tv = await staff.get('/api/admin/export-users/?flag=tv_service');
    expect(tv.json().users.map((u: ExportedUser) => u.username)).toEqual(['tv-viewer']);

    const filtered = await staff.get(
      `/api/admin/export-users/?filter=${encodeURIComponent('userName eq "TV-VIEWER" or name.givenName sw "nobody"')}`,
    );
    expect(filtered.json().count).toBe(1);
    // The filter's strings are JSON strings, as in SCIM: \u0056 is "V".
    const escaped = await staff.get(
      `/api/admin/export-users/?filter=${encodeURIComponent(String.raw`userName eq "tv-\u0056iewer"`)}`,
    );
    expect(escaped.json().users.map((u: ExportedUser) => u.username)).toEqual(['tv-viewer']);
  });

  it('answers 400 naming the field for a bad filter, format or flag', async () => {
    const filter = await staff.get(`/api/admin/export-users/?filter=${encodeURIComponent('userName eq')}`);
    expect(filter.statusCode).toBe(400);
    expect(filter.json()).toMatchObject({ success: false, code: 'invalid_filter', errors: [{ field: 'filter' }] });
    expect(filter.json().errors[0].message).toContain('a value is missing after "eq"');

    const unknownAttribute = await staff.get(`/api/admin/export-users/?filter=${encodeURIComponent('password pr')}`);
    expect(unknownAttribute.statusCode).toBe(400);
    expect(unknownAttribute.json().code).toBe('invalid_filter');

    const format = await staff.get('/api/admin/export-users/?format=xml');
    expect(format.statusCode).toBe(400);
    expect(format.json()).toMatchObject({ success: false, code: 'validation_failed', errors: [{ field: 'format' }] });

    const flag = await staff.get(`/api/admin/export-users/?flag=${encodeURIComponent("x' or 1=1")}`);
    expect(flag.statusCode).toBe(400);
    expect(flag.json().errors).toEqual([expect.objectContaining({ field: 'flag' })]);
  });

  it('answers 400 invalid_filter before any of the body for a dateTime outside the years 0001 to 9999', async () => {
    const outside = encodeURIComponent('meta.lastModified gt "0000-01-01T00:00:00Z"');
    for (const url of [
      `/api/admin/export-users/?filter=${outside}`,
      `/api/admin/export-users/?filter=${outside}&format=csv`,
      `/api/admin/export-users/?filter=${outside}&format=ndjson`,
      `/api/admin/export-stats/?filter=${outside}`,
      `/api/admin/export-users/?filter=${encodeURIComponent('meta.created lt "9999-12-31T23:59:59-01:00"')}`,
    ]) {
      const res = await staff.get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.json(), url).toMatchObject({ success: false, code: 'invalid_filter', errors: [{ field: 'filter' }] });
    }
    const within = await staff.get(
      `/api/admin/export-users/?filter=${encodeURIComponent('meta.lastModified gt "0001-01-01T00:00:00Z"')}&format=csv`,
    );
    expect(within.statusCode).toBe(200);
    expect(within.body.split('\r\n').filter(Boolean)).toHaveLength(active.length + 1);
  });

  it('streams CSV with quoted, spreadsheet-safe fields and NDJSON one user a line', async () => {
    const csv = await staff.get('/api/admin/export-users/?format=csv');
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toContain('text/csv');
    expect(csv.headers['content-disposition']).toBe('attachment; filename="users.csv"');
    const lines = csv.body.split('\r\n').filter(Boolean);
    expect(lines[0]).toBe(
      'id,username,email,first_name,last_name,is_active,date_joined,status,user_type,organization,organization_id,external_id,scim_external_id,last_login,attributes',
    );
    expect(lines).toHaveLength(4);
    const tvLine = lines.find((l) => l.includes('"tv-viewer"')) as string;
    // The formula is defused and its quotes doubled; the attributes are one JSON field.
    expect(tvLine).toContain(`"'=HYPERLINK(""x"")"`);
    expect(tvLine).toContain('"{""tv_service"":true}"');
    expect(tvLine).toContain(',true,');

    const ndjson = await staff.get('/api/admin/export-users/?format=ndjson');
    expect(ndjson.headers['content-type']).toContain('application/x-ndjson');
    const rows = ndjson.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ExportedUser);
    expect(rows.map((r) => r.id)).toEqual(active);
  });

  it('streams an export larger than one chunk whole, once each, in order', async () => {
    const big = await seedOrganization(t);
    const rows = Array.from({ length: 2_345 }, (_, i) => ({
      organizationId: big.id,
      email: `bulk-${i}@example.com`,
      username: `bulk-${i}`,
      status: i % 10 === 0 ? ('deactivated' as const) : ('active' as const),
    }));
    await t.database.db.insert(users).values(rows);
    const res = await root.get(`/api/admin/export-users/?organization=${big.code}`);
    const body = res.json();
    const expected = rows.filter((r) => r.status === 'active').length;
    expect(body.count).toBe(expected);
    const ids = usersOf(body);
    expect(new Set(ids).size).toBe(expected);
    expect([...ids].sort()).toEqual(ids);

    const csv = await root.get(`/api/admin/export-users/?organization=${big.code}&format=csv&include_inactive=true`);
    expect(csv.body.split('\r\n').filter(Boolean)).toHaveLength(rows.length + 1);
  });

  it('exports users an older version stored with attributes nested deeper than writes now take, as stored', async () => {
    const deep = await seedOrganization(t);
    const before = await seedUser(t, deep.id, { email: 'before-deep@example.com' });
    const nested = await seedUser(t, deep.id, { email: 'deep@example.com' });
    const after = await seedUser(t, deep.id, { email: 'after-deep@example.com' });
    // Written as SQL, as no route takes it any more: 3000 levels, as the command line once stored, far beyond today's 64.
    // Compared as text: a deep equality (and its diff) recurses further than the stack allows.
    const stored = `{"kept":${'{"a":'.repeat(3000)}"bottom"${'}'.repeat(3000)}}`;
    await t.database.db.execute(sql`update users set attributes = ${stored}::jsonb where id = ${nested.id}::uuid`);
    const expected = [before.id, nested.id, after.id];

    const json = await root.get(`/api/admin/export-users/?organization=${deep.code}`);
    expect(json.statusCode).toBe(200);
    const body = json.json() as { users: ExportedUser[]; count: number };
    expect(usersOf(body)).toEqual(expected);
    expect(body.count).toBe(3);
    expect(JSON.stringify(body.users[1]?.attributes) === stored).toBe(true);

    const ndjson = await root.get(`/api/admin/export-users/?organization=${deep.code}&format=ndjson`);
    expect(ndjson.statusCode).toBe(200);
    const lines = ndjson.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ExportedUser);
    expect(lines.map((u) => u.id)).toEqual(expected);
    expect(JSON.stringify(lines[1]?.attributes) === stored).toBe(true);

    const csv = await root.get(`/api/admin/export-users/?organization=${deep.code}&format=csv`);
    expect(csv.statusCode).toBe(200);
    const rows = csv.body.split('\r\n').filter(Boolean);
    expect(rows).toHaveLength(4);
    expect(rows[2]?.includes(`"${stored.replaceAll('"', '""')}"`)).toBe(true);
  });

  it('counts what an export would take in export-stats', async () => {
    const res = await staff.get('/api/admin/export-stats/');
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      success: true,
      stats: {
        total_users: 4,
        total_active_users: 3,
        exportable_users: 3,
        by_user_type: expect.arrayContaining([
          { user_type: 'student', count: 1 },
          { user_type: 'staff', count: 1 },
          { user_type: null, count: 1 },
        ]),
      },
    });
    const narrowed = await staff.get('/api/admin/export-stats/?flag=tv_service');
    expect(narrowed.json().stats).toMatchObject({ total_users: 4, exportable_users: 1 });
    const scim = await staff.get(`/api/admin/export-stats/?filter=${encodeURIComponent('active eq false')}`);
    expect(scim.json().stats.exportable_users).toBe(0);
  });

  it('records each export as an audit event naming who exported what', async () => {
    await staff.get('/api/admin/export-users/?format=ndjson&user_type=student');
    const events = await t.database.db
      .select()
      .from(activities)
      .where(and(eq(activities.activityType, 'users.exported'), eq(activities.actorId, staff.user.id)));
    const event = events.find((e) => {
      const details = e.details as { user_type?: string; format?: string };
      return details.user_type === 'student' && details.format === 'ndjson';
    });
    expect(event).toMatchObject({ kind: 'audit', organizationId: org.id, category: 'user_management' });
    expect(event?.details).toMatchObject({ format: 'ndjson', include_inactive: false });
  });
});

describe('an export that fails partway', () => {
  let t: TestApp;
  let logs = '';
  let url: string;
  let root: Client;
  let org: Organization;

  beforeAll(async () => {
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      logs += chunk.toString('utf8');
    });
    t = await startTestApp({}, { logStream: stream });
    root = await superuserClient(t);
    org = await seedOrganization(t);
    // More than a chunk of good users, then one the export cannot write: a join date of 'infinity',
    // which PostgreSQL keeps and no JavaScript date can show.
    await t.database.db
      .insert(users)
      .values(Array.from({ length: 1_200 }, (_, i) => ({ organizationId: org.id, email: `fine-${i}@example.com` })));
    await t.database.db.insert(users).values({
      organizationId: org.id,
      email: 'zz-unwritable@example.com',
      dateJoined: sql`'infinity'::timestamptz`,
    });
    url = await t.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(() => t.close());

  it.each(['json', 'ndjson', 'csv'])(
    'breaks off the %s transfer, never ending it as complete, and logs why',
    async (format) => {
      logs = '';
      const res = await fetch(`${url}/api/admin/export-users/?organization=${org.code}&format=${format}`, {
        headers: { authorization: `Bearer ${root.token}` },
      });
      // The status went out with the first bytes, before the failing row was read.
      expect(res.status).toBe(200);
      await expect(res.text()).rejects.toThrow();
      await vi.waitFor(() => expect(logs).toContain('export failed partway'));
      expect(logs).toContain('Invalid time value');
    },
  );
});
