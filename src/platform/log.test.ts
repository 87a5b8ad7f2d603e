import { PassThrough } from 'node:stream';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization, seedUser, TEST_PASSWORD } from '../../test/seed.js';
import { startTestApp, type TestApp } from '../../test/test-app.js';

describe('request logs', () => {
  let t: TestApp;
  let logs = '';
  beforeAll(async () => {
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      logs += chunk.toString('utf8');
    });
    t = await startTestApp({}, { logStream: stream });
  });
  afterAll(() => t.close());

  it('record method, path and status but no password, token or query string', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const login = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
    });
    expect(login.statusCode).toBe(200);
    const { access, refresh } = login.json() as { access: string; refresh: string };
    await t.request({
      method: 'GET',
      url: '/api/v1/users/validate-token/?secret=in-the-query',
      headers: { authorization: `Bearer ${access}`, cookie: 'sessionid=abc' },
    });
    await t.request({ method: 'POST', url: '/api/token/refresh/', payload: { refresh } });
    // The console's pages for mailed links, and the API calls they make with the token.
    await t.request({ method: 'GET', url: '/admin/set-password?token=console-query-token' });
    await t.request({ method: 'GET', url: '/api/v1/users/password-reset/confirm/?token=confirm-query-token' });
    await new Promise((resolve) => setTimeout(resolve, 50));

    expect(logs).toContain('"path":"/api/v1/users/validate-token","status":200');
    expect(logs).toContain('"path":"/admin/*"');
    expect(logs).toContain('"path":"/api/v1/users/password-reset/confirm"');
    for (const secret of [
      TEST_PASSWORD,
      access,
      refresh,
      'in-the-query',
      'sessionid=abc',
      'console-query-token',
      'confirm-query-token',
    ]) {
      expect(logs).not.toContain(secret);
    }
  });

  it('name a path no route matched by its first segment and length, not the rest of the path', async () => {
    const res = await t.request({ method: 'GET', url: '/some/path/SECRETPATHTOKEN123?q=1' });
    expect(res.statusCode).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(logs).not.toContain('SECRETPATHTOKEN123');
    expect(logs).toContain('"path":"/some/…","pathLength":29,"status":404');
  });
});

describe('error logs', () => {
  it('leave out the parameters of a failed query', async () => {
    let logs = '';
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      logs += chunk.toString('utf8');
    });
    const t = await startTestApp({}, { logStream: stream });
    try {
      const failure = await t.database.db.execute(sql`select ${'secret-parameter-value'}::int`).catch((e: Error) => e);
      expect(String((failure as Error).message)).toContain('secret-parameter-value');
      t.app.log.error({ err: failure }, 'unhandled error');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(logs).toContain('unhandled error');
      expect(logs).toContain('params: [omitted]');
      expect(logs).not.toContain('secret-parameter-value');
    } finally {
      await t.close();
    }
  });
});
