import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clientWithRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
  TEST_PASSWORD,
} from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { describeUserAgent } from './sessions.service.js';

const IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1';
const WINDOWS_CHROME =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36';
const IPAD =
  'Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1';

interface SessionItem {
  id: string;
  ip_address: string | null;
  device_type: string | null;
  browser: string | null;
  os: string | null;
  user_agent: string | null;
  current: boolean;
  active: boolean;
}

describe('describeUserAgent', () => {
  it('names device type, browser and OS of common clients', () => {
    expect(describeUserAgent(IPHONE)).toEqual({ deviceType: 'mobile', browser: 'Mobile Safari 17', os: 'iOS 17.1' });
    expect(describeUserAgent(WINDOWS_CHROME)).toEqual({
      deviceType: 'desktop',
      browser: 'Chrome 120',
      os: 'Windows 10',
    });
    expect(describeUserAgent(IPAD).deviceType).toBe('tablet');
    expect(describeUserAgent('curl/8.5.0')).toEqual({ deviceType: 'other', browser: null, os: null });
    expect(describeUserAgent(undefined)).toEqual({ deviceType: null, browser: null, os: null });
  });
});

describe('sessions', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  async function loginWith(email: string, userAgent: string) {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/',
      headers: { 'user-agent': userAgent },
      payload: { email, password: TEST_PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(200);
    const access = (res.json() as { access: string }).access;
    const headers = { authorization: `Bearer ${access}` };
    return {
      list: (query = '') => t.request({ method: 'GET', url: `/api/v1/users/sessions/${query}`, headers }),
      revoke: (id: string) => t.request({ method: 'DELETE', url: `/api/v1/users/sessions/${id}/`, headers }),
      get: (id: string) => t.request({ method: 'GET', url: `/api/v1/user-sessions/${id}/`, headers }),
      profile: () => t.request({ method: 'GET', url: '/api/v1/users/validate-token/', headers }),
    };
  }

  it('lists the caller’s sessions newest first with device, browser, OS, and which one is current', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    await loginWith(user.email, IPHONE);
    const desktop = await loginWith(user.email, WINDOWS_CHROME);

    const res = await desktop.list();
    expect(res.statusCode).toBe(200);
    const { results, next } = res.json() as { results: SessionItem[]; next: string | null };
    expect(next).toBeNull();
    expect(results).toHaveLength(2);
    expect(results[0]).toMatchObject({
      device_type: 'desktop',
      browser: 'Chrome 120',
      os: 'Windows 10',
      user_agent: WINDOWS_CHROME,
      ip_address: '127.0.0.1',
      current: true,
      active: true,
    });
    expect(results[1]).toMatchObject({ device_type: 'mobile', os: 'iOS 17.1', current: false, active: true });
    expect(Object.keys(results[0] as object).sort()).toEqual(
      [
        'id',
        'ip_address',
        'device_type',
        'browser',
        'os',
        'user_agent',
        'created_at',
        'last_activity_at',
        'expires_at',
        'current',
        'active',
      ].sort(),
    );
  });

  it('shows a session used by its access token as active lately, writing at most once a minute', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const apiClient = await loginWith(user.email, 'curl/8.5.0');
    const setLastActivity = (at: string) =>
      t.database.db.execute(sql`update sessions set last_activity_at = ${at}::timestamptz where user_id = ${user.id}`);
    const lastActivity = async () => {
      const rows = await queryRows<{ at: Date | string }>(
        t.database.db,
        sql`select last_activity_at as at from sessions where user_id = ${user.id}`,
      );
      return new Date(rows[0]?.at as string).getUTCFullYear();
    };
    await setLastActivity('2001-01-01T00:00:00Z');
    // A token checked by another service is its session in use too.
    expect((await apiClient.profile()).statusCode).toBe(200);
    expect(await lastActivity()).toBeGreaterThan(2001);
    // Within the minute, further use writes nothing more.
    await setLastActivity('2001-01-01T00:00:00Z');
    expect((await apiClient.list()).statusCode).toBe(200);
    expect(await lastActivity()).toBe(2001);

    const other = await loginWith(user.email, WINDOWS_CHROME);
    await setLastActivity('2001-01-01T00:00:00Z');
    const listed = (await other.list()).json() as { results: (SessionItem & { last_activity_at: string })[] };
    const current = listed.results.find((r) => r.current);
    expect(new Date(current?.last_activity_at as string).getUTCFullYear()).toBeGreaterThan(2001);
  });

  it('pages with a keyset cursor and filters by active', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const first = await loginWith(user.email, IPHONE);
    await loginWith(user.email, IPAD);
    const last = await loginWith(user.email, WINDOWS_CHROME);

    const page1 = (await last.list('?limit=2')).json() as { results: SessionItem[]; next: string };
    expect(page1.results.map((s) => s.device_type)).toEqual(['desktop', 'tablet']);
    const page2 = (await last.list(`?limit=2&cursor=${page1.next}`)).json() as {
      results: SessionItem[];
      next: string | null;
    };
    expect(page2.results.map((s) => s.device_type)).toEqual(['mobile']);
    expect(page2.next).toBeNull();

    const firstId = page2.results[0]?.id as string;
    expect((await last.revoke(firstId)).statusCode).toBe(204);
    expect((await first.profile()).statusCode).toBe(401);
    const active = (await last.list('?active=true')).json() as { results: SessionItem[] };
    expect(active.results.map((s) => s.id)).not.toContain(firstId);
    const ended = (await last.list('?active=false')).json() as { results: SessionItem[] };
    expect(ended.results.map((s) => [s.id, s.active])).toEqual([[firstId, false]]);
  });

  it('answers 400 invalid_cursor naming the field for a cursor it did not produce', async () => {
    const org = await seedOrganization(t);
    const client = await loginWith((await seedUser(t, org.id)).email, IPHONE);
    const res = await client.list('?cursor=bm90LWEtY3Vyc29y');
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ field: 'cursor' }] });
  });

  it('answers 404 when a user tries to end another user’s session, and leaves it open', async () => {
    const org = await seedOrganization(t);
    const alice = await loginWith((await seedUser(t, org.id)).email, IPHONE);
    const bob = await loginWith((await seedUser(t, org.id)).email, WINDOWS_CHROME);
    const bobSession = ((await bob.list()).json() as { results: SessionItem[] }).results[0]?.id as string;

    const res = await alice.revoke(bobSession);
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'session_not_found' });
    expect((await alice.revoke('not-a-uuid')).statusCode).toBe(404);
    expect((await bob.profile()).statusCode).toBe(200);
  });

  it('needs a signed-in user to list sessions', async () => {
    const res = await t.request({ method: 'GET', url: '/api/v1/users/sessions/' });
    expect(res.statusCode).toBe(401);
  });

  describe('administration', () => {
    it('lists a user’s open sessions across organizations and ends one, for superusers', async () => {
      const admin = await superuserClient(t);
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const phone = await loginWith(user.email, IPHONE);
      await loginWith(user.email, WINDOWS_CHROME);
      const phoneId = ((await phone.list()).json() as { results: SessionItem[] }).results[1]?.id as string;

      const res = await admin.get(`/api/v1/user-sessions/?user=${user.id}&active=true`);
      expect(res.statusCode).toBe(200);
      const { results } = res.json() as { results: (SessionItem & Record<string, unknown>)[] };
      expect(results).toHaveLength(2);
      expect(results[1]).toMatchObject({
        id: phoneId,
        user_id: user.id,
        organization: org.code,
        organization_id: org.id,
        device_type: 'mobile',
        revoked_at: null,
        current: false,
      });

      expect((await admin.delete(`/api/v1/user-sessions/${phoneId}/`)).statusCode).toBe(204);
      expect((await phone.profile()).statusCode).toBe(401);
      const after = (await admin.get(`/api/v1/user-sessions/?user=${user.id}&active=true`)).json() as {
        results: SessionItem[];
      };
      expect(after.results).toHaveLength(1);
      // Ending it again is not an error, and records nothing: nothing changed.
      expect((await admin.delete(`/api/v1/user-sessions/${phoneId}/`)).statusCode).toBe(204);
      const events = (await admin.get(`/api/v1/activities/?activity_type=session.revoked&user=${user.id}`)).json() as {
        results: { object_id: string; description: string }[];
      };
      expect(events.results).toEqual([
        expect.objectContaining({ object_id: phoneId, description: 'Session ended by an administrator' }),
      ]);
      const unknown = await admin.delete('/api/v1/user-sessions/0190a000-0000-7000-8000-000000000000/');
      expect(unknown.statusCode).toBe(404);
    });

    it('answers one session by id as the list shows it: to its user, and to administrators the list allows', async () => {
      const orgA = await seedOrganization(t);
      const orgB = await seedOrganization(t);
      const user = await seedUser(t, orgA.id);
      const phone = await loginWith(user.email, IPHONE);
      const phoneId = ((await phone.list()).json() as { results: SessionItem[] }).results[0]?.id as string;
      const superuser = await superuserClient(t);
      const listed = (
        (await superuser.get(`/api/v1/user-sessions/?user=${user.id}`)).json() as { results: SessionItem[] }
      ).results[0];
      expect(listed?.id).toBe(phoneId);

      for (const url of [`/api/v1/user-sessions/${phoneId}`, `/api/v1/user-sessions/${phoneId}/`]) {
        const res = await superuser.get(url);
        expect(res.statusCode, url).toBe(200);
        expect(res.json(), url).toEqual(listed);
      }
      const adminA = await clientWithRole(t, orgA.id, 'org_admin');
      expect((await adminA.get(`/api/v1/user-sessions/${phoneId}/`)).json()).toEqual(listed);
      // The session's own user, without sessions.manage, sees it as current.
      const own = await phone.get(phoneId);
      expect(own.statusCode).toBe(200);
      expect(own.json()).toEqual({ ...listed, current: true });

      const refused = [
        await clientWithRole(t, orgB.id, 'org_admin'),
        await clientWithRole(t, orgA.id, 'viewer'),
        await loginAs(t, await seedUser(t, orgA.id, { isStaff: true })),
      ];
      for (const client of refused) {
        const res = await client.get(`/api/v1/user-sessions/${phoneId}/`);
        expect(res.statusCode).toBe(404);
        expect(res.json()).toMatchObject({ status: 404, code: 'session_not_found' });
      }
      for (const id of ['0190a000-0000-7000-8000-000000000000', 'not-a-uuid']) {
        const res = await superuser.get(`/api/v1/user-sessions/${id}/`);
        expect(res.statusCode, id).toBe(404);
        expect(res.json(), id).toMatchObject({ code: 'session_not_found' });
      }
      expect((await t.request({ method: 'GET', url: `/api/v1/user-sessions/${phoneId}/` })).statusCode).toBe(401);
    });

    it('lists only the sessions of the organization named, and nothing of one outside an administrator’s reach', async () => {
      const orgA = await seedOrganization(t);
      const orgB = await seedOrganization(t);
      await loginWith((await seedUser(t, orgA.id)).email, IPHONE);
      await loginWith((await seedUser(t, orgB.id)).email, IPHONE);
      const superuser = await superuserClient(t);
      for (const org of [orgA, orgB]) {
        for (const named of [org.code, org.id]) {
          const res = await superuser.get(`/api/v1/user-sessions/?organization=${named}`);
          expect(res.statusCode, res.body).toBe(200);
          const { results } = res.json() as { results: { organization_id: string }[] };
          expect(results.length, named).toBeGreaterThan(0);
          expect(new Set(results.map((r) => r.organization_id))).toEqual(new Set([org.id]));
        }
      }
      const unknown = await superuser.get('/api/v1/user-sessions/?organization=no-such-organization');
      expect(unknown.json()).toEqual({ results: [], next: null });

      const adminA = await clientWithRole(t, orgA.id, 'org_admin');
      const own = (await adminA.get(`/api/v1/user-sessions/?organization=${orgA.code}`)).json() as {
        results: { organization_id: string }[];
      };
      expect(own.results.length).toBeGreaterThan(0);
      expect(own.results.every((r) => r.organization_id === orgA.id)).toBe(true);
      const other = await adminA.get(`/api/v1/user-sessions/?organization=${orgB.code}`);
      expect(other.statusCode).toBe(200);
      expect(other.json()).toEqual({ results: [], next: null });
    });

    it('refuses the session administration to a user without sessions.manage', async () => {
      const org = await seedOrganization(t);
      const client = await loginAs(t, await seedUser(t, org.id, { isStaff: true }));
      expect((await client.get('/api/v1/user-sessions/')).statusCode).toBe(403);
      expect((await client.delete('/api/v1/user-sessions/0190a000-0000-7000-8000-000000000000/')).statusCode).toBe(403);
    });
  });
});
