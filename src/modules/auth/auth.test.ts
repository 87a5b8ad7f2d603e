import { type Algorithm, hash } from '@node-rs/argon2';
import { eq, sql } from 'drizzle-orm';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import { seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, testConfig, unique } from '../../../test/test-app.js';
import { COMMAND_LINE } from '../../cli/context.js';
import { activities } from '../activity/activity.table.js';
import { updateOrganization } from '../organizations/organizations.service.js';
import { organizations } from '../organizations/organizations.table.js';
import { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { users } from '../users/users.table.js';
import { bootstrapInstallation, createSuperuser, invalidateUserState, revokeUserSessions } from './auth.service.js';
import { sessions } from './auth.table.js';

interface Tokens {
  access: string;
  refresh: string;
}

describe('tokens', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
    t.request({ method: 'POST', url, payload, headers });
  const validate = (access: string) =>
    t.request({ method: 'GET', url: '/api/v1/users/validate-token/', headers: { authorization: `Bearer ${access}` } });
  const loginTokens = async (payload: object): Promise<Tokens> => {
    const res = await post('/api/token/', payload);
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as Tokens;
  };

  async function activeUser(overrides: Parameters<typeof seedUser>[2] = {}) {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id, overrides);
    return { org, user };
  }

  describe('login', () => {
    it('answers a token pair and the user on both login routes, with claims that verify against the JWKS', async () => {
      const { org, user } = await activeUser({ username: unique('ada'), firstName: 'Ada', lastName: 'Lovelace' });
      const jwks = createLocalJWKSet(
        (await t.request({ method: 'GET', url: '/.well-known/jwks.json' })).json() as JSONWebKeySet,
      );
      for (const url of ['/api/token/', '/api/v1/users/login/', '/api/token', '/api/v1/users/login']) {
        const res = await post(url, { email: user.email, password: TEST_PASSWORD });
        expect(res.statusCode).toBe(200);
        expect(res.headers['cache-control']).toBe('no-store');
        const body = res.json();
        expect(body).toMatchObject({
          token_type: 'Bearer',
          expires_in: t.config.accessTokenTtlSeconds,
          user: {
            id: user.id,
            email: user.email,
            username: user.username,
            first_name: 'Ada',
            last_name: 'Lovelace',
            organization: org.code,
            organization_id: org.id,
            is_staff: false,
            is_superuser: false,
            status: 'active',
          },
        });
        expect(body.refresh).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(JSON.stringify(body)).not.toContain('argon2');

        const { payload, protectedHeader } = await jwtVerify(body.access, jwks, {
          issuer: 'http://gatehouse.test',
          audience: 'http://gatehouse.test',
          algorithms: ['ES256'],
        });
        expect(protectedHeader.kid).toEqual(expect.any(String));
        expect(payload).toMatchObject({ sub: user.id, org_id: org.id, org: org.code, sid: expect.any(String) });
        expect(payload.jti).toEqual(expect.any(String));
        expect((payload.exp as number) - (payload.iat as number)).toBe(t.config.accessTokenTtlSeconds);
      }
    });

    it('logs in by username, case-insensitively, and by an email typed into the username field', async () => {
      const username = unique('Grace');
      const { user } = await activeUser({ username });
      for (const payload of [
        { username: username.toUpperCase(), password: TEST_PASSWORD },
        { username: user.email.toUpperCase(), password: TEST_PASSWORD },
        { email: user.email.toUpperCase(), password: TEST_PASSWORD },
      ]) {
        const res = await post('/api/token/', payload);
        expect(res.statusCode, JSON.stringify(payload)).toBe(200);
        expect(res.json().user.id).toBe(user.id);
      }
    });

    it('gives a wrong password and an unknown account the identical 401 answer', async () => {
      const { user } = await activeUser();
      const wrong = await post('/api/token/', { email: user.email, password: 'not the password' });
      const unknown = await post('/api/token/', {
        email: `${unique('nobody')}@example.com`,
        password: 'not the password',
      });
      const unknownName = await post('/api/token/', { username: unique('nobody'), password: TEST_PASSWORD });
      expect(wrong.statusCode).toBe(401);
      expect(wrong.headers['content-type']).toContain('application/problem+json');
      expect(wrong.json()).toMatchObject({ status: 401, code: 'invalid_credentials' });
      expect(unknown.statusCode).toBe(401);
      expect(unknown.body).toBe(wrong.body);
      expect(unknownName.body).toBe(wrong.body);
    });

    it('refuses an account without a password with the same 401', async () => {
      const org = await seedOrganization(t);
      const [user] = await t.database.db
        .insert(users)
        .values({ organizationId: org.id, email: `${unique('nopw')}@example.com`, passwordHash: null })
        .returning();
      const res = await post('/api/token/', { email: user?.email, password: TEST_PASSWORD });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: 'invalid_credentials' });
    });

    it('answers 400 organization_required when the password matches accounts in two organizations', async () => {
      const email = `${unique('shared')}@example.com`;
      const a = await activeUser({ email });
      const b = await activeUser({ email });
      const res = await post('/api/token/', { email, password: TEST_PASSWORD });
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'organization_required', errors: [{ field: 'organization' }] });
      // null is the same as leaving the organization out.
      const withNull = await post('/api/token/', { email, password: TEST_PASSWORD, organization: null });
      expect(withNull.json()).toMatchObject({ code: 'organization_required' });

      const inA = await post('/api/token/', { email, password: TEST_PASSWORD, organization: a.org.code });
      expect(inA.statusCode).toBe(200);
      expect(inA.json().user).toMatchObject({ id: a.user.id, organization: a.org.code });
      const inB = await post('/api/v1/users/login/', { email, password: TEST_PASSWORD, organization: b.org.code });
      expect(inB.json().user).toMatchObject({ id: b.user.id, organization: b.org.code });
      const elsewhere = await post('/api/token/', { email, password: TEST_PASSWORD, organization: unique('none') });
      expect(elsewhere.statusCode).toBe(401);
    });

    it('logs in to the one organization whose account the password matches', async () => {
      const email = `${unique('twice')}@example.com`;
      await activeUser({ email, password: 'password of the first account' });
      const second = await activeUser({ email });
      const res = await post('/api/token/', { email, password: TEST_PASSWORD });
      expect(res.statusCode).toBe(200);
      expect(res.json().user.id).toBe(second.user.id);
    });

    it('logs in with both email and username only when they name the same account', async () => {
      const { user } = await activeUser({ username: unique('both') });
      const junkEmail = await post('/api/v1/users/login/', {
        email: `${unique('junk')}@example.com`,
        username: user.username,
        password: TEST_PASSWORD,
      });
      expect(junkEmail.statusCode).toBe(401);
      expect(junkEmail.json()).toMatchObject({ code: 'invalid_credentials' });
      const junkName = await post('/api/token/', {
        email: user.email,
        username: unique('junk'),
        password: TEST_PASSWORD,
      });
      expect(junkName.statusCode).toBe(401);
      const both = await post('/api/token/', { email: user.email, username: user.username, password: TEST_PASSWORD });
      expect(both.statusCode).toBe(200);
      // OAuth2 clients may repeat the email in `username`.
      const twice = await post('/api/token/', { email: user.email, username: user.email, password: TEST_PASSWORD });
      expect(twice.statusCode).toBe(200);
    });

    it('answers 401 account_inactive for a suspended account, but only once the password matched', async () => {
      const { user } = await activeUser({ status: 'suspended' });
      const right = await post('/api/token/', { email: user.email, password: TEST_PASSWORD });
      expect(right.statusCode).toBe(401);
      expect(right.json()).toMatchObject({ code: 'account_inactive' });
      const wrong = await post('/api/token/', { email: user.email, password: 'not the password' });
      expect(wrong.statusCode).toBe(401);
      expect(wrong.json()).toMatchObject({ code: 'invalid_credentials' });
    });

    it('records the login: last_login on the user, a session with ip, user agent and expiry', async () => {
      const { user } = await activeUser();
      const before = Date.now();
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: TEST_PASSWORD },
        headers: { 'user-agent': 'Vitest/4 (tokens)' },
      });
      const sid = decodeJwtPayload(res.json().access).sid as string;
      const [session] = await t.database.db.select().from(sessions).where(eq(sessions.id, sid));
      expect(session).toMatchObject({
        userId: user.id,
        userAgent: 'Vitest/4 (tokens)',
        ipAddress: '127.0.0.1',
        revokedAt: null,
      });
      expect(session?.expiresAt.getTime()).toBeGreaterThanOrEqual(
        before + t.config.refreshTokenTtlSeconds * 1000 - 1000,
      );
      const [row] = await t.database.db
        .select({ lastLogin: users.lastLogin, updatedAt: users.updatedAt })
        .from(users)
        .where(eq(users.id, user.id));
      expect(row?.lastLogin?.getTime()).toBeGreaterThanOrEqual(before - 1000);
      // Logging in is not an edit of the user.
      expect(row?.updatedAt.getTime()).toBe(user.updatedAt.getTime());
    });

    it('names the field of a bad login body in a 400 problem', async () => {
      const missingPassword = await post('/api/token/', { email: 'a@example.com' });
      expect(missingPassword.statusCode).toBe(400);
      expect(missingPassword.headers['content-type']).toContain('application/problem+json');
      expect(missingPassword.json().errors[0].field).toBe('password');

      const noIdentifier = await post('/api/token/', { password: TEST_PASSWORD });
      expect(noIdentifier.statusCode).toBe(400);
      expect(noIdentifier.json().errors[0].field).toBe('email');

      const wrongType = await post('/api/v1/users/login/', { email: 'a@example.com', password: 12345 });
      expect(wrongType.statusCode).toBe(400);
      expect(wrongType.json().errors[0].field).toBe('password');

      const notJson = await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: '{"email":',
        headers: { 'content-type': 'application/json' },
      });
      expect(notJson.statusCode).toBe(400);
    });

    it("logs in with a hash of weaker parameters, stores one of today's in its place, and the session works", async () => {
      // argon2id at t=1 rather than today's t=2; 2 is Argon2id (an ambient const enum).
      const weaker = await hash(TEST_PASSWORD, { algorithm: 2 as Algorithm, memoryCost: 19_456, timeCost: 1 });
      const { user } = await activeUser({ passwordHash: weaker });
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      expect((await validate(tokens.access)).statusCode).toBe(200);
      const [stored] = await t.database.db.select().from(users).where(eq(users.id, user.id));
      expect(stored?.passwordHash).not.toBe(weaker);
      expect(stored?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
      expect((await post('/api/token/', { email: user.email, password: TEST_PASSWORD })).statusCode).toBe(200);
    });
  });

  describe('refresh', () => {
    it('rotates: a refresh token buys a new pair once, on both refresh routes', async () => {
      const { user } = await activeUser();
      let tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      for (const url of ['/api/token/refresh/', '/api/v1/users/token/refresh/']) {
        const res = await post(url, { refresh: tokens.refresh });
        expect(res.statusCode).toBe(200);
        const next = res.json() as Tokens;
        expect(next.refresh).not.toBe(tokens.refresh);
        expect(decodeJwtPayload(next.access)).toMatchObject({ sub: user.id, sid: decodeJwtPayload(tokens.access).sid });
        expect((await validate(next.access)).statusCode).toBe(200);
        tokens = next;
      }
    });

    it('revokes the whole session when a used refresh token is presented again', async () => {
      const { user } = await activeUser();
      const first = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const second = (await post('/api/token/refresh/', { refresh: first.refresh })).json() as Tokens;

      const replay = await post('/api/token/refresh/', { refresh: first.refresh });
      expect(replay.statusCode).toBe(401);
      expect(replay.json()).toMatchObject({ code: 'invalid_refresh_token' });
      // The successor from the rotation dies with the session, and so do its access tokens.
      expect((await post('/api/token/refresh/', { refresh: second.refresh })).statusCode).toBe(401);
      expect((await validate(second.access)).statusCode).toBe(401);
      expect((await validate(first.access)).statusCode).toBe(401);
      const [session] = await t.database.db
        .select()
        .from(sessions)
        .where(eq(sessions.id, decodeJwtPayload(first.access).sid as string));
      expect(session?.revokedReason).toBe('refresh_token_reuse');
    });

    it('lets only one of two simultaneous refreshes of the same token succeed', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const results = await Promise.all([
        post('/api/token/refresh/', { refresh: tokens.refresh }),
        post('/api/token/refresh/', { refresh: tokens.refresh }),
      ]);
      expect(results.map((r) => r.statusCode).sort()).toEqual([200, 401]);
    });

    it('refuses unknown and malformed refresh tokens with 401 or a named field', async () => {
      const unknown = await post('/api/token/refresh/', { refresh: 'x'.repeat(43) });
      expect(unknown.statusCode).toBe(401);
      expect(unknown.json()).toMatchObject({ code: 'invalid_refresh_token' });
      // An access token sent in its place is just another invalid refresh token.
      const access = (await loginTokens({ email: (await activeUser()).user.email, password: TEST_PASSWORD })).access;
      const mixedUp = await post('/api/token/refresh/', { refresh: access });
      expect(mixedUp.statusCode).toBe(401);
      expect(mixedUp.json()).toMatchObject({ code: 'invalid_refresh_token' });
      const missing = await post('/api/token/refresh/', {});
      expect(missing.statusCode).toBe(400);
      expect(missing.json().errors[0].field).toBe('refresh');
      const wrongType = await post('/api/token/refresh/', { refresh: 42 });
      expect(wrongType.statusCode).toBe(400);
    });

    it('refuses an expired refresh token', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const sid = decodeJwtPayload(tokens.access).sid as string;
      await t.database.db.execute(
        // Expiry is data: move it into the past rather than wait.
        sqlExpireRefreshTokens(sid),
      );
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
    });

    it('slides a session by its refreshes up to its greatest age (SESSION_MAX_AGE), never beyond', async () => {
      const maxAge = t.config.sessionMaxAgeSeconds;
      const { user } = await activeUser();
      let tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const sid = decodeJwtPayload(tokens.access).sid as string;
      const startedAgo = async (seconds: number) =>
        t.database.db
          .update(sessions)
          .set({ createdAt: new Date(Date.now() - seconds * 1000) })
          .where(eq(sessions.id, sid));
      // An hour short of its greatest age: the refresh works, and the session ends with that hour.
      await startedAgo(maxAge - 3600);
      const near = await post('/api/token/refresh/', { refresh: tokens.refresh });
      expect(near.statusCode).toBe(200);
      tokens = near.json() as Tokens;
      const [session] = await t.database.db.select().from(sessions).where(eq(sessions.id, sid));
      const left = ((session?.expiresAt.getTime() ?? 0) - Date.now()) / 1000;
      expect(left).toBeLessThanOrEqual(3600);
      expect(left).toBeGreaterThan(3500);
      // Past it, refreshing ends: the next sign-in is a login, with whatever the organization now asks.
      await startedAgo(maxAge + 60);
      const past = await post('/api/token/refresh/', { refresh: tokens.refresh });
      expect(past.statusCode).toBe(401);
      expect(past.json()).toMatchObject({ code: 'invalid_refresh_token' });
    });

    it('does not refresh for a user who was suspended', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      await t.database.db.update(users).set({ status: 'suspended' }).where(eq(users.id, user.id));
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
    });
  });

  describe('form bodies and OAuth2 grants on /api/token/', () => {
    const postForm = (url: string, fields: Record<string, string> | string) =>
      t.request({
        method: 'POST',
        url,
        payload: typeof fields === 'string' ? fields : new URLSearchParams(fields).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });

    it('logs in with a form-encoded password grant, its username holding an email or a username', async () => {
      const username = unique('oauth');
      const { user } = await activeUser({ username });
      for (const [url, fields] of [
        ['/api/token/', { grant_type: 'password', username: user.email, password: TEST_PASSWORD }],
        ['/api/token', { grant_type: 'password', username, password: TEST_PASSWORD }],
        // Seed 001/002's Django client: `requests.post(url, data={'email': …, 'password': …})`.
        ['/api/token/', { email: user.email, password: TEST_PASSWORD }],
      ] as const) {
        const res = await postForm(url, fields);
        expect(res.statusCode, res.body).toBe(200);
        expect(res.headers['cache-control']).toBe('no-store');
        const body = res.json();
        expect(body).toMatchObject({
          token_type: 'Bearer',
          expires_in: t.config.accessTokenTtlSeconds,
          user: { id: user.id },
        });
        expect((await validate(body.access)).statusCode).toBe(200);
        // A request naming its grant type also reads the tokens under RFC 6749 §5.1's names.
        if ('grant_type' in fields)
          expect(body).toMatchObject({ access_token: body.access, refresh_token: body.refresh });
        else expect(body).not.toHaveProperty('access_token');
      }
      // Form encoding proper: `+` is a space and escapes are decoded (a password with both).
      const { user: spaced } = await activeUser({ password: 'pass word+%& 2024' });
      const res = await postForm(
        '/api/token/',
        `grant_type=password&username=${encodeURIComponent(spaced.email)}&password=pass+word%2B%25%26%202024`,
      );
      expect(res.statusCode, res.body).toBe(200);
    });

    it('answers a wrong password in a form with the same 401 as in JSON', async () => {
      const { user } = await activeUser();
      const form = await postForm('/api/token/', { grant_type: 'password', username: user.email, password: 'wrong' });
      const json = await post('/api/token/', { email: user.email, password: 'wrong' });
      expect(form.statusCode).toBe(401);
      expect(form.json()).toEqual(json.json());
    });

    it('refreshes with a form-encoded body on /api/token/refresh/, and refuses the used token after', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      for (const url of ['/api/token/refresh/', '/api/token/refresh']) {
        const res = await postForm(url, { refresh: tokens.refresh });
        if (url === '/api/token/refresh/') {
          expect(res.statusCode, res.body).toBe(200);
          expect(res.headers['cache-control']).toBe('no-store');
          const next = res.json() as Tokens;
          expect(Object.keys(next).sort()).toEqual(['access', 'expires_in', 'refresh', 'token_type']);
          expect(next.refresh).not.toBe(tokens.refresh);
          expect((await validate(next.access)).statusCode).toBe(200);
        } else {
          // The same token again: a replay, refused (and its session revoked).
          expect(res.statusCode).toBe(401);
          expect(res.json()).toMatchObject({ code: 'invalid_refresh_token', errors: [{ field: 'refresh' }] });
        }
      }
      const missing = await postForm('/api/token/refresh/', {});
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'refresh' }] });
    });

    it('rotates the refresh token with grant_type=refresh_token in JSON and as a form, refusing the used one', async () => {
      const { user } = await activeUser();
      for (const send of [
        (refresh: string) => post('/api/token/', { grant_type: 'refresh_token', refresh_token: refresh }),
        (refresh: string) => postForm('/api/token/', { grant_type: 'refresh_token', refresh_token: refresh }),
      ]) {
        const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
        const res = await send(tokens.refresh);
        expect(res.statusCode, res.body).toBe(200);
        expect(res.headers['cache-control']).toBe('no-store');
        const next = res.json() as Tokens;
        // The refresh route's answer, not a login's (no user), with RFC 6749 §5.1's names beside.
        expect(Object.keys(next).sort()).toEqual([
          'access',
          'access_token',
          'expires_in',
          'refresh',
          'refresh_token',
          'token_type',
        ]);
        expect(next).toMatchObject({ access_token: next.access, refresh_token: next.refresh });
        expect(next.refresh).not.toBe(tokens.refresh);
        expect(decodeJwtPayload(next.access)).toMatchObject({ sub: user.id, sid: decodeJwtPayload(tokens.access).sid });
        expect((await validate(next.access)).statusCode).toBe(200);

        // The used token again is a replay: refused, and the whole session (successor included) revoked.
        const replay = await send(tokens.refresh);
        expect(replay.statusCode).toBe(401);
        expect(replay.json()).toMatchObject({ code: 'invalid_refresh_token', errors: [{ field: 'refresh_token' }] });
        expect((await validate(next.access)).statusCode).toBe(401);
        expect((await post('/api/token/refresh/', { refresh: next.refresh })).statusCode).toBe(401);
      }
    });

    it('names the missing field of each grant', async () => {
      const noRefresh = await post('/api/token/', { grant_type: 'refresh_token' });
      expect(noRefresh.statusCode).toBe(400);
      expect(noRefresh.json()).toMatchObject({
        code: 'validation_failed',
        errors: [{ field: 'refresh_token', message: 'This field is required.' }],
      });
      const noPassword = await postForm('/api/token/', { grant_type: 'password', username: 'a@example.com' });
      expect(noPassword.statusCode).toBe(400);
      expect(noPassword.json()).toMatchObject({
        errors: [{ field: 'password', message: 'This field is required.' }],
      });
      const wrongType = await post('/api/token/', { grant_type: 7, email: 'a@example.com', password: 'x' });
      expect(wrongType.statusCode).toBe(400);
      expect(wrongType.json().errors[0].field).toBe('grant_type');
    });

    it('answers 400 unsupported_grant_type for any other grant type, in JSON and as a form', async () => {
      const { user } = await activeUser();
      for (const res of [
        await postForm('/api/token/', { grant_type: 'client_credentials', client_id: 'x', client_secret: 'y' }),
        await post('/api/token/', { grant_type: 'authorization_code', code: 'abc' }),
        // Even with valid credentials beside it: the grant type decides.
        await post('/api/token/', { grant_type: 'Password', email: user.email, password: TEST_PASSWORD }),
      ]) {
        expect(res.statusCode).toBe(400);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json()).toMatchObject({
          status: 400,
          code: 'unsupported_grant_type',
          errors: [{ field: 'grant_type' }],
          error: 'unsupported_grant_type',
        });
      }
    });

    it("carries RFC 6749 §5.2's error and error_description beside the problem, for OAuth2 client libraries", async () => {
      const { user } = await activeUser();
      const cases = [
        [
          await postForm('/api/token/', { grant_type: 'password', username: user.email, password: 'wrong one!' }),
          401,
          'invalid_grant',
        ],
        [await postForm('/api/token/', { grant_type: 'refresh_token', refresh_token: 'nope' }), 401, 'invalid_grant'],
        [await postForm('/api/token/', { grant_type: 'password', username: user.email }), 400, 'invalid_request'],
        [await post('/api/token/refresh/', { refresh: 'nope' }), 401, 'invalid_grant'],
      ] as const;
      for (const [res, status, error] of cases) {
        expect(res.statusCode, res.body).toBe(status);
        expect(res.headers['content-type']).toContain('application/problem+json');
        const body = res.json();
        expect(body).toMatchObject({ status, error });
        expect(body.error_description).toBe(body.detail);
      }
      // The other login routes answer problems alone.
      const other = await post('/api/v1/users/login/', { email: user.email, password: 'wrong one!' });
      expect(other.statusCode).toBe(401);
      expect(other.json().error).toBeUndefined();
    });

    it('answers a malformed form body with 400 naming the field, never 5xx', async () => {
      for (const [payload, field] of [
        ['grant_type=password&username=a%40example.com&password=%E0%A4%A', 'password'],
        ['grant_type=password&username=%ZZ&password=x', 'username'],
        ['grant_type=password&username=a&username=b&password=x', 'username'],
        ['grant_type=password&username=a&password=%00', 'password'],
        [Buffer.from([0x70, 0x61, 0x73, 0x73, 0x3d, 0xff, 0xfe]), 'body'],
        ['grant_type=password&username=a&password=x&__proto__=y&constructor=z', undefined],
      ] as const) {
        const res = await t.request({
          method: 'POST',
          url: '/api/token/',
          payload,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        });
        if (field === undefined) {
          // Odd names are just unknown fields: the login runs (and fails on the credentials).
          expect(res.statusCode, res.body).toBe(401);
          continue;
        }
        expect(res.statusCode, res.body).toBe(400);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json().errors[0].field, String(payload)).toBe(field);
      }
    });

    it('keeps the body limit for form bodies', async () => {
      const res = await postForm('/api/token/', { username: 'a', password: 'x'.repeat(t.config.bodyLimitBytes) });
      expect(res.statusCode).toBe(413);
      expect(res.json()).toMatchObject({ code: 'payload_too_large' });
    });

    it('logs in with a form body on /api/v1/users/login/ too, answering as in JSON', async () => {
      const { user } = await activeUser();
      // Seed 001's Django REST clients: `requests.post(url, data={'email': …, 'password': …})`.
      const res = await postForm('/api/v1/users/login/', { email: user.email, password: TEST_PASSWORD });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const body = res.json();
      expect(body).toMatchObject({ token_type: 'Bearer', user: { id: user.id } });
      expect(body).not.toHaveProperty('access_token');
      expect((await validate(body.access)).statusCode).toBe(200);
      const wrong = await postForm('/api/v1/users/login/', { email: user.email, password: 'wrong' });
      const wrongJson = await t.request({
        method: 'POST',
        url: '/api/v1/users/login/',
        payload: { email: user.email, password: 'wrong' },
      });
      expect(wrong.statusCode).toBe(401);
      // The login route's refusals stay plain problem+json: no OAuth2 members, as in JSON.
      expect(wrong.json()).toEqual(wrongJson.json());
      expect(wrong.json()).not.toHaveProperty('error');
    });

    it('refreshes with a form body on /api/v1/users/token/refresh/ too, with the same fields and refusals as in JSON', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const res = await postForm('/api/v1/users/token/refresh/', { refresh: tokens.refresh });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const next = res.json() as Tokens;
      expect(Object.keys(next).sort()).toEqual(['access', 'expires_in', 'refresh', 'token_type']);
      expect((await validate(next.access)).statusCode).toBe(200);

      // The used token again, a missing field, a malformed body: each refused as in JSON, naming the field.
      const v1 = '/api/v1/users/token/refresh/';
      const replay = await postForm(v1, { refresh: tokens.refresh });
      expect(replay.statusCode).toBe(401);
      expect(replay.json()).toEqual((await post(v1, { refresh: tokens.refresh })).json());
      expect(replay.json()).toMatchObject({ code: 'invalid_refresh_token', errors: [{ field: 'refresh' }] });
      const missing = await postForm(v1, {});
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'refresh' }] });
      for (const [payload, field] of [
        ['refresh=%E0%A4%A', 'refresh'],
        ['refresh=a&refresh=b', 'refresh'],
      ] as const) {
        const bad = await postForm(v1, payload);
        expect(bad.statusCode).toBe(400);
        expect(bad.json()).toMatchObject({ code: 'validation_failed', errors: [{ field }] });
      }
      // Its twin answers the same problems; only the OAuth2 members (error, error_description) are its own.
      const twin = (await postForm('/api/token/refresh/', {})).json();
      const { error: _e, error_description: _d, ...twinProblem } = twin;
      expect(missing.json()).toEqual({ ...twinProblem, instance: missing.json().instance });
      expect(missing.json()).not.toHaveProperty('error');
      const tooLarge = await postForm(v1, { refresh: 'x'.repeat(t.config.bodyLimitBytes) });
      expect(tooLarge.statusCode).toBe(413);
    });

    it('takes forms on the login and token routes only: the other write routes still answer 415', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      expect((await postForm('/api/v1/users/logout/', { refresh: tokens.refresh })).statusCode).toBe(415);
      expect((await postForm('/api/v1/users/register/', { email: 'f@example.com', password: 'x' })).statusCode).toBe(
        415,
      );
    });

    it('documents both content types of the login and token routes in OpenAPI', async () => {
      const doc = (await t.request({ method: 'GET', url: '/api/openapi.json' })).json();
      for (const path of [
        '/api/token/',
        '/api/token/refresh/',
        '/api/v1/users/login/',
        '/api/v1/users/token/refresh/',
      ]) {
        expect(Object.keys(doc.paths[path].post.requestBody.content).sort()).toEqual([
          'application/json',
          'application/x-www-form-urlencoded',
        ]);
      }
      expect(Object.keys(doc.paths['/api/v1/users/logout/'].post.requestBody.content)).toEqual(['application/json']);
    });
  });

  describe('validate-token and bearer authentication', () => {
    it('answers valid:true with the user and exp, and plain {valid:false} otherwise', async () => {
      const { org, user } = await activeUser({ isStaff: true });
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const ok = await validate(tokens.access);
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({
        valid: true,
        exp: decodeJwtPayload(tokens.access).exp,
        user: {
          id: user.id,
          email: user.email,
          username: null,
          first_name: '',
          last_name: '',
          organization: org.code,
          organization_id: org.id,
          is_staff: true,
          is_superuser: false,
          status: 'active',
        },
      });

      const tampered = `${tokens.access.slice(0, -4)}${tokens.access.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
      for (const headers of [{}, { authorization: 'Bearer not-a-jwt' }, { authorization: `Bearer ${tampered}` }]) {
        const res = await t.request({ method: 'GET', url: '/api/v1/users/validate-token/', headers });
        expect(res.statusCode).toBe(401);
        expect(res.headers['content-type']).toContain('application/json');
        expect(res.json()).toEqual({ valid: false });
      }
    });

    it('refuses an expired access token, and one for another audience', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const claims = decodeJwtPayload(tokens.access);
      // A second store over the same database signs with the same active key, as another node would.
      const keys = await SigningKeyStore.open(t.database.db, t.config);
      try {
        const base = {
          iss: t.config.publicUrl,
          aud: t.config.tokenAudience,
          sub: user.id,
          sid: claims.sid,
          org: claims.org,
          org_id: claims.org_id,
        };
        const expired = await keys.sign(base, 60, Math.floor(Date.now() / 1000) - 3600);
        expect((await validate(expired)).statusCode).toBe(401);
        const otherAudience = await keys.sign({ ...base, aud: 'https://elsewhere.example' }, 60);
        expect((await validate(otherAudience)).statusCode).toBe(401);
        const fine = await keys.sign(base, 60);
        expect((await validate(fine)).statusCode).toBe(200);
      } finally {
        keys.close();
      }
    });

    it('stops a token at once when the user is revoked through revokeUserSessions', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      // Twice, so the session state is cached before the revocation.
      expect((await validate(tokens.access)).statusCode).toBe(200);
      expect((await validate(tokens.access)).statusCode).toBe(200);
      await revokeUserSessions(t.database.db, user.id, 'suspended');
      expect((await validate(tokens.access)).statusCode).toBe(401);
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
    });

    it("stops a deactivated organization's tokens at once, and its logins", async () => {
      const { org, user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      expect((await validate(tokens.access)).statusCode).toBe(200);
      await updateOrganization(t.database.db, org.code, { is_active: false });
      expect((await validate(tokens.access)).statusCode).toBe(401);
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
      const login = await post('/api/token/', { email: user.email, password: TEST_PASSWORD });
      expect(login.statusCode).toBe(401);
      expect(login.json()).toMatchObject({ code: 'account_inactive' });
      expect((await post('/api/token/', { email: user.email, password: 'wrong password' })).statusCode).toBe(401);
    });

    it.runIf(process.env.TEST_DATABASE_URL)(
      'stops a token at once when another node revokes its session (PostgreSQL NOTIFY)',
      async () => {
        const { user } = await activeUser();
        const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
        expect((await validate(tokens.access)).statusCode).toBe(200);
        const pool = t.database.pool;
        if (!pool) throw new Error('PostgreSQL pool expected');
        // What another node's revokeUserSessions does, in raw SQL so this process hears only the NOTIFY.
        await pool.query('update sessions set revoked_at = now() where user_id = $1', [user.id]);
        // The session state is cached, so the change alone is not seen yet…
        expect((await validate(tokens.access)).statusCode).toBe(200);
        await pool.query(`select pg_notify('gatehouse_invalidation', $1)`, [`user:${user.id}`]);
        // …and the notification ends it.
        const deadline = Date.now() + 3_000;
        while ((await validate(tokens.access)).statusCode !== 401) {
          if (Date.now() > deadline) throw new Error('token still accepted after the notification');
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      },
    );

    it('stops a token at once when the user is locked and the change is announced', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      expect((await validate(tokens.access)).statusCode).toBe(200);
      await t.database.db.update(users).set({ status: 'locked' }).where(eq(users.id, user.id));
      await invalidateUserState(t.database.db, user.id);
      expect((await validate(tokens.access)).statusCode).toBe(401);
    });

    it('answers 401 problem+json for a bad token on a protected route, and serves public routes anonymously', async () => {
      const protectedRes = await t.request({
        method: 'GET',
        url: '/api/v1/organizations/',
        headers: { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln' },
      });
      expect(protectedRes.statusCode).toBe(401);
      expect(protectedRes.headers['content-type']).toContain('application/problem+json');
      expect(protectedRes.json()).toMatchObject({ code: 'not_authenticated' });

      const publicRes = await t.request({
        method: 'GET',
        url: '/health',
        headers: { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln' },
      });
      expect(publicRes.statusCode).toBe(200);
    });

    it('authenticates a superuser token on a permission route and refuses an ordinary user with 403', async () => {
      const admin = await activeUser({ isSuperuser: true, isStaff: true });
      const plain = await activeUser();
      const adminTokens = await loginTokens({ email: admin.user.email, password: TEST_PASSWORD });
      const plainTokens = await loginTokens({ email: plain.user.email, password: TEST_PASSWORD });
      const asAdmin = await t.request({
        method: 'GET',
        url: '/api/v1/organizations/',
        headers: { authorization: `Bearer ${adminTokens.access}` },
      });
      expect(asAdmin.statusCode).toBe(200);
      const asPlain = await t.request({
        method: 'GET',
        url: '/api/v1/organizations/',
        headers: { authorization: `Bearer ${plainTokens.access}` },
      });
      expect(asPlain.statusCode).toBe(403);
    });
  });

  describe('logout', () => {
    it("ends the refresh token's session: its access and refresh tokens stop working", async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const other = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const res = await post('/api/v1/users/logout/', { refresh: tokens.refresh });
      expect(res.statusCode).toBe(204);
      expect((await validate(tokens.access)).statusCode).toBe(401);
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
      // Another session of the same user is untouched.
      expect((await validate(other.access)).statusCode).toBe(200);
      // Logging out again is not an error.
      expect((await post('/api/v1/users/logout/', { refresh: tokens.refresh })).statusCode).toBe(204);
    });

    it("ends the Bearer token's own session when no refresh token is sent", async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const res = await t.request({
        method: 'POST',
        url: '/api/v1/users/logout/',
        headers: { authorization: `Bearer ${tokens.access}` },
      });
      expect(res.statusCode).toBe(204);
      expect((await validate(tokens.access)).statusCode).toBe(401);
      expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
    });

    it('records the logout with the user as its actor', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      expect((await post('/api/v1/users/logout/', { refresh: tokens.refresh })).statusCode).toBe(204);
      const events = await t.database.db
        .select({ type: activities.activityType, actorType: activities.actorType, actorId: activities.actorId })
        .from(activities)
        .where(eq(activities.userId, user.id))
        .orderBy(activities.timestamp, activities.id);
      expect(events).toEqual([
        { type: 'auth.login', actorType: 'user', actorId: user.id },
        { type: 'auth.logout', actorType: 'user', actorId: user.id },
      ]);
    });

    it('ends every session of the caller with all: true, recording one logout naming how many', async () => {
      const { user } = await activeUser();
      const mine = [
        await loginTokens({ email: user.email, password: TEST_PASSWORD }),
        await loginTokens({ email: user.email, password: TEST_PASSWORD }),
        await loginTokens({ email: user.email, password: TEST_PASSWORD }),
      ];
      const { user: someoneElse } = await activeUser();
      const theirs = await loginTokens({ email: someoneElse.email, password: TEST_PASSWORD });
      const res = await post('/api/v1/users/logout/', { all: true }, { authorization: `Bearer ${mine[0]?.access}` });
      expect(res.statusCode, res.body).toBe(204);
      for (const tokens of mine) {
        expect((await validate(tokens.access)).statusCode).toBe(401);
        expect((await post('/api/token/refresh/', { refresh: tokens.refresh })).statusCode).toBe(401);
      }
      expect((await validate(theirs.access)).statusCode).toBe(200);
      const events = await t.database.db
        .select({ actorId: activities.actorId, details: activities.details })
        .from(activities)
        .where(sql`${activities.userId} = ${user.id} and ${activities.activityType} = 'auth.logout'`);
      expect(events).toEqual([{ actorId: user.id, details: { method: 'bearer', all: true, sessions_ended: 3 } }]);
    });

    it('answers 400 naming all when all: true comes without a Bearer token', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const res = await post('/api/v1/users/logout/', { all: true, refresh: tokens.refresh });
      expect(res.json()).toMatchObject({ status: 400, errors: [{ field: 'all' }] });
      expect((await validate(tokens.access)).statusCode).toBe(200);
    });

    it('answers 204 to a second Bearer-only logout; a Bearer token that does not verify names no session', async () => {
      const { user } = await activeUser();
      const tokens = await loginTokens({ email: user.email, password: TEST_PASSWORD });
      const logoutWith = (authorization: string) =>
        t.request({ method: 'POST', url: '/api/v1/users/logout/', headers: { authorization }, payload: {} });
      expect((await logoutWith(`Bearer ${tokens.access}`)).statusCode).toBe(204);
      const again = await logoutWith(`Bearer ${tokens.access}`);
      expect(again.statusCode, again.body).toBe(204);
      const [head, , signature] = tokens.access.split('.');
      const forged = `${head}.${Buffer.from(JSON.stringify({ sub: user.id })).toString('base64url')}.${signature}`;
      // As without a credential: nothing to end, and no session named by an unverified claim.
      for (const bad of [forged, 'not-a-token']) {
        const res = await logoutWith(`Bearer ${bad}`);
        expect(res.json()).toMatchObject({ status: 400, errors: [{ field: 'refresh' }] });
      }
    });

    it('answers 400 naming refresh when neither a refresh token nor a Bearer token is given', async () => {
      const res = await post('/api/v1/users/logout/', {});
      expect(res.statusCode).toBe(400);
      expect(res.json().errors[0].field).toBe('refresh');
    });
  });
});

describe('installation bootstrap', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates the default organization and, from ADMIN_EMAIL, one superuser who can log in', async () => {
    const config = testConfig({ ADMIN_EMAIL: 'Root@Example.com', ADMIN_PASSWORD: 'a long admin password' });
    const created = await bootstrapInstallation(t.database.db, config);
    expect(created).toMatchObject({
      email: 'root@example.com',
      username: 'Root',
      isSuperuser: true,
      isStaff: true,
      status: 'active',
    });
    const [org] = await t.database.db.select().from(organizations).where(eq(organizations.code, 'default'));
    expect(org).toMatchObject({ name: 'Default', isActive: true });
    expect(created?.organizationId).toBe(org?.id);

    const res = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: 'root@example.com', password: 'a long admin password' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().user).toMatchObject({ is_superuser: true, organization: 'default' });

    // Made by the installation itself, at start: the system is its actor.
    const recorded = await t.database.db
      .select()
      .from(activities)
      .where(eq(activities.objectId, created?.id as string));
    expect(recorded.filter((e) => e.activityType === 'user.created')).toEqual([
      expect.objectContaining({
        kind: 'audit',
        category: 'user_management',
        severity: 'warning',
        organizationId: org?.id,
        userId: created?.id,
        actorType: 'system',
        actorId: null,
        objectType: 'user',
        details: expect.objectContaining({ source: 'ADMIN_EMAIL', is_superuser: true, is_staff: true }),
      }),
    ]);

    // A restart, or a different ADMIN_EMAIL once a superuser exists, creates nothing more.
    expect(await bootstrapInstallation(t.database.db, config)).toBeUndefined();
    const other = testConfig({ ADMIN_EMAIL: 'other@example.com', ADMIN_PASSWORD: 'a second long password' });
    expect(await bootstrapInstallation(t.database.db, other)).toBeUndefined();
    expect(await t.database.db.select().from(users).where(eq(users.isSuperuser, true))).toHaveLength(1);
  });

  it('creates superusers from the command-line service, refusing short passwords and duplicate emails', async () => {
    await expect(
      createSuperuser(t.database.db, { email: 'short@example.com', password: 'short' }, COMMAND_LINE),
    ).rejects.toMatchObject({
      status: 400,
      errors: [{ field: 'password' }],
    });
    await expect(
      createSuperuser(t.database.db, { email: 'boss@example.com', password: 'Password2024!' }, COMMAND_LINE),
    ).rejects.toMatchObject({ status: 400, code: 'password_too_weak', errors: [{ field: 'password' }] });
    // `root` is taken in `default` by the previous test, so the derived username is left empty.
    const second = await createSuperuser(
      t.database.db,
      {
        email: 'root@elsewhere.example',
        password: 'long enough pw',
      },
      COMMAND_LINE,
    );
    expect(second).toMatchObject({ username: null, isSuperuser: true });
    await expect(
      createSuperuser(t.database.db, { email: 'ROOT@example.com', password: 'long enough pw' }, COMMAND_LINE),
    ).rejects.toMatchObject({ status: 409, code: 'email_taken' });
    await expect(
      createSuperuser(
        t.database.db,
        { email: 'x@example.com', password: 'long enough pw', organization: 'missing' },
        COMMAND_LINE,
      ),
    ).rejects.toMatchObject({ status: 404 });
  });

  it('creates a superuser whose domain is an internationalized domain name, who signs in by it in any case', async () => {
    const org = await seedOrganization(t);
    const email = `${unique('boss')}@bücher.example`;
    const created = await createSuperuser(
      t.database.db,
      { email, password: 'long enough pw', organization: org.code },
      COMMAND_LINE,
    );
    expect(created.email).toBe(email);
    const res = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: email.toUpperCase(), password: 'long enough pw', organization: org.code },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().user).toMatchObject({ id: created.id, email });
  });

  it.each(NOT_EMAIL_ADDRESSES)('refuses to create a superuser with the address %s, naming email', async (email) => {
    await expect(
      createSuperuser(t.database.db, { email, password: 'long enough pw' }, COMMAND_LINE),
    ).rejects.toMatchObject({ status: 400, errors: [{ field: 'email' }] });
  });
});

function decodeJwtPayload(token: string): Record<string, unknown> {
  decodeProtectedHeader(token);
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8'));
}

function sqlExpireRefreshTokens(sessionId: string) {
  return sql`update refresh_tokens set expires_at = now() - interval '1 second' where session_id = ${sessionId}`;
}
