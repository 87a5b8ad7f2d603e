import { Writable } from 'node:stream';
import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginAs, seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTcpProxy } from '../../../test/tcp-proxy.js';
import { openTestDatabase, startTestApp, type TestApp, testConfig } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import type { Config } from '../../config.js';
import { openDatabase, queryRows } from '../../platform/db/client.js';
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
      severity: 'high',
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
      severity: string;
      success: boolean;
      details: Record<string, unknown>;
      tags: string[];
      user_id: string | null;
      organization_id: string | null;
    }>(
      t.database.db,
      sql`select activity_type, severity, success, details, tags, user_id, organization_id from activities
        where kind = 'event' and category = 'data_management' order by id`,
    );
    expect(rows[0]).toMatchObject({
      activity_type: 'document_uploaded',
      severity: 'warning', // seed 002's "high"
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

describe('request rows written in bulk', () => {
  it('store every field as captured: microsecond time, ids given as bytes or text, odd text, derived columns', async () => {
    const t = await startTestApp();
    try {
      const org = '0190a000-0000-7000-8000-0000000000aa';
      const user = '0190a000-0000-7000-8000-0000000000bb';
      const key = '0190a000-0000-7000-8000-0000000000cc';
      const idBytes = Uint8Array.from(Buffer.from('0190a0000000700080000000000000d1', 'hex'));
      // Whole microseconds plus 0.4: the stored time is the same whether truncated or rounded.
      const startedAt = 1_763_870_000_123.4563;
      const longAgent = `Agent/${'x'.repeat(400)}`;
      const base = { startedAt, ipAddress: '2001:db8::1', method: 'GET', durationMs: 12.345678901234567 };
      const pushed = [
        {
          ...base,
          id: idBytes,
          actorType: 'user',
          organizationId: org,
          userId: user,
          apiKeyId: null,
          userAgent: 'Nul\0 gone, tab\t and back\\slash, é ✓ 🚀',
          route: '/api/v1/users/:id',
          status: 200,
        },
        {
          ...base,
          id: '0190a000-0000-7000-8000-0000000000d2',
          actorType: 'api_key',
          organizationId: org,
          userId: null,
          apiKeyId: key,
          userAgent: longAgent,
          route: '/api/v1/organizations',
          status: 404,
        },
        {
          ...base,
          id: '0190a000-0000-7000-8000-0000000000d3',
          actorType: 'anonymous',
          organizationId: null,
          userId: null,
          apiKeyId: null,
          ipAddress: null,
          userAgent: null,
          method: 'POST',
          route: '(unmatched)',
          status: 503,
        },
      ] as const;
      for (const request of pushed) t.app.activityBuffer.pushRequest({ ...request });
      await t.app.activityBuffer.flush();
      const rows = await queryRows<Record<string, unknown>>(
        t.database.db,
        sql`select id::text, (extract(epoch from timestamp) * 1000000)::bigint::text as micros, kind, activity_type,
              category, severity, success, organization_id::text, user_id::text, actor_type, actor_id::text,
              api_key_id::text, description, ip_address, user_agent, method, path, status, duration_ms
            from activities where kind = 'request' and id::text like '0190a000-0000-7000-8000-0000000000d_' order by id`,
      );
      const common = { micros: '1763870000123456', kind: 'request', activity_type: 'api.request', category: 'api' };
      expect(rows).toEqual([
        {
          ...common,
          id: '0190a000-0000-7000-8000-0000000000d1',
          severity: 'info',
          success: true,
          organization_id: org,
          user_id: user,
          actor_type: 'user',
          actor_id: user,
          api_key_id: null,
          description: 'GET /api/v1/users/:id',
          ip_address: '2001:db8::1',
          user_agent: 'Nul gone, tab\t and back\\slash, é ✓ 🚀',
          method: 'GET',
          path: '/api/v1/users/:id',
          status: 200,
          duration_ms: 12.345678901234567,
        },
        {
          ...common,
          id: '0190a000-0000-7000-8000-0000000000d2',
          severity: 'info',
          success: false,
          organization_id: org,
          user_id: null,
          actor_type: 'api_key',
          actor_id: null,
          api_key_id: key,
          description: 'GET /api/v1/organizations',
          ip_address: '2001:db8::1',
          user_agent: longAgent,
          method: 'GET',
          path: '/api/v1/organizations',
          status: 404,
          duration_ms: 12.345678901234567,
        },
        {
          ...common,
          id: '0190a000-0000-7000-8000-0000000000d3',
          severity: 'warning',
          success: false,
          organization_id: null,
          user_id: null,
          actor_type: 'anonymous',
          actor_id: null,
          api_key_id: null,
          description: 'POST (unmatched)',
          ip_address: null,
          user_agent: null,
          method: 'POST',
          path: '(unmatched)',
          status: 503,
          duration_ms: 12.345678901234567,
        },
      ]);
      expect(t.app.activityBuffer.written).toBe(3);
    } finally {
      await t.close();
    }
  });

  it('keeps every row of a batch larger than the buffer it starts in', async () => {
    const t = await startTestApp();
    try {
      const userAgent = `Long/${'y'.repeat(500)}`;
      for (let i = 0; i < 200; i++) {
        t.app.activityBuffer.pushRequest({
          startedAt: Date.now(),
          id: `0190a000-0000-7000-8000-${String(i).padStart(12, '0')}`,
          actorType: 'anonymous',
          organizationId: null,
          userId: null,
          apiKeyId: null,
          ipAddress: '198.51.100.10',
          userAgent,
          method: 'GET',
          route: '/api/v1/organizations',
          status: 200,
          durationMs: i,
        });
      }
      await t.app.activityBuffer.flush();
      const rows = await queryRows<{ n: number; durations: number }>(
        t.database.db,
        sql`select count(*)::int as n, sum(duration_ms)::int as durations from activities
          where ip_address = '198.51.100.10' and user_agent = ${userAgent}`,
      );
      expect(rows).toEqual([{ n: 200, durations: (199 * 200) / 2 }]);
    } finally {
      await t.close();
    }
  });

  it('counts a request whose ids are not uuids as failed without losing the rows around it', async () => {
    const t = await startTestApp();
    try {
      const request = (id: string, organizationId: string) => ({
        startedAt: Date.now(),
        id,
        actorType: 'anonymous' as const,
        organizationId,
        userId: null,
        apiKeyId: null,
        ipAddress: '198.51.100.9',
        userAgent: null,
        method: 'GET',
        route: '/api/v1/organizations',
        status: 200,
        durationMs: 1,
      });
      t.app.activityBuffer.pushRequest(request('0190a000-0000-7000-8000-0000000000e1', 'not-a-uuid'));
      await t.app.activityBuffer.flush();
      t.app.activityBuffer.pushRequest(
        request('0190a000-0000-7000-8000-0000000000e2', '0190a000-0000-7000-8000-0000000000aa'),
      );
      await t.app.activityBuffer.flush();
      expect(t.app.activityBuffer.failed).toBe(1);
      expect(await count(t, sql`ip_address = '198.51.100.9'`)).toBe(1);
      expect((await t.request({ method: 'GET', url: '/metrics' })).body).toMatch(/^activity_rows_failed_total 1$/m);
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

  it('names the token’s user on validate-token, a public route that reads the token itself', async () => {
    const t = await startTestApp();
    try {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const { token } = await loginAs(t, user);
      const res = await t.request({
        method: 'GET',
        url: '/api/v1/users/validate-token/',
        headers: { authorization: `Bearer ${token}`, 'x-api-key': 'a stray key the route ignores' },
      });
      expect(res.statusCode).toBe(200);
      await t.app.activityBuffer.flush();
      const rows = await queryRows<{ actor_type: string; user_id: string | null; organization_id: string | null }>(
        t.database.db,
        sql`select actor_type, user_id, organization_id from activities
          where kind = 'request' and path = '/api/v1/users/validate-token' and user_id = ${user.id}::uuid`,
      );
      expect(rows).toEqual([{ actor_type: 'user', user_id: user.id, organization_id: org.id }]);
    } finally {
      await t.close();
    }
  });

  it('names the user a login, a refresh or a cookie sign-in opened a session for; a refused login stays anonymous', async () => {
    const t = await startTestApp();
    try {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const post = (url: string, payload: Record<string, unknown>) => t.request({ method: 'POST', url, payload });
      const credentials = { email: user.email, password: TEST_PASSWORD, organization: org.code };
      const login = await post('/api/v1/users/login/', credentials);
      const answers = [
        login,
        await post('/api/token/', { ...credentials, email: undefined, username: user.email }),
        await post('/api/token/refresh/', { refresh: login.json().refresh }),
        await post('/api/login/', credentials),
      ];
      for (const res of answers) expect(res.statusCode, res.body).toBe(200);
      const refused = await post('/api/v1/users/login/', { ...credentials, password: 'not the password' });
      expect(refused.statusCode).toBe(401);
      await t.app.activityBuffer.flush();
      const rows = await queryRows<{
        path: string;
        status: number;
        actor_type: string;
        user_id: string | null;
        organization_id: string | null;
      }>(
        t.database.db,
        sql`select path, status, actor_type, user_id, organization_id from activities
          where kind = 'request' and path in ('/api/v1/users/login', '/api/token', '/api/token/refresh', '/api/login')
          order by timestamp, id`,
      );
      expect(rows).toEqual([
        { path: '/api/v1/users/login', status: 200, actor_type: 'user', user_id: user.id, organization_id: org.id },
        { path: '/api/token', status: 200, actor_type: 'user', user_id: user.id, organization_id: org.id },
        { path: '/api/token/refresh', status: 200, actor_type: 'user', user_id: user.id, organization_id: org.id },
        { path: '/api/login', status: 200, actor_type: 'user', user_id: user.id, organization_id: org.id },
        { path: '/api/v1/users/login', status: 401, actor_type: 'anonymous', user_id: null, organization_id: null },
      ]);
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

type LogLine = { level: number; msg: string; reason?: string; err?: unknown };

/** A second node on `t`'s database reaching it through a proxy that can cut the path; the same MASTER_KEY opens its keys. */
async function proxiedNode(t: TestApp, config: Partial<Config> = {}) {
  const url = new URL(t.database.pool?.options.connectionString as string);
  const proxy = await startTcpProxy(url.hostname, Number(url.port));
  url.host = `127.0.0.1:${proxy.port}`;
  const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4, connectTimeoutMs: 1_000 });
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const node = await buildApp({ config: { ...t.config, ...config }, database, logger: { stream } });
  await node.ready();
  return {
    node,
    proxy,
    lines,
    close: async () => {
      proxy.restore();
      await node.close();
      await database.close();
      await proxy.close();
    },
  };
}

describe.runIf(process.env.TEST_DATABASE_URL)('while the database cannot be reached', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  async function userToken() {
    const org = await seedOrganization(t);
    const { token } = await loginAs(t, await seedUser(t, org.id));
    return token;
  }
  const profile = (node: FastifyInstance, token: string) =>
    node.inject({ method: 'GET', url: '/api/v1/users/profile/', headers: { authorization: `Bearer ${token}` } });
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const answered503 = () => count(t, sql`path = '/api/v1/users/profile' and status = 503`);

  it('keeps request rows until it is back, and logs each background loop once as it fails and recovers', async () => {
    const { node, proxy, lines, close } = await proxiedNode(t);
    try {
      const token = await userToken();
      expect((await profile(node, token)).statusCode).toBe(200);
      const before = await answered503();

      proxy.cut();
      for (let i = 0; i < 5; i++) expect((await profile(node, token)).statusCode).toBe(503);
      // Past a flush interval: at least one write was tried and failed.
      await sleep(1_500);
      expect(node.activityBuffer.size).toBeGreaterThanOrEqual(5);
      expect(node.activityBuffer.failed).toBe(0);

      proxy.restore();
      await node.activityBuffer.flush();
      expect(((await answered503()) ?? 0) - (before ?? 0)).toBe(5);
      expect(node.activityBuffer.failed).toBe(0);

      const deadline = Date.now() + 10_000;
      while (!lines.some((l) => l.msg === 'invalidation listener: the database is reachable again')) {
        if (Date.now() > deadline) throw new Error('the listener did not report its recovery');
        await sleep(50);
      }
      const loops = lines.filter((l) => /^(invalidation listener|activity writer|signing keys)/.test(l.msg));
      for (const loop of ['invalidation listener', 'activity writer']) {
        const own = loops.filter((l) => l.msg.startsWith(loop));
        expect(own.map((l) => [l.level, l.msg])).toEqual([
          [40, `${loop}: the database cannot be reached`],
          [30, `${loop}: the database is reachable again`],
        ]);
        expect(own[0]?.reason).toEqual(expect.any(String));
        expect(own[0]?.err).toBeUndefined();
      }
      expect(loops.filter((l) => l.level >= 50 || l.err !== undefined)).toEqual([]);
    } finally {
      await close();
    }
  }, 30_000);

  it('holds no more rows than the buffer takes, counting the others dropped', async () => {
    const { node, proxy, close } = await proxiedNode(t, { activityBufferSize: 3, activityBatchSize: 1 });
    try {
      const token = await userToken();
      expect((await profile(node, token)).statusCode).toBe(200);
      await node.activityBuffer.flush();
      const before = await answered503();
      const dropped = node.activityBuffer.dropped;
      proxy.cut();
      for (let i = 0; i < 5; i++) expect((await profile(node, token)).statusCode).toBe(503);
      await sleep(1_200);
      expect(node.activityBuffer.size).toBe(3);
      expect(node.activityBuffer.dropped - dropped).toBe(2);
      proxy.restore();
      await node.activityBuffer.flush();
      expect(((await answered503()) ?? 0) - (before ?? 0)).toBe(3);
      expect(node.activityBuffer.failed).toBe(0);
    } finally {
      await close();
    }
  }, 30_000);
});
