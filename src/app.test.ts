import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../test/test-app.js';

describe('cross-origin requests', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ CORS_ORIGINS: 'https://console.example.com' });
  });
  afterAll(() => t.close());

  it('allows the configured origin and no other', async () => {
    const preflight = (origin: string) =>
      t.request({
        method: 'OPTIONS',
        url: '/api/v1/users/',
        headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
    const allowed = await preflight('https://console.example.com');
    expect(allowed.headers['access-control-allow-origin']).toBe('https://console.example.com');
    const refused = await preflight('https://evil.example.com');
    expect(refused.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('lets the allowed origin make every write and read the headers its answers carry', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await t.request({
        method: 'OPTIONS',
        url: '/api/v1/users/0190d3a4-0000-7000-8000-000000000000/',
        headers: {
          origin: 'https://console.example.com',
          'access-control-request-method': method,
          'access-control-request-headers': 'authorization, content-type, if-match',
        },
      });
      expect(res.statusCode, method).toBe(204);
      expect(String(res.headers['access-control-allow-methods']).split(/, */), method).toContain(method);
      expect(res.headers['access-control-allow-headers']).toContain('if-match');
    }
    const answer = await t.request({
      method: 'GET',
      url: '/health',
      headers: { origin: 'https://console.example.com' },
    });
    expect(String(answer.headers['access-control-expose-headers']).split(/, */)).toEqual(
      expect.arrayContaining(['ETag', 'Location', 'Retry-After', 'Content-Disposition']),
    );
  });

  it("sends helmet's security headers on every answer, errors included", async () => {
    for (const url of ['/health', '/no-such-route']) {
      const res = await t.request({ method: 'GET', url });
      expect(res.headers).toMatchObject({
        'x-content-type-options': 'nosniff',
        'x-frame-options': 'SAMEORIGIN',
        'strict-transport-security': expect.stringContaining('max-age='),
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-resource-policy': 'same-origin',
        'x-dns-prefetch-control': 'off',
      });
      expect(res.headers['content-security-policy']).toBeUndefined();
    }
  });
});
