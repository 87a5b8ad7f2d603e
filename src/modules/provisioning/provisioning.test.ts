import { and, eq, isNull, type SQL } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_EMAIL_ADDRESSES } from '../../../test/email-addresses.js';
import { clientWithRole, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { mailOutbox } from '../../platform/mail/outbox.table.js';
import { accountTokens } from '../account/account.table.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { sessions } from '../auth/auth.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';

const PLATFORM_KEY = 'platform-provisioning-key-0123456789';
const BASE = '/api/provisioning';

type Headers = Record<string, string>;
const bearer = (key: string): Headers => ({ authorization: `Bearer ${key}` });

describe('seed-000 provisioning API', () => {
  let t: TestApp;
  const platform = bearer(PLATFORM_KEY);

  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY });
  });
  afterAll(() => t.close());

  const post = (url: string, payload: unknown, headers: Headers = platform) =>
    t.request({ method: 'POST', url: `${BASE}${url}`, headers, payload: payload as object });
  const get = (url: string, headers: Headers = platform) => t.request({ method: 'GET', url: `${BASE}${url}`, headers });
  const put = (url: string, headers: Headers = platform) => t.request({ method: 'PUT', url: `${BASE}${url}`, headers });

  async function orgKey(code: string, scopes = ['provisioning']): Promise<Headers> {
    const created = await createApiKey(t.database.db, OPERATOR, { name: unique('key'), organization: code, scopes });
    return bearer(created.key);
  }

  function person(code: string, overrides: Record<string, unknown> = {}) {
    const id = unique('kc-');
    return {
      keycloak_id: id,
      email: `${id}@example.com`,
      first_name: 'John',
      last_name: 'Doe',
      engagemx_client_id: code,
      is_active: true,
      ...overrides,
    };
  }

  function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status, code });
  }

  async function snapshot() {
    const u = await t.database.db.select().from(users).orderBy(users.id);
    const o = await t.database.db.select().from(organizations).orderBy(organizations.id);
    const m = await t.database.db.select().from(mailOutbox).orderBy(mailOutbox.id);
    return JSON.stringify({ u, o, m });
  }

  describe('POST /users', () => {
    it('creates a user (201 created) and answers updated (200) when sent again, even unchanged', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      const res = await post('/users', body);
      expect(res.statusCode, res.body).toBe(201);
      const created = res.json();
      expect(created).toEqual({
        id: expect.any(String),
        keycloak_id: body.keycloak_id,
        email: body.email,
        first_name: 'John',
        last_name: 'Doe',
        engagemx_client_id: org.code,
        is_active: true,
        action: 'created',
        message: 'User successfully created',
      });
      const again = await post('/users', body);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ id: created.id, action: 'updated', message: 'User successfully updated' });
      const changed = await post('/users', { ...body, last_name: 'Smith' });
      expect(changed.json()).toMatchObject({ id: created.id, action: 'updated', last_name: 'Smith' });
      const [row] = await t.database.db.select().from(users).where(eq(users.id, created.id));
      expect(row).toMatchObject({ organizationId: org.id, externalId: body.keycloak_id, lastName: 'Smith' });
      // A name left out keeps the stored one; null empties it.
      const { last_name: _left, ...withoutLastName } = body;
      const kept = await post('/users', { ...withoutLastName, first_name: 'Johnny' });
      expect(kept.json()).toMatchObject({ first_name: 'Johnny', last_name: 'Smith' });
      const emptied = await post('/users', { ...body, last_name: null });
      expect(emptied.json()).toMatchObject({ first_name: 'John', last_name: '' });
    });

    it('accepts the key as Bearer, ApiKey and X-API-Key', async () => {
      const org = await seedOrganization(t);
      const key = (await orgKey(org.code)).authorization?.slice(7) as string;
      const forms: Headers[] = [
        { authorization: `Bearer ${key}` },
        { authorization: `ApiKey ${key}` },
        { 'x-api-key': key },
      ];
      for (const headers of forms) {
        const res = await post('/users', person(org.code), headers);
        expect(res.statusCode, res.body).toBe(201);
      }
      const platformForms: Headers[] = [{ authorization: `ApiKey ${PLATFORM_KEY}` }, { 'x-api-key': PLATFORM_KEY }];
      for (const headers of platformForms) {
        expect((await post('/users', person(org.code), headers)).statusCode).toBe(201);
      }
    });

    it('answers 401 without a key or with an unknown one, 403 for a key without the provisioning scope', async () => {
      const org = await seedOrganization(t);
      expectProblem(await post('/users', person(org.code), {}), 401, 'not_authenticated');
      expectProblem(
        await post('/users', person(org.code), bearer('gh_unknownunknownunknown')),
        401,
        'not_authenticated',
      );
      expectProblem(await get(`/users?client_id=${org.code}`, { 'x-api-key': 'nope' }), 401, 'not_authenticated');
      expectProblem(await post('/users', person(org.code), await orgKey(org.code, ['scim'])), 403, 'permission_denied');
    });

    it.each([
      ['a missing keycloak_id', { keycloak_id: undefined }, 'keycloak_id'],
      ['a missing email', { email: undefined }, 'email'],
      ['a missing engagemx_client_id', { engagemx_client_id: undefined }, 'engagemx_client_id'],
      ['an invalid email', { email: 'not-an-email' }, 'email'],
      ['a number for a name', { first_name: 123 }, 'first_name'],
      ['a string for is_active', { is_active: 'yes' }, 'is_active'],
      ['an empty keycloak_id', { keycloak_id: '' }, 'keycloak_id'],
      ['an invalid organization code', { engagemx_client_id: 'has spaces' }, 'engagemx_client_id'],
    ])('refuses %s with 400 and a field error, writing nothing', async (_label, change, field) => {
      const org = await seedOrganization(t);
      const before = await snapshot();
      const res = await post('/users', { ...person(org.code), ...change });
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().errors).toEqual(expect.arrayContaining([expect.objectContaining({ field })]));
      expect(await snapshot()).toBe(before);
    });

    it('refuses a body that is not JSON or not an object with 400', async () => {
      expectProblem(
        await t.request({
          method: 'POST',
          url: `${BASE}/users`,
          headers: { ...platform, 'content-type': 'application/json' },
          payload: '{"keycloak_id": ',
        }),
        400,
        'validation_failed',
      );
      expectProblem(await post('/users', [person('x')]), 400, 'validation_failed');
    });

    it('answers malformed headers, queries and paths with a 4xx problem document', async () => {
      const org = await seedOrganization(t);
      const cases: [LightMyRequestResponse, number][] = [
        [await post('/users', person(org.code), { authorization: 'ApiKey' }), 401],
        [await post('/users', person(org.code), { authorization: 'Basic dXNlcjpwYXNz' }), 401],
        [await post('/users', person(org.code), { 'x-api-key': '' }), 401],
        [await post('/users?dry_run=maybe', person(org.code)), 400],
        [await get('/users?client_id=has%20space'), 400],
        [await get(`/users/${'k'.repeat(300)}`), 400],
        [
          await t.request({
            method: 'POST',
            url: `${BASE}/users`,
            headers: { ...platform, 'content-type': 'text/plain' },
            payload: 'keycloak_id=1',
          }),
          415,
        ],
      ];
      for (const [res, status] of cases) {
        expect(res.statusCode, res.body).toBe(status);
        expect(res.headers['content-type']).toContain('application/problem+json');
      }
    });

    it('refuses an empty body with 400', async () => {
      const res = await t.request({
        method: 'POST',
        url: `${BASE}/users`,
        headers: { ...platform, 'content-type': 'application/json' },
      });
      expectProblem(res, 400, 'validation_failed');
    });

    it('refuses a keycloak_id that cannot be a path segment ("." or ".."), as no call could reach the user', async () => {
      const org = await seedOrganization(t);
      for (const keycloakId of ['.', '..']) {
        const res = await post('/users', person(org.code, { keycloak_id: keycloakId }));
        expectProblem(res, 400, 'validation_failed');
        expect(res.json().errors[0].field).toBe('keycloak_id');
      }
      expect((await post('/users', person(org.code, { keycloak_id: `...${unique('kc')}` }))).statusCode).toBe(201);
    });

    it('refuses a keycloak_id with "/", "?", "#" or "%", which seed 000’s client puts in paths unencoded', async () => {
      const org = await seedOrganization(t);
      for (const keycloakId of ['a/b', 'a?b', 'a#b', 'a%2Fb']) {
        const res = await post('/users', person(org.code, { keycloak_id: `${keycloakId}-${unique('kc')}` }));
        expectProblem(res, 400, 'validation_failed');
        expect(res.json().errors[0]).toMatchObject({ field: 'keycloak_id', message: expect.stringContaining('"/"') });
      }
      // A bulk item is refused in the same words, beside the item that is fine.
      const fine = person(org.code, { keycloak_id: unique('kc') });
      const bulk = await post('/users/bulk', [person(org.code, { keycloak_id: `a/${unique('kc')}` }), fine]);
      expect(bulk.json()).toMatchObject({
        success_count: 1,
        errors: [{ index: 0, fields: [{ field: 'keycloak_id', message: expect.stringContaining('"/"') }] }],
      });
      // One stored before the rule is still reached by a client that encodes it.
      const legacy = await seedUser(t, org.id, { externalId: `dept/${unique('kc')}` });
      const found = await get(`/users/${encodeURIComponent(legacy.externalId as string)}`);
      expect(found.statusCode, found.body).toBe(200);
      expect(found.json()).toMatchObject({ keycloak_id: legacy.externalId });
      expect((await put(`/users/${encodeURIComponent(legacy.externalId as string)}/deactivate`)).statusCode).toBe(200);
    });

    it('refuses a blank keycloak_id, or one with a space at either end, in bodies, bulk items and paths', async () => {
      const org = await seedOrganization(t);
      const spaced = ['   ', ' kc-v6', 'kc-v6 ', '\tkc-v6', 'kc-v6\n', 'kc-v6\u00a0'];
      for (const keycloakId of spaced) {
        const res = await post('/users', person(org.code, { keycloak_id: keycloakId }));
        expectProblem(res, 400, 'validation_failed');
        expect(res.json().errors[0].field, JSON.stringify(keycloakId)).toBe('keycloak_id');

        const path = await get(`/users/${encodeURIComponent(keycloakId)}`);
        expectProblem(path, 400, 'validation_failed');
        expect(path.json().errors[0].field).toBe('keycloak_id');
        expectProblem(await put(`/users/${encodeURIComponent(keycloakId)}/deactivate`), 400, 'validation_failed');
      }
      const inner = person(org.code, { keycloak_id: `kc ${unique('v6')}` });
      const bulk = await post('/users/bulk', [person(org.code, { keycloak_id: ' kc-v6 ' }), inner]);
      expect(bulk.json()).toMatchObject({
        success_count: 1,
        errors: [{ index: 0, code: 'validation_failed', fields: [{ field: 'keycloak_id' }] }],
      });
      expect((await get(`/users/${encodeURIComponent(inner.keycloak_id)}`)).statusCode).toBe(200);
    });

    it('never changes or deactivates a superuser (403 superuser_protected)', async () => {
      const org = await seedOrganization(t);
      const admin = await seedUser(t, org.id, { isSuperuser: true, externalId: unique('kc-') });
      const body = person(org.code, { keycloak_id: admin.externalId, email: admin.email, is_active: false });
      expectProblem(await post('/users', body), 403, 'superuser_protected');
      expectProblem(await put(`/users/${admin.externalId}/deactivate`), 403, 'superuser_protected');
      const [row] = await t.database.db.select().from(users).where(eq(users.id, admin.id));
      expect(row?.status).toBe('active');
    });

    it('lets a platform key create the organization a body names', async () => {
      const code = unique('client_');
      const res = await post('/users', person(code));
      expect(res.statusCode, res.body).toBe(201);
      const [org] = await t.database.db.select().from(organizations).where(eq(organizations.code, code));
      expect(org).toMatchObject({ code, isActive: true });
      const list = await get(`/users?client_id=${code}`);
      expect(list.json()).toMatchObject({ client_id: code, count: 1 });
    });

    it('answers 409 email_taken for an address another user of the organization has, in any case', async () => {
      const org = await seedOrganization(t);
      const first = person(org.code);
      await post('/users', first);
      const res = await post('/users', person(org.code, { email: first.email.toUpperCase() }));
      expectProblem(res, 409, 'email_taken');
      // The same address in another organization is another account.
      const other = await seedOrganization(t);
      expect((await post('/users', person(other.code, { email: first.email }))).statusCode).toBe(201);
    });

    it('takes an address whose domain is an internationalized domain name and gives it back as sent', async () => {
      const org = await seedOrganization(t);
      const id = unique('kc-');
      const body = person(org.code, { keycloak_id: id, email: `${id}@Bücher.example` });
      const res = await post('/users', body);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().email).toBe(body.email);
      expect((await get(`/users/${id}`)).json().email).toBe(body.email);
      // Letter case aside, the address is the same one; its punycode spelling is another address.
      expectProblem(await post('/users', person(org.code, { email: `${id}@bücher.EXAMPLE` })), 409, 'email_taken');
      const punycode = await post('/users', person(org.code, { email: `${id}@xn--bcher-kva.example` }));
      expect(punycode.statusCode, punycode.body).toBe(201);
    });

    it.each(NOT_EMAIL_ADDRESSES)('refuses the address %s, naming email', async (email) => {
      const org = await seedOrganization(t);
      const res = await post('/users', person(org.code, { email }));
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().errors).toEqual([expect.objectContaining({ field: 'email' })]);
    });

    it('does not move a user to another organization (409 organization_mismatch)', async () => {
      const a = await seedOrganization(t);
      const b = await seedOrganization(t);
      const body = person(a.code);
      await post('/users', body);
      expectProblem(await post('/users', { ...body, engagemx_client_id: b.code }), 409, 'organization_mismatch');
    });

    it('deactivates with is_active false (ending sessions) and reactivates with is_active true', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      const { id } = (await post('/users', body)).json();
      const [row] = await t.database.db.select().from(users).where(eq(users.id, id));
      await t.database.db
        .update(users)
        .set({ passwordHash: (await seedUser(t, org.id)).passwordHash })
        .where(eq(users.id, id));
      const client = await loginAs(t, { ...(row as typeof users.$inferSelect) });
      expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(200);

      const off = await post('/users', { ...body, is_active: false });
      expect(off.json()).toMatchObject({ action: 'updated', is_active: false });
      expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(401);
      const open = await t.database.db.select().from(sessions).where(eq(sessions.userId, id));
      expect(open.every((s) => s.revokedAt !== null)).toBe(true);

      const on = await post('/users', body);
      expect(on.json()).toMatchObject({ action: 'updated', is_active: true });
    });

    it('mails an invitation to set a password with send_invite: true, in the same transaction', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code, { send_invite: true });
      const res = await post('/users', body);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json()).toMatchObject({ invited: true });
      const mails = await t.database.db.select().from(mailOutbox).where(eq(mailOutbox.toAddress, body.email));
      expect(mails).toHaveLength(1);
      expect(mails[0]?.subject).toBe('Set your password');
    });

    it('invites a user only when the call creates them, not on every later post with send_invite', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code, { send_invite: true });
      expect((await post('/users', body)).json()).toMatchObject({ action: 'created', invited: true });
      const again = await post('/users', { ...body, first_name: 'Jane' });
      expect(again.statusCode, again.body).toBe(200);
      expect(again.json()).toMatchObject({ action: 'updated', invited: false });
      expect((await post('/users?dry_run=true', body)).json()).toMatchObject({ invited: false });
      const bulk = await post('/users/bulk', [body]);
      expect(bulk.json()).toMatchObject({ users: [{ action: 'updated', invited: false }] });
      const mails = await t.database.db.select().from(mailOutbox).where(eq(mailOutbox.toAddress, body.email));
      expect(mails).toHaveLength(1);
    });
  });

  describe('organization-scoped keys', () => {
    it('refuses a body naming another organization with 403, and reaches no user outside with 404', async () => {
      const a = await seedOrganization(t);
      const b = await seedOrganization(t);
      const keyA = await orgKey(a.code);
      const inB = person(b.code);
      expect((await post('/users', inB)).statusCode).toBe(201);

      expectProblem(await post('/users', person(b.code), keyA), 403, 'organization_forbidden');
      // Naming a nonexistent organization is the same refusal: nothing about it is told.
      expectProblem(await post('/users', person(unique('nope-')), keyA), 403, 'organization_forbidden');
      // B's user by keycloak_id: 404 for reads and writes alike.
      expectProblem(await get(`/users/${inB.keycloak_id}`, keyA), 404, 'user_not_found');
      expectProblem(await put(`/users/${inB.keycloak_id}/deactivate`, keyA), 404, 'user_not_found');
      expectProblem(await post('/users', { ...inB, engagemx_client_id: a.code }, keyA), 404, 'user_not_found');
      // B's list: 404, exactly as for a code no organization has.
      expectProblem(await get(`/users?client_id=${b.code}`, keyA), 404, 'client_not_found');
      expectProblem(await get(`/users?client_id=${unique('nope-')}`, keyA), 404, 'client_not_found');
      const bulk = await post('/users/bulk', [inB, { ...inB, engagemx_client_id: a.code }, person(a.code)], keyA);
      expect(bulk.json()).toMatchObject({
        success_count: 1,
        error_count: 2,
        errors: [
          { index: 0, keycloak_id: inB.keycloak_id, code: 'organization_forbidden', status: 403 },
          { index: 1, keycloak_id: inB.keycloak_id, code: 'user_not_found', status: 404 },
        ],
      });
      const [still] = await t.database.db.select().from(users).where(eq(users.externalId, inB.keycloak_id));
      expect(still).toMatchObject({ organizationId: b.id, status: 'active', email: inB.email });

      // Its own organization works.
      const own = person(a.code);
      expect((await post('/users', own, keyA)).statusCode).toBe(201);
      expect((await get(`/users/${own.keycloak_id}`, keyA)).statusCode).toBe(200);
      expect((await get(`/users?client_id=${a.code}`, keyA)).json().count).toBe(2);
    });
  });

  describe('field names in refusals', () => {
    it('names engagemx_client_id, the request’s own field, when a key of one organization names another', async () => {
      const a = await seedOrganization(t);
      const b = await seedOrganization(t);
      const keyA = await orgKey(a.code);
      const single = await post('/users', person(b.code), keyA);
      expectProblem(single, 403, 'organization_forbidden');
      expect(single.json().errors).toEqual([{ field: 'engagemx_client_id', message: expect.any(String) }]);
      const bulk = await post('/users/bulk', [person(b.code)], keyA);
      expect(bulk.json().errors).toEqual([
        expect.objectContaining({
          index: 0,
          code: 'organization_forbidden',
          fields: [{ field: 'engagemx_client_id', message: expect.any(String) }],
        }),
      ]);
    });

    it('names engagemx_client_id for a user of another organization, and keycloak_id in a bulk item’s error', async () => {
      const a = await seedOrganization(t);
      const b = await seedOrganization(t);
      const body = person(a.code);
      await post('/users', body);
      const moved = await post('/users', { ...body, engagemx_client_id: b.code });
      expectProblem(moved, 409, 'organization_mismatch');
      expect(moved.json().errors).toEqual([{ field: 'engagemx_client_id', message: expect.any(String) }]);

      const bulk = await post('/users/bulk', [person(a.code, { keycloak_id: 'kc-\u0000-nul' })]);
      const [error] = bulk.json().errors;
      expect(error).toMatchObject({ index: 0, code: 'validation_failed', fields: [{ field: 'keycloak_id' }] });
      expect(error.error).toContain('keycloak_id');
      expect(JSON.stringify(bulk.json())).not.toMatch(/external_id|"organization"/);
    });
  });

  describe('POST /users/bulk', () => {
    it('writes valid items, reports each refused one, and counts both', async () => {
      const org = await seedOrganization(t);
      const existing = person(org.code);
      const { id: existingId } = (await post('/users', existing)).json();
      const fresh = person(org.code);
      const body = [
        fresh,
        { ...existing, first_name: 'Jane' },
        { ...person(org.code), email: 'broken' },
        { ...person(org.code), email: fresh.email.toUpperCase() },
        'not an object',
        { ...fresh, last_name: 'Again' },
      ];
      const res = await post('/users/bulk', body);
      expect(res.statusCode, res.body).toBe(200);
      const answer = res.json();
      expect(answer).toMatchObject({ success_count: 2, error_count: 4 });
      expect(answer.users).toEqual([
        {
          id: expect.any(String),
          keycloak_id: fresh.keycloak_id,
          email: fresh.email,
          action: 'created',
          message: 'User successfully created',
        },
        {
          id: existingId,
          keycloak_id: existing.keycloak_id,
          email: existing.email,
          action: 'updated',
          message: 'User successfully updated',
        },
      ]);
      expect(answer.errors).toEqual([
        expect.objectContaining({
          index: 2,
          keycloak_id: body[2] && (body[2] as { keycloak_id: string }).keycloak_id,
          code: 'validation_failed',
          error: expect.stringContaining('email'),
        }),
        expect.objectContaining({ index: 3, code: 'email_taken', status: 409 }),
        expect.objectContaining({ index: 4, keycloak_id: null, code: 'validation_failed' }),
        expect.objectContaining({ index: 5, keycloak_id: fresh.keycloak_id, code: 'duplicate_in_request' }),
      ]);
      const [kept] = await t.database.db.select().from(users).where(eq(users.externalId, fresh.keycloak_id));
      expect(kept?.lastName).toBe('Doe');
      const [jane] = await t.database.db.select().from(users).where(eq(users.id, existingId));
      expect(jane?.firstName).toBe('Jane');
    });

    it('writes more than one batch in one call', async () => {
      const org = await seedOrganization(t);
      const body = Array.from({ length: 2500 }, () => person(org.code));
      const res = await post('/users/bulk', body);
      expect(res.json()).toMatchObject({ success_count: 2500, error_count: 0 });
      const again = await post(
        '/users/bulk',
        body.map((b) => ({ ...b, last_name: 'Second' })),
      );
      expect(again.json().users.every((u: { action: string }) => u.action === 'updated')).toBe(true);
      const list = await get(`/users?client_id=${org.code}`);
      expect(list.json().count).toBe(2500);
      expect(list.json().users.every((u: { last_name: string }) => u.last_name === 'Second')).toBe(true);
    });

    it('fails an item holding a __proto__ key or nesting too deep alone; the others are written', async () => {
      const org = await seedOrganization(t);
      const valid = person(org.code);
      const topProto = person(org.code);
      const [nestedProto, ctor, deep] = [person(org.code), person(org.code), person(org.code)];
      const item = (p: typeof valid, extra: string) => `${JSON.stringify(p).slice(0, -1)},${extra}}`;
      const payload = `[${[
        JSON.stringify(valid),
        item(nestedProto, '"first_name":{"__proto__":null}'),
        item(topProto, '"__proto__":{"is_superuser":true}'),
        item(ctor, '"x":{"constructor":{"prototype":{}}}'),
        item(deep, `"x":${'['.repeat(70)}${']'.repeat(70)}`),
      ].join(',')}]`;
      const res = await t.request({
        method: 'POST',
        url: `${BASE}/users/bulk`,
        headers: { ...platform, 'content-type': 'application/json' },
        payload,
      });
      expect(res.statusCode, res.body).toBe(200);
      const answer = res.json();
      expect(answer).toMatchObject({ success_count: 1, error_count: 4, users: [{ keycloak_id: valid.keycloak_id }] });
      expect(answer.errors).toEqual([
        expect.objectContaining({
          index: 1,
          code: 'validation_failed',
          fields: [expect.objectContaining({ field: 'first_name.__proto__' })],
        }),
        expect.objectContaining({
          index: 2,
          keycloak_id: topProto.keycloak_id,
          fields: [expect.objectContaining({ field: '__proto__' })],
        }),
        expect.objectContaining({ index: 3, fields: [expect.objectContaining({ field: 'x.constructor' })] }),
        expect.objectContaining({
          index: 4,
          fields: [{ field: `x${'.0'.repeat(62)}`, message: 'must not nest deeper than 64 levels.' }],
        }),
      ]);
      const written = await t.database.db.select().from(users).where(eq(users.organizationId, org.id));
      expect(written.map((u) => u.externalId)).toEqual([valid.keycloak_id]);
      expect(({} as Record<string, unknown>).is_superuser).toBeUndefined();
    });

    it('still refuses a __proto__ key as a whole body on the single-user call', async () => {
      const org = await seedOrganization(t);
      const res = await t.request({
        method: 'POST',
        url: `${BASE}/users`,
        headers: { ...platform, 'content-type': 'application/json' },
        payload: `${JSON.stringify(person(org.code)).slice(0, -1)},"first_name":{"__proto__":null}}`,
      });
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().errors).toEqual([expect.objectContaining({ field: 'first_name.__proto__' })]);
    });

    it('refuses a body that is not an array with 400', async () => {
      expectProblem(await post('/users/bulk', { users: [] }), 400, 'validation_failed');
      expectProblem(await post('/users/bulk', person('x')), 400, 'validation_failed');
    });

    it('answers an empty array with zero counts', async () => {
      expect((await post('/users/bulk', [])).json()).toEqual({
        success_count: 0,
        error_count: 0,
        users: [],
        errors: [],
      });
    });
  });

  describe('dry runs', () => {
    it('answers what a single upsert would do, with changes, and writes nothing', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      const before = await snapshot();
      const plan = await post('/users?dry_run=true', body);
      // Nothing is created: a plan answers 200, as a bulk dry run does.
      expect(plan.statusCode).toBe(200);
      expect(plan.json()).toMatchObject({
        id: null,
        action: 'created',
        dry_run: true,
        message: 'User would be created',
      });
      expect(plan.json().changes).toEqual(
        expect.arrayContaining([
          { field: 'email', from: null, to: body.email },
          { field: 'keycloak_id', from: null, to: body.keycloak_id },
        ]),
      );
      expect(await snapshot()).toBe(before);

      const { id } = (await post('/users', body)).json();
      const unchanged = await post('/users?dry_run=true', body);
      expect(unchanged.statusCode).toBe(200);
      expect(unchanged.json()).toMatchObject({ id, action: 'updated', changes: [] });
      const changed = await post('/users?dry_run=true', { ...body, last_name: 'Smith', is_active: false });
      expect(changed.json().changes).toEqual([
        { field: 'last_name', from: 'Doe', to: 'Smith' },
        { field: 'is_active', from: true, to: false },
      ]);
      // Refusals are the same as for real.
      expectProblem(await post('/users?dry_run=true', { ...person(org.code), email: body.email }), 409, 'email_taken');
      // Spelt as Python's requests renders True (and False): read case-insensitively, still writing nothing.
      const before2 = await snapshot();
      expect((await post('/users?dry_run=True', { ...body, last_name: 'Jones' })).json()).toMatchObject({
        dry_run: true,
        changes: [{ field: 'last_name', from: 'Doe', to: 'Jones' }],
      });
      expect(await snapshot()).toBe(before2);
      expect((await post('/users?dry_run=FALSE', body)).json()).not.toHaveProperty('dry_run');
      expectProblem(await post('/users?dry_run=yes', body), 400, 'validation_failed');
    });

    it('plans a bulk call item by item, including organizations to create, and writes nothing', async () => {
      const org = await seedOrganization(t);
      const existing = person(org.code);
      await post('/users', existing);
      const newOrg = unique('client_');
      const body = [person(newOrg), existing, { ...existing, email: 'x' }, { ...existing, first_name: 'Jo' }];
      const before = await snapshot();
      const plan = await post('/users/bulk?dry_run=true', body);
      expect(plan.json()).toMatchObject({
        dry_run: true,
        success_count: 2,
        error_count: 2,
        users: [
          { id: null, action: 'created', message: 'User would be created' },
          { action: 'updated', changes: [] },
        ],
        errors: [
          { index: 2, code: 'validation_failed' },
          { index: 3, code: 'duplicate_in_request' },
        ],
      });
      expect(plan.json().users[0].changes).toEqual(
        expect.arrayContaining([{ field: 'engagemx_client_id', from: null, to: newOrg }]),
      );
      expect(await snapshot()).toBe(before);
      // And the plan is what happens.
      const applied = await post('/users/bulk', body);
      expect(applied.json()).toMatchObject({ success_count: 2, error_count: 2 });
      expect(applied.json().users.map((u: { action: string }) => u.action)).toEqual(['created', 'updated']);
    });
  });

  describe('GET /users/{keycloak_id}', () => {
    it('answers the user with timestamps, 404 when absent', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      const { id } = (await post('/users', body)).json();
      const res = await get(`/users/${body.keycloak_id}`);
      expect(res.json()).toEqual({
        id,
        keycloak_id: body.keycloak_id,
        email: body.email,
        first_name: 'John',
        last_name: 'Doe',
        engagemx_client_id: org.code,
        is_active: true,
        created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      });
      expectProblem(await get(`/users/${unique('absent-')}`), 404, 'user_not_found');
    });
  });

  describe('users of a deactivated organization', () => {
    it('reports them inactive, as downstream sync does, and active again once it is reactivated', async () => {
      const root = await superuserClient(t);
      const org = await seedOrganization(t);
      const body = person(org.code);
      await post('/users', body);
      expect((await root.post(`/api/v1/organizations/${org.code}/deactivate/`)).statusCode).toBe(200);
      expect((await get(`/users/${body.keycloak_id}`)).json()).toMatchObject({ is_active: false });
      expect((await get(`/users?client_id=${org.code}`)).json()).toMatchObject({
        users: [{ keycloak_id: body.keycloak_id, is_active: false }],
      });
      // A write that only takes the user out of use is still taken, and answers the same.
      const off = await post('/users', { ...body, is_active: false });
      expect(off.json()).toMatchObject({ action: 'updated', is_active: false });
      expect((await post('/users/bulk', [{ ...body, is_active: false }])).json()).toMatchObject({ success_count: 1 });
      expect((await root.patch(`/api/v1/organizations/${org.code}/`, { is_active: true })).statusCode).toBe(200);
      expect((await post('/users', body)).json()).toMatchObject({ is_active: true });
      expect((await get(`/users/${body.keycloak_id}`)).json()).toMatchObject({ is_active: true });
      expect((await get(`/users?client_id=${org.code}`)).json().users[0]).toMatchObject({ is_active: true });
    });
  });

  describe('PUT /users/{keycloak_id}/deactivate', () => {
    it('deactivates, ends sessions, and answers the same when repeated', async () => {
      const org = await seedOrganization(t);
      const seeded = await seedUser(t, org.id, { externalId: unique('kc-') });
      const client = await loginAs(t, seeded);
      expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(200);

      const res = await put(`/users/${seeded.externalId}/deactivate`);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({
        message: 'User successfully deactivated',
        action: 'deactivated',
        timestamp: expect.stringMatching(/Z$/),
        user: { id: seeded.id, email: seeded.email, is_active: false },
      });
      expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(401);
      const again = await put(`/users/${seeded.externalId}/deactivate`);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toMatchObject({ action: 'deactivated', user: { id: seeded.id, is_active: false } });
      expectProblem(await put(`/users/${unique('absent-')}/deactivate`), 404, 'user_not_found');
    });

    it('takes an empty body sent as application/json', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      await post('/users', body);
      const res = await t.request({
        method: 'PUT',
        url: `${BASE}/users/${body.keycloak_id}/deactivate`,
        headers: { ...platform, 'content-type': 'application/json', 'content-length': '0' },
      });
      expect(res.statusCode, res.body).toBe(200);
    });
  });

  describe('GET /users?client_id=', () => {
    it('lists the organization users, none for an unknown client, 400 without client_id', async () => {
      const org = await seedOrganization(t);
      const a = person(org.code);
      const b = person(org.code, { is_active: false });
      await post('/users/bulk', [a, b]);
      const res = await get(`/users?client_id=${org.code}`);
      expect(res.json()).toEqual({
        client_id: org.code,
        count: 2,
        users: [
          expect.objectContaining({
            keycloak_id: a.keycloak_id,
            email: a.email,
            engagemx_client_id: org.code,
            is_active: true,
          }),
          expect.objectContaining({ keycloak_id: b.keycloak_id, is_active: false }),
        ],
      });
      // A code no organization has lists no users (200), as seed 000's filter by client does.
      const none = unique('none-');
      const empty = await get(`/users?client_id=${none}`);
      expect(empty.statusCode).toBe(200);
      expect(empty.json()).toEqual({ client_id: none, count: 0, users: [] });
      expectProblem(await get('/users'), 400, 'validation_failed');
    });
  });

  describe('one user for every API', () => {
    it('shows a provisioned user in the admin API and an admin-created user here', async () => {
      const admin = await superuserClient(t);
      const org = await seedOrganization(t);
      const body = person(org.code);
      const { id } = (await post('/users', body)).json();
      const viaAdmin = await admin.get(`/api/v1/users/${id}`);
      expect(viaAdmin.json()).toMatchObject({
        id,
        external_id: body.keycloak_id,
        email: body.email,
        organization: org.code,
      });

      const externalId = unique('kc-');
      const created = await admin.post('/api/v1/users', {
        email: `${externalId}@example.com`,
        organization: org.code,
        external_id: externalId,
      });
      expect(created.statusCode, created.body).toBe(201);
      const here = await get(`/users/${externalId}`);
      expect(here.json()).toMatchObject({ id: created.json().id, engagemx_client_id: org.code });
      const upsert = await post(
        '/users',
        person(org.code, { keycloak_id: externalId, email: `${externalId}@example.com` }),
      );
      expect(upsert.json()).toMatchObject({ id: created.json().id, action: 'updated' });
      expect((await admin.get(`/api/v1/users/${created.json().id}`)).json()).toMatchObject({ first_name: 'John' });
    });
  });

  describe('audit', () => {
    it('records one event per user written and one per call, in the same transaction', async () => {
      // Audit rows only: request rows of earlier calls are written in the background and may land meanwhile.
      const audits = (where?: SQL) =>
        t.database.db
          .select()
          .from(activities)
          .where(and(eq(activities.kind, 'audit'), where));
      const org = await seedOrganization(t);
      const existing = person(org.code);
      await post('/users', existing);
      const fresh = person(org.code);
      const changed = { ...existing, first_name: 'Jane' };
      const before = await audits(eq(activities.organizationId, org.id));
      await post('/users/bulk', [fresh, changed, { ...existing, email: 'bad' }]);
      const after = await audits(eq(activities.organizationId, org.id));
      const added = after.filter((a) => !before.some((b) => b.id === a.id));
      // The platform key's call wrote into this organization alone: its event is the organization's.
      expect(added.map((a) => a.activityType).sort()).toEqual([
        'provisioning.users.upsert',
        'user.created',
        'user.updated',
      ]);
      const calls = await t.database.db
        .select()
        .from(activities)
        .where(eq(activities.activityType, 'provisioning.users.upsert'));
      expect(calls.length).toBeGreaterThanOrEqual(2);
      const deact = await put(`/users/${fresh.keycloak_id}/deactivate`);
      expect(deact.statusCode).toBe(200);
      const events = await audits(eq(activities.organizationId, org.id));
      expect(events.map((e) => e.activityType)).toEqual(
        expect.arrayContaining(['user.deactivated', 'provisioning.user.deactivate']),
      );
      // The call names the user as its object (erasure then names them by pseudonym), not in its details.
      const call = events.find((e) => e.activityType === 'provisioning.user.deactivate');
      expect(call).toMatchObject({ objectType: 'user', details: { changed: true } });
      expect(call?.details).not.toHaveProperty('user_id');
      // A bulk call's events (written set-based) are the rows recordAudits writes for a single call.
      const many = Array.from({ length: 30 }, () => person(org.code));
      await post('/users/bulk', many);
      const single = person(org.code);
      await post('/users', single);
      const created = await t.database.db.select().from(activities).where(eq(activities.activityType, 'user.created'));
      const shape = (a: (typeof created)[number]) => ({
        kind: a.kind,
        category: a.category,
        severity: a.severity,
        success: a.success,
        organizationId: a.organizationId,
        actorType: a.actorType,
        actorId: a.actorId,
        apiKeyId: a.apiKeyId,
        description: a.description,
        tags: a.tags,
        detailKeys: Object.keys(a.details).sort(),
      });
      const [one] = await t.database.db
        .select({ id: users.id })
        .from(users)
        .where(eq(users.externalId, single.keycloak_id));
      const [bulkOne] = await t.database.db
        .select({ id: users.id })
        .from(users)
        .where(eq(users.externalId, many[0]?.keycloak_id as string));
      const singleRow = created.find((a) => a.userId === one?.id);
      const bulkRow = created.find((a) => a.userId === bulkOne?.id);
      expect(singleRow && bulkRow && shape(bulkRow)).toEqual(singleRow && shape(singleRow));
      expect(created.filter((a) => a.organizationId === org.id)).toHaveLength(33);

      // A dry run records nothing.
      const count = (await audits()).length;
      await post('/users/bulk?dry_run=true', [person(org.code)]);
      expect((await audits()).length).toBe(count);
    });
  });

  describe('audit of refused calls', () => {
    const callEvents = (organizationId: string, type: string) =>
      t.database.db
        .select()
        .from(activities)
        .where(and(eq(activities.organizationId, organizationId), eq(activities.activityType, type)))
        .orderBy(activities.timestamp, activities.id);
    const lastCall = async (organizationId: string, type = 'provisioning.users.upsert') =>
      (await callEvents(organizationId, type)).at(-1);

    it('records a single upsert answered 403 or 409 as a failed call, with its code and status', async () => {
      const org = await seedOrganization(t);
      const other = await seedOrganization(t);
      const key = await orgKey(org.code);
      const first = person(org.code);
      await post('/users', first, key);
      expect(await lastCall(org.id)).toMatchObject({ success: true, severity: 'info' });

      expectProblem(await post('/users', person(org.code, { email: first.email }), key), 409, 'email_taken');
      expect(await lastCall(org.id)).toMatchObject({
        success: false,
        severity: 'warning',
        details: { items: 1, errors: 1, code: 'email_taken', status: 409, error_codes: { email_taken: 1 } },
      });

      expectProblem(await post('/users', person(other.code), key), 403, 'organization_forbidden');
      expect(await lastCall(org.id)).toMatchObject({
        success: false,
        details: { code: 'organization_forbidden', status: 403 },
      });

      const admin = await seedUser(t, org.id, { isSuperuser: true, externalId: unique('kc-') });
      const body = person(org.code, { keycloak_id: admin.externalId, email: admin.email, is_active: false });
      expectProblem(await post('/users', body, key), 403, 'superuser_protected');
      expect(await lastCall(org.id)).toMatchObject({
        success: false,
        severity: 'warning',
        details: { code: 'superuser_protected', status: 403 },
      });
    });

    it('records a bulk call as failed only when every item failed, counting its errors by code', async () => {
      const org = await seedOrganization(t);
      const key = await orgKey(org.code);
      const first = person(org.code);
      await post('/users', first, key);
      const taken = person(org.code, { email: first.email });
      const invalid = { ...person(org.code), email: 'not an address' };

      const partly = await post('/users/bulk', [person(org.code), taken, invalid], key);
      expect(partly.json()).toMatchObject({ success_count: 1, error_count: 2 });
      expect(await lastCall(org.id)).toMatchObject({
        success: true,
        severity: 'info',
        details: { items: 3, created: 1, errors: 2, error_codes: { email_taken: 1, validation_failed: 1 } },
      });

      const none = await post('/users/bulk', [taken, invalid, { ...invalid, keycloak_id: unique('kc-') }], key);
      expect(none.json()).toMatchObject({ success_count: 0, error_count: 3 });
      expect(await lastCall(org.id)).toMatchObject({
        success: false,
        severity: 'warning',
        details: { items: 3, created: 0, errors: 3, error_codes: { email_taken: 1, validation_failed: 2 } },
      });
    });

    it('records a single upsert refused by its schema, in a transaction of its own, but no unauthenticated call', async () => {
      const org = await seedOrganization(t);
      const key = await orgKey(org.code);
      const bad = person(org.code, { email: 'bad' });
      expectProblem(await post('/users', bad, key), 400, 'validation_failed');
      expect(await lastCall(org.id)).toMatchObject({
        success: false,
        severity: 'warning',
        details: {
          items: 1,
          created: 0,
          errors: 1,
          code: 'validation_failed',
          status: 400,
          error_codes: { validation_failed: 1 },
        },
      });
      expect(await callEvents(org.id, 'user.created')).toEqual([]);
      // A platform key's refused item is recorded in the organization it names.
      expectProblem(await post('/users', person(org.code, { email: 'bad' })), 400, 'validation_failed');
      expect(await callEvents(org.id, 'provisioning.users.upsert')).toHaveLength(2);

      const count = (await t.database.db.select().from(activities).where(eq(activities.kind, 'audit'))).length;
      expectProblem(await post('/users', bad, {}), 401, 'not_authenticated');
      expectProblem(await post('/users', bad, bearer('not-a-key-0123456789abcdef')), 401, 'not_authenticated');
      expect((await t.database.db.select().from(activities).where(eq(activities.kind, 'audit'))).length).toBe(count);
    });

    it('records a platform key’s call in the one organization all its items concern', async () => {
      const org = await seedOrganization(t);
      const other = await seedOrganization(t);
      await post('/users', person(org.code));
      expect(await lastCall(org.id)).toMatchObject({ success: true, details: { items: 1, created: 1 } });
      const bulk = await post('/users/bulk', [person(org.code), person(org.code, { email: 'bad' })]);
      expect(bulk.json()).toMatchObject({ success_count: 1, error_count: 1 });
      expect(await lastCall(org.id)).toMatchObject({ details: { items: 2, created: 1, errors: 1 } });
      const fresh = unique('neworg');
      await post('/users', person(fresh));
      const [created] = await t.database.db.select().from(organizations).where(eq(organizations.code, fresh));
      expect(await lastCall(created?.id as string)).toMatchObject({ details: { created_organizations: [fresh] } });

      const admin = await clientWithRole(t, org.id, 'org_admin');
      const listed = await admin.get('/api/v1/activities/?activity_type=provisioning.users.upsert');
      expect(listed.statusCode, listed.body).toBe(200);
      expect(listed.json().results.length).toBe(2);
      expect(listed.json().results[0]).toMatchObject({ organization: org.code, organization_id: org.id });

      // A call into several organizations stays the platform's.
      const before = (await callEvents(org.id, 'provisioning.users.upsert')).length;
      await post('/users/bulk', [person(org.code), person(other.code)]);
      expect(await callEvents(org.id, 'provisioning.users.upsert')).toHaveLength(before);
      expect(await callEvents(other.id, 'provisioning.users.upsert')).toEqual([]);
    });

    it('records a refused deactivation as a failed call with its code, in a transaction of its own', async () => {
      const org = await seedOrganization(t);
      const key = await orgKey(org.code);
      const admin = await seedUser(t, org.id, { isSuperuser: true, externalId: unique('kc-') });
      expectProblem(await put(`/users/${admin.externalId}/deactivate`, key), 403, 'superuser_protected');
      expect(await lastCall(org.id, 'provisioning.user.deactivate')).toMatchObject({
        success: false,
        severity: 'warning',
        objectType: 'user',
        objectId: admin.id,
        details: { changed: false, code: 'superuser_protected', status: 403 },
      });
      // Nothing of the refused change itself is kept.
      expect(await callEvents(org.id, 'user.deactivated')).toEqual([]);

      expectProblem(await put(`/users/${unique('absent-')}/deactivate`, key), 404, 'user_not_found');
      expect(await lastCall(org.id, 'provisioning.user.deactivate')).toMatchObject({
        success: false,
        objectId: null,
        details: { changed: false, code: 'user_not_found', status: 404 },
      });

      const fine = await seedUser(t, org.id, { externalId: unique('kc-') });
      expect((await put(`/users/${fine.externalId}/deactivate`, key)).statusCode).toBe(200);
      expect(await lastCall(org.id, 'provisioning.user.deactivate')).toMatchObject({
        success: true,
        severity: 'info',
        details: { changed: true },
      });
    });
  });

  describe('concurrency', () => {
    it('leaves exactly one user after 20 parallel upserts of one keycloak_id', async () => {
      const org = await seedOrganization(t);
      const body = person(org.code);
      const answers = await Promise.all(Array.from({ length: 20 }, () => post('/users', body)));
      const statuses = answers.map((a) => a.statusCode);
      expect(
        statuses.every((s) => s === 200 || s === 201),
        JSON.stringify(answers.map((a) => a.body)),
      ).toBe(true);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      expect(new Set(answers.map((a) => a.json().id)).size).toBe(1);
      const rows = await t.database.db.select().from(users).where(eq(users.externalId, body.keycloak_id));
      expect(rows).toHaveLength(1);
    });

    it('keeps parallel bulk calls over the same users consistent', async () => {
      const org = await seedOrganization(t);
      const body = Array.from({ length: 50 }, () => person(org.code));
      const answers = await Promise.all(Array.from({ length: 5 }, () => post('/users/bulk', body)));
      for (const a of answers) expect(a.json(), a.body).toMatchObject({ success_count: 50, error_count: 0 });
      const list = await get(`/users?client_id=${org.code}`);
      expect(list.json().count).toBe(50);
    });

    // Needs PostgreSQL (TEST_DATABASE_URL) to overlap; PGlite runs the requests one after the other.
    it('writes nothing with an organization-scoped key once its organization’s deactivation has committed', async () => {
      const root = await superuserClient(t);
      for (let round = 0; round < 4; round++) {
        const org = await seedOrganization(t);
        const key = await orgKey(org.code);
        const writes = Array.from({ length: 10 }, () => post('/users', person(org.code, { send_invite: true }), key));
        const [deactivated, ...answers] = await Promise.all([
          root.post(`/api/v1/organizations/${org.code}/deactivate/`),
          ...writes,
        ]);
        expect(deactivated?.statusCode, deactivated?.body).toBe(200);
        for (const res of answers) {
          if (res.statusCode === 201) continue;
          expectProblem(res, 401, 'not_authenticated');
        }
        // The deactivation ended the links of every user written before it; none written after
        // holds one that would work once the organization is active again.
        const open = await t.database.db
          .select()
          .from(accountTokens)
          .where(and(eq(accountTokens.organizationId, org.id), isNull(accountTokens.usedAt)));
        expect(open).toEqual([]);
      }
    });
  });
});

