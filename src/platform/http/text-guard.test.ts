import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedOrganization, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';

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

  it('fail alone as an item of a seed-000 bulk call, whose other items are written', async () => {
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
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ success_count: 1, error_count: 1 });
    expect(body.errors[0]).toMatchObject({ index: 1, keycloak_id: 'kc-nul-bad' });
    expect(JSON.stringify(body.errors[0])).toContain('first_name');
    const read = (id: string) =>
      t.request({ method: 'GET', url: `/api/provisioning/users/${id}`, headers: { authorization: `Bearer ${KEY}` } });
    expect((await read('kc-nul-ok')).statusCode).toBe(200);
    expect((await read('kc-nul-bad')).statusCode).toBe(404);
  });

  it('refuse a single provisioning call as a whole', async () => {
    const org = await seedOrganization(t);
    const res = await t.request({
      method: 'POST',
      url: '/api/provisioning/users',
      headers: { authorization: `Bearer ${KEY}` },
      payload: {
        keycloak_id: 'kc-nul-one',
        email: 'one@example.com',
        last_name: 'A\u0000',
        engagemx_client_id: org.code,
      },
    });
    expect(res.statusCode).toBe(400);
    expect(fieldOf(res.body)).toBe('last_name');
  });

  it('answer SCIM clients in the SCIM error format', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Users', { schemas: [USER], userName: 'x\u0000y@example.com' });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(res.json().detail).toContain('userName');
  });
});

// JSON's "\ud800" is half a surrogate pair: no UTF-8 form, refused by jsonb. Before the guard: 500s, or U+FFFD stored.
describe('values holding half a surrogate pair', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: KEY });
  });
  afterAll(() => t.close());

  const errorOf = (body: string) => JSON.parse(body).errors?.[0];

  it('are refused with 400 naming the field or key, and nothing is written', async () => {
    const su = await superuserClient(t);
    const org = await seedOrganization(t);
    for (const [url, body, field] of [
      ['/api/v1/users/', { email: 'hs1@example.com', organization: org.code, first_name: 'x\ud800' }, 'first_name'],
      [
        '/api/v1/users/',
        { email: 'hs2@example.com', organization: org.code, attributes: { k: '\udfffy' } },
        'attributes.k',
      ],
      [
        '/api/v1/users/',
        { email: 'hs3@example.com', organization: org.code, attributes: { '\ud800': 'v' } },
        'attributes.\ud800',
      ],
      ['/api/v1/organizations/', { code: 'halfpair', name: 'x\udfff' }, 'name'],
    ] as const) {
      const res = await su.post(url, body);
      expect(res.statusCode, `${url} ${field}`).toBe(400);
      expect(errorOf(res.body)).toEqual({
        field,
        message: 'must not contain the NUL character (U+0000) or half a surrogate pair (\\ud800 to \\udfff).',
      });
    }
    expect((await su.get('/api/v1/users/?search=hs')).json().results).toEqual([]);
    expect((await su.get('/api/v1/organizations/halfpair/')).statusCode).toBe(404);
    // A whole pair (an emoji) is text like any other.
    const emoji = await su.post('/api/v1/users/', {
      email: 'hs4@example.com',
      organization: org.code,
      first_name: 'x\ud83d\ude00',
    });
    expect(emoji.statusCode, emoji.body).toBe(201);
    expect(emoji.json().first_name).toBe('x😀');
  });

  it('fail alone as an item of a seed-000 bulk call, or as a SCIM /Bulk operation', async () => {
    const org = await seedOrganization(t);
    const res = await t.request({
      method: 'POST',
      url: '/api/provisioning/users/bulk',
      headers: { authorization: `Bearer ${KEY}` },
      payload: [
        { keycloak_id: 'kc-half-ok', email: 'half-ok@example.com', engagemx_client_id: org.code },
        {
          keycloak_id: 'kc-half-bad',
          email: 'half-bad@example.com',
          last_name: 'B\ud800',
          engagemx_client_id: org.code,
        },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      success_count: 1,
      error_count: 1,
      errors: [{ index: 1, keycloak_id: 'kc-half-bad' }],
    });
    expect(JSON.stringify(res.json().errors[0])).toContain('last_name');

    const { scim } = await scimClient(t);
    const bulk = await scim('POST', '/Bulk', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'ok',
          data: { schemas: [USER], userName: 'half-scim-ok@example.com' },
        },
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'bad',
          data: { schemas: [USER], userName: 'half\udfff@example.com' },
        },
      ],
    });
    expect(bulk.statusCode, bulk.body).toBe(200);
    const statuses = bulk.json().Operations.map((op: { status: string }) => op.status);
    expect(statuses).toEqual(['201', '400']);
  });
});

