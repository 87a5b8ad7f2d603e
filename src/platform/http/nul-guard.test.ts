import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedOrganization, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

const KEY = 'platform-provisioning-key-0123456789';
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';

// PostgreSQL text cannot hold U+0000; before the guard each of these answered 500.
describe('values holding the NUL character', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: KEY });
  });
  afterAll(() => t.close());

  const fieldOf = (body: string) => JSON.parse(body).errors?.[0]?.field;

  it('are refused with 400 naming the query parameter, path parameter or body field', async () => {
    const su = await superuserClient(t);
    for (const [url, field] of [
      ['/api/v1/users/?search=%00a', 'search'],
      ['/api/v1/activities/?search=a%00', 'search'],
      ['/api/v1/users/abc%00/', 'plural'],
    ] as const) {
      const res = await su.get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(fieldOf(res.body), url).toBe(field);
    }
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: 'n\u0000@example.com', password: 'a long enough password 123' },
    });
    expect(login.statusCode).toBe(400);
    expect(fieldOf(login.body)).toBe('email');
  });

  it('refuse a bulk call as a whole, writing nothing of it', async () => {
    const org = await seedOrganization(t);
    const items = [
      { keycloak_id: 'kc-nul-ok', email: 'ok@example.com', engagemx_client_id: org.code },
      { keycloak_id: 'kc-nul-bad', email: 'bad@example.com', first_name: 'A\u0000B', engagemx_client_id: org.code },
    ];
    const res = await t.request({
      method: 'POST',
      url: '/api/provisioning/users/bulk',
      headers: { authorization: `Bearer ${KEY}` },
      payload: items,
    });
    expect(res.statusCode).toBe(400);
    expect(fieldOf(res.body)).toBe('1.first_name');
    const found = await t.request({
      method: 'GET',
      url: '/api/provisioning/users/kc-nul-ok',
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(found.statusCode).toBe(404);
  });

  it('answer SCIM clients in the SCIM error format', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Users', { schemas: [USER], userName: 'x\u0000y@example.com' });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(res.json().detail).toContain('userName');
  });
});
