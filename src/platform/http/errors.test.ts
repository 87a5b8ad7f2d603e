import { connect } from 'node:net';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { clientWithRole, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

describe('error rendering', () => {
  let t: TestApp;
  let auth: { authorization: string };
  beforeAll(async () => {
    t = await startTestApp({ BODY_LIMIT: '2048' });
    auth = { authorization: `Bearer ${(await superuserClient(t)).token}` };
  });
  afterAll(() => t.close());

  it('answers 413 problem+json for a body over the limit', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ code: 'x', name: 'y'.repeat(5000) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({
      status: 413,
      code: 'payload_too_large',
      errors: [{ field: 'body', message: expect.stringContaining('2048 bytes') }],
    });
  });

  it('answers a caller without credentials 401 before reading its body, however bad or large', async () => {
    for (const payload of ['{"code": "x", ', JSON.stringify({ code: 'x', name: 'y'.repeat(5000) })]) {
      const res = await t.request({
        method: 'POST',
        url: '/api/v1/organizations',
        headers: { 'content-type': 'application/json' },
        payload,
      });
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ status: 401, code: 'not_authenticated' });
    }
  });

  it('answers 415 for a body that is not JSON', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { ...auth, 'content-type': 'application/xml' },
      payload: '<x/>',
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('answers malformed JSON with 400 and no stack trace', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"code": "x", ',
    });
    expect(res.statusCode).toBe(400);
    expect(res.body).not.toMatch(/at .*\.(js|ts):\d+/);
    expect(res.json()).toMatchObject({ type: expect.any(String), title: 'Bad Request', code: 'validation_failed' });
  });

  it('exposes Prometheus metrics with route templates as labels', async () => {
    await t.request({ method: 'GET', url: '/health' });
    const res = await t.request({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/health",status="200"\} \d+/);
    expect(res.body).toContain('process_resident_memory_bytes');
  });
});