// PostgreSQL's jsonb refuses around two thousand levels of nesting; before the guard that was a 500.
describe('bodies nested too deep', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const nested = (levels: number): unknown => {
    let value: unknown = 'leaf';
    for (let i = 0; i < levels; i++) value = { a: value };
    return value;
  };

  it('are refused with 400 naming where the nesting goes too deep, and nothing is written', async () => {
    const su = await superuserClient(t);
    const code = `deep${Date.now()}`;
    const res = await su.post('/api/v1/organizations/', { code, name: 'Deep', settings: nested(2000) });
    expect(res.statusCode).toBe(400);
    const [error] = res.json().errors;
    expect(error.message).toBe('must not nest deeper than 64 levels.');
    expect(error.field).toBe(['settings', ...Array(63).fill('a')].join('.'));
    expect((await su.get(`/api/v1/organizations/?search=${code}`)).json().results).toEqual([]);
    // Sixty levels are fine.
    expect((await su.post('/api/v1/organizations/', { code, name: 'Deep', settings: nested(60) })).statusCode).toBe(
      201,
    );
  });

  it('fail a SCIM /Bulk operation alone, and refuse the request as a whole when outside the operations', async () => {
    const { scim } = await scimClient(t);
    const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
    const ok = unique('ok');
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'u1', data: { schemas: [USER], userName: 'deep', x: nested(100) } },
        { method: 'POST', path: '/Users', bulkId: 'u2', data: { schemas: [USER], userName: `${ok}@example.com` } },
      ],
    });
    expect(res.statusCode).toBe(200);
    const [deep, fine] = res.json().Operations;
    expect(deep).toMatchObject({ status: '400', response: { scimType: 'invalidValue' } });
    expect(deep.response.detail).toContain('"Operations[0].data.x.a.a');
    expect(deep.response.detail).toContain('must not nest deeper than 64 levels');
    expect(fine).toMatchObject({ status: '201' });

    const whole = await scim('POST', '/Bulk', { schemas: [BULK], extra: nested(100), Operations: [] });
    expect(whole.statusCode).toBe(400);
    expect(whole.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(whole.json().detail).toContain('must not nest deeper than 64 levels');
  });
});

