import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginAs, seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { CSRF_COOKIE, SESSION_COOKIE } from './cookie-auth.service.js';

function cookieOf(res: LightMyRequestResponse, name: string) {
  return res.cookies.find((c) => c.name === name) as
    | {
        name: string;
        value: string;
        httpOnly?: boolean;
        sameSite?: string;
        secure?: boolean;
        maxAge?: number;
        path?: string;
      }
    | undefined;
}

describe('cookie sessions', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  async function browserLogin(overrides: Parameters<typeof seedUser>[2] = {}) {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id, { username: unique('web'), ...overrides });
    const res = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { username: user.username, password: TEST_PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(200);
    const session = cookieOf(res, SESSION_COOKIE)?.value as string;
    const { csrf_token: csrf } = res.json() as { csrf_token: string };
    const send = (method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string> = {}) =>
      t.request({ method, url, cookies: { [SESSION_COOKIE]: session }, headers });
    return { user, res, session, csrf, send };
  }

  it('logs in with a username and sets an httpOnly, SameSite=Lax session cookie, answering the user and a CSRF token', async () => {
    const { user, res, csrf } = await browserLogin();
    expect(res.json()).toMatchObject({ user: { id: user.id, email: user.email } });
    expect(res.body).not.toMatch(/"access"|"refresh"/);
    const session = cookieOf(res, SESSION_COOKIE);
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    expect(session?.secure).toBeFalsy();
    expect(session?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const csrfCookie = cookieOf(res, CSRF_COOKIE);
    expect(csrfCookie?.value).toBe(csrf);
    expect(csrfCookie?.httpOnly).toBeFalsy();
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('authenticates any route by the cookie, and the session list marks it current', async () => {
    const { user, send } = await browserLogin();
    const res = await send('GET', '/api/v1/users/sessions/');
    expect(res.statusCode).toBe(200);
    expect((res.json() as { results: { current: boolean }[] }).results[0]?.current).toBe(true);
    expect((await send('GET', `/api/v1/users/user/${user.id}/`)).statusCode).toBe(200);
  });

  it('refuses a state-changing cookie request without the right X-CSRF-Token with 403 csrf_failed', async () => {
    const { send, csrf } = await browserLogin();
    const sessions = (await send('GET', '/api/v1/users/sessions/')).json() as { results: { id: string }[] };
    const id = sessions.results[0]?.id as string;

    const missing = await send('DELETE', `/api/v1/users/sessions/${id}/`);
    expect(missing.statusCode).toBe(403);
    expect(missing.headers['content-type']).toContain('application/problem+json');
    expect(missing.json()).toMatchObject({ status: 403, code: 'csrf_failed' });
    const wrong = await send('DELETE', `/api/v1/users/sessions/${id}/`, { 'x-csrf-token': `${csrf}x` });
    expect(wrong.json()).toMatchObject({ code: 'csrf_failed' });
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(200);

    expect((await send('DELETE', `/api/v1/users/sessions/${id}/`, { 'x-csrf-token': csrf })).statusCode).toBe(204);
    // Ending the cookie's own session ends the cookie.
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
  });

  it('sets the CSRF cookie again on a read by a session whose CSRF cookie was lost or is not its own', async () => {
    const { session, csrf } = await browserLogin();
    const read = (cookies: Record<string, string>, url = '/api/v1/users/profile/') =>
      t.request({ method: 'GET', url, cookies: { [SESSION_COOKIE]: session, ...cookies } });

    const lostCookies: Record<string, string>[] = [{}, { [CSRF_COOKIE]: 'stale-token-of-another-session' }];
    for (const lost of lostCookies) {
      const res = await read(lost);
      expect(res.statusCode).toBe(200);
      const renewed = cookieOf(res, CSRF_COOKIE);
      expect(renewed).toMatchObject({ value: csrf, path: '/', sameSite: 'Lax' });
      expect(renewed?.httpOnly).toBeFalsy();
      expect(renewed?.maxAge).toBeGreaterThan(0);
    }
    // With the right one, nothing is set; a read without a working session sets nothing either.
    expect(cookieOf(await read({ [CSRF_COOKIE]: csrf }), CSRF_COOKIE)).toBeUndefined();
    const anonymous = await t.request({ method: 'GET', url: '/api/v1/users/profile/' });
    expect(anonymous.statusCode).toBe(401);
    expect(cookieOf(anonymous, CSRF_COOKIE)).toBeUndefined();
    const unknown = await t.request({
      method: 'GET',
      url: '/api/v1/users/profile/',
      cookies: { [SESSION_COOKIE]: 'x'.repeat(43) },
    });
    expect(unknown.statusCode).toBe(401);
    expect(cookieOf(unknown, CSRF_COOKIE)).toBeUndefined();
    // The token it sets lets the session write again.
    const logout = await t.request({
      method: 'POST',
      url: '/api/logout/',
      cookies: { [SESSION_COOKIE]: session },
      headers: { 'x-csrf-token': csrf },
    });
    expect(logout.statusCode).toBe(204);
  });

  it('answers a request with a token that does not work 401, though it carries a working session cookie', async () => {
    const { send } = await browserLogin();
    expect((await send('GET', '/api/v1/users/profile/')).statusCode).toBe(200);
    for (const authorization of ['Bearer junk', 'Bearer ', 'Basic dXNlcjpwYXNz']) {
      const res = await send('GET', '/api/v1/users/profile/', { authorization });
      expect(res.statusCode, authorization).toBe(401);
    }
    // A working token of someone else is answered as that someone, not as the cookie's user.
    const org = await seedOrganization(t);
    const other = await seedUser(t, org.id);
    const otherToken = (await loginAs(t, other)).token;
    const res = await send('GET', '/api/v1/users/profile/', { authorization: `Bearer ${otherToken}` });
    expect(res.json()).toMatchObject({ id: other.id });
  });

  it('needs no CSRF token for Bearer requests', async () => {
    const org = await seedOrganization(t);
    const client = await loginAs(t, await seedUser(t, org.id));
    const sessions = (await client.get('/api/v1/users/sessions/')).json() as { results: { id: string }[] };
    expect((await client.delete(`/api/v1/users/sessions/${sessions.results[0]?.id}/`)).statusCode).toBe(204);
  });

  it('logs out: ends the session, clears both cookies, and needs the CSRF token', async () => {
    const { send, csrf } = await browserLogin();
    expect((await send('POST', '/api/logout/')).json()).toMatchObject({ code: 'csrf_failed' });
    expect((await send('POST', '/api/logout/', { 'x-csrftoken': `${csrf}x` })).json()).toMatchObject({
      code: 'csrf_failed',
    });
    // Django's header name (seed 003's clients send it) carries the token as well.
    const res = await send('POST', '/api/logout/', { 'x-csrftoken': csrf });
    expect(res.statusCode).toBe(204);
    for (const name of [SESSION_COOKIE, CSRF_COOKIE]) {
      const cleared = cookieOf(res, name);
      expect(cleared?.value).toBe('');
      expect(cleared?.maxAge).toBe(0);
    }
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
  });

  it('signs out everywhere with {"all": true}: every session of the user ends, one event names how many, cookies cleared', async () => {
    const { user, session, csrf, send } = await browserLogin();
    const elsewhere = await loginAs(t, user);
    const { send: otherBrowser } = await browserLogin();
    const logoutAll = (headers: Record<string, string>) =>
      t.request({
        method: 'POST',
        url: '/api/logout/',
        cookies: { [SESSION_COOKIE]: session },
        headers,
        payload: { all: true },
      });
    // The CSRF token is needed as for any cookie logout.
    expect((await logoutAll({})).json()).toMatchObject({ code: 'csrf_failed' });
    expect((await elsewhere.get('/api/v1/users/sessions/')).statusCode).toBe(200);

    const res = await logoutAll({ 'x-csrf-token': csrf });
    expect(res.statusCode, res.body).toBe(204);
    for (const name of [SESSION_COOKIE, CSRF_COOKIE]) {
      expect(cookieOf(res, name)).toMatchObject({ value: '', maxAge: 0 });
    }
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
    expect((await elsewhere.get('/api/v1/users/sessions/')).statusCode).toBe(401);
    // Another user's session is not touched.
    expect((await otherBrowser('GET', '/api/v1/users/sessions/')).statusCode).toBe(200);
    const events = await t.database.db
      .select({ actorId: activities.actorId, details: activities.details })
      .from(activities)
      .where(sql`${activities.userId} = ${user.id} and ${activities.activityType} = 'auth.logout'`);
    expect(events).toEqual([{ actorId: user.id, details: { method: 'cookie', all: true, sessions_ended: 2 } }]);
  });

  it('signs out everywhere on the cookie logout with a Bearer token too, and only ends its own session with all: false', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const [first, second, third] = [await loginAs(t, user), await loginAs(t, user), await loginAs(t, user)];
    const logout = (token: string, all: boolean) =>
      t.request({
        method: 'POST',
        url: '/api/logout/',
        headers: { authorization: `Bearer ${token}` },
        payload: { all },
      });
    expect((await logout(first?.token as string, false)).statusCode).toBe(204);
    expect((await first?.get('/api/v1/users/sessions/'))?.statusCode).toBe(401);
    expect((await second?.get('/api/v1/users/sessions/'))?.statusCode).toBe(200);
    expect((await logout(second?.token as string, true)).statusCode).toBe(204);
    expect((await third?.get('/api/v1/users/sessions/'))?.statusCode).toBe(401);
    const events = await t.database.db
      .select({ details: activities.details })
      .from(activities)
      .where(sql`${activities.userId} = ${user.id} and ${activities.activityType} = 'auth.logout'`);
    expect(events.map((e) => e.details)).toContainEqual({ method: 'bearer', all: true, sessions_ended: 2 });
  });

  it('answers 400 naming all when all: true comes without a working session, still clearing the cookies', async () => {
    for (const cookies of [{}, { [SESSION_COOKIE]: 'not-a-session' }] as Record<string, string>[]) {
      const res = await t.request({ method: 'POST', url: '/api/logout/', cookies, payload: { all: true } });
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status: 400, code: 'validation_failed', errors: [{ field: 'all' }] });
      expect(cookieOf(res, SESSION_COOKIE)).toMatchObject({ value: '', maxAge: 0 });
    }
    const wrongType = await t.request({ method: 'POST', url: '/api/logout/', payload: { all: 'yes' } });
    expect(wrongType.json()).toMatchObject({ status: 400, errors: [{ field: 'all' }] });
  });

  it('refuses form bodies with 415 on the cookie routes, which a cross-site HTML form could post', async () => {
    const { user, session, csrf, send } = await browserLogin();
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const login = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: new URLSearchParams({ username: user.username as string, password: TEST_PASSWORD }).toString(),
      headers: form,
    });
    expect(login.statusCode).toBe(415);
    expect(login.json()).toMatchObject({ code: 'unsupported_media_type' });
    expect(cookieOf(login, SESSION_COOKIE)).toBeUndefined();
    // Even with the CSRF token, a cookie-authenticated write takes JSON only.
    for (const [method, url] of [
      ['POST', '/api/logout/'],
      ['PATCH', '/api/v1/users/profile/'],
    ] as const) {
      const res = await t.request({
        method,
        url,
        cookies: { [SESSION_COOKIE]: session },
        headers: { ...form, 'x-csrf-token': csrf },
        payload: 'first_name=Mallory',
      });
      expect(res.statusCode, url).toBe(415);
    }
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(200);
  });

  it('stops the cookie when an administrator or the user ends its session elsewhere', async () => {
    const { user, send } = await browserLogin();
    const other = await loginAs(t, user);
    const sessions = (await other.get('/api/v1/users/sessions/')).json() as { results: { id: string }[] };
    await other.delete(`/api/v1/users/sessions/${sessions.results[1]?.id}/`);
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
  });

  it('answers the same 401 as the token endpoint for wrong credentials, setting no cookie', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const res = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: 'nope' },
    });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ code: 'invalid_credentials' });
    expect(res.cookies).toEqual([]);
    const bad = await t.request({ method: 'POST', url: '/api/login/', payload: { email: user.email } });
    expect(bad.json()).toMatchObject({ status: 400, errors: [{ field: 'password' }] });
  });

  it('logs in again without a CSRF token while an old cookie is present, and ends the old session', async () => {
    const { user, session, send } = await browserLogin();
    const res = await t.request({
      method: 'POST',
      url: '/api/login/',
      cookies: { [SESSION_COOKIE]: session },
      payload: { username: user.username, password: TEST_PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    expect(cookieOf(res, SESSION_COOKIE)?.value).not.toBe(session);
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
  });

  it('finishes a login with two-factor authentication at /api/login/mfa/ and only then sets the cookie', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    const { secret } = (await client.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD })).json() as {
      secret: string;
    };
    const totp = new OTPAuth.TOTP({
      secret: OTPAuth.Secret.fromBase32(secret),
      digits: 6,
      period: 30,
      algorithm: 'SHA1',
    });
    expect((await client.post('/api/v1/users/mfa/totp/confirm/', { code: totp.generate() })).statusCode).toBe(200);

    const first = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ mfa_required: true });
    expect(first.cookies).toEqual([]);
    const { mfa_token } = first.json() as { mfa_token: string };
    // The next step's code, so the enrolment's code is not replayed; typed as authenticator apps show it.
    const next = totp.generate({ timestamp: Date.now() + 30_000 });
    const code = `${next.slice(0, 3)} ${next.slice(3)}`;
    const second = await t.request({ method: 'POST', url: '/api/login/mfa/', payload: { mfa_token, code } });
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json()).toMatchObject({ user: { id: user.id } });
    const session = cookieOf(second, SESSION_COOKIE)?.value as string;
    const list = await t.request({
      method: 'GET',
      url: '/api/v1/users/sessions/',
      cookies: { [SESSION_COOKIE]: session },
    });
    expect(list.statusCode).toBe(200);
  });

  it('enrols a required second factor during a browser login, then sets the cookie and shows the recovery codes', async () => {
    const org = await seedOrganization(t);
    await t.database.db.execute(
      sql`update organizations set settings = '{"require_mfa": true}'::jsonb where id = ${org.id}`,
    );
    const user = await seedUser(t, org.id);
    const first = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    expect(first.statusCode).toBe(403);
    expect(first.cookies).toEqual([]);
    const { mfa_token } = first.json() as { mfa_token: string };
    const enrol = await t.request({ method: 'POST', url: '/api/v1/users/login/mfa/enrol/', payload: { mfa_token } });
    const totp = new OTPAuth.TOTP({
      secret: OTPAuth.Secret.fromBase32(enrol.json().secret),
      digits: 6,
      period: 30,
      algorithm: 'SHA1',
    });
    const second = await t.request({
      method: 'POST',
      url: '/api/login/mfa/',
      payload: { mfa_token, code: totp.generate() },
    });
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json()).toMatchObject({ user: { id: user.id }, csrf_token: expect.any(String) });
    expect(second.json().recovery_codes).toHaveLength(10);
    expect(cookieOf(second, SESSION_COOKIE)?.value).toEqual(expect.any(String));
  });

  it('ignores a stale cookie on public routes', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/token/',
      cookies: { [SESSION_COOKIE]: 'not-a-session' },
      payload: { email: 'nobody@example.com', password: 'whatever' },
    });
    expect(res.statusCode).toBe(401);
    const anonymous = await t.request({
      method: 'GET',
      url: '/api/v1/users/sessions/',
      cookies: { [SESSION_COOKIE]: 'x' },
    });
    expect(anonymous.statusCode).toBe(401);
  });
});

describe('cookie sessions behind https', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PUBLIC_URL: 'https://gatehouse.test' });
  });
  afterAll(() => t.close());

  it('marks the cookies Secure when PUBLIC_URL is https', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const res = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    expect(cookieOf(res, SESSION_COOKIE)?.secure).toBe(true);
    expect(cookieOf(res, CSRF_COOKIE)?.secure).toBe(true);
  });
});
