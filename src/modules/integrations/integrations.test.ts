import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  clientWithRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createEnvelope, EnvelopeError } from '../../platform/crypto/envelope.js';
import { queryRows } from '../../platform/db/client.js';
import { openCredentials } from './credentials.js';

describe('integration registry', () => {
  let t: TestApp;
  let root: Client;

  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
  });
  afterAll(() => t.close());

  const body = (overrides: Record<string, unknown> = {}) => ({
    name: unique('Payments '),
    service_type: 'payment_gateway',
    provider_name: 'Stripe',
    auth_type: 'api_key',
    base_url: 'https://api.stripe.example/v1',
    ...overrides,
  });

  async function create(client: Client, overrides: Record<string, unknown> = {}) {
    const res = await client.post('/api/v1/integrations/', body(overrides));
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as Record<string, unknown> & { id: string; organization_id: string };
  }

  async function auditOf(id: string) {
    return queryRows<{ activity_type: string; details: Record<string, unknown>; actor_id: string | null }>(
      t.database.db,
      sql`select activity_type, details, actor_id from activities where object_type = 'integration'
          and object_id = ${id} order by id`,
    );
  }

  async function orgAdmin() {
    const org = await seedOrganization(t);
    return { org, admin: await clientWithRole(t, org.id, 'org_admin') };
  }

  it('registers an integration in the caller’s organization and answers which credentials are set', async () => {
    const { org, admin } = await orgAdmin();
    const created = await create(admin, {
      name: 'Stripe live',
      is_test_mode: true,
      settings: { currency: 'EUR' },
      credentials: { api_key: 'sk_live_0123456789abcdefWXYZ', api_secret: 'whsec_shh' },
    });
    expect(created).toMatchObject({
      name: 'Stripe live',
      organization: org.code,
      organization_id: org.id,
      service_type: 'payment_gateway',
      auth_type: 'api_key',
      base_url: 'https://api.stripe.example/v1',
      health_check_path: '/',
      is_active: true,
      is_test_mode: true,
      settings: { currency: 'EUR' },
      health_status: 'UNKNOWN',
      consecutive_failures: 0,
      total_requests: 0,
      failed_requests: 0,
      success_rate: null,
      last_health_check_at: null,
      oauth2_token: null,
      credentials: {
        api_key: { set: true, hint: '…WXYZ' },
        api_secret: { set: true, hint: null },
        password: { set: false, hint: null },
      },
    });
    expect(JSON.stringify(created)).not.toContain('sk_live_0123456789abcdefWXYZ');
    expect(JSON.stringify(created)).not.toContain('whsec_shh');

    const got = await admin.get(`/api/v1/integrations/${created.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(created);
    expect(await auditOf(created.id)).toEqual([
      expect.objectContaining({
        activity_type: 'integration.created',
        actor_id: admin.user.id,
        details: expect.objectContaining({ stored: ['api_key', 'api_secret'] }),
      }),
    ]);
  });

  it('stores credentials only sealed, bound to their row', async () => {
    const { admin } = await orgAdmin();
    const secret = `sk_${unique('plain')}_secret_value`;
    const a = await create(admin, { credentials: { api_key: secret, password: 'hunter2-pass' } });
    const b = await create(admin);

    const dump = await queryRows<Record<string, unknown>>(
      t.database.db,
      sql`select * from integrations where id = ${a.id}::uuid`,
    );
    const raw = JSON.stringify(dump);
    expect(raw).not.toContain(secret);
    expect(raw).not.toContain('hunter2-pass');
    const sealed = dump[0]?.credentials_sealed as string;
    expect(sealed).toMatch(/^v1\./);

    const envelope = createEnvelope(t.config.masterKey);
    expect(openCredentials(envelope, a.id, sealed)).toEqual({ api_key: secret, password: 'hunter2-pass' });
    // The same sealed value copied into another integration's row does not open there.
    expect(() => openCredentials(envelope, b.id, sealed)).toThrow(EnvelopeError);
  });

  it('updates fields and merges credentials, recording what changed but never the secrets', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin, { credentials: { api_key: 'old-key-0123456789abcd', api_secret: 's1' } });
    const res = await admin.patch(`/api/v1/integrations/${created.id}/`, {
      description: 'Card payments',
      health_check_path: '/status',
      credentials: { api_key: 'new-key-0123456789wxyz', api_secret: null, password: 'p4ss' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      description: 'Card payments',
      health_check_path: '/status',
      credentials: {
        api_key: { set: true, hint: '…wxyz' },
        api_secret: { set: false, hint: null },
        password: { set: true, hint: null },
      },
    });
    const [row] = await queryRows<{ credentials_sealed: string }>(
      t.database.db,
      sql`select credentials_sealed from integrations where id = ${created.id}::uuid`,
    );
    expect(openCredentials(createEnvelope(t.config.masterKey), created.id, row?.credentials_sealed ?? null)).toEqual({
      api_key: 'new-key-0123456789wxyz',
      password: 'p4ss',
    });

    const events = await auditOf(created.id);
    expect(events.map((e) => e.activity_type)).toEqual([
      'integration.created',
      'integration.updated',
      'integration.credentials_changed',
    ]);
    expect(events[1]?.details).toMatchObject({ fields: ['description', 'health_check_path'] });
    expect(events[2]?.details).toMatchObject({ changed: ['api_key', 'api_secret', 'password'] });
    const everything = JSON.stringify(events);
    expect(everything).not.toContain('new-key-0123456789wxyz');
    expect(everything).not.toContain('p4ss');
  });

  it('records only the credentials an update really changes, and nothing when none changes', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin, { credentials: { api_key: 'same-key-0123456789abcd', api_secret: 's1' } });
    // Removing what is not stored and restating what is: nothing changes, nothing is recorded.
    const idle = await admin.patch(`/api/v1/integrations/${created.id}/`, {
      credentials: { token: null, client_secret: null, api_key: 'same-key-0123456789abcd' },
    });
    expect(idle.statusCode, idle.body).toBe(200);
    expect((await auditOf(created.id)).map((e) => e.activity_type)).toEqual(['integration.created']);

    const res = await admin.patch(`/api/v1/integrations/${created.id}/`, {
      credentials: { token: null, api_key: 'same-key-0123456789abcd', api_secret: 's2', password: 'p' },
    });
    expect(res.statusCode, res.body).toBe(200);
    const removed = await admin.patch(`/api/v1/integrations/${created.id}/`, {
      credentials: { password: null, username: null },
    });
    expect(removed.statusCode, removed.body).toBe(200);
    const events = await auditOf(created.id);
    expect(events.map((e) => e.activity_type)).toEqual([
      'integration.created',
      'integration.credentials_changed',
      'integration.credentials_changed',
    ]);
    expect(events[1]?.details).toMatchObject({ changed: ['api_secret', 'password'] });
    expect(events[2]?.details).toMatchObject({ changed: ['password'] });
  });

  it('answers 400 naming the fields it shows but does not take, and a body with nothing to change unwritten', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin);
    const url = `/api/v1/integrations/${created.id}/`;
    const before = (await admin.get(url)).json();
    const refused = await admin.patch(url, { name: 'Renamed', health_status: 'HEALTHY', total_requests: 5 });
    expect(refused.statusCode).toBe(400);
    // A count the server keeps is ignored; a status it does not take is refused.
    const fields = (refused.json().errors as { field: string }[]).map((e) => e.field).sort();
    expect(fields).toEqual(['health_status']);
    // A field it does not know, or a misspelt credential, is refused by name: never dropped in silence.
    const unknown = await admin.patch(url, { bogus_field: 1, credentials: { apiKey: 'rotated-key-0000000001' } });
    expect(unknown.statusCode).toBe(400);
    expect((unknown.json().errors as { field: string }[]).map((e) => e.field).sort()).toEqual([
      'bogus_field',
      'credentials.apiKey',
    ]);
    const unchanged = await admin.patch(url, { total_requests: 5 });
    expect(unchanged.statusCode).toBe(200);
    expect(unchanged.json()).toEqual(before);
    expect((await auditOf(created.id)).map((e) => e.activity_type)).toEqual(['integration.created']);
  });

  async function storedCredentials(id: string) {
    const [row] = await queryRows<{ credentials_sealed: string | null }>(
      t.database.db,
      sql`select credentials_sealed from integrations where id = ${id}::uuid`,
    );
    return openCredentials(createEnvelope(t.config.masterKey), id, row?.credentials_sealed ?? null);
  }

  it('refuses to move stored credentials to another host unless they are given again', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin, {
      base_url: 'https://api.stripe.example/v1',
      credentials: { api_key: 'sk_live_0123456789abcdefWXYZ', api_secret: 'whsec_shh' },
    });
    for (const base_url of [
      'https://attacker.example/v1',
      'http://api.stripe.example/v1',
      'https://api.stripe.example:8443/v1',
    ]) {
      const moved = await admin.patch(`/api/v1/integrations/${created.id}`, { base_url, description: 'moved' });
      expect(moved.statusCode, moved.body).toBe(400);
      expect(moved.headers['content-type']).toContain('application/problem+json');
      expect(moved.json()).toMatchObject({
        code: 'integration_credentials_required',
        errors: [{ field: 'credentials' }],
      });
    }
    // Nothing changed, and nothing was recorded.
    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json()).toMatchObject({
      base_url: 'https://api.stripe.example/v1',
      description: '',
    });
    expect(await storedCredentials(created.id)).toEqual({
      api_key: 'sk_live_0123456789abcdefWXYZ',
      api_secret: 'whsec_shh',
    });
    expect((await auditOf(created.id)).map((e) => e.activity_type)).toEqual(['integration.created']);
  });

  it('moves to another host with the credentials given in the same request, which replace the stored set', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin, {
      base_url: 'https://api.stripe.example/v1',
      credentials: { api_key: 'sk_live_0123456789abcdefWXYZ', api_secret: 'whsec_shh' },
    });
    const moved = await admin.patch(`/api/v1/integrations/${created.id}`, {
      base_url: 'https://payments.other.example/api',
      credentials: { api_key: 'new-host-key-0123456789abcd' },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json()).toMatchObject({
      base_url: 'https://payments.other.example/api',
      credentials: { api_key: { set: true, hint: '…abcd' }, api_secret: { set: false } },
    });
    // The secret not given again stayed behind rather than following the integration.
    expect(await storedCredentials(created.id)).toEqual({ api_key: 'new-host-key-0123456789abcd' });

    const events = await auditOf(created.id);
    expect(events.map((e) => e.activity_type)).toEqual([
      'integration.created',
      'integration.updated',
      'integration.credentials_changed',
    ]);
    expect(events[1]?.details).toMatchObject({
      fields: ['base_url'],
      origin_changes: [{ field: 'base_url', from: 'https://api.stripe.example', to: 'https://payments.other.example' }],
      dropped: [],
    });
    expect(events[2]?.details).toMatchObject({ changed: ['api_key', 'api_secret'], reason: 'origin_changed' });
    expect(JSON.stringify(events)).not.toContain('new-host-key-0123456789abcd');

    // `{}` moves it on without any.
    const bare = await admin.patch(`/api/v1/integrations/${created.id}`, {
      base_url: 'https://third.example',
      credentials: {},
    });
    expect(bare.statusCode, bare.body).toBe(200);
    expect(await storedCredentials(created.id)).toEqual({});
  });

  it('keeps the credentials when only the path changes, or when there are none to move', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin, {
      base_url: 'https://api.stripe.example/v1',
      credentials: { api_key: 'sk_live_0123456789abcdefWXYZ' },
    });
    const path = await admin.patch(`/api/v1/integrations/${created.id}`, {
      base_url: 'https://API.stripe.example:443/v2',
    });
    expect(path.statusCode, path.body).toBe(200);
    expect(path.json()).toMatchObject({ base_url: 'https://api.stripe.example/v2' });
    expect(await storedCredentials(created.id)).toEqual({ api_key: 'sk_live_0123456789abcdefWXYZ' });
    const events = await auditOf(created.id);
    expect(events.map((e) => e.activity_type)).toEqual(['integration.created', 'integration.updated']);
    expect(events[1]?.details).not.toHaveProperty('origin_changes');

    const empty = await create(admin);
    const moved = await admin.patch(`/api/v1/integrations/${empty.id}`, { base_url: 'https://elsewhere.example' });
    expect(moved.statusCode, moved.body).toBe(200);
    expect((await auditOf(empty.id))[1]?.details).toMatchObject({
      origin_changes: [{ field: 'base_url', to: 'https://elsewhere.example' }],
    });
  });

  it('activates and deactivates, idempotently, with one audit event per change', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin);
    const off = await admin.post(`/api/v1/integrations/${created.id}/deactivate/`);
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json()).toMatchObject({ is_active: false });
    expect((await admin.post(`/api/v1/integrations/${created.id}/deactivate`)).json()).toMatchObject({
      is_active: false,
    });
    const on = await admin.post(`/api/v1/integrations/${created.id}/activate`);
    expect(on.json()).toMatchObject({ is_active: true });
    expect((await auditOf(created.id)).map((e) => e.activity_type)).toEqual([
      'integration.created',
      'integration.deactivated',
      'integration.activated',
    ]);
  });

  it('deletes an integration and keeps the audit trail', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin);
    const res = await admin.delete(`/api/v1/integrations/${created.id}`);
    expect(res.statusCode).toBe(204);
    expect((await admin.get(`/api/v1/integrations/${created.id}`)).statusCode).toBe(404);
    expect((await admin.delete(`/api/v1/integrations/${created.id}`)).statusCode).toBe(404);
    expect((await auditOf(created.id)).map((e) => e.activity_type)).toEqual([
      'integration.created',
      'integration.deleted',
    ]);
  });

  it('lists with filters, search and cursor pages, newest first', async () => {
    const { admin } = await orgAdmin();
    const sms = await create(admin, { name: 'Twilio SMS', service_type: 'sms_provider', provider_name: 'Twilio' });
    const mail = await create(admin, { name: 'Mailer', service_type: 'email_provider', provider_name: 'Postmark' });
    const off = await create(admin, { name: 'Old gateway', is_active: false });

    const all = await admin.get('/api/v1/integrations/?limit=2');
    expect(all.statusCode).toBe(200);
    const first = all.json() as { results: { id: string }[]; next: string };
    expect(first.results.map((r) => r.id)).toEqual([off.id, mail.id]);
    const second = await admin.get(`/api/v1/integrations/?limit=2&cursor=${first.next}`);
    expect(second.json()).toEqual({ results: [expect.objectContaining({ id: sms.id })], next: null });

    const ids = async (query: string) =>
      ((await admin.get(`/api/v1/integrations/?${query}`)).json() as { results: { id: string }[] }).results.map(
        (r) => r.id,
      );
    expect(await ids('service_type=sms_provider')).toEqual([sms.id]);
    expect(await ids('is_active=false')).toEqual([off.id]);
    expect(await ids('search=postm')).toEqual([mail.id]);
    expect(await ids('search=twilio%20s')).toEqual([sms.id]);
    expect(await ids('health_status=UNKNOWN')).toEqual([off.id, mail.id, sms.id]);
    expect(await ids('search=%25')).toEqual([]);
  });

  it('confines organization administrators to their organization: 404 for another’s integration', async () => {
    const a = await orgAdmin();
    const b = await orgAdmin();
    const theirs = await create(b.admin);

    expect((await a.admin.get(`/api/v1/integrations/${theirs.id}`)).json()).toMatchObject({
      status: 404,
      code: 'integration_not_found',
    });
    expect((await a.admin.patch(`/api/v1/integrations/${theirs.id}`, { name: 'x' })).statusCode).toBe(404);
    expect((await a.admin.delete(`/api/v1/integrations/${theirs.id}`)).statusCode).toBe(404);
    expect((await a.admin.post(`/api/v1/integrations/${theirs.id}/deactivate`)).statusCode).toBe(404);
    expect((await a.admin.get(`/api/v1/integrations/${theirs.id}/health-checks`)).statusCode).toBe(404);
    expect((await a.admin.get(`/api/v1/integrations/${theirs.id}/logs`)).statusCode).toBe(404);
    expect((await a.admin.get('/api/v1/integrations/')).json()).toEqual({ results: [], next: null });
    expect((await a.admin.get(`/api/v1/integrations/?organization=${b.org.code}`)).json()).toEqual({
      results: [],
      next: null,
    });

    const named = await a.admin.post('/api/v1/integrations/', body({ organization: b.org.code }));
    expect(named.json()).toMatchObject({ status: 403, code: 'permission_denied' });

    // Superusers see and manage every organization's.
    expect((await root.get(`/api/v1/integrations/${theirs.id}`)).statusCode).toBe(200);
    const forB = await root.post('/api/v1/integrations/', body({ organization: b.org.code }));
    expect(forB.json()).toMatchObject({ organization: b.org.code, organization_id: b.org.id });
    const rootList = (await root.get(`/api/v1/integrations/?organization=${b.org.code}`)).json() as {
      results: unknown[];
    };
    expect(rootList.results).toHaveLength(2);
  });

  it('answers 401 without credentials and 403 without the permission', async () => {
    const { org, admin } = await orgAdmin();
    const created = await create(admin);
    expect((await t.request({ method: 'GET', url: '/api/v1/integrations/' })).statusCode).toBe(401);
    expect((await t.request({ method: 'POST', url: '/api/v1/integrations/', payload: body() })).json()).toMatchObject({
      status: 401,
      code: 'not_authenticated',
    });

    // A viewer reads but does not change.
    const viewer = await clientWithRole(t, org.id, 'viewer');
    expect((await viewer.get(`/api/v1/integrations/${created.id}`)).statusCode).toBe(200);
    expect((await viewer.post('/api/v1/integrations/', body())).json()).toMatchObject({
      status: 403,
      code: 'permission_denied',
    });
    expect((await viewer.post(`/api/v1/integrations/${created.id}/health-check`)).statusCode).toBe(403);
    expect((await viewer.delete(`/api/v1/integrations/${created.id}`)).statusCode).toBe(403);

    // A user without any role sees nothing.
    const plain = await loginAs(t, await seedUser(t, org.id));
    expect((await plain.get('/api/v1/integrations/')).statusCode).toBe(403);
  });

  it('refuses as api_key_header a header that controls the request itself, on create and update', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin);
    for (const header of [
      'Host',
      'content-length',
      'Transfer-Encoding',
      'CONNECTION',
      'Upgrade',
      'Expect',
      'Keep-Alive',
      'TE',
      'Trailer',
      'Proxy-Authorization',
    ]) {
      for (const res of [
        await admin.post('/api/v1/integrations/', body({ api_key_header: header })),
        await admin.patch(`/api/v1/integrations/${created.id}`, { api_key_header: header }),
      ]) {
        expect(res.statusCode, `${header}: ${res.body}`).toBe(400);
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json()).toMatchObject({ status: 400, errors: [{ field: 'api_key_header' }] });
      }
    }
    // Headers that only carry a value are taken, Authorization included.
    for (const header of ['Authorization', 'X-Host-Key', 'Api-Key']) {
      const res = await admin.patch(`/api/v1/integrations/${created.id}`, { api_key_header: header });
      expect(res.statusCode, `${header}: ${res.body}`).toBe(200);
    }
  });

  it('refuses bad input with 400 problem+json naming the field', async () => {
    const { admin } = await orgAdmin();
    const cases: [Record<string, unknown>, string][] = [
      [body({ base_url: 'ftp://files.example' }), 'base_url'],
      [body({ base_url: 'not a url' }), 'base_url'],
      [body({ base_url: 'https://user:pw@api.example' }), 'base_url'],
      [body({ base_url: 'file:///etc/passwd' }), 'base_url'],
      [body({ service_type: 'teleporter' }), 'service_type'],
      [body({ auth_type: 'magic' }), 'auth_type'],
      [body({ name: '' }), 'name'],
      [body({ timeout_ms: 5 }), 'timeout_ms'],
      [body({ health_check_path: 'status' }), 'health_check_path'],
      // Read as a URL, it would name another host, and the credentials would go there.
      [body({ health_check_path: '//elsewhere.example/steal' }), 'health_check_path'],
      [body({ credentials: { api_key: 42 } }), 'credentials.api_key'],
      [body({ oauth2: { token_url: 'javascript:alert(1)' } }), 'oauth2.token_url'],
      [body({ api_key_header: 'bad header' }), 'api_key_header'],
      [{ name: 'x' }, 'service_type'],
    ];
    for (const [payload, field] of cases) {
      const res = await admin.post('/api/v1/integrations/', payload);
      expect(res.statusCode, `${JSON.stringify(payload)} → ${res.body}`).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      const problem = res.json() as { errors: { field: string }[] };
      expect(
        problem.errors.map((e) => e.field),
        JSON.stringify(payload),
      ).toContainEqual(expect.stringContaining(field));
    }
    const created = await create(admin);
    const empty = await admin.patch(`/api/v1/integrations/${created.id}`, {});
    expect(empty.statusCode).toBe(400);
    const badPatch = await admin.patch(`/api/v1/integrations/${created.id}`, { base_url: 'gopher://x' });
    expect(badPatch.json()).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    expect((await admin.get('/api/v1/integrations/?cursor=garbage')).json()).toMatchObject({
      status: 400,
      code: 'invalid_cursor',
    });
    expect((await admin.get('/api/v1/integrations/?health_status=FINE')).statusCode).toBe(400);
    expect((await admin.get('/api/v1/integrations/not-a-uuid')).statusCode).toBe(404);
  });

  it('refuses credentials that could never go out in a header, on create and update, naming them', async () => {
    const { admin } = await orgAdmin();
    // Header values are visible ASCII, spaces and tabs inside (RFC 9110 §5.5); Basic's user-id and
    // password have no control characters, and the user-id no colon (RFC 7617 §2).
    const cases: [Record<string, unknown>, string][] = [
      [{ auth_type: 'api_key', credentials: { api_key: 'abc\r\nX-Evil: 1' } }, 'credentials.api_key'],
      [{ auth_type: 'api_key', credentials: { api_key: 'clé' } }, 'credentials.api_key'],
      [{ auth_type: 'api_key', credentials: { api_key: ' padded ' } }, 'credentials.api_key'],
      [{ auth_type: 'bearer', credentials: { token: 'jéton' } }, 'credentials.token'],
      [{ auth_type: 'bearer', credentials: { token: 'two words' } }, 'credentials.token'],
      [{ auth_type: 'bearer', credentials: { token: 'a\u0000b' } }, 'credentials.token'],
      [{ auth_type: 'basic', credentials: { username: 'ada:lovelace', password: 'pw' } }, 'credentials.username'],
      [{ auth_type: 'basic', credentials: { username: 'ada\n', password: 'pw' } }, 'credentials.username'],
      [{ auth_type: 'basic', credentials: { username: 'ada', password: 'p\rw' } }, 'credentials.password'],
    ];
    for (const [overrides, field] of cases) {
      const res = await admin.post('/api/v1/integrations/', body(overrides));
      expect(res.statusCode, `${JSON.stringify(overrides)} → ${res.body}`).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().errors).toEqual([expect.objectContaining({ field })]);
    }
    // Any value that can be sent is taken: a key in the form of a scheme and its value, a
    // password in any script (Basic sends it encoded).
    await create(admin, { credentials: { api_key: 'Bearer sk_live_0123456789' } });
    await create(admin, { auth_type: 'basic', credentials: { username: 'José', password: 'mot de passe: été' } });

    const created = await create(admin, { credentials: { api_key: 'sk_live_0123456789abcdef' } });
    const update = await admin.patch(`/api/v1/integrations/${created.id}`, {
      credentials: { api_key: 'abc\r\nX-Evil: 1', token: 'ok' },
    });
    expect(update.statusCode, update.body).toBe(400);
    expect(update.json().errors).toEqual([expect.objectContaining({ field: 'credentials.api_key' })]);
    const stored = (await admin.get(`/api/v1/integrations/${created.id}`)).json();
    expect(stored.credentials).toMatchObject({ api_key: { set: true, hint: '…cdef' }, token: { set: false } });
  });

  it('refuses a query string in base_url and the OAuth2 issuer, on create and update, and stores nothing', async () => {
    const { org, admin } = await orgAdmin();
    const secretUrl = 'http://rates.example/api?api_key=sk_secret_123';
    const refused = await admin.post('/api/v1/integrations/', body({ base_url: secretUrl }));
    expect(refused.statusCode).toBe(400);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({
      code: 'validation_failed',
      errors: [{ field: 'base_url', message: expect.stringContaining('must not hold a query string') }],
    });
    // A bare "?" or "#" is kept by the URL as well.
    for (const bare of ['http://rates.example/api?', 'http://rates.example/api#']) {
      const res = await admin.post('/api/v1/integrations/', body({ base_url: bare }));
      expect(res.json(), bare).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    }
    const issuer = await admin.post(
      '/api/v1/integrations/',
      body({ auth_type: 'oauth2', oauth2: { issuer: 'https://as.example/?tenant=1', client_id: 'gh' } }),
    );
    expect(issuer.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.issuer' }] });
    // The endpoints may hold one (RFC 6749 §3.1, §3.2): calls keep it.
    await create(admin, {
      auth_type: 'oauth2',
      oauth2: { token_url: 'https://as.example/token?p=b2c', client_id: 'gh' },
    });

    const created = await create(admin);
    const patched = await admin.patch(`/api/v1/integrations/${created.id}`, { base_url: secretUrl, credentials: {} });
    expect(patched.json()).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json().base_url).toBe(created.base_url);
    const stored = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities where organization_id = ${org.id}
          and details::text like ${'%sk_secret_123%'}`,
    );
    expect(stored[0]?.n).toBe(0);
  });

  it('requires oauth2.client_id for auth_type oauth2, on create and on update', async () => {
    const { admin } = await orgAdmin();
    for (const oauth2 of [undefined, {}, { token_url: 'https://as.example/token' }]) {
      const res = await admin.post('/api/v1/integrations/', body({ auth_type: 'oauth2', oauth2 }));
      expect(res.statusCode, JSON.stringify(oauth2)).toBe(400);
      expect(res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'oauth2.client_id' }] });
    }
    const plain = await create(admin);
    // Switching to oauth2 needs the client, in the same request.
    const switched = await admin.patch(`/api/v1/integrations/${plain.id}`, { auth_type: 'oauth2' });
    expect(switched.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.client_id' }] });
    const withClient = await admin.patch(`/api/v1/integrations/${plain.id}`, {
      auth_type: 'oauth2',
      oauth2: { token_url: 'https://api.stripe.example/token', client_id: 'gh' },
      credentials: {},
    });
    expect(withClient.statusCode, withClient.body).toBe(200);
    // `oauth2` given replaces the stored object whole, so it must name the client again.
    const dropped = await admin.patch(`/api/v1/integrations/${plain.id}`, { oauth2: { scope: 'read' } });
    expect(dropped.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.client_id' }] });
    expect((await admin.get(`/api/v1/integrations/${plain.id}`)).json().oauth2).toMatchObject({ client_id: 'gh' });
    // Other changes leave the OAuth2 settings alone.
    expect((await admin.patch(`/api/v1/integrations/${plain.id}`, { description: 'd' })).statusCode).toBe(200);
  });

  it('refuses a blank name, an oauth2 integration without a token endpoint, and unknown health-check fields', async () => {
    const { admin } = await orgAdmin();
    const blank = await admin.post('/api/v1/integrations/', body({ name: '  \t ' }));
    expect(blank.json()).toMatchObject({ status: 400, errors: [{ field: 'name' }] });
    const created = await create(admin);
    const renamed = await admin.patch(`/api/v1/integrations/${created.id}`, { name: ' ' });
    expect(renamed.json()).toMatchObject({ status: 400, errors: [{ field: 'name' }] });

    // Every grant asks a token endpoint: named, or discovered from the issuer.
    const nowhere = await admin.post(
      '/api/v1/integrations/',
      body({ auth_type: 'oauth2', oauth2: { client_id: 'gh', authorization_url: 'https://as.example/authorize' } }),
    );
    expect(nowhere.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.token_url' }] });
    const dropped = await admin.patch(`/api/v1/integrations/${created.id}`, {
      auth_type: 'oauth2',
      oauth2: { client_id: 'gh', grant: 'client_credentials' },
      credentials: {},
    });
    expect(dropped.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.token_url' }] });
    for (const oauth2 of [{ issuer: 'https://as.example' }, { token_url: 'https://as.example/token' }]) {
      await create(admin, { auth_type: 'oauth2', oauth2: { client_id: 'gh', ...oauth2 } });
    }

    const check = await admin.post(`/api/v1/integrations/${created.id}/health-check/`, { verbose: true });
    expect(check.json()).toMatchObject({ status: 400, errors: [{ field: 'verbose' }] });
  });

  it('refuses a change of oauth2_token, which only an authorization sets, and ignores it sent back unchanged', async () => {
    const { admin } = await orgAdmin();
    const created = await create(admin);
    const url = `/api/v1/integrations/${created.id}/`;
    // The token as an authorization stores it.
    await t.database.db.execute(sql`insert into integration_oauth2_tokens
      (organization_id, integration_id, access_token_sealed, token_type, scope, expires_at)
      values (${created.organization_id}::uuid, ${created.id}::uuid, 'sealed', 'Bearer', 'read', now() + interval '1 hour')`);
    const shown = (await admin.get(url)).json();
    expect(shown.oauth2_token).toMatchObject({ scope: 'read', has_refresh_token: false });
    for (const oauth2_token of [null, { scope: 'write', expires_at: null, has_refresh_token: true }]) {
      const res = await admin.patch(url, { oauth2_token });
      expect(res.json(), JSON.stringify(oauth2_token)).toMatchObject({
        status: 400,
        errors: [{ field: 'oauth2_token' }],
      });
    }
    const none = await create(admin);
    const invented = await admin.patch(`/api/v1/integrations/${none.id}/`, {
      oauth2_token: { scope: 'read', expires_at: null, has_refresh_token: true },
    });
    expect(invented.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2_token' }] });
    const same = await admin.patch(url, { oauth2_token: shown.oauth2_token, description: 'kept' });
    expect(same.statusCode, same.body).toBe(200);
    expect(same.json().oauth2_token).toEqual(shown.oauth2_token);
  });

  /** Seals the stored credentials as if under a master key this server does not have. */
  async function sealUnderUnknownKey(id: string) {
    await t.database.db.execute(sql`update integrations
      set credentials_sealed = regexp_replace(credentials_sealed, '^([^.]+)[.][^.]+[.]', '\\1.0123456789ab.')
      where id = ${id}::uuid`);
    const [row] = await queryRows<{ credentials_sealed: string }>(
      t.database.db,
      sql`select credentials_sealed from integrations where id = ${id}::uuid`,
    );
    expect(row?.credentials_sealed.split('.')[1]).toBe('0123456789ab');
  }

  it('replaces credentials it cannot open when given whole, and refuses a partial change of them with 409', async () => {
    const { admin } = await orgAdmin();
    const keyed = await create(admin, { credentials: { api_key: 'lost-key-0123456789abcd', api_secret: 's1' } });
    await sealUnderUnknownKey(keyed.id);
    const replaced = await admin.patch(`/api/v1/integrations/${keyed.id}/`, {
      credentials: { api_key: 'new-key-0123456789wxyz' },
    });
    expect(replaced.statusCode, replaced.body).toBe(200);
    expect(replaced.json().credentials).toMatchObject({
      api_key: { set: true, hint: '…wxyz' },
      api_secret: { set: false },
    });
    expect(await storedCredentials(keyed.id)).toEqual({ api_key: 'new-key-0123456789wxyz' });
    const events = await auditOf(keyed.id);
    expect(events.at(-1)).toMatchObject({
      activity_type: 'integration.credentials_changed',
      details: { changed: ['api_key'] },
    });

    const basic = await create(admin, { auth_type: 'basic', credentials: { username: 'ada', password: 'old-pw' } });
    await sealUnderUnknownKey(basic.id);
    for (const credentials of [{ password: 'new-pw' }, { username: 'ada', password: null }, { api_secret: 'x' }]) {
      const partial = await admin.patch(`/api/v1/integrations/${basic.id}/`, { credentials });
      expect(partial.statusCode, partial.body).toBe(409);
      expect(partial.json()).toMatchObject({
        code: 'integration_credentials_unreadable',
        errors: [{ field: 'credentials' }],
      });
      expect(partial.json().detail).toMatch(/cannot be opened/);
    }
    // Other changes do not need the credentials.
    expect((await admin.patch(`/api/v1/integrations/${basic.id}/`, { description: 'd' })).statusCode).toBe(200);
    const whole = await admin.patch(`/api/v1/integrations/${basic.id}/`, {
      credentials: { username: 'ada', password: 'new-pw' },
    });
    expect(whole.statusCode, whole.body).toBe(200);
    expect(await storedCredentials(basic.id)).toEqual({ username: 'ada', password: 'new-pw' });
  });

  it('answers 409 integration_name_taken for a duplicate name within the organization', async () => {
    const { admin } = await orgAdmin();
    await create(admin, { name: 'Gold rates' });
    const dup = await admin.post('/api/v1/integrations/', body({ name: 'GOLD RATES' }));
    expect(dup.json()).toMatchObject({ status: 409, code: 'integration_name_taken', errors: [{ field: 'name' }] });
    // Another organization may use the same name.
    const other = await orgAdmin();
    await create(other.admin, { name: 'Gold rates' });
  });
});
