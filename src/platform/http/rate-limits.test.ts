import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { createApiKey, OPERATOR, revokeApiKey } from '../../modules/api-keys/api-keys.service.js';
import { apiKeys } from '../../modules/api-keys/api-keys.table.js';

/** Cheap requests (400: empty body) still count against the per-IP budget. */
async function burn(
  t: TestApp,
  urls: string[],
  n: number,
  remoteAddress: string,
  headers: Record<string, string> = {},
) {
  const codes: number[] = [];
  for (let i = 0; i < n; i++) {
    const url = urls[i % urls.length] as string;
    codes.push((await t.request({ method: 'POST', url, payload: {}, remoteAddress, headers })).statusCode);
  }
  return codes;
}

describe('rate limits (RATE_LIMITS=on)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMITS: 'on' });
  });
  afterAll(() => t.close());

  it('answers 429 problem+json with Retry-After once an IP spends the login budget shared by the login routes', async () => {
    const codes = await burn(
      t,
      ['/api/token/', '/api/v1/users/login/', '/api/login/', '/api/v1/users/login/mfa/'],
      30,
      '198.51.100.1',
    );
    expect(codes.every((c) => c === 400)).toBe(true);
    const res = await t.request({ method: 'POST', url: '/api/token', payload: {}, remoteAddress: '198.51.100.1' });
    expect(res.statusCode).toBe(429);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 429, code: 'rate_limited' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    // Another client is not affected, nor are other routes of the same client.
    expect((await burn(t, ['/api/token/'], 1, '198.51.100.2'))[0]).toBe(400);
    expect((await t.request({ method: 'GET', url: '/health', remoteAddress: '198.51.100.1' })).statusCode).toBe(200);
  });

  it("gives the OAuth2 token endpoints' 429s RFC 6749's error members, per IP and per identifier", async () => {
    const refresh = await burn(t, ['/api/token/refresh/'], 121, '198.51.100.30');
    await burn(t, ['/api/token/'], 30, '198.51.100.31');
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const answers = [
      await t.request({ method: 'POST', url: '/api/token/', payload: {}, remoteAddress: '198.51.100.31' }),
      await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: 'grant_type=password&username=a%40example.com&password=x',
        headers: form,
        remoteAddress: '198.51.100.31',
      }),
      await t.request({ method: 'POST', url: '/api/token/refresh/', payload: {}, remoteAddress: '198.51.100.30' }),
    ];
    expect(refresh.at(-1)).toBe(429);
    for (let i = 0; i < 11; i++) {
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: 'oauth-target@example.com', password: `guess ${i}` },
        remoteAddress: `192.0.2.${i + 150}`,
      });
      if (i === 10) answers.push(res);
    }
    for (const res of answers) {
      expect(res.statusCode).toBe(429);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      const body = res.json();
      expect(body).toMatchObject({ status: 429, code: 'rate_limited', error: 'temporarily_unavailable' });
      expect(body.error_description).toBe(body.detail);
    }
  });

  it('ignores X-Forwarded-For without TRUST_PROXY: a spoofed header buys no new budget', async () => {
    await burn(t, ['/api/v1/users/login/'], 30, '198.51.100.3');
    const spoofed = await burn(t, ['/api/v1/users/login/'], 1, '198.51.100.3', { 'x-forwarded-for': '203.0.113.99' });
    expect(spoofed[0]).toBe(429);
  });

  it('limits the refresh routes and the account routes of other modules by path', async () => {
    const account = await burn(t, ['/api/v1/users/register/', '/api/v1/users/password-reset/'], 21, '198.51.100.4');
    expect(account.at(-1)).toBe(429);
    expect(account.slice(0, 20).includes(429)).toBe(false);
    const refresh = await burn(t, ['/api/token/refresh/', '/api/v1/users/token/refresh/'], 121, '198.51.100.5');
    expect(refresh.at(-1)).toBe(429);
  });

  it('limits the codes that turn the second factor off on the login budget', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD },
      remoteAddress: '198.51.100.60',
    });
    const headers = { authorization: `Bearer ${login.json().access}` };
    const codes: number[] = [];
    for (let i = 0; i < 31; i++) {
      const res = await t.request({
        method: 'DELETE',
        url: '/api/v1/users/mfa/totp/',
        payload: { code: '000000' },
        headers,
        remoteAddress: '198.51.100.61',
      });
      codes.push(res.statusCode);
    }
    // 409: no authenticator to turn off; each try spends the budget all the same.
    expect(codes.slice(0, 30).every((c) => c === 409)).toBe(true);
    expect(codes[30]).toBe(429);
  });

  it('limits the password that turns the second factor on by the login budget', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD },
      remoteAddress: '198.51.100.70',
    });
    const headers = { authorization: `Bearer ${login.json().access}` };
    const enrol = (password: string) =>
      t.request({
        method: 'POST',
        url: '/api/v1/users/mfa/totp/',
        payload: { password },
        headers,
        remoteAddress: '198.51.100.71',
      });
    expect((await enrol(TEST_PASSWORD)).statusCode).toBe(200);
    await burn(t, ['/api/v1/users/login/', '/api/v1/users/mfa/totp/'], 30, '198.51.100.71', headers);
    const refused = await enrol(TEST_PASSWORD);
    expect(refused.statusCode).toBe(429);
    expect(refused.json()).toMatchObject({ code: 'rate_limited' });
  });

  it('limits the routes that check a mailed token by the account budget, in the body or the query', async () => {
    const post = await burn(t, ['/api/v1/users/password-reset/check/'], 21, '198.51.100.80');
    expect(post.slice(0, 20).includes(429)).toBe(false);
    expect(post.at(-1)).toBe(429);
    for (const url of ['/api/v1/users/password-reset/confirm/?token=x', '/api/v1/users/verify-email/?token=x']) {
      const codes: number[] = [];
      for (let i = 0; i < 21; i++) {
        codes.push((await t.request({ method: 'GET', url, remoteAddress: `198.51.100.${url.length}` })).statusCode);
      }
      expect(codes.slice(0, 20).includes(429), url).toBe(false);
      expect(codes.at(-1), url).toBe(429);
    }
  });

  it('limits login attempts per account identifier across client IPs', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) {
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: 'Target@Example.com', password: `guess ${i}` },
        remoteAddress: `192.0.2.${i + 1}`,
      });
      codes.push(res.statusCode);
    }
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes[10]).toBe(429);
    // The identifier is compared without case; another identifier still gets through.
    const other = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { username: 'target@example.com', password: 'x' },
      remoteAddress: '192.0.2.50',
    });
    expect(other.statusCode).toBe(429);
    const fresh = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: 'someone-else@example.com', password: 'x' },
      remoteAddress: '192.0.2.50',
    });
    expect(fresh.statusCode).toBe(401);
  });

  it('counts a login against every identifier it sends: a junk email beside the username buys no new budget', async () => {
    const org = await seedOrganization(t);
    const victim = await seedUser(t, org.id, { username: `victim-${org.code}` });
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) {
      const res = await t.request({
        method: 'POST',
        url: i % 2 === 0 ? '/api/token/' : '/api/v1/users/login/',
        payload: { email: `junk-${i}-${org.code}@example.com`, username: victim.username, password: `guess ${i}` },
        remoteAddress: `192.0.2.${i + 200}`,
      });
      codes.push(res.statusCode);
    }
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes[10]).toBe(429);
    // The username's budget is spent, whatever it is sent with, even the right password.
    const alone = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { username: victim.username, password: TEST_PASSWORD },
      remoteAddress: '192.0.2.250',
    });
    expect(alone.statusCode).toBe(429);
  });

  it('counts form-encoded logins and refresh grants against the same budgets as JSON ones', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) {
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        // OAuth2's username field carries the email: the same identifier as a JSON `email`.
        ...(i % 2 === 0
          ? { payload: `grant_type=password&username=Form-Target%40Example.com&password=guess+${i}`, headers: form }
          : { payload: { email: 'form-target@example.com', password: `guess ${i}` } }),
        remoteAddress: `192.0.2.${i + 100}`,
      });
      codes.push(res.statusCode);
    }
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes[10]).toBe(429);

    // A refresh grant on /api/token/ draws on the refresh budget, shared with the refresh routes, in
    // either encoding; a password grant from the same client still has the whole login budget.
    const ip = '198.51.100.20';
    const refreshGrant = (i: number) =>
      t.request({
        method: 'POST',
        url: '/api/token/',
        ...(i % 2 === 0
          ? { payload: `grant_type=refresh_token&refresh_token=${'x'.repeat(43)}`, headers: form }
          : { payload: { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43) } }),
        remoteAddress: ip,
      });
    for (let i = 0; i < 100; i++) expect((await refreshGrant(i)).statusCode).toBe(401);
    expect(await burn(t, ['/api/token/refresh/'], 20, ip)).toEqual(Array(20).fill(400));
    expect((await refreshGrant(100)).statusCode).toBe(429);
    expect((await burn(t, ['/api/token/refresh/'], 1, ip))[0]).toBe(429);
    expect(await burn(t, ['/api/token/'], 30, ip)).toEqual(Array(30).fill(400));
    expect((await burn(t, ['/api/token/'], 1, ip))[0]).toBe(429);
  });
});

