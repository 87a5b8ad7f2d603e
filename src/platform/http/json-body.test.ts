import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

  it('still answers "not valid JSON" for a body that does not parse', async () => {
    const res = await register('{"email": "a@example.com",');
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ errors: [{ field: 'body', message: 'The body is not valid JSON.' }] });
  });
});