// JSON.parse reads 1e400 as Infinity, which JSON.stringify then writes as null: before the guard a
// user type's "maximum": 1e400 was stored as null (and every write of its users failed), a profile
// or attribute number silently became null.
describe('numbers beyond the range of a double', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: KEY });
  });
  afterAll(() => t.close());

  /** Sends `json` as it is written: a JavaScript value cannot hold 1e400. */
  const send = (url: string, json: string, headers: Record<string, string>) =>
    t.request({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload: json });

  const OUT_OF_RANGE = 'must be a number between -1.7976931348623157e+308 and 1.7976931348623157e+308.';

  it('are refused with 400 naming the field, and nothing is written', async () => {
    const su = await superuserClient(t);
    const auth = { authorization: `Bearer ${su.token}` };
    const org = await seedOrganization(t);
    const code = unique('big').replace(/-/g, '');
    const typeOf = (maximum: string) =>
      `{"code":"${code}","plural":"${code}s","label":"Big","organization":"${org.code}",` +
      `"schema":{"type":"object","properties":{"score":{"type":"number","maximum":${maximum}}}}}`;
    const type = await send('/api/v1/user-types/', typeOf('1e400'), auth);
    expect(type.statusCode, type.body).toBe(400);
    expect(type.json().errors).toEqual([{ field: 'schema.properties.score.maximum', message: OUT_OF_RANGE }]);
    expect((await su.get(`/api/v1/users/${code}s/`)).statusCode).toBe(404);
    expect((await send('/api/v1/user-types/', typeOf('100'), auth)).statusCode).toBe(201);

    for (const [url, json, field] of [
      [`/api/v1/users/${code}s/`, '{"email":"big1@example.com","profile":{"score":1e400}}', 'profile.score'],
      [
        '/api/v1/users/',
        `{"email":"big2@example.com","organization":"${org.code}","attributes":{"n":-1e400}}`,
        'attributes.n',
      ],
      [
        '/api/v1/users/',
        `{"email":"big3@example.com","organization":"${org.code}","attributes":{"list":[1,2e999]}}`,
        'attributes.list.1',
      ],
    ] as const) {
      const res = await send(url, json, auth);
      expect(res.statusCode, field).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().errors, field).toEqual([{ field, message: OUT_OF_RANGE }]);
    }
    expect((await su.get(`/api/v1/users/?search=big&organization=${org.code}`)).json().results).toEqual([]);
    // The largest double and one that rounds to zero are numbers like any other.
    const fine = await send(
      '/api/v1/users/',
      `{"email":"big4@example.com","organization":"${org.code}","attributes":{"n":1.7976931348623157e308,"m":1e-400}}`,
      auth,
    );
    expect(fine.statusCode, fine.body).toBe(201);
    expect(fine.json().attributes).toEqual({ n: 1.7976931348623157e308, m: 0 });
  });

  it('answer SCIM clients in the SCIM error format', async () => {
    const { scim } = await scimClient(t);
    const res = await scim(
      'POST',
      '/Users',
      `{"schemas":["${USER}"],"userName":"big@example.com","x509Certificates":[{"value":1e400}]}`,
    );
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(res.json().detail).toContain('x509Certificates.0.value');
    expect((await scim('GET', '/Users?filter=userName%20eq%20%22big%40example.com%22')).json().totalResults).toBe(0);
  });

  it('fail alone as an item of a seed-000 bulk call, or as a SCIM /Bulk operation', async () => {
    const org = await seedOrganization(t);
    const res = await send(
      '/api/provisioning/users/bulk',
      `[{"keycloak_id":"kc-big-ok","email":"big-ok@example.com","engagemx_client_id":"${org.code}"},` +
        `{"keycloak_id":"kc-big-bad","email":"big-bad@example.com","engagemx_client_id":"${org.code}",` +
        `"attributes":{"n":1e400}}]`,
      { authorization: `Bearer ${KEY}` },
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      success_count: 1,
      error_count: 1,
      errors: [{ index: 1, keycloak_id: 'kc-big-bad', fields: [{ field: 'attributes.n', message: OUT_OF_RANGE }] }],
    });

    const { scim } = await scimClient(t);
    const bulk = await scim(
      'POST',
      '/Bulk',
      `{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[` +
        `{"method":"POST","path":"/Users","bulkId":"ok","data":{"schemas":["${USER}"],"userName":"big-scim-ok@example.com"}},` +
        `{"method":"POST","path":"/Users","bulkId":"bad","data":{"schemas":["${USER}"],"userName":"big-scim-bad@example.com","x509Certificates":[{"value":-1e400}]}}]}`,
    );
    expect(bulk.statusCode, bulk.body).toBe(200);
    const [ok, bad] = bulk.json().Operations;
    expect(ok).toMatchObject({ status: '201' });
    expect(bad).toMatchObject({ status: '400', response: { scimType: 'invalidValue' } });
    expect(bad.response.detail).toContain('x509Certificates.0.value');
  });
});
