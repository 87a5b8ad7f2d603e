import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

describe('health', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('answers 200 status ok on /health and /api/v1/users/health/', async () => {
    for (const url of ['/health', '/api/v1/users/health/']) {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ status: 'ok', database: 'ok' });
    }
  });

  it('answers unknown routes with 404 problem+json', async () => {
    const res = await t.request({ method: 'GET', url: '/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 404, code: 'route_not_found' });
  });
});

describe('health while the database is down', () => {
  it('answers 503 with status unavailable', async () => {
    const t = await startTestApp();
    await t.database.close();
    try {
      const res = await t.request({ method: 'GET', url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unavailable', database: 'unreachable' });
    } finally {
      await t.close();
    }
  });
});