/** A working key (read:users and scim) of a fresh organization, one of its users, and keys that no longer work. */
async function apiKeysOf(t: TestApp) {
  const org = await seedOrganization(t);
  const user = await seedUser(t, org.id);
  const make = async () =>
    createApiKey(t.database.db, OPERATOR, { name: 'sync', organization: org.code, scopes: ['read:users', 'scim'] });
  const { key } = await make();
  const revoked = await make();
  await revokeApiKey(t.database.db, OPERATOR, revoked.apiKey.id);
  const expired = await make();
  await t.database.db
    .update(apiKeys)
    .set({ expiresAt: new Date(Date.now() - 1000) })
    .where(eq(apiKeys.id, expired.apiKey.id));
  const unknown = `gh_${'x'.repeat(43)}`;
  return { user, key, dead: [unknown, revoked.key, expired.key] };
}

/** Every header form of the contract (§3) for a key. */
const keyHeaders = (key: string): Record<string, string>[] => [
  { 'x-api-key': key },
  { authorization: `ApiKey ${key}` },
  { authorization: `Bearer ${key}` },
];

describe('failed API-key authentications (RATE_LIMITS=on)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMITS: 'on' });
  });
  afterAll(() => t.close());

  it('answers 429 problem+json with Retry-After past 30 failures from an IP, in any header form, still serving a working key there', async () => {
    const { user, key, dead } = await apiKeysOf(t);
    const ip = '198.51.100.80';
    const get = (headers: Record<string, string>, remoteAddress = ip) =>
      t.request({ method: 'GET', url: `/api/v1/users/user/${user.id}/`, headers, remoteAddress });
    // Successes before and between never count: 40 of them leave the whole budget of failures.
    for (let i = 0; i < 40; i++)
      expect((await get(keyHeaders(key)[i % 3] as Record<string, string>)).statusCode).toBe(200);
    const failures = [...dead.flatMap(keyHeaders), { 'x-api-key': 'not-a-key' }, { authorization: 'ApiKey x' }];
    const codes: number[] = [];
    for (let i = 0; i < 30; i++)
      codes.push((await get(failures[i % failures.length] as Record<string, string>)).statusCode);
    expect(codes).toEqual(Array(30).fill(401));

    for (const headers of failures) {
      const res = await get(headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(429);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    }
    // Only failures are refused: a service with a working key behind the same address is served.
    for (const headers of keyHeaders(key)) expect((await get(headers)).statusCode).toBe(200);
    // Another address has its own budget.
    expect((await get({ 'x-api-key': dead[0] as string }, '198.51.100.81')).statusCode).toBe(401);
  });

  it('limits failed SCIM Bearer keys the same, answering in the SCIM error format', async () => {
    const { key, dead } = await apiKeysOf(t);
    const ip = '198.51.100.82';
    const scim = (token: string) =>
      t.request({
        method: 'GET',
        url: '/scim/v2/Users',
        headers: { authorization: `Bearer ${token}` },
        remoteAddress: ip,
      });
    for (let i = 0; i < 30; i++) expect((await scim(dead[i % dead.length] as string)).statusCode).toBe(401);
    const res = await scim(dead[0] as string);
    expect(res.statusCode).toBe(429);
    expect(res.headers['content-type']).toContain('application/scim+json');
    expect(res.json()).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '429' });
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect((await scim(key)).statusCode).toBe(200);
  });
});