describe('bulk limits', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY, BULK_MAX_ITEMS: '3', BODY_LIMIT: '2048' });
  });
  afterAll(() => t.close());

  const bulk = (payload: unknown) =>
    t.request({ method: 'POST', url: `${BASE}/users/bulk`, headers: bearer(PLATFORM_KEY), payload: payload as object });
  const item = (i: number) => ({
    keycloak_id: `kc-limit-${i}`,
    email: `l${i}@example.com`,
    engagemx_client_id: 'limits',
  });

  it('answers 413 for more items than BULK_MAX_ITEMS, writing nothing', async () => {
    const res = await bulk([item(1), item(2), item(3), item(4)]);
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ code: 'too_many_items' });
    expect(await t.database.db.select().from(users).where(eq(users.externalId, 'kc-limit-1'))).toHaveLength(0);
    expect((await bulk([item(1), item(2), item(3)])).json()).toMatchObject({ success_count: 3 });
  });

  it('answers 413 for a body over BODY_LIMIT', async () => {
    const res = await bulk([{ ...item(9), first_name: 'x'.repeat(3000) }]);
    expect(res.statusCode).toBe(413);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(await t.database.db.select().from(users).where(eq(users.externalId, 'kc-limit-9'))).toHaveLength(0);
  });
});
