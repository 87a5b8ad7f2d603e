import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

describe('error rendering', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ BODY_LIMIT: '2048' });
  });
  afterAll(() => t.close());

  it('answers 413 problem+json for a body over the limit', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ code: 'x', name: 'y'.repeat(5000) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ status: 413, code: 'payload_too_large' });
  });

  it('answers 415 for a body that is not JSON', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { 'content-type': 'application/xml' },
      payload: '<x/>',
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('answers malformed JSON with 400 and no stack trace', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/organizations',
      headers: { 'content-type': 'application/json' },
      payload: '{"code": "x", ',
    });
    expect(res.statusCode).toBe(400);
    expect(res.body).not.toMatch(/at .*\.(js|ts):\d+/);
    expect(res.json()).toMatchObject({ type: expect.any(String), title: 'Bad Request', code: 'validation_failed' });
  });

  it('exposes Prometheus metrics with route templates as labels', async () => {
    await t.request({ method: 'GET', url: '/health' });
    const res = await t.request({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/health",status="200"\} \d+/);
    expect(res.body).toContain('process_resident_memory_bytes');
  });
});
