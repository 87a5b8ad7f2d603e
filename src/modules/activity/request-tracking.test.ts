import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization, seedUser } from '../../../test/seed.js';
import { openTestDatabase, startTestApp, type TestApp, testConfig } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { queryRows } from '../../platform/db/client.js';
import type { BufferedActivity } from './activity-buffer.js';

const count = async (t: { database: TestApp['database'] }, where = sql`true`) =>
  (await queryRows<{ n: number }>(t.database.db, sql`select count(*)::int as n from activities where ${where}`))[0]?.n;

function row(i: number): BufferedActivity {
  return {
    timestamp: new Date(),
    id: `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}`,
    kind: 'event',
    activityType: 'test.filler',
    category: 'test',
    severity: 'info',
    success: true,
    organizationId: null,
    userId: null,
    actorType: 'system',
    actorId: null,
    apiKeyId: null,
    description: '',
    details: null,
    tags: null,
    ipAddress: null,
    userAgent: null,
    method: null,
    path: null,
    status: null,
    durationMs: null,
  };
}

describe('request tracking', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ ACTIVITY_BUFFER_SIZE: '100', ACTIVITY_BATCH_SIZE: '2000' });
  });
  afterAll(() => t.close());

  it('counts rows dropped by a full buffer in /metrics instead of holding the request', async () => {
    for (let i = 0; i < 150; i++) t.app.activityBuffer.push(row(i));
    expect(t.app.activityBuffer.dropped).toBe(50);
    const metrics = await t.request({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/^activity_requests_dropped_total 50$/m);
    await t.app.activityBuffer.flush();
    expect(await count(t, sql`activity_type = 'test.filler'`)).toBe(100);
    expect((await t.request({ method: 'GET', url: '/metrics' })).body).toMatch(/^activity_rows_written_total 1\d\d$/m);
  });

  it('tracks events and units of work with the request’s user, redacting sensitive details', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    t.app.tracker.track({
      type: 'document_uploaded',
      description: 'User uploaded PID drawing',
      category: 'data_management',
      details: { filename: 'drawing_001.pdf', api_key: 'gh_secretsecretsecret', password: 'x' },
      tags: ['pid', 'upload'],
      user: { id: user.id, organizationId: org.id },
    });
    const work = t.app.tracker.tracked(
      { type: 'document_processed', description: 'Document processing completed', category: 'data_management' },
      async (fail: boolean) => {
        if (fail) throw new Error('corrupt file');
        return 42;
      },
    );
    expect(await work(false)).toBe(42);
    await expect(work(true)).rejects.toThrow('corrupt file');
    await t.app.activityBuffer.flush();
    const rows = await queryRows<{
      activity_type: string;
      success: boolean;
      details: Record<string, unknown>;
      tags: string[];
      user_id: string | null;
      organization_id: string | null;
    }>(
      t.database.db,
      sql`select activity_type, success, details, tags, user_id, organization_id from activities
        where kind = 'event' and category = 'data_management' order by id`,
    );
    expect(rows[0]).toMatchObject({
      activity_type: 'document_uploaded',
      user_id: user.id,
      organization_id: org.id,
      tags: ['pid', 'upload'],
      details: { filename: 'drawing_001.pdf', api_key: '[REDACTED]', password: '[REDACTED]' },
    });
    expect(rows.slice(1).map((r) => [r.activity_type, r.success])).toEqual([
      ['document_processed', true],
      ['document_processed', false],
    ]);
    expect(rows[2]?.details).toMatchObject({ error: { message: 'corrupt file' } });
    expect(typeof rows[1]?.details.duration_ms).toBe('number');
  });
});

describe('request rows', () => {
  it('keep what the request sent and derive the rest: time, user agent with tabs and backslashes, status', async () => {
    const t = await startTestApp();
    try {
      const userAgent = 'Odd\tagent \\ with "quotes", commas and {braces}';
      const before = Date.now();
      await t.request({
        method: 'GET',
        url: '/api/v1/organizations',
        remoteAddress: '198.51.100.77',
        headers: { 'user-agent': userAgent },
      });
      await t.app.activityBuffer.flush();
      const rows = await queryRows<{
        kind: string;
        activity_type: string;
        category: string;
        severity: string;
        success: boolean;
        actor_type: string;
        description: string;
        method: string;
        path: string;
        status: number;
        ip_address: string;
        user_agent: string;
        ms: number;
        duration_ms: number;
      }>(
        t.database.db,
        sql`select kind, activity_type, category, severity, success, actor_type, description, method, path, status,
              ip_address, user_agent, extract(epoch from timestamp) * 1000 as ms, duration_ms
            from activities where ip_address = '198.51.100.77'`,
      );
      expect(rows).toHaveLength(1);
      const [row] = rows;
      expect(row).toMatchObject({
        kind: 'request',
        activity_type: 'api.request',
        category: 'api',
        severity: 'info',
        success: false,
        actor_type: 'anonymous',
        description: 'GET /api/v1/organizations',
        method: 'GET',
        path: '/api/v1/organizations',
        status: 401,
        user_agent: userAgent,
      });
      expect(Number(row?.ms)).toBeGreaterThanOrEqual(before - 1);
      expect(Number(row?.ms)).toBeLessThanOrEqual(Date.now());
      expect(row?.duration_ms).toBeGreaterThan(0);
    } finally {
      await t.close();
    }
  });
});

describe('request tracking at shutdown and when off', () => {
  it('writes what is buffered when the app closes', async () => {
    const test = await openTestDatabase();
    try {
      const app = await buildApp({ config: testConfig(), database: test.database, logger: false });
      await app.ready();
      for (let i = 0; i < 3; i++) await app.inject({ method: 'GET', url: '/api/v1/organizations' });
      expect(app.activityBuffer.size).toBe(3);
      await app.close();
      expect(await count(test, sql`kind = 'request' and path = '/api/v1/organizations' and status = 401`)).toBe(3);
    } finally {
      await test.drop();
    }
  });

  it('records requests made with the environment’s provisioning key, which has no key row to reference', async () => {
    const key = 'a provisioning key from the environment';
    const t = await startTestApp({ PROVISIONING_API_KEY: key });
    try {
      const org = await seedOrganization(t);
      const res = await t.request({
        method: 'GET',
        url: `/api/provisioning/users?client_id=${org.code}`,
        headers: { 'x-api-key': key },
      });
      expect(res.statusCode).toBe(200);
      await t.request({ method: 'GET', url: '/api/v1/organizations' });
      await t.app.activityBuffer.flush();
      const rows = await queryRows<{ actor_type: string; api_key_id: string | null }>(
        t.database.db,
        sql`select actor_type, api_key_id from activities where kind = 'request' and path = '/api/provisioning/users'`,
      );
      expect(rows).toEqual([{ actor_type: 'api_key', api_key_id: null }]);
      expect(await count(t, sql`kind = 'request' and path = '/api/v1/organizations'`)).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('records no requests with ACTIVITY_TRACKING=off', async () => {
    const t = await startTestApp({ ACTIVITY_TRACKING: 'off' });
    try {
      await t.request({ method: 'GET', url: '/api/v1/organizations' });
      await t.app.activityBuffer.flush();
      expect(await count(t, sql`kind = 'request'`)).toBe(0);
    } finally {
      await t.close();
    }
  });
});
