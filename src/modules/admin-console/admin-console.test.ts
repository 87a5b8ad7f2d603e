import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureConsoleBuilt } from '../../../test/console-build.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { CONSOLE_CSP } from './admin-console.routes.js';

describe('admin console serving at /admin/', () => {
  let t: TestApp;
  let script: string;
  beforeAll(async () => {
    ({ script } = ensureConsoleBuilt());
    t = await startTestApp();
  }, 120_000);
  afterAll(() => t?.close());

  it('serves index.html at /admin/ and /admin, revalidated on every load, with the console CSP', async () => {
    for (const url of ['/admin/', '/admin']) {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/html/);
      expect(res.body).toContain(script);
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.headers['content-security-policy']).toBe(CONSOLE_CSP);
    }
  });

  it('answers deep links with index.html so the console can route them', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/users/0190aa3c-0000-7000-8000-000000000000/show' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('<div id="root"></div>');
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('serves the pages of mailed links (set a password, verify an address) without sending a Referer on', async () => {
    for (const url of ['/admin/set-password', '/admin/verify-email']) {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('<div id="root"></div>');
      // The token is in the page's URL: no request from the page may carry it away in a Referer.
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['content-security-policy']).toBe(CONSOLE_CSP);
    }
  });

  it('serves hashed assets as immutable JavaScript', async () => {
    const res = await t.request({ method: 'GET', url: script });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/javascript/);
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(res.body.length).toBeGreaterThan(1000);
  });

  it('answers a missing asset with a problem+json 404, not index.html', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/assets/index-00000000.js' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('keeps the problem+json 404 for unknown API paths', async () => {
    const res = await t.request({ method: 'GET', url: '/api/v1/no-such-thing/' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ status: 404, code: 'route_not_found' });
    expect(res.headers['content-security-policy']).toBeUndefined();
  });

  it('sends the platform security headers and never serves the build stamp', async () => {
    const res = await t.request({ method: 'GET', url: '/admin/' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['strict-transport-security']).toBeDefined();
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    const stamp = await t.request({ method: 'GET', url: '/admin/.source-hash' });
    expect(stamp.body).not.toMatch(/^[0-9a-f]{64}$/);
  });
});