describe('rate limits off', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ RATE_LIMITS: 'off' });
  });
  afterAll(() => t.close());

  it('lifts the per-IP limits with RATE_LIMITS=off', async () => {
    const codes = await burn(t, ['/api/token/'], 40, '198.51.100.9');
    expect(codes.includes(429)).toBe(false);
  });

  it('lifts the limit of failed API-key authentications with RATE_LIMITS=off', async () => {
    const { dead } = await apiKeysOf(t);
    for (let i = 0; i < 40; i++) {
      const res = await t.request({
        method: 'GET',
        url: '/scim/v2/Users',
        headers: { authorization: `Bearer ${dead[i % dead.length]}` },
        remoteAddress: '198.51.100.90',
      });
      expect(res.statusCode).toBe(401);
    }
  });
});

describe('client IP behind a trusted proxy (TRUST_PROXY)', () => {
  let trusting: TestApp;
  let plain: TestApp;
  beforeAll(async () => {
    trusting = await startTestApp({ RATE_LIMITS: 'on', TRUST_PROXY: '127.0.0.1' });
    plain = await startTestApp();
  });
  afterAll(async () => {
    await trusting.close();
    await plain.close();
  });

  async function sessionIp(t: TestApp): Promise<string | null> {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD },
      headers: { 'x-forwarded-for': '203.0.113.7' },
    });
    expect(login.statusCode).toBe(200);
    const { access } = login.json() as { access: string };
    const res = await t.request({
      method: 'GET',
      url: '/api/v1/users/sessions/',
      headers: { authorization: `Bearer ${access}` },
    });
    return (res.json() as { results: { ip_address: string | null }[] }).results[0]?.ip_address ?? null;
  }

  it('records the socket address and ignores X-Forwarded-For by default', async () => {
    expect(await sessionIp(plain)).toBe('127.0.0.1');
  });

  it('records the X-Forwarded-For client when the proxy is trusted, and limits per that client', async () => {
    expect(await sessionIp(trusting)).toBe('203.0.113.7');
    const first = await burn(trusting, ['/api/token/'], 31, '127.0.0.1', { 'x-forwarded-for': '203.0.113.20' });
    expect(first.at(-1)).toBe(429);
    const second = await burn(trusting, ['/api/token/'], 1, '127.0.0.1', { 'x-forwarded-for': '203.0.113.21' });
    expect(second[0]).toBe(400);
  });
});
