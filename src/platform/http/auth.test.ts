import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginAs, seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { SESSION_COOKIE } from '../../modules/cookie-auth/cookie-auth.service.js';

// What a client that sends its key on every call (seed 000's) puts on a public request.
const STRAY_KEYS: Record<string, Record<string, string>> = {
  'X-API-Key': { 'x-api-key': 'nope' },
  'Authorization: ApiKey': { authorization: 'ApiKey x' },
  'Authorization: Bearer gh_…': { authorization: `Bearer gh_${'x'.repeat(43)}` },
};

describe('public routes and credentials they do not need', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('serves the probes, keys and documents whatever API key the request carries', async () => {
    const urls = [
      '/health',
      '/api/v1/users/health/',
      '/.well-known/jwks.json',
      '/.well-known/openid-configuration',
      '/api/openapi.json',
    ];
    for (const [form, headers] of Object.entries(STRAY_KEYS)) {
      for (const url of urls) {
        const res = await t.request({ method: 'GET', url, headers });
        expect(res.statusCode, `${form} ${url}`).toBe(200);
      }
    }
  });

  it('logs in with the right password at POST /api/token/ despite an unknown API key', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    for (const [form, headers] of Object.entries(STRAY_KEYS)) {
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        headers,
        payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
      });
      expect(res.statusCode, form).toBe(200);
      expect(res.json()).toMatchObject({ access: expect.any(String) });
    }
  });

  it('registers at POST /api/v1/users/register/ despite an unknown API key', async () => {
    const org = await seedOrganization(t);
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/register/',
      headers: STRAY_KEYS['X-API-Key'],
      payload: {
        email: `${unique('reg')}@example.com`,
        password: 'SecurePass123!',
        username: unique('reg'),
        organization: org.code,
      },
    });
    expect(res.statusCode, res.body).toBe(201);
  });

  it('still ends the Bearer token’s session at POST /api/v1/users/logout/ beside an API key header', async () => {
    const org = await seedOrganization(t);
    const client = await loginAs(t, await seedUser(t, org.id));
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/logout/',
      headers: { authorization: `Bearer ${client.token}`, 'x-api-key': 'nope' },
    });
    expect(res.statusCode, res.body).toBe(204);
    expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(401);
  });

  it('still ends the cookie session at POST /api/logout/ beside an API key header', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id, { username: unique('web') });
    const login = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { username: user.username, password: TEST_PASSWORD },
    });
    expect(login.statusCode, login.body).toBe(200);
    const session = login.cookies.find((c) => c.name === SESSION_COOKIE)?.value as string;
    const send = (method: 'GET' | 'POST', url: string, headers: Record<string, string> = {}) =>
      t.request({ method, url, cookies: { [SESSION_COOKIE]: session }, headers });
    const csrf = (login.json() as { csrf_token: string }).csrf_token;

    const res = await send('POST', '/api/logout/', { 'x-csrf-token': csrf, 'x-api-key': 'nope' });
    expect(res.statusCode, res.body).toBe(204);
    expect((await send('GET', '/api/v1/users/sessions/')).statusCode).toBe(401);
  });

  it('still refuses an unknown API key with 401 on a route that needs a credential', async () => {
    const res = await t.request({ method: 'GET', url: '/api/v1/users/', headers: STRAY_KEYS['X-API-Key'] });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ code: 'not_authenticated', detail: expect.stringContaining('API key') });
  });
});

describe('public routes while the database is down', () => {
  it('answer /health 503 status unavailable with a Bearer token or API key, looking none of them up', async () => {
    const t = await startTestApp();
    const org = await seedOrganization(t);
    const client = await loginAs(t, await seedUser(t, org.id));
    await t.database.close();
    try {
      const credentials = [{ authorization: `Bearer ${client.token}` }, ...Object.values(STRAY_KEYS)];
      for (const headers of credentials) {
        const res = await t.request({ method: 'GET', url: '/health', headers });
        expect(res.statusCode, JSON.stringify(headers)).toBe(503);
        expect(res.json()).toMatchObject({ status: 'unavailable', database: 'unreachable' });
      }
    } finally {
      await t.close();
    }
  });
});