describe('refusals made before any route runs', () => {
  let t: TestApp;
  let base: URL;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: 'errors-test-provisioning-key' });
    base = new URL(await t.app.listen({ host: '127.0.0.1', port: 0 }));
  });
  afterAll(() => t.close());

  it('answers a path that does not decode with 400 problem+json, and in the SCIM error schema under /scim/v2', async () => {
    const res = await t.request({ method: 'GET', url: '/api/provisioning/users/%ZZ' });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 400, code: 'bad_url' });
    const scim = await t.request({ method: 'GET', url: '/scim/v2/Users/%ZZ' });
    expect(scim.statusCode).toBe(400);
    expect(scim.headers['content-type']).toContain('application/scim+json');
    expect(scim.json()).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '400' });
  });

  it('answers an over-long path parameter with the validation error naming it, as a shorter one', async () => {
    const headers = { authorization: 'Bearer errors-test-provisioning-key' };
    for (const length of [256, 600, 5000]) {
      const res = await fetch(new URL(`/api/provisioning/users/${'k'.repeat(length)}`, base), { headers });
      expect(res.status, String(length)).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'keycloak_id' }] });
    }
    const deactivate = await t.request({
      method: 'PUT',
      url: `/api/provisioning/users/${'k'.repeat(600)}/deactivate`,
      headers,
    });
    expect(deactivate.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'keycloak_id' }] });
    const scim = await scimClient(t);
    const user = await scim.scim('GET', `/Users/${'u'.repeat(600)}`);
    expect(user.statusCode).toBe(404);
  });

  it('answers a path parameter longer than any HTTP request line (only inject sends one) with 414', async () => {
    const res = await t.request({ method: 'GET', url: `/api/provisioning/users/${'k'.repeat(20_000)}` });
    expect(res.statusCode).toBe(414);
    expect(res.json()).toMatchObject({ status: 414, code: 'uri_too_long' });
  });

  /** What the server writes back to `request` sent as it is on a new connection, until it closes. */
  const exchange = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(base.port), base.hostname, () => {
        socket.write(request);
      });
      let data = '';
      socket.on('data', (chunk) => {
        data += chunk;
      });
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });

  it('answers headers over the HTTP parser limit with 431 problem+json on the socket', async () => {
    const answer = await exchange(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    expect(head?.toLowerCase()).toContain('content-type: application/problem+json');
    expect(JSON.parse(body as string)).toMatchObject({
      status: 431,
      code: 'headers_too_large',
      title: 'Request Header Fields Too Large',
    });
  });

  it('answers a URL over the HTTP parser limit under /scim/v2 with 431 in the SCIM error schema', async () => {
    const answer = await exchange(`GET /scim/v2/Users?filter=${'A'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const [head, body] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    expect(head?.toLowerCase()).toContain('content-type: application/scim+json');
    expect(JSON.parse(body as string)).toEqual({
      schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
      status: '431',
      detail: 'The URL and headers of the request are larger than the server accepts.',
    });
    // A request line in absolute-form (RFC 9112 §3.2.2) names the same path.
    const absolute = await exchange(`GET http://x/scim/v2/Users?filter=${'A'.repeat(20_000)} HTTP/1.1\r\n\r\n`);
    expect(absolute.toLowerCase()).toContain('content-type: application/scim+json');
    // Anywhere else, problem+json.
    const api = await exchange(`GET /api/v1/users/?search=${'A'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(api.toLowerCase()).toContain('content-type: application/problem+json');
  });

  it('refuses a text/plain body with 415, as any body that is not JSON', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/password-reset/',
      headers: { 'content-type': 'text/plain' },
      payload: '{"email":"a@example.com"}',
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('names what a field with alternatives may be, once', async () => {
    const post = (payload: object) =>
      t.request({
        method: 'POST',
        url: '/api/provisioning/users',
        headers: { 'x-api-key': 'errors-test-provisioning-key' },
        payload: { keycloak_id: 'kc-alternatives', email: 'alt@example.com', engagemx_client_id: 'alt', ...payload },
      });
    const wrongType = await post({ first_name: 5 });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json().errors).toEqual([{ field: 'first_name', message: 'must be string or null' }]);
    // A string that fails the string alternative's own rule is told that rule, not "must be null".
    const tooLong = await post({ first_name: 'x'.repeat(500) });
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.json().errors).toEqual([{ field: 'first_name', message: 'must NOT have more than 150 characters' }]);
  });
});

describe('methods a path does not take', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('answers 405 problem+json with an Allow header naming the methods the path takes', async () => {
    const cases: [InjectOptions['method'], string, string][] = [
      ['GET', '/api/token', 'POST'],
      // Trailing slashes are optional on every path, here as for the routes themselves.
      ['GET', '/api/token/', 'POST'],
      ['DELETE', '/api/provisioning/users', 'GET, HEAD, POST'],
      ['PUT', '/api/provisioning/users/?dry_run=true', 'GET, HEAD, POST'],
      ['POST', '/api/provisioning/users/kc-1', 'GET, HEAD'],
      ['PATCH', '/health', 'GET, HEAD'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await t.request({ method, url });
      expect(res.statusCode, `${method} ${url}`).toBe(405);
      expect(res.headers.allow, `${method} ${url}`).toBe(allow);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json()).toMatchObject({
        status: 405,
        code: 'method_not_allowed',
        title: 'Method Not Allowed',
        instance: url.split('?')[0],
        detail: expect.stringContaining(`it takes ${allow}`),
      });
    }
  });

  it('answers 405 on a fixed path under /api/v1/users/ that a parametric route would also match', async () => {
    const superuser = { authorization: `Bearer ${(await superuserClient(t)).token}` };
    const cases: [InjectOptions['method'], string, string][] = [
      ['GET', '/api/v1/users/login/', 'POST'],
      ['POST', '/api/v1/users/profile/', 'GET, HEAD, PATCH'],
      ['DELETE', '/api/v1/users/profile', 'GET, HEAD, PATCH'],
      // No route takes PUT here at all: Allow names the fixed path's methods, not the parametric ones'.
      ['PUT', '/api/v1/users/profile/', 'GET, HEAD, PATCH'],
      ['POST', '/api/v1/users/validate-token/', 'GET, HEAD'],
      ['GET', '/api/v1/users/mfa/totp/', 'POST, DELETE'],
      ['DELETE', '/api/v1/users/password-reset/confirm/', 'GET, HEAD, POST'],
    ];
    for (const [method, url, allow] of cases) {
      for (const headers of [{}, superuser]) {
        const res = await t.request({ method, url, headers, payload: method === 'GET' ? undefined : {} });
        expect(res.statusCode, `${method} ${url}`).toBe(405);
        expect(res.headers.allow, `${method} ${url}`).toBe(allow);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json()).toMatchObject({ status: 405, code: 'method_not_allowed', instance: url });
      }
    }
    // The parametric routes still answer their own paths, and the fixed ones their own methods.
    const unknownUser = await t.request({
      method: 'GET',
      url: '/api/v1/users/00000000-0000-7000-8000-000000000000/',
      headers: superuser,
    });
    expect(unknownUser.json()).toMatchObject({ status: 404, code: 'user_not_found' });
    expect((await t.request({ method: 'GET', url: '/api/v1/users/profile/', headers: superuser })).statusCode).toBe(
      200,
    );
  });

  it('answers 405 naming the methods of /api/v1/users/{id}/ for POST on a user id, for any caller', async () => {
    const root = await superuserClient(t);
    const superuser = { authorization: `Bearer ${root.token}` };
    // A user id is never a user type's plural, so the answer takes no credential and tells nothing.
    for (const id of [root.user.id, '00000000-0000-7000-8000-000000000000']) {
      for (const url of [`/api/v1/users/${id}/`, `/api/v1/users/${id}`]) {
        for (const headers of [{}, superuser]) {
          const res = await t.request({ method: 'POST', url, headers, payload: { email: 'x@example.com' } });
          expect(res.statusCode, `POST ${url}`).toBe(405);
          expect(res.headers.allow).toBe('GET, HEAD, PATCH, DELETE');
          expect(res.json()).toMatchObject({ status: 405, code: 'method_not_allowed', instance: url });
        }
      }
    }
    // No route takes PUT there: Allow names the id route's methods, not the typed-user route's POST.
    const put = await t.request({ method: 'PUT', url: `/api/v1/users/${root.user.id}/`, payload: {} });
    expect(put.statusCode).toBe(405);
    expect(put.headers.allow).toBe('GET, HEAD, PATCH, DELETE');
  });

  it('answers 405 for POST on a segment that is no user type’s plural, once the caller may create users', async () => {
    const root = await superuserClient(t);
    const superuser = { authorization: `Bearer ${root.token}` };
    const plural = `things${Date.now()}`;
    const made = await root.post('/api/v1/user-types/', { code: plural, plural, label: 'Things' });
    expect(made.statusCode, made.body).toBe(201);
    // Whether a word is some organization's plural is told to no one who could not create its users:
    // without a credential, 401 whether or not it is one; without users.update, 403.
    for (const segment of ['nothings', plural]) {
      const anonymous = await t.request({ method: 'POST', url: `/api/v1/users/${segment}/`, payload: {} });
      expect(anonymous.statusCode, segment).toBe(401);
      const viewer = await clientWithRole(t, root.user.organizationId, 'viewer');
      expect((await viewer.post(`/api/v1/users/${segment}/`, {})).statusCode, segment).toBe(403);
    }
    // To one who may, a word that is no plural answers as /api/v1/users/{id}/ does, whatever the body.
    for (const payload of [{}, { email: 'x@example.com' }]) {
      const res = await t.request({ method: 'POST', url: '/api/v1/users/nothings/', headers: superuser, payload });
      expect(res.statusCode, res.body).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD, PATCH, DELETE');
      expect(res.json()).toMatchObject({
        status: 405,
        code: 'method_not_allowed',
        instance: '/api/v1/users/nothings/',
      });
    }
    // A plural still takes POST.
    const created = await root.post(`/api/v1/users/${plural}/`, { email: `${plural}@example.com` });
    expect(created.statusCode, created.body).toBe(201);
  });

  it('keeps 404 route_not_found for a path no route takes, whatever the method', async () => {
    for (const [method, url] of [
      ['GET', '/api/nothing-here'],
      ['DELETE', '/api/token/nothing'],
      ['OPTIONS', '/api/nothing-here'],
    ] as const) {
      const res = await t.request({ method, url });
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.headers.allow).toBeUndefined();
      expect(res.json()).toMatchObject({ status: 404, code: 'route_not_found' });
    }
  });

  it('names OPTIONS in Allow when CORS answers preflight requests', async () => {
    const cors = await startTestApp({ CORS_ORIGINS: 'https://console.example.com' });
    try {
      const res = await cors.request({ method: 'GET', url: '/api/token' });
      expect(res.statusCode).toBe(405);
      expect(res.headers.allow).toBe('POST, OPTIONS');
    } finally {
      await cors.close();
    }
  });

  it('leaves preflight requests on fixed paths to CORS', async () => {
    const cors = await startTestApp({ CORS_ORIGINS: 'https://console.example.com' });
    try {
      const res = await cors.request({
        method: 'OPTIONS',
        url: '/api/v1/users/login/',
        headers: { origin: 'https://console.example.com', 'access-control-request-method': 'POST' },
      });
      expect(res.statusCode).toBe(204);
      const wrong = await cors.request({
        method: 'GET',
        url: '/api/v1/users/login/',
        headers: { origin: 'https://console.example.com' },
      });
      expect(wrong.statusCode).toBe(405);
      expect(wrong.headers.allow).toBe('POST, OPTIONS');
      // Like every answer, it carries the CORS and security headers.
      expect(wrong.headers['access-control-allow-origin']).toBe('https://console.example.com');
      expect(wrong.headers['x-content-type-options']).toBe('nosniff');
    } finally {
      await cors.close();
    }
  });

  it('leaves SCIM URLs to SCIM: its own 405 and 404, in the SCIM error schema', async () => {
    const { scim } = await scimClient(t);
    const wrongMethod = await scim('DELETE', '/ServiceProviderConfig');
    expect(wrongMethod.statusCode).toBe(405);
    expect(wrongMethod.headers.allow).toBe('GET, HEAD');
    expect(wrongMethod.headers['content-type']).toContain('application/scim+json');
    expect(wrongMethod.json()).toMatchObject({
      schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
      status: '405',
    });
    const unknown = await scim('DELETE', '/Nothing');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toContain('application/scim+json');
    // OPTIONS reaches the root's 404 through CORS's catch-all route, as before: not a 405 of the root's.
    expect((await t.request({ method: 'OPTIONS', url: '/scim/v2/Users' })).statusCode).toBe(404);
  });
});
