import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';

describe('JSON bodies', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const register = (payload: string) =>
    t.request({
      method: 'POST',
      url: '/api/v1/users/register/',
      headers: { 'content-type': 'application/json' },
      payload,
    });

  it('refuses a __proto__ key naming it, not as invalid JSON, and creates nothing', async () => {
    const email = `${unique('proto')}@example.com`;
    const res = await register(
      `{"email":"${email}","password":"violet kettle maps 42","__proto__":{"is_superuser":true}}`,
    );
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ field: '__proto__', message: 'Keys named "__proto__" are not accepted.' }],
    });
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email, password: 'violet kettle maps 42' },
    });
    expect(login.statusCode).toBe(401);
  });

  it('names a nested forbidden key by its path, constructor.prototype included', async () => {
    const nested = await register('{"email":"a@example.com","password":"x","attributes":[{"__proto__":1}]}');
    expect(nested.json()).toMatchObject({ errors: [{ field: 'attributes.0.__proto__' }] });
    const ctor = await register(
      '{"email":"a@example.com","password":"x","first_name":{"constructor":{"prototype":{}}}}',
    );
    expect(ctor.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ field: 'first_name.constructor', message: expect.stringContaining('"constructor"') }],
    });
  });

  it('refuses bytes that are not UTF-8 naming the body, rather than reading them as U+FFFD', async () => {
    const email = `${unique('bytes')}@example.com`;
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/register/',
      headers: { 'content-type': 'application/json' },
      payload: Buffer.concat([
        Buffer.from(`{"email":"${email}","password":"violet kettle maps `),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"}'),
      ]),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ field: 'body', message: 'The body is not valid JSON: it holds bytes that are not UTF-8.' }],
    });
    // The same password with U+FFFD was never set.
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email, password: 'violet kettle maps \uFFFD\uFFFD' },
    });
    expect(login.statusCode).toBe(401);
  });

  it('refuses a SCIM body that is not UTF-8 as invalidSyntax, creating nobody', async () => {
    const { key, scim } = await scimClient(t);
    const name = unique('scim');
    const res = await t.request({
      method: 'POST',
      url: '/scim/v2/Users',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/scim+json' },
      payload: Buffer.concat([
        Buffer.from(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"${name}`),
        Buffer.from([0xc0, 0xc1]),
        Buffer.from('@example.com"}'),
      ]),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ scimType: 'invalidSyntax' });
    const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName sw "${name}"`)}`);
    expect(found.json()).toMatchObject({ totalResults: 0 });
  });

  it('still answers "not valid JSON" for a body that does not parse', async () => {
    const res = await register('{"email": "a@example.com",');
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ errors: [{ field: 'body', message: 'The body is not valid JSON.' }] });
  });
});
