import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization, superuserClient } from '../../../test/seed.js';
import { openTestDatabase, startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { REDACTED } from '../../platform/secret-text.js';
import { ENV_KEY_ACTOR } from '../api-keys/env-key.js';
import { recordAudit, recordAudits } from './audit.js';
import { redactDetails } from './redact.js';

let t: Awaited<ReturnType<typeof openTestDatabase>>;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.drop());

describe('audit events', () => {
  it("are written in the caller's transaction: a rolled-back change leaves no event", async () => {
    const db = t.database.db;
    await db
      .transaction(async (tx) => {
        await recordAudit(tx, {
          type: 'test.rolled_back',
          category: 'system',
          organizationId: null,
          description: 'never committed',
        });
        throw new Error('roll back');
      })
      .catch(() => {});
    await db.transaction((tx) =>
      recordAudit(tx, { type: 'test.committed', category: 'system', organizationId: null, description: 'kept' }),
    );
    const rows = await queryRows<{ activity_type: string; kind: string }>(
      db,
      sql`select activity_type, kind from activities where activity_type like 'test.%'`,
    );
    expect(rows).toEqual([{ activity_type: 'test.committed', kind: 'audit' }]);
  });

  it('records who acted, naming a key that has no row (the environment key) instead of referencing it', async () => {
    const db = t.database.db;
    const keyId = '0190a000-0000-7000-8000-000000000001';
    await recordAudits(db, [
      {
        type: 'test.by_key',
        category: 'provisioning',
        organizationId: null,
        actor: { kind: 'api_key', apiKeyId: keyId, organizationId: null, scopes: [], ceilingUserId: null },
        description: 'by a stored key',
        tags: ['a', 'b'],
      },
      {
        type: 'test.by_env_key',
        category: 'provisioning',
        organizationId: null,
        actor: ENV_KEY_ACTOR,
        description: 'by the environment key',
      },
    ]);
    const rows = await queryRows<{
      activity_type: string;
      actor_type: string;
      api_key_id: string | null;
      details: object;
      tags: string[];
    }>(
      db,
      sql`select activity_type, actor_type, api_key_id, details, tags from activities
          where activity_type in ('test.by_key', 'test.by_env_key') order by activity_type`,
    );
    expect(rows).toEqual([
      {
        activity_type: 'test.by_env_key',
        actor_type: 'api_key',
        api_key_id: null,
        details: { via: 'env:PROVISIONING_API_KEY' },
        tags: [],
      },
      { activity_type: 'test.by_key', actor_type: 'api_key', api_key_id: keyId, details: {}, tags: ['a', 'b'] },
    ]);
  });

  it('stores details with every sensitive value redacted', async () => {
    const db = t.database.db;
    await recordAudits(db, [
      {
        type: 'test.redacted',
        category: 'system',
        organizationId: null,
        description: 'secrets',
        details: {
          email: 'a@example.com',
          password: 'hunter2hunter2',
          nested: {
            access_token: 'abc',
            'X-Api-Key': 'k',
            list: [{ client_secret: 's' }, 'gh_0123456789abcdefghijkl'],
          },
          Authorization: 'Bearer abcdefghijkl',
          role: 'org_admin',
        },
      },
    ]);
    const [row] = await queryRows<{ details: Record<string, unknown> }>(
      db,
      sql`select details from activities where activity_type = 'test.redacted'`,
    );
    expect(row?.details).toEqual({
      email: 'a@example.com',
      password: REDACTED,
      nested: { access_token: REDACTED, 'X-Api-Key': REDACTED, list: [{ client_secret: REDACTED }, REDACTED] },
      Authorization: REDACTED,
      role: 'org_admin',
    });
    expect(JSON.stringify(row)).not.toMatch(/hunter2|abcdefghijkl|gh_0123/);
  });

  it('keeps the numbers and switches of a password or token policy, never a secret under such a key', () => {
    expect(
      redactDetails({
        from: { password_min_length: 10, require_password: true, token_ttl: 900 },
        to: { password_min_length: 14, password: 12345678, token_ttl: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig' },
        otp_code: 123456,
        password_length: 'hunter2hunter2',
      }),
    ).toEqual({
      from: { password_min_length: 10, require_password: true, token_ttl: 900 },
      to: { password_min_length: 14, password: REDACTED, token_ttl: REDACTED },
      otp_code: REDACTED,
      password_length: REDACTED,
    });
  });

  it('redacts the values of pwd, bearer, signing key, recovery code, passphrase and PIN keys', () => {
    expect(
      redactDetails({
        pwd: 'hunter2',
        db_pwd: 'hunter2',
        bearer: 'abc',
        signing_key: 'k',
        'Encryption-Key': 'k',
        recovery_codes: ['a1b2', 'c3d4'],
        backup_code: 'x',
        passphrase: 'open sesame',
        pin: '1234',
        card_pin: 1234,
        shipping: 'express',
        spin: 3,
        is_private: true,
        keyboard: 'us',
      }),
    ).toEqual({
      pwd: REDACTED,
      db_pwd: REDACTED,
      bearer: REDACTED,
      signing_key: REDACTED,
      'Encryption-Key': REDACTED,
      recovery_codes: REDACTED,
      backup_code: REDACTED,
      passphrase: REDACTED,
      pin: REDACTED,
      card_pin: REDACTED,
      shipping: 'express',
      spin: 3,
      is_private: true,
      keyboard: 'us',
    });
  });

  it('masks the password of a URL wherever it sits, keeping the rest of the URL', () => {
    expect(
      redactDetails({
        settings: { to: { smtp_url: 'smtp://u:secretpw@h', list: ['postgres://u:p@ss@db.example:5432/db'] } },
        note: 'moved to https://admin:s3cret@example.com/x?y=1 today',
        plain: 'https://example.com/a@b',
        user_only: 'ftp://anonymous@ftp.example',
      }),
    ).toEqual({
      settings: { to: { smtp_url: `smtp://u:${REDACTED}@h`, list: [`postgres://u:${REDACTED}@db.example:5432/db`] } },
      note: `moved to https://admin:${REDACTED}@example.com/x?y=1 today`,
      plain: 'https://example.com/a@b',
      user_only: 'ftp://anonymous@ftp.example',
    });
  });

  it('redacts credential-looking values under innocent keys', () => {
    expect(redactDetails({ note: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', n: 3 })).toEqual({ note: REDACTED, n: 3 });
  });
});

describe('large batches of audit events', () => {
  // 250 events: over the size from which a batch is copied rather than inserted.
  const batch = (type: string) =>
    Array.from({ length: 250 }, (_, i) => ({
      type,
      category: 'provisioning' as const,
      organizationId: null,
      userId: `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      description: `line\tbreak\nand \\ backslash ${i}`,
      details: { i, note: 'tab\there, "quoted", back\\slash, {brace}', password: 'hunter2hunter2' },
      tags: ['a,b', 'quote"d', 'back\\slash', '{x}'],
      ip: '192.0.2.1',
      userAgent: 'agent\twith tab',
    }));

  it("are written in the caller's transaction too: a rolled-back batch leaves no event", async () => {
    const db = t.database.db;
    await db
      .transaction(async (tx) => {
        await recordAudits(tx, batch('test.bulk_rolled_back'));
        throw new Error('roll back');
      })
      .catch(() => {});
    await db.transaction((tx) => recordAudits(tx, batch('test.bulk_committed')));
    const rows = await queryRows<{ activity_type: string; n: number }>(
      db,
      sql`select activity_type, count(*)::int as n from activities where activity_type like 'test.bulk_%'
          group by activity_type`,
    );
    expect(rows).toEqual([{ activity_type: 'test.bulk_committed', n: 250 }]);
  });

  it('keep every value as given (tabs, line breaks, backslashes, quotes) and redact details', async () => {
    const db = t.database.db;
    await db.transaction((tx) => recordAudits(tx, batch('test.bulk_values')));
    const rows = await queryRows<{
      description: string;
      details: Record<string, unknown>;
      tags: string[];
      user_agent: string;
      kind: string;
    }>(
      db,
      sql`select description, details, tags, user_agent, kind from activities
          where activity_type = 'test.bulk_values' order by description`,
    );
    expect(rows).toHaveLength(250);
    expect(rows.find((r) => r.description.endsWith(' 7'))).toEqual({
      description: 'line\tbreak\nand \\ backslash 7',
      details: { i: 7, note: 'tab\there, "quoted", back\\slash, {brace}', password: REDACTED },
      tags: ['a,b', 'quote"d', 'back\\slash', '{x}'],
      user_agent: 'agent\twith tab',
      kind: 'audit',
    });
  });
});

describe('audit events copied or inserted', () => {
  // Either write path must store the same values: a large batch is copied in binary, a small one inserted.
  const events = (type: string, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      type,
      category: 'user_management' as const,
      organizationId: '0190a000-0000-7000-8000-00000000000a',
      userId: i % 2 ? `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}` : null,
      actorUserId: i % 3 ? '0190a000-0000-7000-8000-0000000000ac' : null,
      description: `Événement ${i} — 😀 ${'ü'.repeat(i % 7)}`,
      details: { i, nested: { list: [1, 'zwei', null, true], empty: {} }, text: 'ünïcödé 😀 "q" \\ \t' },
      severity: (i % 2 ? 'warning' : 'info') as 'warning' | 'info',
      success: i % 5 !== 0,
      tags: i % 4 ? ['ünï', 'a b', ''] : [],
      ip: i % 3 ? '2001:db8::1' : null,
      userAgent: i % 2 ? `Agent/${'ä'.repeat(300)}` : null,
      ...(i % 2 ? { objectType: 'user', objectId: `object-${i}` } : {}),
    }));

  it('store the same values either way', async () => {
    const db = t.database.db;
    await db.transaction((tx) => recordAudits(tx, events('test.same_inserted', 40)));
    await db.transaction((tx) => recordAudits(tx, events('test.same_copied', 200)));
    const read = (type: string) =>
      queryRows<Record<string, unknown>>(
        db,
        sql`select kind, category, severity, success, organization_id, user_id, actor_type, actor_id, api_key_id,
              object_type, object_id, description, details, tags, ip_address, user_agent
            from activities where activity_type = ${type} order by description`,
      );
    const inserted = await read('test.same_inserted');
    const copied = (await read('test.same_copied')).filter((r) =>
      inserted.some((i) => i.description === r.description),
    );
    expect(inserted).toHaveLength(40);
    expect(copied).toEqual(inserted);
    expect(copied.find((r) => r.description === 'Événement 5 — 😀 üüüüü')).toMatchObject({
      details: { i: 5, nested: { list: [1, 'zwei', null, true], empty: {} }, text: 'ünïcödé 😀 "q" \\ \t' },
      tags: ['ünï', 'a b', ''],
      user_agent: `Agent/${'ä'.repeat(300)}`,
      actor_type: 'user',
      actor_id: '0190a000-0000-7000-8000-0000000000ac',
      success: false,
      object_id: 'object-5',
    });
  });
});

describe('audit events written during a request', () => {
  const PLATFORM_KEY = 'platform-provisioning-key-audit-origin-0123';
  let app: TestApp;
  beforeAll(async () => {
    // A route recording an event that names neither its actor nor the request's origin.
    const probe = async (server: FastifyInstance) => {
      server.post('/test/audit-probe', { config: { auth: 'authenticated' } }, async () => {
        await server.database.db.transaction((tx) =>
          recordAudit(tx, { type: 'test.probe', category: 'system', organizationId: null, description: 'probe' }),
        );
        return { ok: true };
      });
    };
    app = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY }, { plugins: [probe] });
  });
  afterAll(() => app.close());

  const origin = { 'user-agent': 'OriginTest/2.0 (audit)' };
  const eventsFrom = (ip: string) =>
    queryRows<{ activity_type: string; user_agent: string | null; actor_type: string; actor_id: string | null }>(
      app.database.db,
      sql`select activity_type, user_agent, actor_type, actor_id from activities
          where kind = 'audit' and ip_address = ${ip} order by activity_type`,
    );

  it("carry the caller's IP address and user agent: an API key created, a role changed, a provisioning call", async () => {
    const root = await superuserClient(app);
    const org = await seedOrganization(app);
    const as = (ip: string, method: 'POST' | 'PATCH', url: string, payload: object, token = root.token) =>
      app.request({
        method,
        url,
        payload,
        remoteAddress: ip,
        headers: { ...origin, authorization: `Bearer ${token}` },
      });

    const key = await as('198.51.100.11', 'POST', '/api/v1/api-keys/', {
      name: 'sync',
      organization: org.code,
      scopes: ['scim'],
    });
    expect(key.statusCode, key.body).toBe(201);
    expect(await eventsFrom('198.51.100.11')).toEqual([
      {
        activity_type: 'api_key.created',
        user_agent: origin['user-agent'],
        actor_type: 'user',
        actor_id: root.user.id,
      },
    ]);

    const role = await root.post('/api/v1/roles/', { code: unique('r'), name: 'Engineer', level: 4 });
    expect(role.statusCode, role.body).toBe(201);
    const changed = await as('198.51.100.12', 'PATCH', `/api/v1/roles/${role.json().id}`, { level: 5 });
    expect(changed.statusCode, changed.body).toBe(200);
    const roleEvents = await eventsFrom('198.51.100.12');
    expect(roleEvents.length).toBeGreaterThan(0);
    for (const event of roleEvents) {
      expect(event).toMatchObject({ user_agent: origin['user-agent'], actor_type: 'user', actor_id: root.user.id });
      expect(event.activity_type).toMatch(/^role\./);
    }

    // 150 users in one call: one event per user and one for the call, written with COPY.
    const items = Array.from({ length: 150 }, (_, i) => ({
      keycloak_id: `kc-origin-${i}`,
      email: `origin${i}@example.com`,
      engagemx_client_id: `origin-${org.code}`,
    }));
    const bulk = await as('198.51.100.13', 'POST', '/api/provisioning/users/bulk', items, PLATFORM_KEY);
    expect(bulk.statusCode, bulk.body).toBe(200);
    const provisioning = await eventsFrom('198.51.100.13');
    expect(provisioning.length).toBeGreaterThan(150);
    expect(provisioning.every((e) => e.user_agent === origin['user-agent'] && e.actor_type === 'api_key')).toBe(true);
  });

  it('name the caller as the actor when the event names nobody', async () => {
    const root = await superuserClient(app);
    const res = await app.request({
      method: 'POST',
      url: '/test/audit-probe',
      remoteAddress: '198.51.100.14',
      headers: { ...origin, authorization: `Bearer ${root.token}` },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(await eventsFrom('198.51.100.14')).toEqual([
      { activity_type: 'test.probe', user_agent: origin['user-agent'], actor_type: 'user', actor_id: root.user.id },
    ]);
  });

  it('leave events recorded outside any request without an origin', async () => {
    await recordAudit(app.database.db, {
      type: 'test.no_request',
      category: 'system',
      organizationId: null,
      actor: ENV_KEY_ACTOR,
      description: 'from a job',
    });
    const [row] = await queryRows<{ ip_address: string | null; user_agent: string | null }>(
      app.database.db,
      sql`select ip_address, user_agent from activities where activity_type = 'test.no_request'`,
    );
    expect(row).toEqual({ ip_address: null, user_agent: null });
  });
});
