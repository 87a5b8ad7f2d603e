import { eq } from 'drizzle-orm';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Client, clientWithRole, seedOrganization, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { sha256Hex } from '../../platform/crypto/tokens.js';
import { installAuthentication } from '../../platform/http/auth.js';
import { installErrorHandling } from '../../platform/http/errors.js';
import { createApiKeyResolver } from './api-keys.service.js';
import { apiKeys } from './api-keys.table.js';
import { ENV_API_KEY_ID } from './env-key.js';

const ENV_KEY = 'env-provisioning-key-0123456789';

type HeaderForm = 'x-api-key' | 'apikey' | 'bearer';
function keyHeaders(key: string, form: HeaderForm = 'x-api-key'): Record<string, string> {
  if (form === 'x-api-key') return { 'x-api-key': key };
  return { authorization: `${form === 'apikey' ? 'ApiKey' : 'Bearer'} ${key}` };
}

describe('API keys', () => {
  let t: TestApp;
  let admin: Client;
  // A stand-in for the routes API keys are for (SCIM, provisioning): one route per scope rule.
  let machine: FastifyInstance;

  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
    machine = Fastify();
    installErrorHandling(machine);
    installAuthentication(machine, {
      keys: [createApiKeyResolver(t.database.db, { provisioningApiKey: ENV_KEY })],
      users: [],
    });
    machine.get('/scim', { config: { auth: { scope: 'scim' } } }, async (req) => req.actor);
    machine.get('/provisioning', { config: { auth: { scope: 'provisioning' } } }, async (req) => req.actor);
    machine.get('/open', async (req) => req.actor);
    await machine.ready();
  });
  afterAll(async () => {
    await machine.close();
    await t.close();
  });

  async function createKey(client: Client, body: Record<string, unknown>) {
    const res = await client.post('/api/v1/api-keys/', { name: 'sync', scopes: ['scim'], ...body });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; key: string; prefix: string; organization: string | null };
  }

  const callMachine = (url: string, key: string, form: HeaderForm = 'x-api-key') =>
    machine.inject({ method: 'GET', url, headers: keyHeaders(key, form) });

  it('creates a key shown once and stores only its hash and prefix', async () => {
    const org = await seedOrganization(t);
    const res = await admin.post('/api/v1/api-keys', {
      name: 'SCIM connector',
      organization: org.code,
      scopes: ['scim', 'read:users'],
    });
    expect(res.statusCode).toBe(201);
    // The one answer that shows the key: no cache keeps it.
    expect(res.headers['cache-control']).toBe('no-store');
    const created = res.json();
    expect(created).toMatchObject({
      name: 'SCIM connector',
      organization: org.code,
      organization_id: org.id,
      scopes: ['scim', 'read:users'],
      expires_at: null,
    });
    expect(created.key).toMatch(/^gh_[A-Za-z0-9_-]{43}$/);
    expect(created.prefix).toBe(created.key.slice(0, 12));

    const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, created.id));
    expect(row?.keyHash).toBe(sha256Hex(created.key));
    expect(JSON.stringify(row)).not.toContain(created.key);

    const list = await admin.get(`/api/v1/api-keys?organization=${org.code}`);
    expect(list.body).not.toContain(created.key);
    expect(list.json().results).toEqual([
      expect.objectContaining({ id: created.id, prefix: created.prefix, last_used_at: null, revoked_at: null }),
    ]);
    expect(list.json().results[0]).not.toHaveProperty('key');
    const one = await admin.get(`/api/v1/api-keys/${created.id}/`);
    expect(one.json()).toMatchObject({ id: created.id, organization: org.code });
    expect(one.json()).not.toHaveProperty('key');
  });

  it('lists newest first with a cursor, and filters by organization', async () => {
    const org = await seedOrganization(t);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createKey(admin, { organization: org.code, name: `k${i}` })).id);
    const first = (await admin.get(`/api/v1/api-keys?organization=${org.code}&limit=2`)).json();
    expect(first.results.map((k: { id: string }) => k.id)).toEqual([ids[2], ids[1]]);
    const second = (await admin.get(`/api/v1/api-keys?organization=${org.code}&limit=2&cursor=${first.next}`)).json();
    expect(second).toEqual({ results: [expect.objectContaining({ id: ids[0] })], next: null });
    expect((await admin.get('/api/v1/api-keys?organization=no-such-org')).json()).toEqual({ results: [], next: null });
    expect((await admin.get('/api/v1/api-keys?cursor=bogus')).json()).toMatchObject({ code: 'invalid_cursor' });
  });

  it('accepts the key as X-API-Key, ApiKey and Bearer, and records its last use', async () => {
    const { id, key } = await createKey(admin, { scopes: ['scim'] });
    for (const form of ['x-api-key', 'apikey', 'bearer'] as const) {
      const res = await callMachine('/scim', key, form);
      expect(res.statusCode, form).toBe(200);
      expect(res.json()).toMatchObject({ kind: 'api_key', apiKeyId: id, scopes: ['scim'] });
    }
    await vi.waitFor(async () => {
      const [row] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, id));
      expect(row?.lastUsedAt).toBeInstanceOf(Date);
    });
    expect((await admin.get(`/api/v1/api-keys/${id}`)).json().last_used_at).toEqual(expect.any(String));
  });

  it('enforces scopes: a key without the route’s scope gets 403', async () => {
    const { key } = await createKey(admin, { scopes: ['scim'] });
    expect((await callMachine('/provisioning', key)).json()).toMatchObject({ status: 403, code: 'permission_denied' });
    // Keys are not users: the permission-guarded admin routes refuse them too.
    const res = await t.request({ method: 'GET', url: '/api/v1/api-keys', headers: keyHeaders(key) });
    expect(res.statusCode).toBe(403);
  });

  it('answers 401 problem+json for an unknown key in any form, never anonymous', async () => {
    const unknownKey = { code: 'not_authenticated', detail: expect.stringContaining('The API key is unknown') };
    for (const form of ['x-api-key', 'apikey', 'bearer'] as const) {
      const res = await callMachine('/scim', `gh_${'x'.repeat(43)}`, form);
      expect(res.statusCode, form).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json(), form).toMatchObject(unknownKey);
    }
    expect((await callMachine('/scim', 'not-a-key')).json()).toMatchObject(unknownKey);
    // A bearer value without the key prefix is a JWT: not this resolver's to refuse (the route's rule is).
    const jwtShaped = await machine.inject({ method: 'GET', url: '/scim', headers: { authorization: 'Bearer a.b.c' } });
    expect(jwtShaped.statusCode).toBe(401);
    expect(jwtShaped.json().detail).not.toContain('API key');
  });

  it('ignores any key on a public route, known or not', async () => {
    const { key } = await createKey(admin, {});
    for (const presented of [key, `gh_${'x'.repeat(43)}`, 'not-a-key']) {
      const res = await callMachine('/open', presented);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ kind: 'anonymous' });
    }
  });

  it('keeps JWT bearer tokens working alongside keys', async () => {
    expect((await admin.get('/api/v1/api-keys')).statusCode).toBe(200);
  });

  it('stops a revoked key at once, even right after it was used (cached)', async () => {
    const { id, key } = await createKey(admin, {});
    expect((await callMachine('/scim', key)).statusCode).toBe(200);
    expect((await admin.delete(`/api/v1/api-keys/${id}`)).statusCode).toBe(204);
    expect((await callMachine('/scim', key)).statusCode).toBe(401);
    // Idempotent.
    expect((await admin.delete(`/api/v1/api-keys/${id}/`)).statusCode).toBe(204);
    expect((await admin.get(`/api/v1/api-keys/${id}`)).json().revoked_at).toEqual(expect.any(String));
    expect((await admin.delete('/api/v1/api-keys/00000000-0000-7000-8000-000000000000')).statusCode).toBe(404);
  });

  it('rotates: a new key with the same settings works, the old one stops', async () => {
    const org = await seedOrganization(t);
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const old = await createKey(admin, {
      name: 'HR feed',
      organization: org.code,
      scopes: ['provisioning', 'scim'],
      expires_at: expiresAt,
    });
    expect((await callMachine('/scim', old.key)).statusCode).toBe(200);
    const res = await admin.post(`/api/v1/api-keys/${old.id}/rotate`);
    expect(res.statusCode).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const rotated = res.json();
    expect(rotated).toMatchObject({
      name: 'HR feed',
      organization: org.code,
      scopes: ['provisioning', 'scim'],
      expires_at: expiresAt,
    });
    expect(rotated.id).not.toBe(old.id);
    expect(rotated.key).not.toBe(old.key);
    expect((await callMachine('/scim', old.key)).statusCode).toBe(401);
    expect((await callMachine('/scim', rotated.key)).json()).toMatchObject({ apiKeyId: rotated.id });
    expect((await admin.post(`/api/v1/api-keys/${old.id}/rotate`)).json()).toMatchObject({
      status: 409,
      code: 'api_key_revoked',
    });
  });

  it('takes an empty body sent as application/json as no body: revoke 204, rotate 201, create 400 naming the fields', async () => {
    // Generic HTTP clients set the content type for a whole session, bodiless requests included.
    const send = (method: 'POST' | 'DELETE', url: string, headers: Record<string, string> = {}) =>
      t.request({
        method,
        url,
        headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json', ...headers },
        payload: '',
      });
    const first = await createKey(admin, {});
    const rotated = await send('POST', `/api/v1/api-keys/${first.id}/rotate/`);
    expect(rotated.statusCode, rotated.body).toBe(201);
    const revoked = await send('DELETE', `/api/v1/api-keys/${rotated.json().id}/`);
    expect(revoked.statusCode, revoked.body).toBe(204);
    expect((await callMachine('/scim', rotated.json().key)).statusCode).toBe(401);
    const second = await createKey(admin, {});
    const declared = await send('DELETE', `/api/v1/api-keys/${second.id}/`, { 'content-length': '0' });
    expect(declared.statusCode, declared.body).toBe(204);
    // Whitespace alone holds no JSON either.
    const third = await createKey(admin, {});
    const blank = await t.request({
      method: 'DELETE',
      url: `/api/v1/api-keys/${third.id}`,
      headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
      payload: ' \r\n',
    });
    expect(blank.statusCode, blank.body).toBe(204);
    // A route whose body is required still refuses it, naming what is missing.
    const create = await send('POST', '/api/v1/api-keys/');
    expect(create.statusCode).toBe(400);
    expect(create.headers['content-type']).toContain('application/problem+json');
    expect(create.json()).toMatchObject({ status: 400, code: 'validation_failed', errors: [{ field: 'body' }] });
  });

  it('refuses an expired key with 401', async () => {
    const { id, key } = await createKey(admin, {});
    await t.database.db
      .update(apiKeys)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(apiKeys.id, id));
    expect((await callMachine('/scim', key, 'bearer')).statusCode).toBe(401);
  });

  it('stops an organization’s keys when the organization is deactivated', async () => {
    const org = await seedOrganization(t);
    const { key } = await createKey(admin, { organization: org.code });
    expect((await callMachine('/scim', key)).statusCode).toBe(200);
    await admin.post(`/api/v1/organizations/${org.code}/deactivate`);
    expect((await callMachine('/scim', key)).statusCode).toBe(401);
  });

  it('accepts PROVISIONING_API_KEY as a platform-wide key for provisioning alone', async () => {
    for (const form of ['x-api-key', 'apikey', 'bearer'] as const) {
      const res = await callMachine('/provisioning', ENV_KEY, form);
      expect(res.json(), form).toEqual({
        kind: 'api_key',
        apiKeyId: ENV_API_KEY_ID,
        organizationId: null,
        scopes: ['provisioning'],
        ceilingUserId: null,
      });
    }
    expect((await callMachine('/scim', ENV_KEY)).statusCode).toBe(403);
    const withEnv = await startTestApp({ PROVISIONING_API_KEY: ENV_KEY });
    try {
      const url = '/api/v1/api-keys';
      // Recognised (403: keys do not hold admin permissions) rather than refused as unknown (401).
      expect((await withEnv.request({ method: 'GET', url, headers: keyHeaders(ENV_KEY, 'bearer') })).statusCode).toBe(
        403,
      );
      expect((await withEnv.request({ method: 'GET', url, headers: keyHeaders(`${ENV_KEY}x`) })).statusCode).toBe(401);
    } finally {
      await withEnv.close();
    }
  });

  it('answers 400 problem+json naming the field for bad input', async () => {
    const org = await seedOrganization(t);
    const fieldsOf = (res: { json(): { errors?: { field: string }[] } }) =>
      (res.json().errors ?? []).map((e) => e.field);

    const badScope = await admin.post('/api/v1/api-keys', { name: 'x', scopes: ['scim', 'root'] });
    expect(badScope.statusCode).toBe(400);
    expect(badScope.headers['content-type']).toContain('application/problem+json');
    expect(fieldsOf(badScope)).toContain('scopes.1');

    const missing = await admin.post('/api/v1/api-keys', { organization: org.code });
    expect(missing.statusCode).toBe(400);
    expect(fieldsOf(missing)).toEqual(expect.arrayContaining(['name', 'scopes']));

    const noScopes = await admin.post('/api/v1/api-keys', { name: 'x', scopes: [] });
    expect(fieldsOf(noScopes)).toContain('scopes');

    for (const name of ['', '   ', '\t\n', 'x'.repeat(201)]) {
      const badName = await admin.post('/api/v1/api-keys', { name, organization: org.code, scopes: ['scim'] });
      expect(badName.statusCode, JSON.stringify(name)).toBe(400);
      expect(new Set(fieldsOf(badName))).toEqual(new Set(['name']));
    }

    const past = await admin.post('/api/v1/api-keys', {
      name: 'x',
      scopes: ['scim'],
      expires_at: '2020-01-01T00:00:00Z',
    });
    expect(past.json()).toMatchObject({ status: 400, errors: [{ field: 'expires_at' }] });

    const notADate = await admin.post('/api/v1/api-keys', { name: 'x', scopes: ['scim'], expires_at: 'tomorrow' });
    expect(fieldsOf(notADate)).toContain('expires_at');

    // Year 10000 once the offset is applied: beyond what the database stores.
    const tooLate = await admin.post('/api/v1/api-keys', {
      name: 'x',
      scopes: ['scim'],
      expires_at: '9999-12-31T23:59:59-01:00',
    });
    expect(tooLate.statusCode).toBe(400);
    expect(fieldsOf(tooLate)).toEqual(['expires_at']);
    // An hours-only offset, which `new Date` cannot read, is a date-time all the same.
    const hoursOffset = await admin.post('/api/v1/api-keys', {
      name: 'x',
      scopes: ['scim'],
      expires_at: '9999-12-31T00:00:00+01',
    });
    expect(hoursOffset.statusCode).toBe(201);
    expect(hoursOffset.json().expires_at).toBe('9999-12-30T23:00:00.000Z');

    const unknownOrg = await admin.post('/api/v1/api-keys', { name: 'x', scopes: ['scim'], organization: 'nope-org' });
    expect(unknownOrg.json()).toMatchObject({ status: 400, errors: [{ field: 'organization' }] });
  });

  it('gives a superuser their own organization by default and a platform-wide key for null', async () => {
    const mine = await createKey(admin, {});
    const [own] = await t.database.db.select().from(apiKeys).where(eq(apiKeys.id, mine.id));
    expect(own?.organizationId).toBe(admin.user.organizationId);
    const platform = await createKey(admin, { organization: null, scopes: ['provisioning'] });
    expect(platform.organization).toBeNull();
    expect((await callMachine('/provisioning', platform.key)).json()).toMatchObject({ organizationId: null });
    // SCIM acts within one organization: a platform-wide key for it could never be used.
    const scim = await admin.post('/api/v1/api-keys/', { name: 'scim', organization: null, scopes: ['scim'] });
    expect(scim.statusCode).toBe(400);
    expect(scim.json().errors).toEqual([
      { field: 'organization', message: 'A key with the scim scope acts within one organization: name it.' },
    ]);
  });

  describe('tenant isolation', () => {
    let orgA: { id: string; code: string };
    let orgB: { id: string; code: string };
    let adminA: Client;
    let keyOfB: { id: string; key: string };
    let platformKey: { id: string };

    beforeAll(async () => {
      orgA = await seedOrganization(t);
      orgB = await seedOrganization(t);
      adminA = await clientWithRole(t, orgA.id, 'org_admin');
      keyOfB = await createKey(admin, { organization: orgB.code });
      platformKey = await createKey(admin, { organization: null, scopes: ['provisioning'] });
    });

    it('lets an organization admin manage their own organization’s keys', async () => {
      const created = await createKey(adminA, {});
      expect(created.organization).toBe(orgA.code);
      expect((await createKey(adminA, { organization: orgA.code })).organization).toBe(orgA.code);
      const list = (await adminA.get('/api/v1/api-keys')).json();
      expect(list.results.every((k: { organization: string }) => k.organization === orgA.code)).toBe(true);
      expect(list.results.map((k: { id: string }) => k.id)).toContain(created.id);
      expect((await adminA.get(`/api/v1/api-keys/${created.id}`)).statusCode).toBe(200);
      const rotated = await adminA.post(`/api/v1/api-keys/${created.id}/rotate`);
      expect(rotated.statusCode).toBe(201);
      expect((await adminA.delete(`/api/v1/api-keys/${rotated.json().id}`)).statusCode).toBe(204);
    });

    it('hides other organizations’ and platform-wide keys from an organization admin (404)', async () => {
      for (const id of [keyOfB.id, platformKey.id]) {
        expect((await adminA.get(`/api/v1/api-keys/${id}`)).statusCode).toBe(404);
        expect((await adminA.delete(`/api/v1/api-keys/${id}`)).statusCode).toBe(404);
        expect((await adminA.post(`/api/v1/api-keys/${id}/rotate`)).statusCode).toBe(404);
      }
      const list = (await adminA.get(`/api/v1/api-keys?organization=${orgB.code}`)).json();
      expect(list).toEqual({ results: [], next: null });
      const all = (await adminA.get('/api/v1/api-keys?limit=500')).json();
      expect(all.results.map((k: { id: string }) => k.id)).not.toContain(keyOfB.id);
      // B's key still works: nothing was revoked.
      expect((await callMachine('/scim', keyOfB.key)).statusCode).toBe(200);
    });

    it('refuses an organization admin keys for another organization or platform-wide (403 naming organization)', async () => {
      for (const organization of [orgB.code, 'no-such-org', null]) {
        const res = await adminA.post('/api/v1/api-keys', { name: 'x', scopes: ['scim'], organization });
        expect(res.json(), String(organization)).toMatchObject({ status: 403, errors: [{ field: 'organization' }] });
      }
    });

    it('refuses a viewer every api-keys route with 403', async () => {
      const viewer = await clientWithRole(t, orgA.id, 'viewer');
      const own = await createKey(adminA, {});
      const answers = [
        await viewer.get('/api/v1/api-keys'),
        await viewer.get(`/api/v1/api-keys/${own.id}`),
        await viewer.post('/api/v1/api-keys', { name: 'x', scopes: ['scim'] }),
        await viewer.delete(`/api/v1/api-keys/${own.id}`),
        await viewer.post(`/api/v1/api-keys/${own.id}/rotate`),
      ];
      expect(answers.map((r) => r.statusCode)).toEqual([403, 403, 403, 403, 403]);
    });
  });
});
