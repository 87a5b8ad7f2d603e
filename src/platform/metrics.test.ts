import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/test-app.js';

describe('/metrics with METRICS_TOKEN', () => {
  const token = 'scrape-token-0123456789';
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ METRICS_TOKEN: token });
  });
  afterAll(() => t.close());

  it('answers the Bearer token alone, and 401 problem+json to anyone else', async () => {
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${token}`, token]) {
      const res = await t.request({
        method: 'GET',
        url: '/metrics',
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
      // The code every other 401 of the API carries.
      expect(res.json()).toMatchObject({ status: 401, code: 'not_authenticated' });
      expect(res.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(res.body).not.toContain('http_request_duration_seconds');
    }
    const scrape = await t.request({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(scrape.statusCode).toBe(200);
    expect(scrape.body).toMatch(/^# HELP http_request_duration_seconds /m);
  });
});

describe('/metrics without METRICS_TOKEN', () => {
  it('is public, as a scrape target on a private network usually is', async () => {
    const t = await startTestApp();
    try {
      expect((await t.request({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    } finally {
      await t.close();
    }
  });
});
